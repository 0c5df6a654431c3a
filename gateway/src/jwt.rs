//! Bearer token verification: which keys, which algorithms, which claims.
//!
//! Keys come from up to three sources, each tied to its own algorithms so an
//! attacker cannot pick: `JWT_SECRET` verifies HS256 only, the PEM key of
//! `JWT_PUBLIC_KEY_FILE` only its one asymmetric algorithm, and JWKS keys
//! only the algorithm of each key. A token's `alg` selects the source; an
//! `alg` that no source owns (`none`, HS256 against an RSA key) fails before
//! any crypto runs. Decoding keys and validation rules are built once, at
//! start or at a JWKS fetch, never per request.
//!
//! The JWKS is fetched again every `JWT_JWKS_REFRESH` ([`Verifier::refresh_jwks`])
//! and on an unknown `kid`. A fetch that drops or changes a key bumps the
//! key-set generation, and a verified token cached under an older generation
//! is verified again: a key the issuer withdrew stops validating within one
//! refresh, cached tokens included.
//!
//! The parts: [`keys`] ties each decoding key to its algorithm and claim
//! rules (and reads the PEM key), [`jwks`] fetches and caches the JWKS,
//! [`claims`] turns a verified token into an [`Identity`] or an
//! [`AuthFailure`], and [`cache`] keeps verified tokens.

mod cache;
mod claims;
mod jwks;
mod keys;
#[cfg(test)]
mod test_keys;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, decode_header, errors::ErrorKind};
use tokio_util::sync::CancellationToken;

use crate::settings::JwtSettings;
use cache::{TokenCache, unix_now};
pub use claims::{AuthFailure, Claims, Identity};
pub use jwks::Jwks;
pub use keys::parse_asymmetric_algorithm;
use keys::{KeyEntry, Rules, is_symmetric, pem_key};

/// Verifies bearer tokens against the configured key sources.
pub struct Verifier {
    hmac: Option<KeyEntry>,
    pem: Option<KeyEntry>,
    jwks: Option<Jwks>,
    leeway: u64,
    cache: TokenCache,
}

impl Verifier {
    /// Build from the settings; fails (naming the setting) when no key source
    /// is configured or the PEM key cannot be read.
    pub async fn from_settings(settings: &JwtSettings) -> Result<Self, String> {
        let rules = Rules {
            leeway: settings.leeway_seconds,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        };
        let hmac = settings.secret.as_ref().map(|secret| {
            KeyEntry::new(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose().as_bytes()),
                &rules,
            )
        });
        let pem = match &settings.public_key_file {
            Some(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| {
                    format!("JWT_PUBLIC_KEY_FILE: cannot read {}: {e}", path.display())
                })?;
                let (algorithm, key) = pem_key(&bytes, settings.algorithm)
                    .map_err(|e| format!("JWT_PUBLIC_KEY_FILE: {}: {e}", path.display()))?;
                Some(KeyEntry::new(algorithm, key, &rules))
            }
            None => None,
        };
        let jwks = settings.jwks_url.as_ref().map(|url| {
            Jwks::new(
                url.clone(),
                settings.jwks_min_refetch,
                settings.jwks_refresh,
                rules.clone(),
            )
        });
        if hmac.is_none() && pem.is_none() && jwks.is_none() {
            return Err(
                "no JWT key configured: set JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_URL"
                    .to_owned(),
            );
        }
        if let Some(jwks) = &jwks {
            // Warm the cache; a JWKS host that is down now is not fatal: the
            // first token with a `kid` fetches again.
            if let Err(error) = jwks.fetch().await {
                tracing::warn!(%error, "JWKS not reachable at start; will fetch on first use");
            }
        }
        Ok(Self {
            hmac,
            pem,
            jwks,
            leeway: rules.leeway,
            cache: TokenCache::new(),
        })
    }

    /// Fetch the JWKS every `JWT_JWKS_REFRESH` until `shutdown` (at once
    /// when no JWKS is configured). A failed fetch keeps the last key set:
    /// an issuer that is down must not log everyone out.
    pub async fn refresh_jwks(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(jwks) = &self.jwks else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jwks.refresh) => {}
            }
            if let Err(error) = jwks.fetch().await {
                tracing::warn!(%error, url = %jwks.url, "JWKS refresh failed; keeping the cached keys");
            }
        }
    }

    /// The identity of a valid `token`: from the cache of verified tokens
    /// when it is there, not expired and verified under the current key set,
    /// else verified (and then cached).
    pub async fn identify(&self, token: &str) -> Result<Arc<Identity>, AuthFailure> {
        let now = unix_now();
        // Read before verifying: a key-set change during the verification
        // leaves this entry on the older generation, so it is checked again.
        let generation = self.generation();
        if let Some(identity) = self.cache.get(token, now, generation) {
            return Ok(identity);
        }
        match self.verify(token).await {
            Ok(claims) => {
                let identity = Arc::new(Identity::new(claims, self.leeway, generation)?);
                if now <= identity.valid_until {
                    self.cache.insert(token, identity.clone());
                }
                Ok(identity)
            }
            Err(failure) => {
                // A cached token found expired above is dropped here.
                if failure == AuthFailure::Expired {
                    self.cache.remove(token);
                }
                Err(failure)
            }
        }
    }

    /// The identity of `token` if the cache of verified tokens has it (not
    /// expired, verified under the current key set): [`Self::identify`]
    /// without a verification, so a caller can skip the wait.
    pub fn cached(&self, token: &str) -> Option<Arc<Identity>> {
        self.cache.get(token, unix_now(), self.generation())
    }

    /// The current key set's generation (0 without a JWKS).
    fn generation(&self) -> u64 {
        self.jwks.as_ref().map_or(0, Jwks::generation)
    }

    /// Verify `token` and return its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        let header = decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` and friends fail to parse as an `Algorithm`.
            ErrorKind::Json(_) if token_header_names_alg_none(token) => AuthFailure::Algorithm,
            _ => AuthFailure::Malformed,
        })?;
        let algorithm = header.alg;
        if let Some(entry) = &self.hmac
            && entry.algorithm == algorithm
        {
            return entry.verify(token);
        }
        if let Some(entry) = &self.pem
            && entry.algorithm == algorithm
        {
            return entry.verify(token);
        }
        if let Some(jwks) = &self.jwks
            && !is_symmetric(algorithm)
        {
            let entry = jwks.key(header.kid.as_deref(), algorithm).await?;
            return entry.verify(token);
        }
        Err(AuthFailure::Algorithm)
    }
}

