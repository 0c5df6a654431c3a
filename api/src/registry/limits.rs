//! The limits of a registration, in one place because two parties read
//! them: registry-svc refuses a body that breaks one, and the documented
//! schema of the body ([`InstanceSpec`](super::InstanceSpec)) states them,
//! so the check and the document cannot drift apart.

/// Lease length when the body gives none.
pub const DEFAULT_TTL_SECONDS: u32 = 30;
/// Longest lease.
pub const MAX_TTL_SECONDS: u64 = 3600;
/// Most tags per instance.
pub const MAX_TAGS: usize = 64;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;
/// Most metadata entries per instance.
pub const MAX_METADATA: usize = 64;
/// Longest metadata value.
pub const MAX_METADATA_VALUE_LEN: usize = 512;
/// Longest host name (DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest HTTP check path.
pub const MAX_CHECK_PATH_LEN: usize = 1024;
/// Seconds between checks when the check gives none.
pub const DEFAULT_CHECK_INTERVAL_SECONDS: u32 = 10;
/// Longest check interval.
pub const MAX_CHECK_INTERVAL_SECONDS: u64 = 3600;
/// Timeout of one check when the check gives none.
pub const DEFAULT_CHECK_TIMEOUT_MS: u32 = 1000;
/// Longest check timeout.
pub const MAX_CHECK_TIMEOUT_MS: u64 = 60_000;
/// Longest `deregister_critical_after_seconds` (a week).
pub const MAX_DEREGISTER_AFTER_SECONDS: u64 = 7 * 24 * 3600;
