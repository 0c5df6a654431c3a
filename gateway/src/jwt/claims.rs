//! What a verification yields: the claims the gateway reads, the
//! [`Identity`] built from them once (the upstream headers, the cache
//! expiry), and [`AuthFailure`], the reason a token is refused, mapped from
//! `jsonwebtoken`'s errors.

use std::sync::Arc;

use axum::http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

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

    pub(super) fn from_error(error: &jsonwebtoken::errors::Error) -> Self {
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
    pub(super) valid_until: u64,
    /// The JWKS generation it was verified under (see `Jwks::generation`).
    pub(super) key_generation: u64,
}

impl Identity {
    pub(super) fn new(
        claims: Claims,
        leeway: u64,
        key_generation: u64,
    ) -> Result<Self, AuthFailure> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn claims(sub: Option<&str>, scope: Option<&str>, exp: Option<f64>) -> Claims {
        Claims {
            sub: sub.map(str::to_owned),
            scope: scope.map(str::to_owned),
            exp,
        }
    }

    #[test]
    fn an_identity_carries_its_headers_and_expires_at_exp_plus_the_leeway() {
        let identity =
            Identity::new(claims(Some("alice"), Some("a b"), Some(1000.7)), 5, 3).unwrap();
        assert_eq!(identity.subject.as_deref(), Some("alice"));
        assert_eq!(identity.subject_header.as_ref().unwrap(), "alice");
        assert_eq!(&*identity.scope, "a b");
        assert_eq!(identity.scopes_header, "a b");
        // A float `exp` is floored.
        assert_eq!(identity.valid_until, 1005);
        assert_eq!(identity.key_generation, 3);
    }

    #[test]
    fn no_subject_and_no_scope_make_empty_headers() {
        let identity = Identity::new(claims(None, None, Some(10.0)), 0, 0).unwrap();
        assert!(identity.subject.is_none());
        assert!(identity.subject_header.is_none());
        assert_eq!(identity.scopes_header, "");
    }

    #[test]
    fn a_negative_exp_counts_as_the_epoch() {
        let identity = Identity::new(claims(None, None, Some(-50.0)), 7, 0).unwrap();
        assert_eq!(identity.valid_until, 7);
    }

    #[test]
    fn a_subject_or_scope_that_cannot_be_a_header_is_refused() {
        assert_eq!(
            Identity::new(claims(Some("al\nice"), None, Some(10.0)), 0, 0).err(),
            Some(AuthFailure::Claims)
        );
        assert_eq!(
            Identity::new(claims(None, Some("a\u{7f}"), Some(10.0)), 0, 0).err(),
            Some(AuthFailure::Claims)
        );
    }

    #[test]
    fn every_failure_has_its_own_label() {
        use AuthFailure::*;
        let all = [
            Missing,
            Malformed,
            Signature,
            Algorithm,
            UnknownKey,
            Expired,
            NotYetValid,
            Issuer,
            Audience,
            Claims,
        ];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(|f| f.reason()).collect();
        let details: std::collections::BTreeSet<_> = all.iter().map(|f| f.detail()).collect();
        assert_eq!((reasons.len(), details.len()), (all.len(), all.len()));
    }
}
