//! The JWKS key source: keys by `kid`, fetched at start, every
//! `JWT_JWKS_REFRESH` and on an unknown `kid` (at most once per
//! `JWT_JWKS_MIN_REFETCH`), with the key-set generation that invalidates
//! cached tokens when a key is withdrawn.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet},
};

use super::{
    AuthFailure,
    keys::{KeyEntry, Rules, is_symmetric},
};

/// A JWKS cache: keys by `kid`, refetched every `refresh` and on an unknown
/// `kid` (at most once per `min_refetch`), served from cache while the JWKS
/// host is down.
pub struct Jwks {
    pub(super) url: String,
    http: reqwest::Client,
    rules: Rules,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped when a fetch drops or changes a key (not when one is only
    /// added): cached tokens of an older generation are verified again.
    generation: AtomicU64,
    /// How often the whole set is fetched again.
    pub(super) refresh: Duration,
    /// When the last refetch for an unknown `kid` started; the async lock
    /// also makes concurrent unknown-`kid` requests share one fetch.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch: Duration,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<KeyEntry>>,
    without_kid: Vec<Arc<KeyEntry>>,
    /// The JWKS document these keys came from, to tell what a fetch changed.
    source: JwkSet,
}

impl KeySet {
    /// The usable keys of `set`, each tied to its algorithm; a key with an
    /// algorithm the gateway cannot use, or a symmetric one, is skipped.
    fn from_set(set: JwkSet, rules: &Rules) -> Self {
        let mut keys = Self::default();
        for jwk in &set.keys {
            let Some(algorithm) = jwk_algorithm(jwk) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let entry = Arc::new(KeyEntry::new(algorithm, key, rules));
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), entry);
                }
                None => keys.without_kid.push(entry),
            }
        }
        keys.source = set;
        keys
    }

    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<Arc<KeyEntry>> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)
                .filter(|entry| entry.algorithm == algorithm)
                .cloned(),
            // A token without `kid`: the first key of its algorithm.
            None => self
                .by_kid
                .values()
                .chain(self.without_kid.iter())
                .find(|entry| entry.algorithm == algorithm)
                .cloned(),
        }
    }
}

impl Jwks {
    pub(super) fn new(url: String, min_refetch: Duration, refresh: Duration, rules: Rules) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        Self {
            url,
            http,
            rules,
            keys: RwLock::new(Arc::new(KeySet::default())),
            generation: AtomicU64::new(0),
            refresh,
            last_refetch: tokio::sync::Mutex::new(None),
            min_refetch,
        }
    }

    /// The current key-set generation (one atomic load).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn cached(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<KeyEntry>, AuthFailure> {
        if let Some(entry) = self.cached().find(kid, algorithm) {
            return Ok(entry);
        }
        let mut last = self.last_refetch.lock().await;
        // Another request may have refetched while this one waited.
        if let Some(entry) = self.cached().find(kid, algorithm) {
            return Ok(entry);
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return Err(AuthFailure::UnknownKey);
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(%error, url = %self.url, "JWKS refetch failed; serving cached keys");
        }
        drop(last);
        self.cached()
            .find(kid, algorithm)
            .ok_or(AuthFailure::UnknownKey)
    }

    /// Fetch the key set and replace the cache (kept as is on failure, and
    /// when nothing changed); a key dropped or changed bumps the generation.
    pub(super) async fn fetch(&self) -> Result<(), String> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let previous = self.cached();
        if previous.source == set {
            return Ok(());
        }
        let withdrawn = withdraws(&previous.source, &set);
        let keys = Arc::new(KeySet::from_set(set, &self.rules));
        match self.keys.write() {
            Ok(mut guard) => *guard = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        // After the swap: a request that reads the new generation verifies
        // with the new keys.
        if withdrawn {
            self.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!(url = %self.url, "JWKS dropped or changed a key; cached tokens are verified again");
        }
        Ok(())
    }
}

/// The algorithm a JWK verifies: its `alg`, else the usual one of its key
/// type; `None` for an algorithm the gateway does not know and for symmetric
/// keys (they never come from a public key set).
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let algorithm = match jwk.common.key_algorithm.map(Algorithm::try_from) {
        Some(Ok(alg)) => alg,
        Some(Err(_)) => return None,
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                Algorithm::ES384
            }
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            _ => return None,
        },
    };
    (!is_symmetric(algorithm)).then_some(algorithm)
}

