//! The query parameters of the listings and the watch, parsed from the
//! decoded pairs by hand so that an unknown parameter is refused (a typo is
//! never silently an unfiltered list) and every error names its parameter.

use mcp_shared::{
    names::Name,
    registry::{HealthStatus, Instance},
};

use super::Blocking;
use crate::error::ApiError;

fn parse_bool(field: &str, value: &str) -> Result<bool, ApiError> {
    mcp_shared::http::parse_bool(field, value).map_err(|e| ApiError::bad_param(e.field, e.message))
}

/// The query of `GET /v1/services/{service}/instances`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// `healthy=true`: only `passing` instances.
    pub healthy: bool,
    /// `tag=…` (repeatable): instances holding every one.
    pub tags: Vec<String>,
    /// `meta.KEY=VALUE` (repeatable): instances whose metadata has each pair.
    pub meta: Vec<(String, String)>,
    /// `index` + `wait`.
    pub blocking: Option<Blocking>,
    /// `stale` (Consul's name): answer from this replica's memory without
    /// first learning Redis's revision (see [`crate::discovery`]).
    pub stale: bool,
}

impl InstanceQuery {
    /// From the decoded query pairs (repeated keys kept). Unknown parameters
    /// are refused, so a typo is not silently an unfiltered list.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut query = Self::default();
        let (mut index, mut wait) = (None, None);
        for (key, value) in pairs {
            match key.as_str() {
                "healthy" => query.healthy = parse_bool("healthy", value)?,
                "stale" => query.stale = parse_bool("stale", value)?,
                "tag" => query.tags.push(value.clone()),
                "index" => index = Some(value.as_str()),
                "wait" => wait = Some(value.as_str()),
                _ => match key.strip_prefix("meta.") {
                    Some(meta) if Name::parse(meta).is_ok() => {
                        query.meta.push((meta.to_owned(), value.clone()));
                    }
                    _ => {
                        return Err(ApiError::bad_param(
                            key.as_str(),
                            "unknown query parameter; expected healthy, tag, meta.KEY, index, wait or stale",
                        ));
                    }
                },
            }
        }
        query.blocking = blocking(index, wait)?;
        Ok(query)
    }

    /// Whether `instance` passes every filter.
    pub fn matches(&self, instance: &Instance) -> bool {
        (!self.healthy || instance.status == HealthStatus::Passing)
            && self.tags.iter().all(|tag| instance.tags.contains(tag))
            && self
                .meta
                .iter()
                .all(|(key, value)| instance.metadata.get(key) == Some(value))
    }
}

/// The query of `GET /v1/services`: a blocking query, and `stale`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServicesQuery {
    /// `index` + `wait`.
    pub blocking: Option<Blocking>,
    /// `stale`: answer from this replica's memory alone.
    pub stale: bool,
}

impl ServicesQuery {
    /// From the decoded query pairs; unknown parameters are refused.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let (mut index, mut wait, mut stale) = (None, None, false);
        for (key, value) in pairs {
            match key.as_str() {
                "index" => index = Some(value.as_str()),
                "wait" => wait = Some(value.as_str()),
                "stale" => stale = parse_bool("stale", value)?,
                other => {
                    return Err(ApiError::bad_param(
                        other,
                        "unknown query parameter; expected index, wait or stale",
                    ));
                }
            }
        }
        Ok(Self {
            blocking: blocking(index, wait)?,
            stale,
        })
    }
}

/// The blocking query of a `GET /v1/services` query ([`ServicesQuery`]'s).
pub fn parse_services_query(pairs: &[(String, String)]) -> Result<Option<Blocking>, ApiError> {
    ServicesQuery::parse(pairs).map(|query| query.blocking)
}

/// The blocking query of the decoded `index` and `wait` (the shared rules:
/// `index=0` answers at once, an absent or empty `wait` is the default).
fn blocking(index: Option<&str>, wait: Option<&str>) -> Result<Option<Blocking>, ApiError> {
    Blocking::from_values(index, wait).map_err(|e| ApiError::bad_param(e.field, e.message))
}

/// The query of `GET /v1/watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchQuery {
    /// Only this service's events.
    pub service: Option<Name>,
    /// Resume after this revision (`Last-Event-ID` wins when both are sent).
    pub index: Option<u64>,
}

impl WatchQuery {
    /// From the decoded query pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut query = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "service" => {
                    query.service = Some(
                        Name::parse(value.as_str())
                            .map_err(|e| ApiError::bad_param("service", e))?,
                    );
                }
                "index" => query.index = Some(parse_revision("index", value)?),
                other => {
                    return Err(ApiError::bad_param(
                        other,
                        "unknown query parameter; expected service or index",
                    ));
                }
            }
        }
        Ok(query)
    }
}

/// A revision given by a client (`index`, `Last-Event-ID`).
pub fn parse_revision(field: &str, value: &str) -> Result<u64, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_param(field, "must be a revision (a non-negative integer)"))
}
