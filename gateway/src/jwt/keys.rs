//! Decoding keys and their rules: each key is tied to the one algorithm it
//! verifies, with the claim checks (`exp`, `nbf`, `iss`, `aud`, leeway)
//! built once; the PEM key of `JWT_PUBLIC_KEY_FILE` and `JWT_ALGORITHM` are
//! read here.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

use super::{AuthFailure, Claims};

/// A decoding key with the only algorithm it verifies and its rules.
pub(super) struct KeyEntry {
    pub(super) algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl KeyEntry {
    pub(super) fn new(algorithm: Algorithm, key: DecodingKey, rules: &Rules) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = rules.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // No audience configured: tokens for any audience are fine.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self {
            algorithm,
            key,
            validation,
        }
    }

    pub(super) fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthFailure::from_error(&e))
    }
}

/// Claim rules shared by every key.
#[derive(Clone)]
pub(super) struct Rules {
    pub(super) leeway: u64,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
}

/// Accept `JWT_ALGORITHM`: an asymmetric JWS algorithm.
pub fn parse_asymmetric_algorithm(value: &str) -> Result<Algorithm, String> {
    let algorithm: Algorithm = value
        .parse()
        .map_err(|_| format!("unknown algorithm `{value}`"))?;
    if is_symmetric(algorithm) {
        return Err("a public key needs an asymmetric algorithm (RS256, ES256, EdDSA, …); HS256 uses JWT_SECRET".to_owned());
    }
    Ok(algorithm)
}

/// Read a PEM public key; the algorithm is `configured` or detected from the key type.
pub(super) fn pem_key(
    bytes: &[u8],
    configured: Option<Algorithm>,
) -> Result<(Algorithm, DecodingKey), String> {
    use Algorithm::*;
    let family_of = |alg: Algorithm| match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => "rsa",
        ES256 | ES384 => "ec",
        EdDSA => "ed",
        _ => "hmac",
    };
    let detected = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        (RS256, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        (ES256, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        (EdDSA, key)
    } else {
        return Err("not a PEM RSA, EC or Ed25519 public key".to_owned());
    };
    match configured {
        None => Ok(detected),
        Some(alg) if family_of(alg) == family_of(detected.0) => Ok((alg, detected.1)),
        Some(alg) => Err(format!(
            "JWT_ALGORITHM {alg:?} does not fit this key (a {} key)",
            family_of(detected.0)
        )),
    }
}

