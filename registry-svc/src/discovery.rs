//! Discovery reads (the instance and service listings, Prometheus SD)
//! answered from the in-memory [`View`], fenced or stale.
//!
//! A **fenced** read (the default) keeps the rule "no read older than a
//! write the same client saw acknowledged", across replicas, as etcd's
//! ReadIndex does: it first learns where the registry stands in Redis with
//! one cheap round trip (the revision and epoch, plus what the listing needs
//! beside the events: the service's lease version, or the protected
//! services; concurrent reads share one, see [`crate::fence`]), then waits
//! until the view has applied that revision (at most [`FENCE_WAIT`]) and
//! answers from memory. A write acknowledged by any
//! replica has its revision in Redis before the acknowledgement, so the
//! answer includes it. Should the view not catch up in time, the read falls
//! back to reading Redis as it always did (`registry_view_fallbacks_total`).
//! When Redis is down the fence fails fast (503), as every call does.
//!
//! A **stale** read (`?stale`, Consul's name) skips the fence: whatever this
//! replica holds, usually milliseconds behind, and still there while Redis
//! is down. Its `expires_at` are the deadlines this replica read last (an
//! instance registered since shows none until a fenced read refreshes them).
//!
//! A blocking query (`index` + `wait`) waits on the view for the first
//! change after its index, then answers as above.

use std::{sync::Arc, time::Duration};

use axum::body::Bytes;
use mcp_shared::{
    StoreError,
    names::Name,
    registry::{InstanceList, LeaseVersion, ServiceList, ServiceSummary},
};

use crate::{
    api::AppState,
    error::ApiError,
    model::{InstanceQuery, ServicesQuery},
    store::ServiceCounts,
    view::{Leases, ServiceView, Snapshot, snapshot::empty_listing},
};

/// How long a fenced read waits for the view to reach Redis's revision
/// before it reads Redis instead.
pub const FENCE_WAIT: Duration = Duration::from_secs(1);

/// Counter: fenced reads the view could not answer in time (read from Redis).
pub const FALLBACKS_COUNTER: &str = "registry_view_fallbacks_total";

/// A rendered JSON answer and the revision it reflects.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The registry revision (the index header).
    pub revision: u64,
    /// The JSON body.
    pub body: Bytes,
}

fn corrupt(error: serde_json::Error) -> ApiError {
    ApiError::Store(StoreError::Corrupt(format!(
        "cannot encode a listing: {error}"
    )))
}

/// The view as this replica holds it: a stale read. 503 before the first
/// load (an empty answer would look like an empty registry).
fn stale(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    let snapshot = state.view.current();
    if snapshot.loaded {
        Ok(snapshot)
    } else {
        Err(ApiError::Store(StoreError::Unavailable(
            "the registry has not been loaded from Redis yet".into(),
        )))
    }
}

/// The view once it has reached where Redis stands now; `None` when it did
/// not within [`FENCE_WAIT`] (read Redis instead). 503 when Redis is down.
async fn fenced(state: &AppState) -> Result<Option<Arc<Snapshot>>, ApiError> {
    let fenced = state.fences.head().await?;
    Ok(caught_up(state, &fenced.head).await)
}

async fn caught_up(state: &AppState, head: &mcp_shared::events::Head) -> Option<Arc<Snapshot>> {
    let snapshot = state.view.reached(head, FENCE_WAIT).await;
    if snapshot.is_none() {
        metrics::counter!(FALLBACKS_COUNTER).increment(1);
        tracing::debug!(
            revision = head.revision,
            "the view did not reach redis's revision in time; reading redis"
        );
    }
    snapshot
}

/// `GET /v1/services/{service}/instances`: the listing of `service`,
/// filtered by `query`.
pub async fn instances(
    state: &AppState,
    service: &Name,
    query: &InstanceQuery,
) -> Result<Listing, ApiError> {
    if let Some(blocking) = query.blocking {
        if !query.stale {
            // Fail fast while Redis is down, and start from a view that
            // has every write acknowledged before this query.
            fenced(state).await?;
        }
        let name = service.as_str();
        state
            .view
            .wait_until(blocking.wait, &state.shutdown, |snapshot| {
                snapshot.service_changed_after(name, blocking.index)
            })
            .await;
    }
    if query.stale {
        let snapshot = stale(state)?;
        return match snapshot.service(service.as_str()) {
            Some(view) => listing(&snapshot, view, &view.leases(), query),
            None => empty(service, snapshot.revision),
        };
    }
    let fenced = state.fences.of_service(service.as_str()).await?;
    let Some(snapshot) = caught_up(state, &fenced.head).await else {
        return from_redis(state, service, query).await;
    };
    let Some(view) = snapshot.service(service.as_str()) else {
        return empty(service, snapshot.revision);
    };
    let none = LeaseVersion::default();
    let lease = fenced.lease_versions.get(service.as_str()).unwrap_or(&none);
    let leases = current_leases(state, view, lease).await?;
    listing(&snapshot, view, &leases, query)
}

