//! One published state of the view: every service with its instances, the
//! revision and epoch they are at, and per service the lease deadlines last
//! read and the bodies already rendered from them.
//!
//! A snapshot never changes once published; the two cells of a
//! [`ServiceView`] (its deadlines and its rendered bodies) are caches whose
//! every entry carries the label it is valid for, so a reader checks the
//! label and never trusts a cache it cannot prove current.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use mcp_shared::{
    events::Head,
    registry::{HealthStatus, Instance, RegistryKeys},
    time::rfc3339_ms,
};

use crate::model::InstanceQuery;

/// Most bodies one service keeps rendered at once (distinct filters of one
/// revision; a client sending ever-new tag filters cannot grow it).
const MAX_RENDERED: usize = 8;

/// Numbers every [`Leases`] apart, so a rendered body names the deadlines
/// it was made from without holding them.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// One published state of the registry.
#[derive(Default)]
pub struct Snapshot {
    /// The revision of the last event applied (or of the load).
    pub revision: u64,
    /// The log's epoch as loaded (`None`: Redis had none then).
    pub epoch: Option<String>,
    /// The revision of the last load: any service may have changed up to
    /// it (deletions before a load leave no trace to wake a query on).
    pub floor: u64,
    /// Whether a load ever completed (before it, the view knows nothing).
    pub loaded: bool,
    /// Every service by name, including those whose last instance went
    /// since the last load (empty, kept for the revision of that change).
    pub services: BTreeMap<Arc<str>, Arc<ServiceView>>,
}

impl Snapshot {
    /// Whether this snapshot is at least as new as `head`, read from Redis:
    /// its revision or later, in the same history (a different or vanished
    /// epoch means Redis lost its data and the view is from before).
    pub fn has_reached(&self, head: &Head) -> bool {
        let same_history = match (&self.epoch, &head.epoch) {
            (Some(ours), Some(theirs)) => ours == theirs,
            (Some(_), None) => false,
            // Loaded before the first write made the epoch: nothing to compare.
            (None, _) => true,
        };
        self.loaded && same_history && self.revision >= head.revision
    }

    /// A service's view, when it has one.
    pub fn service(&self, name: &str) -> Option<&Arc<ServiceView>> {
        self.services.get(name)
    }

    /// Whether a blocking query on `service` at `index` should answer: the
    /// service changed after it, or the index is from the future (another
    /// history of Redis, or a replica ahead of this one), as the event
    /// feed's blocking queries answer such an index at once.
    pub fn service_changed_after(&self, service: &str, index: u64) -> bool {
        index > self.revision
            || self.floor > index
            || self.service(service).is_some_and(|s| s.changed > index)
    }

    /// Whether a blocking services listing at `index` should answer: a
    /// service `visible` to the caller changed after it (or as above).
    pub fn any_changed_after(&self, index: u64, visible: impl Fn(&str) -> bool) -> bool {
        index > self.revision
            || self.floor > index
            || self
                .services
                .values()
                .any(|s| s.changed > index && visible(&s.name))
    }
}

/// One instance's lease deadline, its `expires_at` member already written
/// (a heartbeat moves one deadline: the others keep theirs, text included).
#[derive(Debug)]
pub struct Deadline {
    /// Milliseconds since the epoch.
    pub ms: u64,
    /// `,"expires_at":"<RFC 3339>"`, as serde writes the member.
    member: Box<[u8]>,
}

impl Deadline {
    fn new(ms: u64) -> Self {
        let mut member = b",\"expires_at\":".to_vec();
        // A string serializes without fail; the fallback only keeps this total.
        if serde_json::to_writer(&mut member, &rfc3339_ms(ms)).is_err() {
            member.extend_from_slice(b"\"\"");
        }
        Self {
            ms,
            member: member.into_boxed_slice(),
        }
    }
}

