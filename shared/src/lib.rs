//! `mcp-shared`: what every MCP service has in common.
//!
//! The services (registry, config, health, gateway) are thin on purpose: the
//! pieces that must behave the same everywhere live here, so a fix lands once.
//!
//! - [`settings`]: the common settings (Redis, prefix, logging, OTLP), parsed by clap.
//! - [`problem`]: RFC 9457 problem+json, the one error shape on the wire (its body is `mcp-api`'s).
//! - [`http`]: request pieces read the same way everywhere: the blocking query (`?index=&wait=`).
//! - [`names`]: validated names (services, instance ids, namespaces, keys); `mcp-api`'s.
//! - [`openapi`]: the OpenAPI 3.1 pieces every service's document shares.
//! - [`store`]: the Redis handle: one self-healing connection, bounded commands, key prefix.
//! - [`egress`]: the rules for connecting to registered addresses (the `/svc` proxy, health probes).
//! - [`json`]: bounds on JSON request bodies (nesting depth), checked before parsing.
//! - [`events`]: the revisioned event log in Redis and the watch/blocking-query machinery on it.
//! - [`registry`]: the registry's Redis schema, and its wire types (the bodies of registry-svc's API) from `mcp-api`; read by health-svc and the gateway too.
//! - [`config`]: config-svc's key names, and the bodies of its API from `mcp-api`.
//! - [`policy`]: gateway policies (namespace `gateway` of config-svc): types, JSON Schema, checks.
//! - [`health`]: the bodies of health-svc's API; `mcp-api`'s.
//! - [`internal`]: the credential the gateway mints per forwarded request and the services require.
//! - [`scope`]: the scope grammar (`{area}:{read|write}[:{name}]`, `admin`) and its checks.
//! - [`telemetry`]: tracing subscriber and OTLP export.
//! - [`metrics`]: the Prometheus recorder and the HTTP metrics layer.
//! - [`server`]: the scaffold every service runs on (`/healthz`, `/readyz`, `/metrics`, shutdown).
//! - [`shutdown`]: waiting for the shutdown token on a hot path without taking its lock each poll.
//! - [`time`]: timestamps on the wire.
//!
//! The API bodies in [`registry`], [`config`] and [`health`], the [`names`]
//! and the problem+json body are defined in `mcp-api` (the wire vocabulary,
//! which depends on serde alone) and re-exported here at their old paths.
//! They are the types the services' OpenAPI documents are generated from
//! (`utoipa::ToSchema`, `mcp-api`'s `openapi` feature), and the ones the SDK
//! (`mcp-client`) and `mcpctl` send and read: one definition per body, so
//! services, documents and clients cannot drift, and the SDK does not build
//! the server stack.

pub mod config;
pub mod egress;
pub mod events;
pub use mcp_api::health;
pub mod http;
pub mod internal;
pub mod json;
pub mod metrics;
pub use mcp_api::names;
pub mod openapi;
pub mod policy;
pub mod problem;
pub mod registry;
pub mod scope;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod time;

pub use problem::Problem;
pub use settings::CommonSettings;
pub use store::{Redis, StoreError};
