//! The CloudRegion prober: one loop per region runs a probe round every `intervalSeconds`
//! (probes, node readiness from a Node cache, the operator's canaries), turns it into a verdict
//! and a status (pure, `crate::health`), and writes the status by server-side apply only when
//! something a person cares about changed, plus a heartbeat at most once a minute.
//!
//! Regions come and go through a reflector: a new CloudRegion starts its loop, a deleted one
//! stops it. The verdict's state lives in the status, so a restarted operator continues from it.
use crate::controller::observe::node_ready;
use crate::runtime::metrics::{ErrorLabels, KindLabels, Metrics, ProbeLabels, RegionLabels};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::Recorder;
use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::SignedDuration;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::children::FIELD_MANAGER;
use crate::api::{CloudRegion, CloudRegionStatus, RegionPhase};
use crate::clock::{Clock, SystemClock};
use crate::health::status::{
    self, events, next_status, presume_partition, provider_rollup, write_needed,
};
use crate::health::{ProbeReport, Prober, Round, RoundReport, Target, Thresholds};

/// Label of Nodes that are community edge nodes.
pub const EDGE_LABEL: &str = "edgeshift.io/edge";
/// The standard Node label naming a cloud region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// Settings of `edgeshift run` that the prober needs.
#[derive(Clone, Debug)]
pub struct ProberOptions {
    /// Probed every round next to the regions; when all fail, edgeshift presumes itself
    /// partitioned and judges nothing.
    pub canaries: Vec<Target>,
    /// Probe only the CloudRegions matching this label selector (all when `None`).
    pub region_selector: Option<String>,
    /// A steady region's status is rewritten (fresh probe results) this often, no more.
    pub heartbeat: Duration,
    /// Region verdicts and probe latencies go here.
    pub metrics: Arc<Metrics>,
}

impl Default for ProberOptions {
    fn default() -> Self {
        ProberOptions {
            canaries: Vec::new(),
            region_selector: None,
            heartbeat: Duration::from_secs(60),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// Checks what the API server must accept before the prober starts: the region selector.
pub async fn check_options(client: &Client, options: &ProberOptions) -> Result<(), String> {
    let Some(selector) = &options.region_selector else {
        return Ok(());
    };
    let api: Api<CloudRegion> = Api::all(client.clone());
    match api
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 400 => Err(format!(
            "--region-selector {selector:?} is not a valid label selector: {}",
            status.message
        )),
        // Anything else (API server not up yet, CRD missing) the watcher retries and logs.
        _ => Ok(()),
    }
}

/// Runs the prober until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: ProberOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let prober = match Prober::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "region prober not started: no region will be judged");
            return;
        }
    };
    let (regions, regions_writer) = reflector::store::<CloudRegion>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let region_watch = match &options.region_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let changed = Arc::new(Notify::new());
    let region_driver = {
        let changed = changed.clone();
        watcher(Api::<CloudRegion>::all(client.clone()), region_watch)
            .default_backoff()
            .reflect(regions_writer)
            .for_each(move |event| {
                match event {
                    Ok(_) => changed.notify_one(),
                    Err(e) => warn!(error = %e, "watching CloudRegions"),
                }
                future::ready(())
            })
    };
    let node_driver = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        // Only labels and conditions matter here; images and managed fields are heavy.
        .modify(|node: &mut Node| {
            node.managed_fields_mut().clear();
            node.annotations_mut().clear();
            if let Some(status) = node.status.as_mut() {
                status.images = None;
            }
        })
        .reflect(nodes_writer)
        .for_each(|event| {
            if let Err(e) = event {
                warn!(error = %e, "watching Nodes");
            }
            future::ready(())
        });
    let drivers = [tokio::spawn(region_driver), tokio::spawn(node_driver)];

    let shared = Arc::new(Shared {
        client: client.clone(),
        regions: regions.clone(),
        nodes: nodes.clone(),
        canaries: Canaries::new(options.canaries.clone()),
        prober,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "edgeshift".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        clock: Arc::new(SystemClock),
        heartbeat: options.heartbeat,
        metrics: options.metrics.clone(),
        seen: Mutex::new(BTreeMap::new()),
    });

    let mut shutdown = std::pin::pin!(shutdown);
    let ready = async {
        let _ = regions.wait_until_ready().await;
        let _ = nodes.wait_until_ready().await;
    };
    info!(
        selector = ?options.region_selector,
        canaries = ?options.canaries.iter().map(Target::address).collect::<Vec<_>>(),
        "region prober starting"
    );
    let started = tokio::select! {
        _ = &mut shutdown => false,
        _ = ready => true,
    };
    let mut loops: HashMap<String, (String, JoinHandle<()>)> = HashMap::new();
    if started {
        loop {
            sync_loops(&shared, &mut loops);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = changed.notified() => {},
                // A loop that ended on its own (its region went away) is noticed here too.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {},
            }
        }
    }
    for (_, (_, handle)) in loops.drain() {
        handle.abort();
    }
    for driver in drivers {
        driver.abort();
    }
    info!("region prober stopped");
}

