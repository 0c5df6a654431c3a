//! The cache of verified tokens: a bounded map from token to [`Identity`],
//! used only while the token is unexpired and the key set unchanged.

use std::{
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use super::Identity;

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
///
/// Hashed with foldhash, seeded at random per process, not the standard
/// SipHash: a token is a few hundred bytes hashed on every request, and
/// SipHash cost four times as much. Only verified tokens get in, so no
/// client chooses the keys that collide.
pub(super) struct TokenCache {
    entries: RwLock<crate::FastMap<Box<str>, Arc<Identity>>>,
}

/// Tokens kept at most.
const TOKEN_CACHE_CAPACITY: usize = 4096;
/// Longer tokens are verified every time rather than kept.
const TOKEN_CACHE_MAX_LEN: usize = 4096;

impl TokenCache {
    pub(super) fn new() -> Self {
        Self {
            entries: RwLock::new(crate::FastMap::default()),
        }
    }

    pub(super) fn get(&self, token: &str, now: u64, key_generation: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().ok()?;
        entries
            .get(token)
            .filter(|identity| {
                now <= identity.valid_until && identity.key_generation == key_generation
            })
            .cloned()
    }

    pub(super) fn insert(&self, token: &str, identity: Arc<Identity>) {
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

    pub(super) fn remove(&self, token: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(token);
        }
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::jwt::Claims;

    fn identity(exp: f64, generation: u64) -> Arc<Identity> {
        let claims = Claims {
            sub: Some("alice".to_owned()),
            scope: None,
            exp: Some(exp),
        };
        Arc::new(Identity::new(claims, 0, generation).unwrap())
    }

    #[test]
    fn a_cached_token_serves_until_its_expiry_on_its_key_generation() {
        let cache = TokenCache::new();
        cache.insert("t", identity(100.0, 1));
        assert!(cache.get("t", 100, 1).is_some());
        assert!(cache.get("t", 101, 1).is_none(), "expired");
        assert!(cache.get("t", 50, 2).is_none(), "the key set changed");
        assert!(cache.get("other", 50, 1).is_none());
        cache.remove("t");
        assert!(cache.get("t", 50, 1).is_none());
    }

    #[test]
    fn a_full_cache_starts_again_and_long_tokens_are_not_kept() {
        let cache = TokenCache::new();
        for i in 0..TOKEN_CACHE_CAPACITY {
            cache.insert(&i.to_string(), identity(100.0, 0));
        }
        assert!(cache.get("0", 1, 0).is_some());
        cache.insert("one more", identity(100.0, 0));
        assert!(cache.get("0", 1, 0).is_none());
        assert!(cache.get("one more", 1, 0).is_some());
        let long = "x".repeat(TOKEN_CACHE_MAX_LEN + 1);
        cache.insert(&long, identity(100.0, 0));
        assert!(cache.get(&long, 1, 0).is_none());
    }
}
