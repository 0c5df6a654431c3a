//! Scopes: what a token may do, shared by the gateway (which enforces them)
//! and the control-plane services (which filter their listings with them).
//!
//! A token's `scope` claim is a space-separated list. Each entry is either
//! `admin` (everything) or `{area}:{access}[:{name}]`:
//!
//! - `area`: `registry`, `config` or `health` (any word is parsed; the
//!   gateway routes only those three);
//! - `access`: `read` (`GET`/`HEAD`) or `write` (every other method);
//!   `write` does not imply `read`;
//! - `name` (optional): the service (registry, health) or namespace (config)
//!   the grant is narrowed to; a trailing `*` makes it a prefix
//!   (`config:write:team-a-*`), and `*` alone is every name. Without a
//!   name the grant covers the whole area.
//!
//! Entries that do not parse (`openid`, `config:admin`, `x:read:a b`) grant
//! nothing and are ignored, so tokens may carry scopes of other systems.
//!
//! Checking is done on the claim's text as it is, without parsing it into
//! a structure first: the gateway checks once per request, and this costs
//! a scan of a short string, no allocation.

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `GET` and `HEAD`.
    Read,
    /// Every other method.
    Write,
}

impl Access {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// The names a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names<'a> {
    /// Every name of the area (no name, or `*`).
    All,
    /// Exactly this one.
    Exact(&'a str),
    /// Every name starting with this (the text before a trailing `*`).
    Prefix(&'a str),
}

impl Names<'_> {
    /// Whether `name` is covered.
    pub fn covers(self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix),
        }
    }
}

/// One entry of a `scope` claim, parsed (borrowing the claim's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// `admin`: everything.
    Admin,
    /// `{area}:{access}[:{name}]`.
    Area {
        /// `registry`, `config`, `health`, …
        area: &'a str,
        /// Read or write.
        access: Access,
        /// Which names of the area.
        names: Names<'a>,
    },
}

impl<'a> Grant<'a> {
    /// Parse one entry; `None` when it is not in the grammar (see the module docs).
    pub fn parse(entry: &'a str) -> Option<Self> {
        if entry == "admin" {
            return Some(Self::Admin);
        }
        let mut parts = entry.splitn(3, ':');
        let area = parts.next().filter(|a| is_word(a))?;
        let access = match parts.next()? {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return None,
        };
        let names = match parts.next() {
            None | Some("*") => Names::All,
            Some(name) => match name.strip_suffix('*') {
                Some(prefix) if is_name_text(prefix) => Names::Prefix(prefix),
                Some(_) => return None,
                None if is_name_text(name) && !name.is_empty() => Names::Exact(name),
                None => return None,
            },
        };
        Some(Self::Area {
            area,
            access,
            names,
        })
    }

    /// Whether this grant allows `access` to `name` in `area` (see [`allows`]).
    pub fn allows(self, area: &str, access: Access, name: Option<&str>) -> bool {
        match self {
            Self::Admin => true,
            Self::Area {
                area: granted_area,
                access: granted_access,
                names,
            } => {
                if granted_area != area || granted_access != access {
                    return false;
                }
                match name {
                    Some(name) => names.covers(name),
                    // A listing shows only what the grant covers: any grant will do.
                    None if access == Access::Read => true,
                    // A write not about one name touches the whole area.
                    None => names == Names::All,
                }
            }
        }
    }
}