fn listing(
    snapshot: &Snapshot,
    view: &ServiceView,
    leases: &Leases,
    query: &InstanceQuery,
) -> Result<Listing, ApiError> {
    Ok(Listing {
        revision: snapshot.revision,
        body: view
            .listing(snapshot.revision, leases, query)
            .map_err(corrupt)?,
    })
}

fn empty(service: &Name, revision: u64) -> Result<Listing, ApiError> {
    Ok(Listing {
        revision,
        body: empty_listing(service.as_str(), revision).map_err(corrupt)?,
    })
}

/// The deadlines of `view`'s instances at `lease` (the version the fence
/// read): the cached ones when their label says they are current; the
/// cached ones plus the one renewal when they are one heartbeat behind
/// (the version names it); else read from Redis (one round trip). Either
/// way cached for the reads after.
async fn current_leases(
    state: &AppState,
    view: &ServiceView,
    lease: &LeaseVersion,
) -> Result<Arc<Leases>, ApiError> {
    let known = view.leases();
    if known.current_for(view, lease.version) {
        return Ok(known);
    }
    let renewal = match &lease.renewed {
        Some((id, ms)) if known.changed == view.changed && lease.version == known.version + 1 => {
            known.renewed(lease.version, id, *ms)
        }
        _ => None,
    };
    let fresh = match renewal {
        Some(renewed) => Arc::new(renewed),
        None => {
            let (read_version, read) = state.store.leases(&view.name, view.lease_members()).await?;
            // Read after the fence, so at least as new as `lease`.
            Arc::new(Leases::refreshed(
                view.changed,
                read_version,
                &view.ids(),
                read,
                &known,
            ))
        }
    };
    view.set_leases(fresh.clone());
    Ok(fresh)
}

/// The instance listing read from Redis (the view did not catch up).
async fn from_redis(
    state: &AppState,
    service: &Name,
    query: &InstanceQuery,
) -> Result<Listing, ApiError> {
    let (revision, mut instances) = state.store.instances(service).await?;
    instances.retain(|instance| query.matches(instance));
    let body = serde_json::to_vec(&InstanceList {
        service: service.as_str().to_owned(),
        revision,
        instances,
    })
    .map_err(corrupt)?;
    Ok(Listing {
        revision,
        body: body.into(),
    })
}

/// `GET /v1/services`: every service with an instance that `visible`
/// allows, with its counts.
pub async fn services(
    state: &AppState,
    query: &ServicesQuery,
    visible: impl Fn(&str) -> bool,
) -> Result<Listing, ApiError> {
    if let Some(blocking) = query.blocking {
        if !query.stale {
            fenced(state).await?;
        }
        state
            .view
            .wait_until(blocking.wait, &state.shutdown, |snapshot| {
                snapshot.any_changed_after(blocking.index, &visible)
            })
            .await;
    }
    let (snapshot, protected) = if query.stale {
        (stale(state)?, state.view.protected())
    } else {
        let fenced = state.fences.with_protected().await?;
        let protected = state
            .view
            .set_protected(fenced.protected.iter().flatten().cloned());
        match caught_up(state, &fenced.head).await {
            Some(snapshot) => (snapshot, protected),
            None => return services_from_redis(state, &visible).await,
        }
    };
    let services = snapshot
        .services
        .values()
        .filter(|s| !s.instances.is_empty() && visible(&s.name))
        .map(|s| ServiceSummary {
            name: s.name.to_string(),
            instances: s.instances.len() as u64,
            passing: s.passing,
            protected: protected.contains(&*s.name),
        })
        .collect();
    let revision = snapshot.revision;
    let body = serde_json::to_vec(&ServiceList { revision, services }).map_err(corrupt)?;
    Ok(Listing {
        revision,
        body: body.into(),
    })
}

/// The services listing read from Redis (the view did not catch up).
async fn services_from_redis(
    state: &AppState,
    visible: impl Fn(&str) -> bool,
) -> Result<Listing, ApiError> {
    let (revision, services) = state.store.services().await?;
    let services = services
        .into_iter()
        .filter(|counts| visible(&counts.name))
        .map(ServiceCounts::summary)
        .collect();
    let body = serde_json::to_vec(&ServiceList { revision, services }).map_err(corrupt)?;
    Ok(Listing {
        revision,
        body: body.into(),
    })
}

/// The snapshot Prometheus SD answers from: fenced, or stale with `stale`;
/// `None` when a fenced read must go to Redis instead.
pub async fn snapshot(state: &AppState, stale_ok: bool) -> Result<Option<Arc<Snapshot>>, ApiError> {
    if stale_ok {
        stale(state).map(Some)
    } else {
        fenced(state).await
    }
}