/// Whether the (unparseable) header says `"alg":"none"`, for a precise reason.
/// Only runs on tokens that already failed, never on the good path.
fn token_header_names_alg_none(token: &str) -> bool {
    use base64_decode::decode_url_safe;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    decode_url_safe(header).is_some_and(|json| {
        serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
            .is_some_and(|alg| alg.eq_ignore_ascii_case("none"))
    })
}

/// A tiny base64url decoder (no padding), to read a rejected header without a new dependency.
mod base64_decode {
    pub fn decode_url_safe(input: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 3 / 4);
        let mut buffer = 0u32;
        let mut bits = 0;
        for byte in input.bytes() {
            let value = match byte {
                b'A'..=b'Z' => byte - b'A',
                b'a'..=b'z' => byte - b'a' + 26,
                b'0'..=b'9' => byte - b'0' + 52,
                b'-' | b'+' => 62,
                b'_' | b'/' => 63,
                b'=' => break,
                _ => return None,
            };
            buffer = (buffer << 6) | u32::from(value);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use test_keys::{EC_PUBLIC, SECRET, at, eddsa, es256, hs256};

    fn rules() -> Rules {
        Rules {
            leeway: 0,
            issuer: None,
            audience: None,
        }
    }

    /// A verifier with `JWT_SECRET` when `hmac`, and the EC public key as
    /// `JWT_PUBLIC_KEY_FILE`.
    fn verifier(hmac: bool) -> Verifier {
        let rules = rules();
        let (algorithm, key) = pem_key(EC_PUBLIC.as_bytes(), None).unwrap();
        Verifier {
            hmac: hmac
                .then(|| KeyEntry::new(Algorithm::HS256, DecodingKey::from_secret(SECRET), &rules)),
            pem: Some(KeyEntry::new(algorithm, key, &rules)),
            jwks: None,
            leeway: rules.leeway,
            cache: TokenCache::new(),
        }
    }

    #[tokio::test]
    async fn the_token_alg_selects_the_key_source() {
        let verifier = verifier(true);
        let claims = json!({"sub": "alice", "exp": at(60)});
        assert!(verifier.verify(&hs256(&claims)).await.is_ok());
        assert!(verifier.verify(&es256(None, &claims)).await.is_ok());
        // No source owns EdDSA.
        assert_eq!(
            verifier.verify(&eddsa(None, &claims)).await.err(),
            Some(AuthFailure::Algorithm)
        );
    }

    #[tokio::test]
    async fn hs256_signed_with_the_public_key_fails_without_a_secret() {
        // The classic key confusion: the public key used as an HMAC secret.
        let token = encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": at(60)}),
            &EncodingKey::from_secret(EC_PUBLIC.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier(false).verify(&token).await.err(),
            Some(AuthFailure::Algorithm)
        );
    }

    #[tokio::test]
    async fn alg_none_is_refused_as_an_algorithm_and_junk_as_malformed() {
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            base64url(br#"{"sub":"mallory","exp":9999999999}"#)
        );
        let verifier = verifier(true);
        assert_eq!(
            verifier.verify(&none).await.err(),
            Some(AuthFailure::Algorithm)
        );
        assert_eq!(
            verifier.verify("not-a-token").await.err(),
            Some(AuthFailure::Malformed)
        );
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let verifier = verifier(true);
        let token = hs256(&json!({"sub": "alice", "exp": at(60)}));
        let first = verifier.identify(&token).await.unwrap();
        let again = verifier.identify(&token).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let expired = hs256(&json!({"sub": "alice", "exp": at(-60)}));
        assert_eq!(
            verifier.identify(&expired).await.err(),
            Some(AuthFailure::Expired)
        );
        assert!(verifier.cache.get(&expired, unix_now(), 0).is_none());
    }

    #[test]
    fn the_base64url_reader_reads_what_tokens_hold() {
        assert_eq!(
            base64_decode::decode_url_safe("eyJhbGciOiJub25lIn0").unwrap(),
            br#"{"alg":"none"}"#
        );
        assert_eq!(base64_decode::decode_url_safe("aGk=").unwrap(), b"hi");
        assert!(base64_decode::decode_url_safe("a.b").is_none());
    }

    /// base64url without padding, the encoding of a JWT's parts.
    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}
