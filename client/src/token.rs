//! Development tokens: HS256 JWTs signed with the gateway's `JWT_SECRET`.
//!
//! For `mcpctl token`, `mcpctl up` and examples run against a local stack.
//! Production tokens come from your identity provider, not from here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Error;

/// The claims of a development token.
#[derive(Debug, Clone, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    scope: &'a str,
    iat: u64,
    exp: u64,
}

/// Sign an HS256 token for `subject` with space-separated `scopes`
/// (`admin`, `registry:read config:write`, …), valid for `lifetime`.
pub fn dev_token(
    secret: &str,
    subject: &str,
    scopes: &str,
    lifetime: Duration,
) -> Result<String, Error> {
    if secret.is_empty() {
        return Err(Error::Invalid("the JWT secret is empty".to_owned()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        sub: subject,
        scope: scopes,
        iat: now,
        exp: now.saturating_add(lifetime.as_secs().max(1)),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Invalid(format!("cannot sign the token: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_with_the_same_secret() {
        let token = dev_token("s3cret", "alice", "admin", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["scope"], "admin");
        assert!(dev_token("", "a", "admin", Duration::from_secs(1)).is_err());
    }
}
