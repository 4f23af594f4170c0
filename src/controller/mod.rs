//! The controllers: observe (watches into caches) → plan (pure) → apply (server-side apply) →
//! status and Events. Only this module and its children take a `Client`.
pub mod child_cache;
pub mod children;
pub mod cloud_region;
pub mod edge_node;
pub mod edge_service;
pub mod events;
pub mod observe;
pub mod slim;
pub mod traffic;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::Recorder;
use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::api::{CloudRegion, EdgeNode, EdgeService};
use crate::clock::{Clock, SystemClock};
use crate::runtime::leader::Leadership;
use crate::runtime::metrics::Metrics;
use child_cache::{ChildCache, ChildRecord};
use slim::ChildDeployment;

/// Settings of `edgeshift run` that the controllers need.
#[derive(Clone)]
pub struct Options {
    /// Watch EdgeServices (and their children) in this namespace only; all when `None`.
    pub namespace: Option<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Requeue a steady EdgeService after this long (a read-only re-check: no writes).
    pub resync: Duration,
    /// Only the leader writes; a standby runs its watches (warm caches) and reconciles
    /// nothing until it leads.
    pub leadership: Leadership,
    pub metrics: Arc<Metrics>,
    /// Set once the EdgeService cache has synced (`/readyz`).
    pub ready: Arc<AtomicBool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            concurrency: 64,
            resync: Duration::from_secs(300),
            leadership: Leadership::always(),
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What every reconcile reads from: caches of the cluster, the clock, the event recorder.
pub struct Context {
    pub client: Client,
    pub regions: Store<CloudRegion>,
    pub edge_nodes: Store<EdgeNode>,
    /// Our child Deployments and Services, by EdgeService: a reconcile reads its own few
    /// (reading all of them made a mass failover quadratic), as compact records.
    pub deployments: Arc<ChildCache>,
    pub services: Arc<ChildCache>,
    /// HTTPRoutes, DNSEndpoints, edge pods and nodes, and which of those APIs exist.
    pub traffic: traffic::TrafficCaches,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    pub options: Options,
    /// Consecutive failures per EdgeService, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<EdgeService>, u32>>,
    /// Status writes the EdgeService cache has not shown yet.
    pub written: Arc<WrittenStatus>,
    /// `true` once every cache a decision reads from has its first full list.
    caches: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    /// Waits until the caches are filled. Planning from a half-filled cache is planning for a
    /// world without the service's regions or edge nodes: a restarted operator would scale
    /// away everything that serves and bring it back a moment later.
    pub async fn caches_ready(&self) {
        let mut caches = self.caches.clone();
        let _ = caches.wait_for(|ready| *ready).await;
    }

    /// The Deployments labelled as children of `es` (owner references are checked by the
    /// callers).
    pub fn deployments_of(&self, es: &EdgeService) -> Vec<ChildRecord> {
        self.deployments
            .of(&es.namespace().unwrap_or_default(), &es.name_any())
    }