/// Lease deadlines of one service's instances, as read at one label: the
/// service's change revision (which instances there are) and its lease
/// version (bumped by every lease change that makes no event).
#[derive(Debug, Default)]
pub struct Leases {
    /// The service's `changed` revision these deadlines were read for.
    pub changed: u64,
    /// The lease version they were read at.
    pub version: u64,
    /// Tells these deadlines apart from any others (for the body cache).
    pub generation: u64,
    /// Deadline by instance id.
    deadlines: HashMap<Arc<str>, Arc<Deadline>>,
}

impl Leases {
    /// Deadlines (ms by instance id) read at (`changed`, `version`).
    pub fn new<'a>(
        changed: u64,
        version: u64,
        deadlines: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Self {
        Self {
            changed,
            version,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            deadlines: deadlines
                .into_iter()
                .map(|(id, ms)| (Arc::from(id), Arc::new(Deadline::new(ms))))
                .collect(),
        }
    }

    /// Deadlines just read for `ids` (in order; `None`: no lease) at
    /// (`changed`, `version`), reusing what `known` already holds for every
    /// deadline that did not move. An instance whose lease is gone since
    /// (deregistered after the view's revision) keeps its known deadline,
    /// as the listing still shows it at that revision.
    pub fn refreshed(
        changed: u64,
        version: u64,
        ids: &[&str],
        read: Vec<Option<u64>>,
        known: &Leases,
    ) -> Self {
        let mut deadlines = HashMap::with_capacity(ids.len());
        for (id, ms) in ids.iter().zip(read) {
            let before = known.deadlines.get_key_value(*id);
            let deadline = match (ms, before) {
                (Some(ms), Some((_, kept))) if kept.ms == ms => kept.clone(),
                (Some(ms), _) => Arc::new(Deadline::new(ms)),
                (None, Some((_, kept))) => kept.clone(),
                (None, None) => continue,
            };
            let id = before.map_or_else(|| Arc::from(*id), |(id, _)| id.clone());
            deadlines.insert(id, deadline);
        }
        Self {
            changed,
            version,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            deadlines,
        }
    }

    /// These deadlines with one renewal applied (`id`'s lease now runs to
    /// `ms`), at lease `version`; `None` when `id` is not among them (then
    /// the renewal is of an instance this view does not hold: read them all).
    pub fn renewed(&self, version: u64, id: &str, ms: u64) -> Option<Self> {
        let (key, _) = self.deadlines.get_key_value(id)?;
        let mut deadlines = self.deadlines.clone();
        deadlines.insert(key.clone(), Arc::new(Deadline::new(ms)));
        Some(Self {
            changed: self.changed,
            version,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            deadlines,
        })
    }

    /// The deadline of instance `id`, when known.
    pub fn deadline(&self, id: &str) -> Option<&Deadline> {
        self.deadlines.get(id).map(|d| &**d)
    }

    /// Whether these are the deadlines of `service` at lease `version`: the
    /// same instances (no change since) and no lease moved since.
    pub fn current_for(&self, service: &ServiceView, version: u64) -> bool {
        self.changed == service.changed && self.version == version
    }
}

/// One service as of one snapshot: its instances (sorted by id, without
/// `expires_at`) and the caches of its deadlines and rendered bodies.
pub struct ServiceView {
    /// The service name.
    pub name: Arc<str>,
    /// The revision of its last change (or of the load).
    pub changed: u64,
    /// Its instances, sorted by id.
    pub instances: Vec<Arc<Instance>>,
    /// How many of them are `passing`.
    pub passing: u64,
    /// The deadlines last read (possibly for an older `changed`: a stale
    /// read shows them as they are, a fenced read checks the label).
    leases: ArcSwap<Leases>,
    /// Bodies rendered at one revision from one [`Leases`] generation.
    rendered: ArcSwap<Vec<Arc<Rendered>>>,
    /// Each instance's JSON without `expires_at` and its closing brace,
    /// made once per view: a heartbeat moves only the deadlines, so a body
    /// after one is spliced from these, not serialized again.
    fragments: OnceLock<Vec<Box<[u8]>>>,
    /// See [`ServiceView::lease_members`].
    members: OnceLock<Vec<String>>,
}

