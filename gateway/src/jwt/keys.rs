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