    /// Backoff after this object's next consecutive failure ([`backoff_after`]).
    fn backoff(&self, obj: &ObjectRef<EdgeService>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(obj.clone()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_after(*n)
    }

    fn reset_backoff(&self, obj: &ObjectRef<EdgeService>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(obj);
    }
}

fn namespaced<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The most an object waits to be retried after errors. Short, because the usual error in an
/// outage is the API server itself being away: once it is back, every object is retried within
/// this, not minutes later.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Backoff after the n-th consecutive failure (n >= 1): 1 s, 2 s, 4 s, ... capped at
/// [`MAX_BACKOFF`].
pub fn backoff_after(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(8)).min(MAX_BACKOFF)
}

/// What of a CloudRegion matters to the EdgeServices that use it: spec and verdict.
fn region_verdict(region: &CloudRegion) -> u64 {
    let mut h = DefaultHasher::new();
    region.metadata.generation.hash(&mut h);
    let status = region.status.as_ref();
    status.and_then(|s| s.phase).hash(&mut h);
    status
        .and_then(|s| s.last_transition_time.as_ref())
        .map(|t| t.0.as_millisecond())
        .hash(&mut h);
    h.finish()
}

/// What an EdgeService's plan reads of an EdgeNode (`observe::edge_node_view_for`): not its
/// heart-beat time, messages, condition times or `allocatedReplicas`. The EdgeNode controller
/// rewrites those as edge pods come and go, and each such event used to queue every
/// edge-using EdgeService.
fn edge_node_inputs(node: &EdgeNode) -> u64 {
    let mut h = DefaultHasher::new();
    // The view as any service sees it (its own allocations aside, hashed below whole); `now`
    // only decides whether a quarantine is still on, so its end is hashed instead.
    let view = observe::edge_node_view_for(node, None, k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!("{view:?}").hash(&mut h);
    let status = node.status.as_ref();
    status
        .and_then(|s| s.quarantined_until.as_ref())
        .map(|t| t.0.as_second())
        .hash(&mut h);
    node.annotations()
        .get(edge_node::ANNOTATION_ALLOCATIONS)
        .hash(&mut h);
    h.finish()
}

/// Turns watch events into reconcile triggers: every deletion, and a change only when
/// `inputs` (a hash of what reconciles read of the object) differs from the object's last.
/// Unlike kube's `predicate_filter`, a deletion always passes: the object's last state has
/// the hash already seen, and the services that used it must re-plan without it.
#[allow(clippy::type_complexity)]
fn input_changes<K>(
    inputs: fn(&K) -> u64,
) -> impl FnMut(
    std::result::Result<watcher::Event<K>, watcher::Error>,
) -> future::Ready<Option<std::result::Result<K, watcher::Error>>>
where
    K: kube::Resource<DynamicType = ()>,
{
    let mut seen: HashMap<ObjectRef<K>, u64> = HashMap::new();
    triggers(move |event| match event {
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
            let hash = inputs(obj);
            seen.insert(ObjectRef::from_obj(obj), hash) != Some(hash)
        }
        watcher::Event::Delete(obj) => {
            seen.remove(&ObjectRef::from_obj(obj));
            true
        }
        watcher::Event::Init | watcher::Event::InitDone => false,
    })
}

/// Watch events as reconcile triggers: `changed` sees every event (to keep its own state)
/// and says whether an applied object changed; deletions and errors always pass, the
/// list's start and end never do.
#[allow(clippy::type_complexity)]
fn triggers<K>(
    mut changed: impl FnMut(&watcher::Event<K>) -> bool,
) -> impl FnMut(
    std::result::Result<watcher::Event<K>, watcher::Error>,
) -> future::Ready<Option<std::result::Result<K, watcher::Error>>> {
    move |event| {
        future::ready(match event {
            Ok(event) => {
                let changed = changed(&event);
                match event {
                    watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                        changed.then_some(Ok(obj))
                    }
                    watcher::Event::Delete(obj) => Some(Ok(obj)),
                    watcher::Event::Init | watcher::Event::InitDone => None,
                }
            }
            Err(e) => Some(Err(e)),
        })
    }
}

/// The EdgeServices as this process last wrote their status, until the cache catches up.
///
/// A reconcile's child writes trigger the next reconcile of the same service at once, and it
/// often starts before the watch has brought the status the first one wrote: planning from
/// that stale status repeated the transition, its status write and its Events (in a mass
/// failover, a second status write and two Event patches per service, while the API server
/// was busiest). A reconcile now starts from whichever is newer: the cached object, or the
/// one the API server returned for our last status write.
#[derive(Default)]
pub struct WrittenStatus(Mutex<HashMap<ObjectRef<EdgeService>, Written>>);

struct Written {
    /// The resourceVersions this write (and the writes it followed, made before the cache
    /// showed them) replaced: while the cache shows one of these, it is behind.
    replaced: Vec<String>,
    object: Arc<EdgeService>,
    at: std::time::Instant,
}

impl WrittenStatus {
    /// How long an entry is kept if its service is never reconciled again (deleted).
    const KEEP: Duration = Duration::from_secs(300);

    /// Remembers `written`, the API server's answer to a status write made from `from`.
    pub fn record(&self, from: &EdgeService, mut written: EdgeService) {
        slim::edge_service_meta(&mut written.metadata);
        let key = ObjectRef::from_obj(from);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.at.elapsed() < Self::KEEP);
        let from_version = from.resource_version();
        let mut replaced: Vec<String> = from_version.iter().cloned().collect();
        // Written from our previous answer (the cache had not caught up): the cache may still
        // show what that write replaced.
        if let Some(previous) = map.get(&key) {
            if previous.object.resource_version() == from_version {
                replaced.extend(previous.replaced.iter().cloned());
            }
        }
        map.insert(
            key,
            Written {
                replaced,
                object: Arc::new(written),
                at: std::time::Instant::now(),
            },
        );
    }

    /// The watch brought `es`: a write it supersedes is forgotten at once, so entries live
    /// for the watch's delay, not until the service's next reconcile.
    pub fn seen(&self, es: &EdgeService) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        let key = ObjectRef::from_obj(es);
        if map.get(&key).is_some_and(|w| !Self::behind(w, es)) {
            map.remove(&key);
        }
    }

    /// Whether `cached` is a version that `w` replaced.
    fn behind(w: &Written, cached: &EdgeService) -> bool {
        cached
            .resource_version()
            .is_some_and(|v| w.replaced.contains(&v))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `cached`, unless it is still a version our last status writes replaced: then the
    /// object the last one returned.
    pub fn newest(&self, cached: Arc<EdgeService>) -> Arc<EdgeService> {
        let key = ObjectRef::from_obj(&*cached);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(w) if Self::behind(w, &cached) => w.object.clone(),
            Some(_) => {
                map.remove(&key);
                cached
            }
            None => cached,
        }
    }
}

