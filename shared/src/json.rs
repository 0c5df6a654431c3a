//! Bounds on JSON request bodies, checked before a body is parsed or stored.
//!
//! A deeply nested body (`[[[[…]]]]` 5,000 levels deep) is a few kilobytes
//! yet costs a recursive parser (and every later reader of the stored value:
//! the SDK, a schema validator, a Lua script) one stack frame per level.
//! serde_json stops at 128 levels with an error, but only where it builds
//! values: a `RawValue` (how config-svc stores values verbatim) skips the
//! limit. So every service runs [`check_depth`] on a JSON body first: one
//! linear pass over the bytes, no allocation, and a too-deep body is refused
//! with a 400 problem naming the member it is in ([`TooDeep::problem`]),
//! before anything reaches Redis.

use crate::Problem;

/// The deepest nesting of arrays and objects a JSON request body may have
/// (the body's own top-level object counts as level 1).
pub const MAX_DEPTH: usize = 64;

/// A body nested deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    /// The top-level member the excess is in (`value`, `metadata`), or
    /// `body` when the body is not an object.
    pub field: String,
    /// The bound that was passed.
    pub max: usize,
}

impl TooDeep {
    /// The message a client sees.
    pub fn message(&self) -> String {
        format!(
            "is nested deeper than {} levels of arrays and objects",
            self.max
        )
    }

    /// The 400 problem+json naming the field.
    pub fn problem(&self) -> Problem {
        Problem::invalid_field(self.field.clone(), self.message())
    }
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.message())
    }
}

impl std::error::Error for TooDeep {}

/// Refuse a JSON body nested deeper than `max` levels (see the module docs).
///
/// Counts `[`/`{` outside strings; malformed JSON is left to the parser
/// that runs next (this only bounds depth, it does not validate).
pub fn check_depth(body: &[u8], max: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // The top-level member being read: where its key string starts and ends.
    let mut key: (usize, usize) = (0, 0);
    let mut key_start: Option<usize> = None;
    // Whether the next string at depth 1 of an object is a member key.
    let mut expect_key = false;
    let mut top_is_object = false;
    for (i, &byte) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                if let Some(start) = key_start.take() {
                    key = (start, i);
                }
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                if depth == 1 && top_is_object && expect_key {
                    key_start = Some(i + 1);
                    expect_key = false;
                }
            }
            b'[' | b'{' => {
                if depth == 0 {
                    top_is_object = byte == b'{';
                    expect_key = top_is_object;
                }
                depth += 1;
                if depth > max {
                    let field = if top_is_object && key.1 > key.0 {
                        String::from_utf8_lossy(&body[key.0..key.1]).into_owned()
                    } else {
                        "body".to_owned()
                    };
                    return Err(TooDeep { field, max });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 && top_is_object => expect_key = true,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn shallow_bodies_pass() {
        assert!(check_depth(br#"{"value": {"a": [1, {"b": "[[[[["}]}}"#, 4).is_ok());
        assert!(check_depth(br#"{"value": {"a": [1, {"b": "[[[[["}]}}"#, 3).is_err());
        assert!(check_depth(nested(64).as_bytes(), 64).is_ok());
    }

    #[test]
    fn deep_bodies_name_their_member() {
        let body = format!(r#"{{"message": "x", "value": {}}}"#, nested(64));
        let error = check_depth(body.as_bytes(), 64).unwrap_err();
        assert_eq!(error.field, "value");
        let error = check_depth(nested(5_000).as_bytes(), 64).unwrap_err();
        assert_eq!(error.field, "body");
    }

    #[test]
    fn brackets_and_escapes_in_strings_do_not_count() {
        let body = format!(r#"{{"k\"{{[": "{}", "v": 1}}"#, "[".repeat(100));
        assert!(check_depth(body.as_bytes(), 2).is_ok());
    }
}
