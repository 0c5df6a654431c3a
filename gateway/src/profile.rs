//! `GET /admin/profile?seconds=N[&format=flamegraph|pprof]` (scope `admin`):
//! a CPU profile of the gateway over the next `N` seconds (1–60, 10 by
//! default), as a flamegraph SVG or a pprof protobuf (`go tool pprof`).
//!
//! Off unless `PROFILING_ENABLED=true` (404 otherwise): the sampler is a
//! process-wide `SIGPROF` timer (the `pprof` crate, 99 Hz), so one profile
//! runs at a time (409 while one is running) and nothing samples between
//! profiles. A shutdown ends a running profile early with what it has.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::Problem;
use pprof::protos::Message as _;
use tokio_util::sync::CancellationToken;

/// Sampling frequency: a prime, so samples do not beat with periodic work.
const FREQUENCY_HZ: i32 = 99;
/// Default and longest profile.
const DEFAULT_SECONDS: u64 = 10;
const MAX_SECONDS: u64 = 60;
/// Libraries not unwound from the signal handler (unwinding them can deadlock).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];
/// The flamegraph of a profile without samples (the timer counts CPU time,
/// so an idle gateway gives none, and the flamegraph library draws nothing).
const IDLE_SVG: &str = concat!(
    r#"<?xml version="1.0" standalone="no"?>"#,
    r#"<svg version="1.1" width="600" height="60" xmlns="http://www.w3.org/2000/svg">"#,
    r#"<text x="10" y="35" font-family="monospace" font-size="14">"#,
    "no CPU samples: the gateway was idle while profiling</text></svg>",
);

/// What the profile handler needs.
#[derive(Clone)]
pub struct ProfileState {
    /// `PROFILING_ENABLED`.
    pub enabled: bool,
    /// Set while a profile is being taken.
    pub running: Arc<AtomicBool>,
    /// Ends a running profile early.
    pub shutdown: CancellationToken,
}

/// How the profile comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `image/svg+xml`.
    Flamegraph,
    /// `perftools.profiles.Profile`, protobuf-encoded.
    Pprof,
}

/// `seconds` and `format` of the query, or the bad field and what is wrong with it.
fn parse_query(query: Option<&str>) -> Result<(Duration, Format), (&'static str, String)> {
    let mut seconds = DEFAULT_SECONDS;
    let mut format = Format::Flamegraph;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "seconds" => {
                seconds = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_SECONDS).contains(s))
                    .ok_or_else(|| {
                        (
                            "seconds",
                            format!("must be a whole number of seconds from 1 to {MAX_SECONDS}"),
                        )
                    })?;
            }
            "format" => {
                format = match value {
                    "flamegraph" | "svg" => Format::Flamegraph,
                    "pprof" | "protobuf" => Format::Pprof,
                    _ => {
                        return Err((
                            "format",
                            "must be `flamegraph` (SVG) or `pprof` (protobuf)".to_owned(),
                        ));
                    }
                };
            }
            _ => {}
        }
    }
    Ok((Duration::from_secs(seconds), format))
}

/// Clears the running flag however the handler ends (even if its future is dropped).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// `GET /admin/profile`.
#[utoipa::path(
    get, path = "/admin/profile", tag = "admin", operation_id = "adminProfile",
    summary = "A CPU profile of the gateway",
    description = "Samples the gateway's CPU for `seconds` (99 Hz) and answers with a \
        flamegraph (SVG) or a pprof protobuf (`go tool pprof`). Only with \
        `PROFILING_ENABLED=true`; one profile at a time.",
    params(
        ("seconds" = Option<u64>, Query, minimum = 1, maximum = 60,
            description = "How long to sample (default 10)."),
        ("format" = Option<String>, Query, pattern = "^(flamegraph|svg|pprof|protobuf)$",
            description = "`flamegraph` (or `svg`, the default) or `pprof` (or `protobuf`)."),
    ),
    responses(
        (status = 200, description = "The profile.", content(
            (String = "image/svg+xml"),
            (Vec<u8> = "application/octet-stream"),
        )),
        (status = 400, description = "`seconds` or `format` is invalid; `errors` names it.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Profiling is off (`PROFILING_ENABLED=false`).",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A profile is already being taken.",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 500, description = "The profiler could not start or build the profile.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn profile(State(state): State<ProfileState>, RawQuery(query): RawQuery) -> Response {
    if !state.enabled {
        return Problem::not_found(
            "CPU profiling is off; start the gateway with PROFILING_ENABLED=true",
        )
        .into_response();
    }
    let (duration, format) = match parse_query(query.as_deref()) {
        Ok(parsed) => parsed,
        Err((field, message)) => return Problem::invalid_field(field, message).into_response(),
    };
    if state.running.swap(true, Ordering::AcqRel) {
        return Problem::new(StatusCode::CONFLICT, "a CPU profile is already being taken")
            .with_retry_after(duration.as_secs())
            .into_response();
    }
    let _running = Running(state.running.clone());
    let guard = match pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(BLOCKLIST)
        .build()
    {
        Ok(guard) => guard,
        Err(error) => {
            tracing::error!(%error, "cannot start the CPU profiler");
            return Problem::internal("the CPU profiler could not start").into_response();
        }
    };
    tracing::info!(?duration, ?format, "CPU profile started");
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = state.shutdown.cancelled() => {}
    }
    // Symbolizing and encoding take a while: keep them off the async workers.
    let encoded = tokio::task::spawn_blocking(move || encode(&guard, format)).await;
    match encoded {
        Ok(Ok(body)) => {
            let (content_type, disposition) = match format {
                Format::Flamegraph => ("image/svg+xml", "inline; filename=\"gateway-cpu.svg\""),
                Format::Pprof => (
                    "application/octet-stream",
                    "attachment; filename=\"gateway-cpu.pb\"",
                ),
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "cannot build the CPU profile");
            Problem::internal("the CPU profile could not be built").into_response()
        }
        Err(error) => {
            tracing::error!(%error, "the CPU profile task failed");
            Problem::internal("the CPU profile could not be built").into_response()
        }
    }
}

/// The report of `guard` so far, in `format`.
fn encode(guard: &pprof::ProfilerGuard<'_>, format: Format) -> Result<Vec<u8>, String> {
    let report = guard.report().build().map_err(|e| e.to_string())?;
    match format {
        Format::Flamegraph if report.data.is_empty() => Ok(IDLE_SVG.as_bytes().to_vec()),
        Format::Flamegraph => {
            let mut svg = Vec::new();
            report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
            Ok(svg)
        }
        Format::Pprof => report
            .pprof()
            .map_err(|e| e.to_string())?
            .write_to_bytes()
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_gives_seconds_and_format() {
        assert_eq!(
            parse_query(None).ok(),
            Some((Duration::from_secs(DEFAULT_SECONDS), Format::Flamegraph))
        );
        assert_eq!(
            parse_query(Some("seconds=3&format=pprof")).ok(),
            Some((Duration::from_secs(3), Format::Pprof))
        );
        assert!(parse_query(Some("seconds=0")).is_err());
        assert!(parse_query(Some("seconds=61")).is_err());
        assert!(parse_query(Some("seconds=x")).is_err());
        assert!(parse_query(Some("format=png")).is_err());
    }
}