/// Whether going from `previous` to `next` drops or changes a key: only
/// that can turn a verified token invalid; a key merely added cannot.
fn withdraws(previous: &JwkSet, next: &JwkSet) -> bool {
    previous.keys.iter().any(|old| !next.keys.contains(old))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::jwt::test_keys::{EC_X, EC_Y, ED_X, at, eddsa, es256};

    fn ec(kid: Option<&str>) -> Value {
        let mut jwk = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y});
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
        }
        jwk
    }

    fn ed(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": kid})
    }

    fn set(keys: Vec<Value>) -> JwkSet {
        serde_json::from_value(json!({ "keys": keys })).unwrap()
    }

    fn jwk(value: Value) -> Jwk {
        serde_json::from_value(value).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            leeway: 0,
            issuer: None,
            audience: None,
        }
    }

    #[test]
    fn a_jwk_verifies_its_alg_or_the_usual_one_of_its_type() {
        assert_eq!(jwk_algorithm(&jwk(ec(None))), Some(Algorithm::ES256));
        assert_eq!(jwk_algorithm(&jwk(ed("e"))), Some(Algorithm::EdDSA));
        let rsa = json!({"kty": "RSA", "n": "sXch", "e": "AQAB"});
        assert_eq!(jwk_algorithm(&jwk(rsa.clone())), Some(Algorithm::RS256));
        let mut ps = rsa.clone();
        ps["alg"] = "PS384".into();
        assert_eq!(jwk_algorithm(&jwk(ps)), Some(Algorithm::PS384));
        // An encryption key is no signing key.
        let mut oaep = rsa;
        oaep["alg"] = "RSA-OAEP".into();
        assert_eq!(jwk_algorithm(&jwk(oaep)), None);
    }

    #[test]
    fn symmetric_keys_never_come_from_a_key_set() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hs"});
        assert_eq!(jwk_algorithm(&jwk(oct.clone())), None);
        let mut hs = oct;
        hs["alg"] = "HS256".into();
        assert_eq!(jwk_algorithm(&jwk(hs.clone())), None);
        let keys = KeySet::from_set(set(vec![hs]), &rules());
        assert!(keys.find(Some("hs"), Algorithm::HS256).is_none());
    }

    #[test]
    fn keys_are_found_by_kid_and_algorithm() {
        let keys = KeySet::from_set(set(vec![ec(Some("ec")), ed("ed")]), &rules());
        assert_eq!(keys.by_kid.len(), 2);
        assert!(keys.find(Some("ec"), Algorithm::ES256).is_some());
        // The `kid` of a key of another algorithm does not select it.
        assert!(keys.find(Some("ec"), Algorithm::EdDSA).is_none());
        assert!(keys.find(Some("missing"), Algorithm::ES256).is_none());
        // Without `kid`: the first key of the token's algorithm.
        let found = keys.find(None, Algorithm::EdDSA).unwrap();
        assert_eq!(found.algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn a_key_without_kid_serves_tokens_without_kid() {
        let keys = KeySet::from_set(set(vec![ec(None)]), &rules());
        assert!(keys.by_kid.is_empty());
        let entry = keys.find(None, Algorithm::ES256).unwrap();
        assert!(entry.verify(&es256(None, &json!({"exp": at(60)}))).is_ok());
    }

    #[test]
    fn a_found_key_verifies_the_tokens_of_its_private_half() {
        let keys = KeySet::from_set(set(vec![ec(Some("ec")), ed("ed")]), &rules());
        let claims = json!({"sub": "alice", "exp": at(60)});
        let entry = keys.find(Some("ed"), Algorithm::EdDSA).unwrap();
        assert!(entry.verify(&eddsa(Some("ed"), &claims)).is_ok());
        // The other key's token does not verify with it.
        let entry = keys.find(Some("ec"), Algorithm::ES256).unwrap();
        assert_eq!(
            entry.verify(&eddsa(Some("ec"), &claims)).map(|_| ()),
            Err(AuthFailure::Algorithm)
        );
    }

    #[test]
    fn only_a_dropped_or_changed_key_withdraws() {
        let one = set(vec![ec(Some("ec"))]);
        let two = set(vec![ec(Some("ec")), ed("ed")]);
        assert!(!withdraws(&one, &two), "a key added");
        assert!(withdraws(&two, &one), "a key dropped");
        assert!(
            withdraws(&one, &set(vec![ec(Some("renamed"))])),
            "a key changed"
        );
        assert!(!withdraws(&one, &one));
    }

    // Nothing listens on port 1: each fetch fails at once, and the cached
    // (empty) set is served.
    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let jwks = Jwks::new(
            "http://127.0.0.1:1/jwks".to_owned(),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            rules(),
        );
        assert_eq!(
            jwks.key(Some("k"), Algorithm::ES256).await.err(),
            Some(AuthFailure::UnknownKey)
        );
        let first = jwks.last_refetch.lock().await.unwrap();
        assert_eq!(
            jwks.key(Some("k"), Algorithm::ES256).await.err(),
            Some(AuthFailure::UnknownKey)
        );
        assert_eq!(
            *jwks.last_refetch.lock().await,
            Some(first),
            "no second refetch"
        );
        assert_eq!(jwks.generation(), 0);
    }
}
