//! `mcp-e2e`: tests only. Its one integration-test binary (`tests/it/`)
//! runs the whole stack through the gateway: registry-svc, config-svc and
//! health-svc behind a real gateway, in-process or as child processes, with
//! a real Redis, real upstreams and, for some, a real Chromium, Prometheus
//! or Consul client. It lives apart so that the gateway's own crate, tests
//! included, links none of the services.