/// One rendered `InstanceList` body and what it was rendered from.
struct Rendered {
    revision: u64,
    generation: u64,
    healthy: bool,
    tags: Vec<String>,
    meta: Vec<(String, String)>,
    body: Bytes,
}

impl Rendered {
    fn is_for(&self, revision: u64, generation: u64, query: &InstanceQuery) -> bool {
        self.revision == revision
            && self.generation == generation
            && self.healthy == query.healthy
            && self.tags == query.tags
            && self.meta == query.meta
    }
}

impl ServiceView {
    /// The view of `name` with `instances` (sorted by id), changed at
    /// `changed`, showing `leases`.
    pub fn new(
        name: Arc<str>,
        changed: u64,
        instances: Vec<Arc<Instance>>,
        leases: Arc<Leases>,
    ) -> Self {
        let passing = instances
            .iter()
            .filter(|i| i.status == HealthStatus::Passing)
            .count() as u64;
        Self {
            name,
            changed,
            instances,
            passing,
            leases: ArcSwap::new(leases),
            rendered: ArcSwap::from_pointee(Vec::new()),
            fragments: OnceLock::new(),
            members: OnceLock::new(),
        }
    }

    /// The instances' JSON fragments (see `fragments`), made on first use.
    fn fragments(&self) -> Result<&[Box<[u8]>], serde_json::Error> {
        if let Some(fragments) = self.fragments.get() {
            return Ok(fragments);
        }
        let made = self
            .instances
            .iter()
            .map(|instance| {
                // `expires_at` is the last member and absent here (the view
                // keeps instances without it): drop the `}` to append it.
                let mut json = serde_json::to_vec(&**instance)?;
                json.pop();
                Ok(json.into_boxed_slice())
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        Ok(self.fragments.get_or_init(|| made))
    }

    /// The deadlines last read.
    pub fn leases(&self) -> Arc<Leases> {
        self.leases.load_full()
    }

    /// Keep `leases`, just read, for the reads after this one.
    pub fn set_leases(&self, leases: Arc<Leases>) {
        self.leases.store(leases);
    }

    /// The ids of its instances, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.instances.iter().map(|i| i.id.as_str()).collect()
    }

    /// The members of `reg:leases` of its instances (`{service}/{id}`), in
    /// order, made once per view.
    pub fn lease_members(&self) -> &[String] {
        self.members.get_or_init(|| {
            self.instances
                .iter()
                .map(|i| RegistryKeys::lease_member(&self.name, &i.id))
                .collect()
        })
    }

    /// The `InstanceList` body of this service at `revision`, filtered by
    /// `query`, with `expires_at` from `leases`: rendered once per
    /// (revision, deadlines, filter) and shared by every read after, so a
    /// hot listing costs no JSON work.
    pub fn listing(
        &self,
        revision: u64,
        leases: &Leases,
        query: &InstanceQuery,
    ) -> Result<Bytes, serde_json::Error> {
        let generation = leases.generation;
        if let Some(hit) = self
            .rendered
            .load()
            .iter()
            .find(|r| r.is_for(revision, generation, query))
        {
            return Ok(hit.body.clone());
        }
        // Exactly what serde makes of an `InstanceList` (members in order,
        // no spaces), spliced from the fragments; the tests compare the two.
        let fragments = self.fragments()?;
        let size = fragments.iter().map(|f| f.len() + 48).sum::<usize>() + 64;
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(b"{\"service\":");
        serde_json::to_writer(&mut body, &*self.name)?;
        write!(body, ",\"revision\":{revision},\"instances\":[").map_err(serde_json::Error::io)?;
        let matching = self
            .instances
            .iter()
            .zip(fragments)
            .filter(|(instance, _)| query.matches(instance));
        for (n, (instance, fragment)) in matching.enumerate() {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(fragment);
            if let Some(deadline) = leases.deadline(&instance.id) {
                body.extend_from_slice(&deadline.member);
            }
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        let body = Bytes::from(body);
        let rendered = Arc::new(Rendered {
            revision,
            generation,
            healthy: query.healthy,
            tags: query.tags.clone(),
            meta: query.meta.clone(),
            body: body.clone(),
        });
        // Keep the bodies of the same revision and deadlines (other
        // filters); older ones can never be asked for again.
        self.rendered.rcu(|kept| {
            let mut next: Vec<Arc<Rendered>> = kept
                .iter()
                .filter(|r| r.revision == revision && r.generation == generation)
                .take(MAX_RENDERED - 1)
                .cloned()
                .collect();
            next.push(rendered.clone());
            next
        });
        Ok(body)
    }
}

/// The empty listing of a service the snapshot has no instance of.
pub fn empty_listing(service: &str, revision: u64) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(&mcp_shared::registry::InstanceList {
        service: service.to_owned(),
        revision,
        instances: Vec::new(),
    })
    .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, status: HealthStatus) -> Arc<Instance> {
        let mut instance =
            mcp_testkit::registry::instance_at("echo", id, ([127, 0, 0, 1], 9000).into());
        instance.status = status;
        Arc::new(instance)
    }