/// HS256/384/512: verified with a shared secret, never with a public key.
pub(super) fn is_symmetric(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::jwt::test_keys::{EC_PUBLIC, ED_PUBLIC, SECRET, at, eddsa, es256, hs256};

    fn rules(leeway: u64, issuer: Option<&str>, audience: Option<&str>) -> Rules {
        Rules {
            leeway,
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
        }
    }

    fn hmac(rules: &Rules) -> KeyEntry {
        KeyEntry::new(Algorithm::HS256, DecodingKey::from_secret(SECRET), rules)
    }

    /// The verdict of an HS256 key with `rules` on `claims`.
    fn verdict(rules: &Rules, claims: serde_json::Value) -> Result<(), AuthFailure> {
        hmac(rules).verify(&hs256(&claims)).map(|_| ())
    }

    #[test]
    fn a_valid_token_yields_the_claims_the_gateway_reads() {
        let exp = at(60);
        let claims = hmac(&rules(0, None, None))
            .verify(&hs256(&json!({"sub": "alice", "scope": "a b", "exp": exp})))
            .unwrap();
        assert_eq!(claims.sub.as_deref(), Some("alice"));
        assert_eq!(claims.scope.as_deref(), Some("a b"));
        assert_eq!(claims.exp, Some(exp as f64));
    }

    #[test]
    fn an_expired_token_passes_only_within_the_leeway() {
        let claims = json!({"exp": at(-30)});
        assert_eq!(
            verdict(&rules(0, None, None), claims.clone()),
            Err(AuthFailure::Expired)
        );
        assert_eq!(verdict(&rules(60, None, None), claims), Ok(()));
    }

    #[test]
    fn a_token_before_its_nbf_is_not_valid_yet() {
        let claims = json!({"exp": at(3600), "nbf": at(600)});
        assert_eq!(
            verdict(&rules(0, None, None), claims.clone()),
            Err(AuthFailure::NotYetValid)
        );
        assert_eq!(verdict(&rules(900, None, None), claims), Ok(()));
    }

    #[test]
    fn exp_is_required() {
        assert_eq!(
            verdict(&rules(0, None, None), json!({"sub": "alice"})),
            Err(AuthFailure::Claims)
        );
    }

    #[test]
    fn a_configured_issuer_is_required_and_must_match() {
        let rules = rules(0, Some("https://issuer.example"), None);
        let exp = at(60);
        assert_eq!(
            verdict(&rules, json!({"exp": exp, "iss": "https://issuer.example"})),
            Ok(())
        );
        assert_eq!(
            verdict(&rules, json!({"exp": exp, "iss": "https://other.example"})),
            Err(AuthFailure::Issuer)
        );
        assert_eq!(
            verdict(&rules, json!({"exp": exp})),
            Err(AuthFailure::Claims)
        );
    }

    #[test]
    fn a_configured_audience_is_required_and_must_be_among_the_tokens() {
        let rules = rules(0, None, Some("gateway"));
        let exp = at(60);
        assert_eq!(
            verdict(&rules, json!({"exp": exp, "aud": "gateway"})),
            Ok(())
        );
        assert_eq!(
            verdict(&rules, json!({"exp": exp, "aud": ["other", "gateway"]})),
            Ok(())
        );
        assert_eq!(
            verdict(&rules, json!({"exp": exp, "aud": "other"})),
            Err(AuthFailure::Audience)
        );
        assert_eq!(
            verdict(&rules, json!({"exp": exp})),
            Err(AuthFailure::Claims)
        );
    }

    #[test]
    fn without_a_configured_audience_any_audience_passes() {
        let claims = json!({"exp": at(60), "aud": "anyone"});
        assert_eq!(verdict(&rules(0, None, None), claims), Ok(()));
    }

    #[test]
    fn another_secret_fails_the_signature() {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": at(60)}),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        let entry = hmac(&rules(0, None, None));
        assert_eq!(
            entry.verify(&token).map(|_| ()),
            Err(AuthFailure::Signature)
        );
    }

    #[test]
    fn a_key_verifies_its_own_algorithm_only() {
        let token = encode(
            &Header::new(Algorithm::HS384),
            &json!({"exp": at(60)}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let entry = hmac(&rules(0, None, None));
        assert_eq!(
            entry.verify(&token).map(|_| ()),
            Err(AuthFailure::Algorithm)
        );
    }

    #[test]
    fn asymmetric_keys_verify_their_tokens() {
        let rules = rules(0, None, None);
        let claims = json!({"exp": at(60)});
        let (algorithm, key) = pem_key(EC_PUBLIC.as_bytes(), None).unwrap();
        let ec = KeyEntry::new(algorithm, key, &rules);
        assert!(ec.verify(&es256(None, &claims)).is_ok());
        let (algorithm, key) = pem_key(ED_PUBLIC.as_bytes(), None).unwrap();
        let ed = KeyEntry::new(algorithm, key, &rules);
        assert!(ed.verify(&eddsa(None, &claims)).is_ok());
        // Each key only its own algorithm.
        assert_eq!(
            ec.verify(&eddsa(None, &claims)).map(|_| ()),
            Err(AuthFailure::Algorithm)
        );
    }

    #[test]
    fn the_pem_key_type_gives_the_algorithm_unless_one_is_configured() {
        let ec = EC_PUBLIC.as_bytes();
        assert_eq!(pem_key(ec, None).unwrap().0, Algorithm::ES256);
        assert_eq!(
            pem_key(ec, Some(Algorithm::ES384)).unwrap().0,
            Algorithm::ES384
        );
        let misfit = pem_key(ec, Some(Algorithm::RS256)).err().unwrap();
        assert!(
            misfit.contains("does not fit this key (a ec key)"),
            "{misfit}"
        );
        assert_eq!(
            pem_key(ED_PUBLIC.as_bytes(), None).unwrap().0,
            Algorithm::EdDSA
        );
        assert!(pem_key(b"not a key", None).is_err());
    }

    #[test]
    fn jwt_algorithm_accepts_asymmetric_algorithms_only() {
        assert_eq!(parse_asymmetric_algorithm("RS256"), Ok(Algorithm::RS256));
        assert_eq!(parse_asymmetric_algorithm("EdDSA"), Ok(Algorithm::EdDSA));
        assert!(
            parse_asymmetric_algorithm("HS256")
                .unwrap_err()
                .contains("JWT_SECRET")
        );
        assert!(parse_asymmetric_algorithm("none").is_err());
        assert!(is_symmetric(Algorithm::HS512));
        assert!(!is_symmetric(Algorithm::ES256));
    }
}