/// Starts a loop for each region in the cache that has none, stops those whose region left.
fn sync_loops(shared: &Arc<Shared>, loops: &mut HashMap<String, (String, JoinHandle<()>)>) {
    let wanted: BTreeMap<String, String> = shared
        .regions
        .state()
        .iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter_map(|r| Some((r.name_any(), r.uid()?)))
        .collect();
    loops.retain(|name, (uid, handle)| {
        let keep = wanted.get(name) == Some(uid) && !handle.is_finished();
        if !keep {
            handle.abort();
            shared.forget(name);
            debug!(region = %name, "probe loop stopped");
        }
        keep
    });
    for (name, uid) in wanted {
        if let std::collections::hash_map::Entry::Vacant(slot) = loops.entry(name) {
            debug!(region = %slot.key(), "probe loop starting");
            let handle = tokio::spawn(region_loop(shared.clone(), slot.key().clone(), uid.clone()));
            slot.insert((uid, handle));
        }
    }
}

/// What every region loop reads from and reports to.
struct Shared {
    client: Client,
    regions: Store<CloudRegion>,
    nodes: Store<Node>,
    canaries: Canaries,
    prober: Prober,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    heartbeat: Duration,
    metrics: Arc<Metrics>,
    /// The latest round of every probed region, for the partition guard and provider roll-up.
    seen: Mutex<BTreeMap<String, Seen>>,
}

#[derive(Clone, Debug)]
struct Seen {
    provider: String,
    phase: RegionPhase,
    /// The region's own checks failed (partition aside).
    failed: bool,
    at: Instant,
    interval: Duration,
}

impl Seen {
    /// Recent enough to speak for the region now.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) <= self.interval * 2 + Duration::from_secs(2)
    }
}

/// A verdict as the `region_verdict` gauge reports it.
pub fn verdict_code(phase: RegionPhase) -> i64 {
    match phase {
        RegionPhase::Healthy => 0,
        RegionPhase::Degraded => 1,
        RegionPhase::Down => 2,
        RegionPhase::Unknown => 3,
    }
}