/// `A-Za-z0-9` and `_`, at least one: an area.
fn is_word(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The characters of a name (see [`crate::names`]): `A-Za-z0-9._-`, at most 128.
fn is_name_text(text: &str) -> bool {
    text.len() <= crate::names::MAX_NAME_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every grant of a space-separated `scope` claim that parses.
pub fn grants(scopes: &str) -> impl Iterator<Item = Grant<'_>> {
    scopes.split_ascii_whitespace().filter_map(Grant::parse)
}

/// Whether `scopes` (a space-separated `scope` claim) allow `access` in
/// `area` to `name`:
///
/// - `Some(name)`: a grant of the area and access covers the name (or `admin`);
/// - `None`, read: any read grant of the area will do (a listing, which the
///   service filters down to the names the token may read);
/// - `None`, write: a grant of the whole area (or `admin`).
pub fn allows(scopes: &str, area: &str, access: Access, name: Option<&str>) -> bool {
    grants(scopes).any(|grant| grant.allows(area, access, name))
}

/// A caller's scopes, kept as the claim's text (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Box<str>);

impl Scopes {
    /// Wrap a space-separated `scope` claim.
    pub fn new(scopes: impl Into<Box<str>>) -> Self {
        Self(scopes.into())
    }

    /// The claim's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// See [`allows`].
    pub fn allows(&self, area: &str, access: Access, name: Option<&str>) -> bool {
        allows(&self.0, area, access, name)
    }

    /// Whether `name` of `area` may be read: the filter of listings and watches.
    pub fn may_read(&self, area: &str, name: &str) -> bool {
        self.allows(area, Access::Read, Some(name))
    }
}

/// The scope that would allow `access` to `name` in `area`, as a 403 names
/// it: `registry:write:shop`, or `registry:write` without a name.
pub fn required(area: &str, access: Access, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{area}:{}:{name}", access.as_str()),
        None => format!("{area}:{}", access.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Access::{Read, Write};

    #[test]
    fn the_grammar_parses_areas_access_names_and_prefixes() {
        assert_eq!(Grant::parse("admin"), Some(Grant::Admin));
        assert_eq!(
            Grant::parse("config:read"),
            Some(Grant::Area {
                area: "config",
                access: Read,
                names: Names::All
            })
        );
        assert_eq!(
            Grant::parse("registry:write:billing"),
            Some(Grant::Area {
                area: "registry",
                access: Write,
                names: Names::Exact("billing")
            })
        );
        assert_eq!(
            Grant::parse("config:write:team-a-*"),
            Some(Grant::Area {
                area: "config",
                access: Write,
                names: Names::Prefix("team-a-")
            })
        );
        assert_eq!(
            Grant::parse("health:read:*"),
            Some(Grant::Area {
                area: "health",
                access: Read,
                names: Names::All
            })
        );
        for bad in [
            "",
            "openid",
            "config",
            "config:admin",
            "config:read:",
            "config:read:a*b",
            "config:read:a/b",
            "config:read:a:b",
            "con fig:read",
            ":read",
            "config:read:%2e",
        ] {
            assert_eq!(Grant::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_name_is_allowed_by_its_area_grant_an_exact_grant_or_a_prefix() {
        assert!(allows("registry:write", "registry", Write, Some("billing")));
        assert!(allows(
            "registry:write:billing",
            "registry",
            Write,
            Some("billing")
        ));
        assert!(!allows(
            "registry:write:billing",
            "registry",
            Write,
            Some("shop")
        ));
        assert!(!allows(
            "registry:write:billing",
            "registry",
            Write,
            Some("billing-2")
        ));
        assert!(allows(
            "config:write:team-a-*",
            "config",
            Write,
            Some("team-a-x")
        ));
        assert!(!allows(
            "config:write:team-a-*",
            "config",
            Write,
            Some("team-b-x")
        ));
        assert!(allows("admin", "config", Write, Some("anything")));
        assert!(allows("openid admin", "health", Read, None));
    }

    #[test]
    fn area_and_access_must_match() {
        assert!(!allows("config:write", "config", Read, Some("a")));
        assert!(!allows("config:read", "config", Write, Some("a")));
        assert!(!allows("registry:read", "config", Read, Some("a")));
        assert!(!allows("", "config", Read, None));
        assert!(!allows("config:read:a", "registry", Read, None));
    }

    #[test]
    fn without_a_name_any_read_grant_lists_but_a_write_needs_the_whole_area() {
        assert!(allows("config:read:shop", "config", Read, None));
        assert!(!allows("config:write:shop", "config", Write, None));
        assert!(allows("config:write:*", "config", Write, None));
        assert!(allows("config:write", "config", Write, None));
    }

    #[test]
    fn listings_filter_by_the_read_grants() {
        let scopes = Scopes::new("config:read:shop config:read:team-a-* registry:read");
        assert!(scopes.may_read("config", "shop"));
        assert!(scopes.may_read("config", "team-a-x"));
        assert!(!scopes.may_read("config", "prod"));
        assert!(scopes.may_read("registry", "anything"));
        assert!(!scopes.may_read("health", "anything"));
    }

    #[test]
    fn the_required_scope_names_the_name_when_there_is_one() {
        assert_eq!(
            required("registry", Write, Some("shop")),
            "registry:write:shop"
        );
        assert_eq!(required("config", Read, None), "config:read");
    }
}
