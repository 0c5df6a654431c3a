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
