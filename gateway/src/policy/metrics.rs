//! The policy counters in Prometheus text: requests by status class per
//! service and route, retries sent or refused, split decisions per tag.

use std::sync::{Arc, atomic::Ordering};

use super::{Applied, Snapshot, StatusCounters};

/// Append `gateway_requests_total`, `gateway_retries_total` and
/// `gateway_split_decisions_total` of the current snapshot to `out`. The
/// label sets are bounded by the configuration: services with a policy,
/// their routes (`svc` or a route's name), status classes, split tags.
/// Counters start again when a policy or route changes.
pub fn render_metrics(snapshot: &Snapshot, out: &mut String) {
    use std::fmt::Write as _;

    use crate::balance::escape_label;
    let mut services: Vec<&Arc<Applied>> = snapshot.services.values().collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    out.push_str(
        "# HELP gateway_requests_total Requests to services with a policy or through a route, by status class.\n\
         # TYPE gateway_requests_total counter\n",
    );
    let mut series = |service: &str, route: &str, counters: &StatusCounters| {
        for (label, value) in StatusCounters::LABELS.iter().zip(&counters.0) {
            let _ = writeln!(
                out,
                "gateway_requests_total{{service=\"{}\",route=\"{}\",status=\"{label}\"}} {}",
                escape_label(service),
                escape_label(route),
                value.load(Ordering::Relaxed)
            );
        }
    };
    for applied in &services {
        series(&applied.service, "svc", &applied.counters);
    }
    for route in &snapshot.routes {
        series(&route.route.service, &route.name, &route.counters);
    }
    out.push_str(
        "# HELP gateway_retries_total Retries by service: sent, or refused by the retry budget.\n\
         # TYPE gateway_retries_total counter\n",
    );
    for applied in &services {
        if let Some(retry) = &applied.retry {
            let service = escape_label(&applied.service);
            let _ = writeln!(
                out,
                "gateway_retries_total{{service=\"{service}\",result=\"sent\"}} {}",
                retry.sent.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "gateway_retries_total{{service=\"{service}\",result=\"budget_exhausted\"}} {}",
                retry.refused.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str(
        "# HELP gateway_split_decisions_total Traffic-split decisions by service and tag.\n\
         # TYPE gateway_split_decisions_total counter\n",
    );
    for applied in &services {
        if let Some(split) = &applied.split {
            for (tag, value) in split.decisions() {
                let _ = writeln!(
                    out,
                    "gateway_split_decisions_total{{service=\"{}\",tag=\"{}\"}} {value}",
                    escape_label(&applied.service),
                    escape_label(tag)
                );
            }
        }
    }
}