    fn service(changed: u64) -> ServiceView {
        let deadlines = [("e-1", 1_700_000_000_000)];
        ServiceView::new(
            "echo".into(),
            changed,
            vec![
                instance("e-1", HealthStatus::Passing),
                instance("e-2", HealthStatus::Critical),
            ],
            Arc::new(Leases::new(changed, 4, deadlines)),
        )
    }

    #[test]
    fn a_listing_is_rendered_once_per_revision_deadlines_and_filter() {
        let view = service(7);
        let leases = view.leases();
        let all = InstanceQuery::default();
        let healthy = InstanceQuery {
            healthy: true,
            ..InstanceQuery::default()
        };
        let first = view.listing(9, &leases, &all).unwrap();
        let again = view.listing(9, &leases, &all).unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, shared");
        let listed: mcp_shared::registry::InstanceList = serde_json::from_slice(&first).unwrap();
        assert_eq!(listed.revision, 9);
        assert_eq!(listed.instances.len(), 2);
        assert_eq!(
            listed.instances[0].expires_at.as_deref(),
            Some(rfc3339_ms(1_700_000_000_000).as_str())
        );
        assert_eq!(listed.instances[1].expires_at, None, "no deadline read");

        let passing = view.listing(9, &leases, &healthy).unwrap();
        let listed: mcp_shared::registry::InstanceList = serde_json::from_slice(&passing).unwrap();
        assert_eq!(listed.instances.len(), 1);
        assert_eq!(
            view.listing(9, &leases, &healthy).unwrap().as_ptr(),
            passing.as_ptr()
        );
        // A new revision renders again.
        let later = view.listing(10, &leases, &all).unwrap();
        assert_ne!(later.as_ptr(), first.as_ptr());
        assert_eq!(
            serde_json::from_slice::<mcp_shared::registry::InstanceList>(&later)
                .unwrap()
                .revision,
            10
        );
    }

