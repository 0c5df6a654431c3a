//! Validated names: services, instance ids, namespaces and config keys.
//!
//! Names (README, "Using it"): 1–128 of `A-Za-z0-9._-`; keys may also hold
//! `/`. On top of the character set we refuse `.` and `..` as whole names
//! or key segments and empty key segments, so a name can never act as a
//! path step. Types are only built valid ("validate at the edge, trust inside").
//! The same rule as a JSON Schema pattern ([`NAME_PATTERN`]) is what the
//! OpenAPI documents state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// A name (service, instance id, namespace) as a JSON Schema pattern: 1–128
/// of `A-Za-z0-9._-`, not `.` or `..` (what [`Name::parse`] accepts).
pub const NAME_PATTERN: &str = r"^(?!\.\.?$)[A-Za-z0-9._-]{1,128}$";

/// The schema of a name ([`NAME_PATTERN`]).
#[cfg(feature = "openapi")]
pub fn name_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .pattern(Some(NAME_PATTERN))
        .into()
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    /// A character outside the allowed set.
    #[error("may only contain A-Z a-z 0-9 . _ -{0}")]
    BadChar(&'static str),
    /// `.` or `..` as a name or path segment, or an empty segment.
    #[error("must not contain empty, `.` or `..` segments")]
    BadSegment,
}

fn check(value: &str, allow_slash: bool) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    if !value.bytes().all(|c| ok(c) || (allow_slash && c == b'/')) {
        return Err(NameError::BadChar(if allow_slash { " /" } else { "" }));
    }
    let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
    if allow_slash {
        if value.split('/').any(bad_segment) {
            return Err(NameError::BadSegment);
        }
    } else if bad_segment(value) {
        return Err(NameError::BadSegment);
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $allow_slash:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validate and wrap.
            pub fn parse(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check(&value, $allow_slash)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A name without `/`: a service, an instance id or a namespace.
    Name,
    false
);
name_type!(
    /// A configuration key: like [`Name`] but may hold `/` between segments.
    Key,
    true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(Name::parse("echo-1.v2_a").is_ok());
        assert!(Key::parse("db/pool/max").is_ok());
        assert!(Name::parse("a".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_spaces_wildcards_dots_and_slashes() {
        for bad in ["", "a b", "*", "..", ".", "a/b", "é", &"a".repeat(129)] {
            assert!(Name::parse(bad).is_err(), "{bad:?} must be refused");
        }
        for bad in ["/a", "a/", "a//b", "a/../b", "a/./b", "a b/c"] {
            assert!(Key::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