impl Shared {
    fn seen(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_metrics(&self, name: &str, provider: &str, report: &RoundReport, phase: RegionPhase) {
        let verdict = verdict_code(phase);
        self.metrics
            .region_verdict
            .get_or_create(&RegionLabels {
                region: name.to_string(),
                provider: provider.to_string(),
            })
            .set(verdict);
        self.metrics.note_verdict(name, verdict);
        for probe in &report.probes {
            self.metrics
                .probe_latency
                .get_or_create(&ProbeLabels {
                    region: name.to_string(),
                    probe: probe.name.clone(),
                })
                .observe(probe.latency.as_secs_f64());
        }
    }

    /// A probe round counts as one CloudRegion reconcile.
    fn record_round(&self, took: Duration) {
        let kind = KindLabels {
            kind: "CloudRegion".into(),
        };
        self.metrics.reconciles.get_or_create(&kind).inc();
        self.metrics
            .reconcile_duration
            .get_or_create(&kind)
            .observe(took.as_secs_f64());
    }

    fn forget(&self, name: &str) {
        self.seen().remove(name);
    }

    /// One probe round of `region`: its probes and the canaries at once, then its Nodes, then
    /// whether edgeshift must presume itself partitioned.
    async fn round(&self, region: &CloudRegion, started: Instant) -> RoundReport {
        let name = region.name_any();
        let probes = future::join_all(region.spec.probes.iter().map(|p| async move {
            match Target::of(p) {
                Some(target) => {
                    let out = self.prober.probe(&target).await;
                    ProbeReport {
                        name: p.name.clone(),
                        ok: out.ok,
                        latency: out.latency,
                        message: out.message,
                    }
                }
                None => ProbeReport {
                    name: p.name.clone(),
                    ok: false,
                    latency: Duration::ZERO,
                    message: "sets neither http nor tcp".into(),
                },
            }
        }));
        let since = started
            .checked_sub(Duration::from_millis(500))
            .unwrap_or(started);
        let (probes, canaries) = futures::join!(probes, self.canaries.check(&self.prober, since));
        let (ready_nodes, total_nodes) = region_node_counts(region, &self.nodes.state());
        let mut report = RoundReport {
            probes,
            ready_nodes,
            total_nodes,
            partition: None,
        };
        let failed = report.observed(&region.spec) == Round::Failed;
        let now = Instant::now();
        let everything_dead = {
            let mut seen = self.seen();
            let entry = seen.entry(name.clone()).or_insert_with(|| Seen {
                provider: region.spec.provider.clone(),
                phase: region.phase(),
                failed,
                at: now,
                interval: interval(region),
            });
            entry.failed = failed;
            entry.at = now;
            entry.interval = interval(region);
            entry.provider = region.spec.provider.clone();
            seen.values().all(|s| s.failed && s.fresh(now))
        };
        report.partition = presume_partition(
            canaries
                .as_ref()
                .map(|c| (c.all_failing, c.message.as_str())),
            everything_dead,
            if everything_dead {
                edge_node_counts(&self.nodes.state())
            } else {
                (0, 0)
            },
        );
        report
    }

    /// Every probed region of `provider`, with this region's new phase.
    fn provider(&self, name: &str, provider: &str, phase: RegionPhase) -> status::ProviderRollup {
        let mut seen = self.seen();
        if let Some(s) = seen.get_mut(name) {
            s.phase = phase;
        }
        provider_rollup(
            provider,
            seen.iter()
                .map(|(n, s)| (n.as_str(), s.provider.as_str(), s.phase)),
        )
    }

    async fn write(&self, name: &str, status: &CloudRegionStatus) -> Result<(), kube::Error> {
        let api: Api<CloudRegion> = Api::all(self.client.clone());
        let body = serde_json::json!({
            "apiVersion": CloudRegion::api_version(&()),
            "kind": CloudRegion::kind(&()),
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }

    async fn publish(&self, region: &CloudRegion, event: status::RegionEvent) {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let kube_event = Event {
            type_,
            reason: event.reason.to_string(),
            note: Some(event.note.chars().take(1000).collect()),
            action: "Probe".into(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&kube_event, &region.object_ref(&()))
            .await
        {
            warn!(region = %region.name_any(), reason = event.reason, error = %e, "could not record an Event");
        }
    }
}

fn interval(region: &CloudRegion) -> Duration {
    Duration::from_secs(u64::from(region.spec.interval_seconds.max(1)))
}

/// Ready and total Nodes matched by the region's node selector.
fn region_node_counts(region: &CloudRegion, nodes: &[Arc<Node>]) -> (u32, u32) {
    let selector = region.spec.effective_node_selector();
    count(nodes.iter().filter(|n| {
        let labels = n.labels();
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }))
}

/// Ready and total edge nodes: those labelled `edgeshift.io/edge=true`, or, when none is,
/// every Node without a region label.
fn edge_node_counts(nodes: &[Arc<Node>]) -> (u32, u32) {
    let labelled = |n: &&Arc<Node>| n.labels().get(EDGE_LABEL).map(String::as_str) == Some("true");
    if nodes.iter().any(|n| labelled(&n)) {
        count(nodes.iter().filter(labelled))
    } else {
        count(
            nodes
                .iter()
                .filter(|n| !n.labels().contains_key(REGION_LABEL)),
        )
    }
}

fn count<'a>(nodes: impl Iterator<Item = &'a Arc<Node>>) -> (u32, u32) {
    nodes.fold((0u32, 0u32), |(ready, total), n| {
        (
            ready.saturating_add(u32::from(node_ready(n))),
            total.saturating_add(1),
        )
    })
}

/// Probe rounds of one region until it leaves the cache (or is replaced by a namesake).
async fn region_loop(shared: Arc<Shared>, name: String, uid: String) {
    let key = ObjectRef::<CloudRegion>::new(&name);
    // What the status holds now: the verdict's state and what was last written.
    let initial = shared.regions.get(&key).and_then(|r| r.status.clone());
    let mut written_at = initial.as_ref().and_then(status::written_at);
    let mut written = initial.clone();
    let mut current = initial;
    loop {
        let started = Instant::now();
        let Some(region) = shared.regions.get(&key) else {
            break;
        };
        if region.uid().as_deref() != Some(uid.as_str()) {
            break;
        }
        let round_started = Instant::now();
        let report = shared.round(&region, started).await;
        let now = shared.clock.now();
        let phase_after = {
            let before = crate::health::Verdict::from_status(current.as_ref());
            before
                .next(report.round(&region.spec), Thresholds::of(&region.spec))
                .phase
        };
        let provider = shared.provider(&name, &region.spec.provider, phase_after);
        let next = next_status(&region, current.as_ref(), &report, &provider, now);
        shared.record_metrics(
            &name,
            &region.spec.provider,
            &report,
            next.phase.unwrap_or_default(),
        );
        shared.record_round(round_started.elapsed());
        let heartbeat_due = written_at.is_none_or(|t| {
            now.duration_since(t) >= SignedDuration::try_from(shared.heartbeat).unwrap_or_default()
        });
        let thr = Thresholds::of(&region.spec);
        debug!(
            region = %name,
            phase = %next.phase.unwrap_or_default(),
            failures = next.consecutive_failures,
            successes = next.consecutive_successes,
            nodes = next.nodes.as_deref().unwrap_or(""),
            "probe round"
        );
        if write_needed(written.as_ref(), &next, thr, heartbeat_due) {
            match shared.write(&name, &next).await {
                Ok(()) => {
                    let old_phase = written.as_ref().and_then(|w| w.phase).unwrap_or_default();
                    let new_phase = next.phase.unwrap_or_default();
                    if old_phase != new_phase {
                        info!(region = %name, from = %old_phase, to = %new_phase, "region verdict");
                    }
                    for event in events(&name, written.as_ref(), &next) {
                        if event.reason == status::REASON_PARTITIONED {
                            warn!(region = %name, note = %event.note, "partitioned");
                        }
                        shared.publish(&region, event).await;
                    }
                    written = Some(next.clone());
                    written_at = Some(status::seconds(now));
                }
                Err(e) => {
                    shared
                        .metrics
                        .reconcile_errors
                        .get_or_create(&ErrorLabels {
                            kind: "CloudRegion".into(),
                            error: "kube".into(),
                        })
                        .inc();
                    warn!(region = %name, error = %e, "writing CloudRegion status")
                }
            }
        }
        current = Some(next);
        tokio::time::sleep_until(started + interval(&region)).await;
    }
}

/// The operator's canaries, probed at most once per moment however many regions ask.
struct Canaries {
    targets: Vec<Target>,
    last: tokio::sync::Mutex<Option<(Instant, CanaryVerdict)>>,
}

#[derive(Clone, Debug)]
struct CanaryVerdict {
    all_failing: bool,
    message: String,
}

impl Canaries {
    fn new(targets: Vec<Target>) -> Self {
        Canaries {
            targets,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The canaries' verdict from a check started no earlier than `since`; `None` without
    /// canaries. Concurrent callers share one check.
    async fn check(&self, prober: &Prober, since: Instant) -> Option<CanaryVerdict> {
        if self.targets.is_empty() {
            return None;
        }
        let mut last = self.last.lock().await;
        if let Some((at, verdict)) = last.as_ref() {
            if *at >= since {
                return Some(verdict.clone());
            }
        }
        let started = Instant::now();
        let outcomes = future::join_all(self.targets.iter().map(|t| prober.probe(t))).await;
        let all_failing = outcomes.iter().all(|o| !o.ok);
        let messages: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.ok)
            .map(|o| o.message.as_str())
            .collect();
        let verdict = CanaryVerdict {
            all_failing,
            message: if all_failing {
                format!(
                    "all {} canaries fail: {}",
                    outcomes.len(),
                    messages.join("; ")
                )
            } else {
                String::new()
            },
        };
        *last = Some((started, verdict.clone()));
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], ready: bool) -> Arc<Node> {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            },
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap_or_default();
        Arc::new(node)
    }

    fn cluster(edge_labelled: bool) -> Vec<Arc<Node>> {
        let edge: &[(&str, &str)] = if edge_labelled {
            &[(EDGE_LABEL, "true")]
        } else {
            &[]
        };
        vec![
            node("east-1", &[(REGION_LABEL, "us-east-1")], true),
            node("east-2", &[(REGION_LABEL, "us-east-1")], false),
            node(
                "west-1",
                &[(REGION_LABEL, "us-west-2"), ("tier", "a")],
                true,
            ),
            node("edge-1", edge, false),
            node("edge-2", &[], true),
        ]
    }

    #[test]
    fn a_region_counts_the_nodes_its_selector_picks() {
        let nodes = cluster(false);
        let east = CloudRegion::test("aws-us-east-1");
        assert_eq!(region_node_counts(&east, &nodes), (1, 2));
        let mut west = CloudRegion::test("aws-us-west-2");
        west.spec.node_selector = BTreeMap::from([("tier".into(), "a".into())]);
        assert_eq!(region_node_counts(&west, &nodes), (1, 1));
        let nowhere = CloudRegion::test("aws-nowhere-1");
        assert_eq!(region_node_counts(&nowhere, &nodes), (0, 0));
    }

    #[test]
    fn edge_nodes_are_the_labelled_ones_else_those_without_a_region() {
        assert_eq!(edge_node_counts(&cluster(false)), (1, 2));
        assert_eq!(edge_node_counts(&cluster(true)), (0, 1));
        assert_eq!(edge_node_counts(&[]), (0, 0));
    }
}
