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

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use axum::http::HeaderValue;

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use serde::Deserialize;

use crate::Settings;

/// Why a request is not authenticated; the label of `gateway_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not a JWT.
    Malformed,
    /// The signature does not verify.
    Signature,
    /// An algorithm the gateway does not accept for any configured key.
    Algorithm,
    /// No key with this `kid` (JWKS).
    UnknownKey,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// Wrong `iss`.
    Issuer,
    /// Wrong `aud`.
    Audience,
    /// A required claim (`exp`, `iss`, `aud`) is missing or has the wrong type.
    Claims,
}

impl AuthFailure {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Signature => "signature",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claims => "claims",
        }
    }

    /// The problem's `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Missing => "this request needs `Authorization: Bearer <token>`",
            Self::Malformed => "the bearer token is not a well-formed JWT",
            Self::Signature => "the token's signature does not verify",
            Self::Algorithm => "the token's algorithm is not accepted",
            Self::UnknownKey => "the token's key id (`kid`) is unknown",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet (`nbf`)",
            Self::Issuer => "the token's issuer (`iss`) is not accepted",
            Self::Audience => "the token's audience (`aud`) is not accepted",
            Self::Claims => "the token lacks a required claim (`exp`, `iss` or `aud`)",
        }
    }

    fn from_error(error: &jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => Self::Signature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm => Self::Algorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => Self::Claims,
            _ => Self::Malformed,
        }
    }
}

/// The claims the gateway reads.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// The subject: forwarded as `X-Auth-Subject`, the rate-limit key.
    #[serde(default)]
    pub sub: Option<String>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Expiry (seconds since the epoch); validated by `jsonwebtoken`, read
    /// here only to know how long a verified token may stay cached.
    #[serde(default)]
    pub exp: Option<f64>,
}

/// A verified token, in the form every request with it needs: the headers
/// the upstream gets are built once, at verification.
#[derive(Debug)]
pub struct Identity {
    /// The token's `sub` (the rate-limit key).
    pub subject: Option<Arc<str>>,
    /// `X-Auth-Subject`, when there is a subject.
    pub subject_header: Option<HeaderValue>,
    /// Space-separated scopes (empty when the token has none).
    pub scope: Box<str>,
    /// `X-Auth-Scopes`.
    pub scopes_header: HeaderValue,
    /// Seconds since the epoch after which the token is expired (`exp` + leeway).
    valid_until: u64,
    /// The JWKS generation it was verified under (see [`Jwks::generation`]).
    key_generation: u64,
}

impl Identity {
    fn new(claims: Claims, leeway: u64, key_generation: u64) -> Result<Self, AuthFailure> {
        let scope = claims.scope.unwrap_or_default();
        let subject_header = match &claims.sub {
            // A subject with control characters cannot travel in a header: reject it.
            Some(subject) => Some(HeaderValue::from_str(subject).map_err(|_| AuthFailure::Claims)?),
            None => None,
        };
        let scopes_header = HeaderValue::from_str(&scope).map_err(|_| AuthFailure::Claims)?;
        Ok(Self {
            subject: claims.sub.map(Arc::from),
            subject_header,
            scope: scope.into_boxed_str(),
            scopes_header,
            // `exp` is a required claim, so it is there; a float is floored.
            valid_until: claims
                .exp
                .map_or(0, |exp| (exp.max(0.0) as u64).saturating_add(leeway)),
            key_generation,
        })
    }
}

/// Verified tokens, so a client that sends the same token again costs a
/// hash lookup, not a base64 + JSON + signature check (Envoy's `jwt_authn`
/// has the same cache). An entry is used only while its `exp` (plus the
/// leeway) has not passed and the JWKS has not dropped or changed a key
/// since it was verified (its key generation is the current one), so a
/// withdrawn key stops validating cached tokens too. Failures are never
/// cached.
///
/// Written by hand: a bounded map is all it needs (it is emptied when full,
/// which only costs re-verifications), not a cache crate.
struct TokenCache {
    entries: RwLock<HashMap<Box<str>, Arc<Identity>>>,
}

/// Tokens kept at most.
const TOKEN_CACHE_CAPACITY: usize = 4096;
/// Longer tokens are verified every time rather than kept.
const TOKEN_CACHE_MAX_LEN: usize = 4096;