/// Takes a child's watch events into `cache` and turns them into reconcile triggers: every
/// deletion, and a change only when what a reconcile reads of the child changed (the
/// controller-manager's status bookkeeping is several events per change of that).
#[allow(clippy::type_complexity)]
fn child_changes<K>(
    cache: Arc<ChildCache>,
    record: fn(&K) -> ChildRecord,
) -> impl FnMut(
    std::result::Result<watcher::Event<K>, watcher::Error>,
) -> future::Ready<Option<std::result::Result<K, watcher::Error>>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    triggers(move |event| cache.observe(event, record))
}

/// A stream that yields each time this process becomes the leader.
fn leadership_acquired(leadership: Leadership) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(
        (leadership.subscribe(), false),
        |(mut rx, mut was)| async move {
            loop {
                let now = *rx.borrow_and_update();
                if now && !was {
                    return Some(((), (rx, true)));
                }
                was = now;
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}

/// Runs the EdgeService controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        children::LABEL_MANAGED_BY,
        children::FIELD_MANAGER
    ));
    let (regions, regions_writer) = reflector::store::<CloudRegion>();
    let (edge_nodes, edge_writer) = reflector::store::<EdgeNode>();
    let deployments = Arc::new(ChildCache::default());
    let services = Arc::new(ChildCache::default());
    let (traffic, traffic_streams) = traffic::observe(&client, &options.namespace);

    let verdicts = options.metrics.clone();
    let region_stream = watcher(
        Api::<CloudRegion>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(regions_writer)
    // Probe heartbeats do not concern EdgeServices; a new verdict or spec does.
    .filter_map(input_changes(region_verdict))
    .inspect(move |region| {
        // The decision latency is timed from here when another process judged the region.
        if let Ok(region) = region {
            let phase = region.status.as_ref().and_then(|s| s.phase);
            if let Some(phase) = phase {
                verdicts.note_verdict(&region.name_any(), cloud_region::verdict_code(phase));
            }
        }
    });
    let edge_stream = watcher(
        Api::<EdgeNode>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(edge_writer)
    .filter_map(input_changes(edge_node_inputs));
    let deployment_stream = watcher(
        namespaced::<ChildDeployment>(&client, &options.namespace),
        managed.clone(),
    )
    // Decisions read a child's labels, owners, applied-hash annotation, replicas and
    // readiness; the pod template and managed fields would be most of the cache's memory.
    .modify(slim::deployment)
    .default_backoff()
    .filter_map(child_changes(
        deployments.clone(),
        ChildRecord::from_deployment,
    ));
    // Services are compared by their applied hash alone: metadata is all that is watched.
    let service_stream = watcher(
        namespaced::<PartialObjectMeta<Service>>(&client, &options.namespace),
        managed,
    )
    .modify(|s: &mut PartialObjectMeta<Service>| slim::service_meta(&mut s.metadata))
    .default_backoff()
    .filter_map(child_changes(services.clone(), ChildRecord::from_service));

    let (caches_tx, caches_rx) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Context {
        client: client.clone(),
        regions,
        edge_nodes,
        deployments,
        services,
        traffic,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "edgeshift".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        clock: Arc::new(SystemClock),
        options: options.clone(),
        failures: Mutex::new(HashMap::new()),
        written: Arc::new(WrittenStatus::default()),
        caches: caches_rx,
    });

    // Decoded one by one (`Guarded`): an object our types cannot read is reconciled as such
    // (marked, left alone) instead of failing the list, and with it everyone's failover.
    let (services_cache, services_cache_writer) = reflector::store::<edge_service::Guarded>();
    let written = ctx.written.clone();
    let edge_services = watcher(
        namespaced::<edge_service::Guarded>(&client, &options.namespace),
        watcher::Config::default(),
    )
    .modify(|es: &mut edge_service::Guarded| slim::edge_service_meta(es.meta_mut()))
    .default_backoff()
    .reflect(services_cache_writer)
    .applied_objects()
    .inspect(move |es| {
        if let Ok(DeserializeGuard(Ok(es))) = es {
            written.seen(es);
        }
    })
    // Our own status writes would each queue another reconcile of the same service; the
    // spec (generation) is what asks for one. Children, regions and edge nodes trigger theirs.
    .predicate_filter(kube::runtime::predicates::generation, Default::default());
    let controller = Controller::for_stream(edge_services, services_cache)
        .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency));
    let by_region = controller.store();
    let by_edge = controller.store();
    let controller = controller
        .owns_stream(deployment_stream)
        .owns_stream(service_stream)
        .watches_stream(region_stream, move |region: CloudRegion| {
            // Every EdgeService that names the region (from the cache: no API call).
            let name = region.name_any();
            by_region
                .state()
                .into_iter()
                .filter(|g| g.0.as_ref().is_ok_and(|es| es.spec.regions.contains(&name)))
                .map(|g| ObjectRef::from_obj(&*g))
                .collect::<Vec<_>>()
        })
        .watches_stream(edge_stream, move |_node: EdgeNode| {
            // An edge node's change can matter to every service that may use the edge.
            by_edge
                .state()
                .into_iter()
                .filter(|g| g.0.as_ref().is_ok_and(|es| es.spec.uses_edge()))
                .map(|g| ObjectRef::from_obj(&*g))
                .collect::<Vec<_>>()
        })
        // Children deleted while a watch was down (no Delete event came): their services.
        .reconcile_on(
            futures::stream::select(ctx.deployments.vanished(), ctx.services.vanished())
                .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
        )
        // Becoming the leader reconciles everything from the (warm) caches at once.
        .reconcile_all_on(leadership_acquired(options.leadership.clone()))
        .graceful_shutdown_on(shutdown);
    // Ready once the caches the decisions read from have their first full list; reconciles
    // wait for it. (One waiter per store: kube wakes only one of several concurrent waiters.
    // Routes and DNS records are left out: their watches start only once discovery finds the
    // CRDs, and a route missing from the cache costs one identical apply, not a wrong one.)
    let caches = (
        ctx.regions.clone(),
        ctx.edge_nodes.clone(),
        ctx.deployments.clone(),
        ctx.services.clone(),
        ctx.traffic.pods.clone(),
        ctx.traffic.nodes.clone(),
    );
    let ready = options.ready.clone();
    tokio::spawn(async move {
        let synced = caches.0.wait_until_ready().await.is_ok()
            && caches.1.wait_until_ready().await.is_ok()
            && {
                caches.2.wait_until_ready().await;
                caches.3.wait_until_ready().await;
                true
            }
            && caches.4.wait_until_ready().await.is_ok()
            && caches.5.wait_until_ready().await.is_ok();
        if synced {
            ready.store(true, Ordering::Release);
            let _ = caches_tx.send(true);
        }
    });
    let controller = traffic_streams.attach(controller);

    info!(namespace = ?options.namespace, "EdgeService controller starting");
    controller
        .run(edge_service::reconcile, edge_service::error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(err, obj)) => {
                    warn!(object = %obj, error = %err, "reconcile failed")
                }
                Err(err) => warn!(error = %err, "controller"),
            }
            future::ready(())
        })
        .await;
    info!("EdgeService controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_backoff_doubles_from_one_second_to_thirty() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_after(u32::MAX), MAX_BACKOFF);
        assert_eq!(backoff_after(0), Duration::from_secs(1));
    }

    fn edge_service(rv: &str, phase: Option<&str>) -> EdgeService {
        let mut es: EdgeService = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
            "metadata": {"name": "shop", "namespace": "a", "resourceVersion": rv,
                         "managedFields": [{"manager": "edgeshift"}]},
            "spec": {"regions": ["r"], "template": {"spec": {"containers": []}}}
        }))
        .expect("EdgeService");
        if let Some(phase) = phase {
            es.status = serde_json::from_value(serde_json::json!({"phase": phase})).ok();
        }
        es
    }

    #[test]
    fn a_reconcile_starts_from_our_last_status_write_until_the_cache_shows_it() {
        let written = WrittenStatus::default();
        let cached = Arc::new(edge_service("10", None));
        assert!(Arc::ptr_eq(&written.newest(cached.clone()), &cached));
        written.record(&cached, edge_service("11", Some("FailingOver")));
        // The cache still holds version 10: the written one is newer.
        let newest = written.newest(cached.clone());
        assert_eq!(newest.resource_version().as_deref(), Some("11"));
        assert_eq!(newest.phase(), crate::api::ServicePhase::FailingOver);
        assert!(newest.metadata.managed_fields.is_none(), "kept slim");
        assert_eq!(
            written.newest(cached.clone()).resource_version().as_deref(),
            Some("11"),
            "until the cache catches up"
        );
        // The watch brings the written version: forgotten at once.
        written.seen(&edge_service("11", Some("FailingOver")));
        assert_eq!(written.len(), 0);
        written.record(&cached, edge_service("11", Some("FailingOver")));
        written.seen(&cached);
        assert_eq!(
            written.len(),
            1,
            "an event of the replaced version changes nothing"
        );
        // Two writes before the cache shows the first: it is behind while it shows either
        // version the writes replaced.
        let overlaid = written.newest(cached.clone());
        written.record(&overlaid, edge_service("12", Some("OnEdge")));
        assert_eq!(
            written.newest(cached.clone()).resource_version().as_deref(),
            Some("12")
        );
        written.seen(&edge_service("11", Some("FailingOver")));
        assert_eq!(
            written.len(),
            1,
            "the first write's event: still behind the second"
        );
        assert_eq!(
            written
                .newest(Arc::new(edge_service("11", Some("FailingOver"))))
                .resource_version()
                .as_deref(),
            Some("12")
        );
        written.seen(&edge_service("12", Some("OnEdge")));
        assert_eq!(written.len(), 0);
        written.record(&cached, edge_service("11", Some("FailingOver")));
        // The cache caught up (or moved past): it wins, and the entry goes.
        let caught_up = Arc::new(edge_service("13", Some("FailingOver")));
        assert!(Arc::ptr_eq(&written.newest(caught_up.clone()), &caught_up));
        assert!(Arc::ptr_eq(&written.newest(cached.clone()), &cached));
    }

    fn passes(
        filter: &mut impl FnMut(
            std::result::Result<watcher::Event<EdgeNode>, watcher::Error>,
        )
            -> future::Ready<Option<std::result::Result<EdgeNode, watcher::Error>>>,
        event: watcher::Event<EdgeNode>,
    ) -> bool {
        futures::executor::block_on(filter(Ok(event))).is_some()
    }

    #[test]
    fn an_edge_node_heartbeat_or_message_alone_triggers_no_edge_service() {
        let base = EdgeNode::test("edge-1");
        let mut beat = base.clone();
        let status = beat.status.get_or_insert_with(Default::default);
        status.last_heartbeat = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
        ));
        status.message = Some("Node 'edge-1' is Ready".into());
        status.allocated_replicas = 3;
        assert_eq!(edge_node_inputs(&base), edge_node_inputs(&beat));

        let changed: Vec<(&str, EdgeNode)> = vec![
            ("unverified", base.clone().unverified()),
            ("not ready", base.clone().not_ready()),
            ("availability", {
                let mut n = base.clone();
                n.status.get_or_insert_with(Default::default).availability = Some(0.5);
                n
            }),
            ("quarantined", {
                let mut n = base.clone();
                n.status
                    .get_or_insert_with(Default::default)
                    .quarantined_until =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
                    ));
                n
            }),
            ("allocations", {
                let mut n = base.clone();
                n.annotations_mut().insert(
                    edge_node::ANNOTATION_ALLOCATIONS.into(),
                    r#"{"shop/web":2}"#.into(),
                );
                n
            }),
            ("capacity", {
                let mut n = base.clone();
                n.spec.capacity = None;
                n
            }),
            ("labels", {
                let mut n = base.clone();
                n.spec.labels.insert("tier".into(), "gpu".into());
                n
            }),
        ];
        for (what, node) in changed {
            assert_ne!(edge_node_inputs(&base), edge_node_inputs(&node), "{what}");
        }
    }

    #[test]
    fn input_changes_passes_first_sight_changes_and_every_deletion() {
        let mut filter = input_changes(edge_node_inputs);
        let node = EdgeNode::test("edge-1");
        assert!(passes(&mut filter, watcher::Event::InitApply(node.clone())));
        assert!(!passes(&mut filter, watcher::Event::InitDone));
        assert!(
            !passes(&mut filter, watcher::Event::Apply(node.clone())),
            "unchanged"
        );
        let other = EdgeNode::test("edge-2");
        assert!(
            passes(&mut filter, watcher::Event::Apply(other)),
            "another object"
        );
        let unverified = node.clone().unverified();
        assert!(passes(
            &mut filter,
            watcher::Event::Apply(unverified.clone())
        ));
        // The deleted object's last state has the hash already seen: it passes all the same.
        assert!(passes(
            &mut filter,
            watcher::Event::Delete(unverified.clone())
        ));
        assert!(
            passes(&mut filter, watcher::Event::Apply(unverified)),
            "back after deletion"
        );
    }
}
