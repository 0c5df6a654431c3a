//! A service's compiled traffic `split`: header and cookie matches that
//! pin a tag, else a weighted draw (sticky by subject or header when set),
//! with the decisions counted per tag.

use std::{
    hash::{Hash as _, Hasher as _},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use mcp_shared::policy::{self, StickyBy};
use rand::Rng as _;

/// Compiled `split`.
#[derive(Debug)]
pub struct Split {
    /// Tags with their cumulative weight (for the draw).
    weights: Vec<(Arc<str>, u32)>,
    total: u32,
    matches: Vec<(Match, Arc<str>)>,
    sticky: Option<StickyKey>,
    /// Decisions per tag (`gateway_split_decisions_total`), in [`Self::tags`] order.
    decisions: Vec<AtomicU64>,
    /// Every tag the split can choose.
    pub tags: Vec<Arc<str>>,
}

#[derive(Debug)]
enum Match {
    Header(HeaderName, Option<String>),
    Cookie(String, Option<String>),
}

#[derive(Debug)]
enum StickyKey {
    Subject,
    Header(HeaderName),
}

impl Split {
    pub(super) fn compile(split: &policy::SplitPolicy) -> Self {
        let mut total = 0u32;
        let weights: Vec<(Arc<str>, u32)> = split
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(tag, w)| {
                total += *w;
                (Arc::from(tag.as_str()), total)
            })
            .collect();
        let matches: Vec<(Match, Arc<str>)> = split
            .matches
            .iter()
            .filter_map(|m| {
                let rule = match (&m.header, &m.cookie) {
                    (Some(h), _) => {
                        Match::Header(HeaderName::from_bytes(h.as_bytes()).ok()?, m.value.clone())
                    }
                    (None, Some(c)) => Match::Cookie(c.clone(), m.value.clone()),
                    (None, None) => return None,
                };
                Some((rule, Arc::from(m.tag.as_str())))
            })
            .collect();
        let mut tags: Vec<Arc<str>> = weights
            .iter()
            .map(|(t, _)| t.clone())
            .chain(matches.iter().map(|(_, t)| t.clone()))
            .collect();
        tags.sort();
        tags.dedup();
        let sticky = split.sticky.as_ref().and_then(|s| match s.by {
            StickyBy::Subject => Some(StickyKey::Subject),
            StickyBy::Header => s
                .header
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map(StickyKey::Header),
        });
        Self {
            decisions: tags.iter().map(|_| AtomicU64::new(0)).collect(),
            weights,
            total,
            matches,
            sticky,
            tags,
        }
    }

    /// The tag for a request with `headers` from `subject`: the first match,
    /// else a weighted draw (a hash of the sticky key when set); `None` when
    /// the split has no weights and nothing matched.
    pub fn choose(&self, headers: &HeaderMap, subject: Option<&str>) -> Option<&Arc<str>> {
        let tag = self
            .matches
            .iter()
            .find(|(rule, _)| rule.matches(headers))
            .map(|(_, tag)| tag)
            .or_else(|| self.draw(headers, subject))?;
        if let Ok(index) = self.tags.binary_search(tag) {
            self.decisions[index].fetch_add(1, Ordering::Relaxed);
        }
        Some(tag)
    }

    fn draw(&self, headers: &HeaderMap, subject: Option<&str>) -> Option<&Arc<str>> {
        if self.total == 0 {
            return None;
        }
        let sticky = match &self.sticky {
            Some(StickyKey::Subject) => subject.map(str::as_bytes),
            Some(StickyKey::Header(name)) => headers.get(name).map(HeaderValue::as_bytes),
            None => None,
        };
        let point = match sticky {
            // SipHash with fixed keys: every replica puts a key on the same tag.
            Some(key) => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % u64::from(self.total)) as u32
            }
            None => rand::rng().random_range(0..self.total),
        };
        self.weights
            .iter()
            .find(|(_, cumulative)| point < *cumulative)
            .map(|(tag, _)| tag)
    }

    /// `(tag, decisions)` for the metrics.
    pub fn decisions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.tags
            .iter()
            .zip(&self.decisions)
            .map(|(t, d)| (&**t, d.load(Ordering::Relaxed)))
    }
}

impl Match {
    fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            Self::Header(name, value) => headers.get_all(name).iter().any(|v| {
                value
                    .as_deref()
                    .is_none_or(|want| v.as_bytes() == want.as_bytes())
            }),
            Self::Cookie(name, value) => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(n, v)| n == name && value.as_deref().is_none_or(|want| v == want)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(text: &str) -> Split {
        Split::compile(&serde_json::from_str(text).unwrap())
    }
    #[test]
    fn a_match_pins_and_weights_draw() {
        let split = split(
            r#"{"weights":{"v1":90,"v2":10},"match":[{"header":"x-canary","value":"1","tag":"v2"},
                {"cookie":"beta","tag":"v2"}]}"#,
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-canary", HeaderValue::from_static("1"));
        for _ in 0..100 {
            assert_eq!(&**split.choose(&headers, None).unwrap(), "v2");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b; beta=yes"));
        assert_eq!(&**split.choose(&headers, None).unwrap(), "v2");
        let empty = HeaderMap::new();
        let v2 = (0..10_000)
            .filter(|_| &**split.choose(&empty, None).unwrap() == "v2")
            .count();
        assert!((700..1300).contains(&v2), "{v2}");
    }

    #[test]
    fn sticky_keys_always_land_on_one_tag() {
        let split = split(r#"{"weights":{"v1":50,"v2":50},"sticky":{"by":"subject"}}"#);
        let empty = HeaderMap::new();
        let first = split.choose(&empty, Some("alice")).unwrap().clone();
        for _ in 0..50 {
            assert_eq!(split.choose(&empty, Some("alice")).unwrap(), &first);
        }
    }
}