impl TokenCache {
    fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, token: &str, now: u64, key_generation: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().ok()?;
        entries
            .get(token)
            .filter(|identity| {
                now <= identity.valid_until && identity.key_generation == key_generation
            })
            .cloned()
    }

    fn insert(&self, token: &str, identity: Arc<Identity>) {
        if token.len() > TOKEN_CACHE_MAX_LEN {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= TOKEN_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(token.into(), identity);
        }
    }

    fn remove(&self, token: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(token);
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A decoding key with the only algorithm it verifies and its rules.
struct KeyEntry {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl KeyEntry {
    fn new(algorithm: Algorithm, key: DecodingKey, rules: &Rules) -> Self {
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

    fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthFailure::from_error(&e))
    }
}

/// Claim rules shared by every key.
#[derive(Clone)]
struct Rules {
    leeway: u64,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Verifies bearer tokens against the configured key sources.
pub struct Verifier {
    hmac: Option<KeyEntry>,
    pem: Option<KeyEntry>,
    jwks: Option<Jwks>,
    leeway: u64,
    cache: TokenCache,
}

/// Accept `JWT_ALGORITHM`: an asymmetric JWS algorithm.
pub fn parse_asymmetric_algorithm(value: &str) -> Result<Algorithm, String> {
    let algorithm: Algorithm = value
        .parse()
        .map_err(|_| format!("unknown algorithm `{value}`"))?;
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err("a public key needs an asymmetric algorithm (RS256, ES256, EdDSA, …); HS256 uses JWT_SECRET".to_owned());
    }
    Ok(algorithm)
}

impl Verifier {
    /// Build from the settings; fails (naming the setting) when no key source
    /// is configured or the PEM key cannot be read.
    pub async fn from_settings(settings: &Settings) -> Result<Self, String> {
        let rules = Rules {
            leeway: settings.jwt_leeway_seconds,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
        };
        let hmac = settings.jwt_secret.as_ref().map(|secret| {
            KeyEntry::new(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose().as_bytes()),
                &rules,
            )
        });
        let pem = match &settings.jwt_public_key_file {
            Some(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| {
                    format!("JWT_PUBLIC_KEY_FILE: cannot read {}: {e}", path.display())
                })?;
                let (algorithm, key) = pem_key(&bytes, settings.jwt_algorithm)
                    .map_err(|e| format!("JWT_PUBLIC_KEY_FILE: {}: {e}", path.display()))?;
                Some(KeyEntry::new(algorithm, key, &rules))
            }
            None => None,
        };
        let jwks = settings.jwt_jwks_url.as_ref().map(|url| {
            Jwks::new(
                url.clone(),
                settings.jwt_jwks_min_refetch,
                settings.jwt_jwks_refresh,
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
        let generation = self.jwks.as_ref().map_or(0, Jwks::generation);
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
            && !matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            )
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

/// Read a PEM public key; the algorithm is `configured` or detected from the key type.
fn pem_key(
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

/// A JWKS cache: keys by `kid`, refetched every `refresh` and on an unknown
/// `kid` (at most once per `min_refetch`), served from cache while the JWKS
/// host is down.
pub struct Jwks {
    url: String,
    http: reqwest::Client,
    rules: Rules,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped when a fetch drops or changes a key (not when one is only
    /// added): cached tokens of an older generation are verified again.
    generation: AtomicU64,
    /// How often the whole set is fetched again.
    refresh: Duration,
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
    fn new(url: String, min_refetch: Duration, refresh: Duration, rules: Rules) -> Self {
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
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn cached(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn key(
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
    async fn fetch(&self) -> Result<(), String> {
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
        // Only a key that is gone (or whose parameters changed) can turn a
        // verified token invalid; a key merely added cannot.
        let withdrawn = previous
            .source
            .keys
            .iter()
            .any(|old| !set.keys.contains(old));
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let algorithm = match jwk.common.key_algorithm.map(Algorithm::try_from) {
                Some(Ok(alg)) => alg,
                Some(Err(_)) => continue,
                None => match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                        Algorithm::ES384
                    }
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    _ => continue,
                },
            };
            // Symmetric keys never come from a public key set.
            if matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            ) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let entry = Arc::new(KeyEntry::new(algorithm, key, &self.rules));
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), entry);
                }
                None => keys.without_kid.push(entry),
            }
        }
        keys.source = set;
        let keys = Arc::new(keys);
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