    #[test]
    fn a_spliced_listing_is_what_serde_makes_of_it() {
        use mcp_shared::registry::{Check, CheckType, InstanceList};
        let mut odd = Instance::clone(&instance("e-3", HealthStatus::Warning));
        odd.tags = vec!["a\"b".into(), "ü".into()];
        odd.metadata.insert("k".into(), "line\nbreak".into());
        odd.check = Some(Check {
            kind: CheckType::Http,
            path: Some("/h?x=1".into()),
            interval_seconds: 5,
            timeout_ms: 100,
            deregister_critical_after_seconds: Some(60),
        });
        let instances = vec![
            instance("e-1", HealthStatus::Passing),
            instance("e-2", HealthStatus::Critical),
            Arc::new(odd),
        ];
        let deadlines = HashMap::from([
            ("e-1".to_owned(), 1_700_000_000_123),
            ("e-3".to_owned(), 1_800_000_000_000),
        ]);
        let leases = Leases::new(7, 1, deadlines.iter().map(|(id, ms)| (id.as_str(), *ms)));
        let view = ServiceView::new(
            "echo".into(),
            7,
            instances.clone(),
            Arc::new(Leases::default()),
        );
        for query in [
            InstanceQuery::default(),
            InstanceQuery {
                healthy: true,
                ..InstanceQuery::default()
            },
            InstanceQuery {
                tags: vec!["nope".into()],
                ..InstanceQuery::default()
            },
        ] {
            let expected = serde_json::to_vec(&InstanceList {
                service: "echo".into(),
                revision: 12,
                instances: instances
                    .iter()
                    .filter(|i| query.matches(i))
                    .map(|i| {
                        let mut i = Instance::clone(i);
                        i.expires_at = deadlines.get(&i.id).copied().map(rfc3339_ms);
                        i
                    })
                    .collect(),
            })
            .unwrap();
            let spliced = view.listing(12, &leases, &query).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&spliced),
                String::from_utf8_lossy(&expected)
            );
        }
    }

    #[test]
    fn a_refresh_keeps_the_deadlines_that_did_not_move() {
        let known = Leases::new(7, 4, [("a", 1_000), ("b", 2_000), ("c", 3_000)]);
        let fresh = Leases::refreshed(
            7,
            5,
            &["a", "b", "c", "d"],
            vec![Some(1_000), Some(2_500), None, Some(4_000)],
            &known,
        );
        assert_ne!(fresh.generation, known.generation);
        let unchanged =
            |id: &str| std::ptr::eq(fresh.deadline(id).unwrap(), known.deadline(id).unwrap());
        assert!(unchanged("a"), "the same deadline, text and all");
        assert_eq!(fresh.deadline("b").unwrap().ms, 2_500);
        assert!(unchanged("c"), "gone since: the known deadline stays");
        assert_eq!(fresh.deadline("d").unwrap().ms, 4_000);
        assert_eq!(
            fresh.deadline("d").unwrap().member.as_ref(),
            format!(r#","expires_at":"{}""#, rfc3339_ms(4_000)).as_bytes()
        );
    }

    #[test]
    fn a_renewal_moves_one_deadline_and_the_version() {
        let known = Leases::new(7, 4, [("a", 1_000), ("b", 2_000)]);
        let renewed = known.renewed(5, "b", 2_500).unwrap();
        assert_eq!((renewed.changed, renewed.version), (7, 5));
        assert_ne!(renewed.generation, known.generation);
        assert_eq!(renewed.deadline("a").unwrap().ms, 1_000);
        assert_eq!(renewed.deadline("b").unwrap().ms, 2_500);
        assert!(
            known.renewed(5, "z", 1).is_none(),
            "not an instance it holds"
        );
    }

    #[test]
    fn deadlines_are_current_only_for_their_change_and_version() {
        let view = service(7);
        let leases = view.leases();
        assert!(leases.current_for(&view, 4));
        assert!(!leases.current_for(&view, 5), "a heartbeat since");
        assert!(!leases.current_for(&service(8), 4), "a change since");
    }

    #[test]
    fn a_snapshot_reaches_a_head_in_its_own_history_only() {
        let snapshot = Snapshot {
            revision: 10,
            epoch: Some("e1".into()),
            loaded: true,
            ..Snapshot::default()
        };
        let head = |revision, epoch: Option<&str>| Head {
            revision,
            epoch: epoch.map(str::to_owned),
        };
        assert!(snapshot.has_reached(&head(10, Some("e1"))));
        assert!(snapshot.has_reached(&head(3, Some("e1"))));
        assert!(!snapshot.has_reached(&head(11, Some("e1"))));
        assert!(!snapshot.has_reached(&head(3, Some("e2"))), "lost data");
        assert!(!snapshot.has_reached(&head(0, None)), "flushed");
        assert!(
            !Snapshot::default().has_reached(&head(0, None)),
            "never loaded"
        );
    }
}
