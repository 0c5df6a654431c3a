//! `mcp-client`: the Rust SDK for MCP (Microservice Control Plane).
//!
//! - [`Client`]: one typed async method per public API call, through the
//!   gateway, with errors as [`Error`] carrying the server's problem+json.
//! - [`Registration`]: keep an instance registered (heartbeats at a third of
//!   the TTL, backoff with jitter, re-registration after a lost lease,
//!   deregistration on shutdown), its [`ConnectionState`] on a `watch`.
//! - [`ServiceWatcher`]: a service's instances kept current from the watch stream.
//! - [`ConfigWatcher`]: a typed, hot-updated configuration value.
//! - [`token::dev_token`]: HS256 tokens for a local stack.
//! - [`model`]: the request and response bodies: the very types the
//!   services serialize and generate their OpenAPI documents from
//!   (`mcp_api::{registry, config, health}`), so SDK and API cannot drift.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mcp_client::Error> {
//! use mcp_client::{Client, ConfigWatcher, InstanceSpec, Registration};
//!
//! let client = Client::new("http://127.0.0.1:8080", Some("<token>".into()))?;
//! let mut spec = InstanceSpec::new("127.0.0.1", 9000);
//! spec.ttl_seconds = Some(10);
//! let registration = Registration::start(client.clone(), "echo", "echo-1", spec);
//! let greeting = ConfigWatcher::<String>::start(client.clone(), "echo", "greeting");
//! println!("{:?}", greeting.get());
//! registration.shutdown().await; // deregisters
//! # Ok(()) }
//! ```

mod backoff;
mod client;
mod config_watcher;
mod error;
mod follow;
pub mod model;
mod registration;
pub mod sse;
pub mod token;
mod watcher;

pub use backoff::Backoff;
pub use client::{Client, DEFAULT_TIMEOUT};
pub use config_watcher::{ConfigValue, ConfigWatcher};
pub use error::{Error, FieldError, ProblemDetails};
#[allow(deprecated)]
pub use model::Lease;
pub use model::{
    Check, CheckType, ConfigEntry, ConfigHistory, ConfigList, DryRunEntry, HealthStatus,
    HealthSummary, Instance, InstanceHealth, InstanceList, InstanceQuery, InstanceSpec, PutOptions,
    RegistryEvent, ServiceHealth, ServiceHealthSummary, ServiceList, ServiceSummary, http_check,
    tcp_check,
};
pub use registration::{ConnectionState, Registration};
pub use watcher::{ServiceSnapshot, ServiceWatcher};
