//! What the gateway's own stack adds to every operation behind it: the
//! bearer security requirement with its scope, and the answers the gateway
//! may give before or instead of the upstream (401, 403, 429, 502–504).

use std::collections::BTreeMap;

use mcp_shared::openapi::problem_response;
use utoipa::openapi::{
    HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Type, header::Header, response::Response,
    security::SecurityRequirement,
};

use super::{BEARER, merge::operations_mut};
use crate::auth::Requirement;

/// Whether `path` goes through the gateway's stack (token, scope, rate limit).
fn is_gated(path: &str) -> bool {
    ["/api/", "/svc/", "/admin/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Whether the gateway forwards `path` to an upstream (so 502/503/504 apply).
fn is_proxied(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/svc/")
}

/// Give every gated operation its security requirement and the answers the
/// gateway's stack may give.
pub(super) fn gate(document: &mut OpenApi) {
    for (path, item) in &mut document.paths.paths {
        if path == "/metrics" {
            // The gateway's own `/metrics` needs a token (`admin::guard_metrics`),
            // outside the stack: no rate limit, only its 401 and 403.
            for (method, operation) in operations_mut(item) {
                let method = method.parse().unwrap_or_default();
                if let Some(scope) = Requirement::of(&method, path, None).area_scope() {
                    operation.security = Some(vec![SecurityRequirement::new(BEARER, [scope])]);
                }
                for (status, response) in gateway_responses(false) {
                    if status == "401" || status == "403" {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(response));
                    }
                }
            }
            continue;
        }
        if !is_gated(path) {
            continue;
        }
        let proxied = is_proxied(path);
        for (method, operation) in operations_mut(item) {
            let method = method.parse().unwrap_or_default();
            let scopes: Vec<String> = Requirement::of(&method, path, None)
                .area_scope()
                .into_iter()
                .collect();
            operation.security = Some(vec![SecurityRequirement::new(BEARER, scopes)]);
            add_gateway_responses(&mut operation.responses.responses, proxied);
        }
    }
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(description))
        .build()
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (draft-ietf-httpapi-ratelimit-headers).
fn rate_limit_headers() -> [(&'static str, Header); 3] {
    [
        (
            "RateLimit-Limit",
            integer_header("The client's burst: requests it may send at once."),
        ),
        (
            "RateLimit-Remaining",
            integer_header("Requests left in the client's burst."),
        ),
        (
            "RateLimit-Reset",
            integer_header("Seconds until the client's burst is whole again."),
        ),
    ]
}

fn retry_after() -> Header {
    integer_header("Seconds to wait before retrying.")
}

/// The gateway's own problem answers (status, description, headers).
fn gateway_responses(proxied: bool) -> Vec<(&'static str, Response)> {
    let problem = |description: &str| problem_response(description);
    let mut responses = vec![
        (
            "400",
            problem(
                "The gateway refuses the path: a `..` segment, an encoded slash (`%2f`) or \
                 backslash (`%5c`); `errors` names it.",
            )
            .build(),
        ),
        (
            "401",
            problem("No bearer token, or one that does not verify (signature, algorithm, `exp`, …).")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some(
                            "`Bearer` without a token, `Bearer error=\"invalid_token\"` with a bad one.",
                        ))
                        .build(),
                )
                .build(),
        ),
        (
            "403",
            problem(
                "The token lacks the scope this operation needs (see its security requirement); \
                 `required_scope` names it.",
            )
            .build(),
        ),
        (
            "429",
            problem("The client (the token's `sub`, else its IP) is over its rate limit.")
                .header("Retry-After", retry_after())
                .build(),
        ),
    ];
    if proxied {
        responses.extend([
            (
                "502",
                problem("The gateway could not reach the upstream, or it broke the exchange.")
                    .build(),
            ),
            (
                "503",
                problem(
                    "The upstream is unavailable: every instance's circuit is open, or the \
                     service has no passing instance; retry after `Retry-After` seconds.",
                )
                .header("Retry-After", retry_after())
                .build(),
            ),
            (
                "504",
                problem("The upstream did not answer within the gateway's timeout.").build(),
            ),
        ]);
    }
    responses
}

/// Add the gateway's answers to an operation's `responses`: where the
/// upstream documents the same status, its response stays and the
/// gateway's reason is added to its description. Every answer but 401/403
/// (refused before the rate limit) may carry the `RateLimit-*` headers.
fn add_gateway_responses(responses: &mut BTreeMap<String, RefOr<Response>>, proxied: bool) {
    for (status, response) in gateway_responses(proxied) {
        match responses.get_mut(status) {
            Some(RefOr::T(existing)) => {
                existing.description = format!(
                    "{} Or from the gateway: {}",
                    existing.description, response.description
                );
                for (name, header) in response.headers {
                    existing.headers.entry(name).or_insert(header);
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                responses.insert(status.to_owned(), RefOr::T(response));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        if status == "401" || status == "403" {
            continue;
        }
        if let RefOr::T(response) = response {
            for (name, header) in rate_limit_headers() {
                response
                    .headers
                    .entry(name.to_owned())
                    .or_insert(RefOr::T(header));
            }
        }
    }
}
