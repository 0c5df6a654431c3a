//! `mcp-api`: the MCP wire vocabulary, and nothing of the server stack.
//!
//! What a request or an answer of the public API holds is defined here once,
//! for both sides of the wire: the services (through `mcp-shared`, which
//! re-exports these modules at their old paths) serialize their answers and
//! generate their OpenAPI documents from these types, and the SDK
//! (`mcp-client`) and `mcpctl` send and read the same types, so services,
//! documents and clients cannot drift. The crate depends on serde alone, so
//! an application that only registers itself does not build axum, Redis or
//! the telemetry exporters.
//!
//! - [`names`]: validated names (services, instance ids, namespaces, keys).
//! - [`problem`]: the RFC 9457 problem+json body, the one error shape on the wire.
//! - [`registry`]: the bodies of registry-svc's API (instances, checks, listings, events).
//! - [`config`]: the bodies of config-svc's API.
//! - [`health`]: the bodies of health-svc's API.
//!
//! With the `openapi` feature every body derives `utoipa::ToSchema`, and the
//! schema helpers the documents share (`names::name_schema`,
//! `config::key_schema`) are built; without it utoipa is not compiled.

pub mod config;
pub mod health;
pub mod names;
pub mod problem;
pub mod registry;

pub use problem::{FieldError, Problem};
