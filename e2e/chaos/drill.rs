//! The chaos harness: a namespace with the operator running as in production (its own
//! CloudRegions for the cluster's three regions, probed for real; signed registrations of the
//! six community nodes under a strict trust policy), faults that are always taken back, and a
//! sampler that records what users see every 250 ms so scenarios can assert on the timeline.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService, RegionPhase, ServicePhase};
use edgeshift::controller::traffic::{DnsEndpoint, HttpRoute, ROUTE_RULE};
use edgeshift::trust::NodeKey;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::*;

pub const EAST: &str = "aws-us-east-1";
pub const WEST: &str = "aws-us-west-2";
pub const EUROPE: &str = "gcp-europe-west1";
/// The cluster's regions: (name as the fault injector knows it, provider, region label, the
/// load-balancer address its DNS records point at).
pub const REGIONS: [(&str, &str, &str, &str); 3] = [
    (EAST, "aws", "us-east-1", "198.51.100.1"),
    (WEST, "aws", "us-west-2", "198.51.100.2"),
    (EUROPE, "gcp", "europe-west1", "198.51.100.3"),
];
pub const EDGE_NODES: [&str; 6] = ["edge-1", "edge-2", "edge-3", "edge-4", "edge-5", "edge-6"];
/// Where a pod on a community node is said to run.
pub const ON_EDGE: &str = "edge";

/// Prints a scenario's figure and keeps it in `target/e2e/chaos-report.txt`, which `make test`
/// shows at the end.
pub fn report(scenario: &str, line: &str) {
    println!("[chaos] {scenario}: {line}");
    let path = repo_dir().join("target/e2e/chaos-report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{scenario}: {line}");
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

// --- faults -----------------------------------------------------------------------------

/// Faults injected through the fault injector; whatever is still down is brought back on drop,
/// even when the scenario failed half-way.
#[derive(Default)]
pub struct Faults {
    regions: BTreeSet<&'static str>,
    edge_nodes: BTreeSet<&'static str>,
}

impl Faults {
    /// Takes a region away; returns when the injector has done it.
    pub fn region_down(&mut self, region: &'static str) -> Instant {
        let at = Instant::now();
        inject(&["region-down", region]);
        self.regions.insert(region);
        at
    }

    pub fn region_up(&mut self, region: &'static str) {
        inject(&["region-up", region]);
        self.regions.remove(region);
    }

    pub fn edge_node_down(&mut self, node: &'static str) {
        inject(&["edge-node-down", node]);
        self.edge_nodes.insert(node);
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        for region in &self.regions {
            undo_fault(&["region-up", region]);
        }
        for node in &self.edge_nodes {
            undo_fault(&["edge-node-up", node]);
        }
    }
}

/// Waits until every node is Ready without an unreachable/not-ready taint and every region's
/// endpoint answers: a scenario starts from a whole cluster.
pub async fn whole_cluster(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        "every node Ready and untainted",
        Duration::from_secs(90),
        || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|n| {
                    node_ready(n)
                        && !n
                            .spec
                            .as_ref()
                            .and_then(|s| s.taints.as_ref())
                            .is_some_and(|ts| {
                                ts.iter().any(|t| t.key.starts_with("node.kubernetes.io/"))
                            })
                })
                .then_some(())
        },
    )
    .await;
    for (region, ..) in REGIONS {
        let url = region_endpoint(region);
        eventually(
            &format!("{region}'s endpoint {url} answers"),
            Duration::from_secs(30),
            || async { http_status(&url).await.filter(|s| *s == 200) },
        )
        .await;
    }
}

/// The Node behind each community node's topology name (label `e2e.edgeshift.io/name`):
/// `edge-1` → `edge-1` on the local cluster, kind's own worker names there.
pub async fn edge_node_names(client: &Client) -> BTreeMap<String, String> {
    let selector = format!("e2e.edgeshift.io/name in ({})", EDGE_NODES.join(","));
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list community nodes");
    let mut names: BTreeMap<String, String> = nodes
        .items
        .iter()
        .filter_map(|n| {
            Some((
                n.labels().get("e2e.edgeshift.io/name")?.clone(),
                n.name_any(),
            ))
        })
        .collect();
    for topo in EDGE_NODES {
        names
            .entry(topo.to_string())
            .or_insert_with(|| topo.to_string());
    }
    names
}

/// The topology name (`edge-N`) of a community Node.
pub async fn topology_name(client: &Client, node: &str) -> Option<&'static str> {
    let names = edge_node_names(client).await;
    EDGE_NODES
        .iter()
        .copied()
        .find(|t| names.get(*t).map(String::as_str) == Some(node))
}

/// Removes what the EdgeNode controller put on the community nodes (labels, taint), now and
/// on drop, so every scenario and the cluster tests find them as the cluster made them.
pub struct CleanEdgeNodes;

impl CleanEdgeNodes {
    pub async fn now(client: &Client) -> Self {
        clean_edge_nodes(client).await;
        CleanEdgeNodes
    }
}

async fn clean_edge_nodes(client: &Client) {
    for name in edge_node_names(client).await.into_values() {
        unmark_edge_node(client, &name).await;
    }
}

impl Drop for CleanEdgeNodes {
    fn drop(&mut self) {
        in_drop(|client| async move { clean_edge_nodes(&client).await });
    }
}

// --- the drill --------------------------------------------------------------------------

/// How a drill's operator and regions are set up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--canary` URLs.
    pub canaries: Vec<String>,
    /// Community nodes to register (signed, strict policy).
    pub edge_nodes: &'static [&'static str],
}

/// One scenario's world: a namespace, CloudRegions for the three regions (named
/// `<namespace>-<region>`), optionally the community nodes' registrations, and an operator
/// that sees only these.
pub struct Drill {
    pub client: Client,
    pub ns: String,
    options: Options,
    // Dropped in this order: the operator stops before its namespace goes.
    operator: Option<Operator>,
    _namespace: TestNamespace,
}

impl Drill {
    pub async fn new(prefix: &str, options: Options) -> Drill {
        let client = client().await;
        ensure_crds().await;
        whole_cluster(&client).await;
        let namespace = TestNamespace::new(&client, prefix).await;
        let ns = namespace.name.clone();
        for (region, provider, label, _) in REGIONS {
            let name = format!("{ns}-{region}");
            let obj: CloudRegion = serde_json::from_value(json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
                "metadata": {"name": name, "labels": {OWNER_LABEL: &ns}},
                "spec": {"provider": provider, "region": label,
                         "probes": [{"name": "lb", "http": {"url": region_endpoint(region)}}]}
            }))
            .expect("CloudRegion");
            Api::<CloudRegion>::all(client.clone())
                .create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("create CloudRegion {name}: {e}"));
        }
        if !options.edge_nodes.is_empty() {
            register_edge_nodes(&client, &ns, options.edge_nodes).await;
        }
        let mut drill = Drill {
            client,
            ns,
            options,
            operator: None,
            _namespace: namespace,
        };
        drill.start_operator();
        drill.settled().await;
        drill
    }

    /// The CloudRegion name of a cluster region.
    pub fn region(&self, region: &str) -> String {
        format!("{}-{region}", self.ns)
    }

    /// Starts the operator (again, after `kill_operator`).
    pub fn start_operator(&mut self) {
        let policy = format!("{}/trust-policy", self.ns);
        let mut args: Vec<&str> = vec!["--trust-policy", &policy];
        for c in &self.options.canaries {
            args.extend(["--canary", c.as_str()]);
        }
        self.operator = Some(Operator::start_with(&self.ns, &args));
    }

    /// Starts the operator again after `kill_operator`, logging to a file of its own.
    pub fn restart_operator(&mut self) {
        let policy = format!("{}/trust-policy", self.ns);
        let mut args: Vec<&str> = vec!["--trust-policy", &policy];
        for c in &self.options.canaries {
            args.extend(["--canary", c.as_str()]);
        }
        self.operator = Some(Operator::start_as(&self.ns, "restarted", &args));
    }

    /// SIGKILL, as a node or OOM kill would.
    pub fn kill_operator(&mut self) {
        if let Some(mut op) = self.operator.take() {
            op.kill();
        }
    }

    pub fn operator_log(&self, lines: usize) -> String {
        self.operator
            .as_ref()
            .map(|o| o.log_tail(lines))
            .unwrap_or_default()
    }

    /// Every region Healthy and, with edge nodes, every registration verified and ready.
    pub async fn settled(&self) {
        let regions: Api<CloudRegion> = Api::all(self.client.clone());
        let owned = ListParams::default().labels(&format!("{OWNER_LABEL}={}", self.ns));
        eventually(
            "every CloudRegion Healthy",
            Duration::from_secs(60),
            || async {
                let list = regions.list(&owned).await.ok()?;
                (list.items.len() == REGIONS.len()
                    && list.items.iter().all(|r| r.phase() == RegionPhase::Healthy))
                .then_some(())
            },
        )
        .await;
        if !self.options.edge_nodes.is_empty() {
            let edge: Api<EdgeNode> = Api::all(self.client.clone());
            eventually(
                "every EdgeNode verified and ready",
                Duration::from_secs(60),
                || async {
                    let list = edge.list(&owned).await.ok()?;
                    (list.items.len() == self.options.edge_nodes.len()
                        && list
                            .items
                            .iter()
                            .all(|n| n.status.as_ref().is_some_and(|s| s.verified && s.ready)))
                    .then_some(())
                },
            )
            .await;
        }
    }

    pub fn services(&self) -> Api<EdgeService> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates the EdgeService `name`: `replicas` over `regions` (cluster region names), with
    /// an HTTPRoute and a DNSEndpoint; `fallback` is the spec's `fallback`.
    pub async fn service(
        &self,
        name: &str,
        replicas: u32,
        regions: &[&str],
        fallback: serde_json::Value,
    ) {
        // Edge pods publish a hostPort: one per node.
        let mut fallback = fallback;
        if let Some(f) = fallback.as_object_mut() {
            let edge = f.entry("edge").or_insert_with(|| json!({}));
            if let Some(e) = edge.as_object_mut() {
                e.entry("maxPerNode").or_insert(json!(1));
            }
        }
        let cloud_targets: BTreeMap<String, Vec<&str>> = REGIONS
            .iter()
            .filter(|(r, ..)| regions.contains(r))
            .map(|(r, _, _, lb)| (self.region(r), vec![*lb]))
            .collect();
        let es: EdgeService = serde_json::from_value(json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "regions": regions.iter().map(|r| self.region(r)).collect::<Vec<_>>(),
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "app", "image": "registry.example/shop:1"}]}},
                "fallback": fallback,
                "traffic": {
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "hostPort": 8080}],
                    "gateway": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
                                "hostnames": [format!("{name}.example.com")]},
                    "dns": {"hostname": format!("{name}.example.com"), "ttl": 30,
                            "cloudTargets": cloud_targets}
                }
            }
        }))
        .expect("EdgeService");
        self.services()
            .create(&PostParams::default(), &es)
            .await
            .unwrap_or_else(|e| panic!("create EdgeService {name}: {e}"));
    }

    /// `cart`: 4 replicas over east and west with `Spillover` (no edge), serving from both.
    pub async fn cart_on_aws(&self, failback: serde_json::Value) -> Sampler {
        self.service(
            "cart",
            4,
            &[EAST, WEST],
            json!({"mode": "Spillover", "failback": failback}),
        )
        .await;
        let sampler = self.sampler("cart").await;
        self.serving_from_cloud(&sampler, "cart", &[("us-east-1", 2), ("us-west-2", 2)])
            .await;
        sampler
    }

    /// Waits until the service is Normal with `ready` pods per location and the cloud serving.
    pub async fn serving_from_cloud(
        &self,
        sampler: &Sampler,
        name: &str,
        ready: &[(&str, usize)],
    ) -> Sample {
        let want: BTreeMap<String, usize> =
            ready.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        sampler
            .wait(
                self,
                &format!("{name} Normal with {want:?}"),
                Duration::from_secs(90),
                |s| {
                    s.phase == Some(ServicePhase::Normal)
                        && s.ready_counts() == want
                        && s.weights == Some((100, 0))
                        && !s.dns.is_empty()
                },
            )
            .await
    }

    /// The service's Events as (type, reason, message), oldest first.
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        events.retain(|e| e.involved_object.kind.as_deref() == Some("EdgeService"));
        events.sort_by_key(|e| {
            e.last_timestamp
                .clone()
                .or(e.first_timestamp.clone())
                .map(|t| t.0)
        });
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Events of a CloudRegion (cluster-scoped: recorded in `default`) as (type, reason).
    pub async fn region_events(&self, region: &str) -> Vec<(String, String)> {
        Api::<Event>::namespaced(self.client.clone(), "default")
            .list(
                &ListParams::default()
                    .fields(&format!("involvedObject.name={}", self.region(region))),
            )
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts sampling what users see of the service `name`.
    pub async fn sampler(&self, name: &str) -> Sampler {
        Sampler::start(self.client.clone(), self.ns.clone(), name.to_string()).await
    }
}

/// The trust policy (strict: one allowed operator key) and a signed registration per community
/// node, each with a label only this drill's services select.
async fn register_edge_nodes(client: &Client, ns: &str, nodes: &[&str]) {
    let key = NodeKey::generate().expect("node key");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "trust-policy", "namespace": ns},
        "data": {"mode": "strict",
                 "allowedOperators": format!("chaos-community: [{}]\n", key.public_key_base64()),
                 "revokedKeys": "[]"}
    }))
    .expect("ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create trust policy");
    let api: Api<EdgeNode> = Api::all(client.clone());
    let names = edge_node_names(client).await;
    for (i, node) in nodes.iter().enumerate() {
        let mut en: EdgeNode = serde_json::from_value(json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
            "metadata": {"name": format!("{ns}-{node}"), "labels": {OWNER_LABEL: ns}},
            "spec": {
                "nodeName": names.get(*node).map_or(*node, String::as_str), "operator": "chaos-community",
                "publicKey": key.public_key_base64(), "signature": format!("{}==", "A".repeat(86)),
                "location": {"latitude": 50.0 + i as f64, "longitude": 8.0, "country": "DE"},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": 20},
                "pricePerHour": 0.05,
                "labels": {"e2e.edgeshift.io/drill": ns}
            }
        }))
        .expect("EdgeNode");
        key.sign(&mut en.spec).expect("sign registration");
        api.create(&PostParams::default(), &en)
            .await
            .unwrap_or_else(|e| panic!("register {node}: {e}"));
    }
}

/// The `fallback.edge` that keeps a drill's service on its own registrations.
pub fn edge_of(drill: &Drill, extra: serde_json::Value) -> serde_json::Value {
    let mut edge = json!({"requirements": {"selector": {"matchLabels": {"e2e.edgeshift.io/drill": &drill.ns}}}});
    if let (Some(e), Some(x)) = (edge.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            e.insert(k.clone(), v.clone());
        }
    }
    edge
}

// --- sampling ---------------------------------------------------------------------------

/// What users of one EdgeService see at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub at: Option<Instant>,
    /// Per cluster region: its verdict, and whether any of its probes failed in the last round.
    pub regions: BTreeMap<String, (RegionPhase, bool)>,
    pub phase: Option<ServicePhase>,
    /// `status.lastFailover.detectedAt`: one value per failover episode.
    pub failover: Option<String>,
    /// Deployment replicas by target (`<CloudRegion>` or `edge`).
    pub desired: BTreeMap<String, i32>,
    /// Ready, not terminating pods by where they run (region label or `edge`): (pod, node).
    pub ready: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Ready endpoint addresses of the Services `<name>-cloud` and `<name>-edge`.
    pub cloud_endpoints: BTreeSet<String>,
    pub edge_endpoints: BTreeSet<String>,
    /// Pod IPs of the ready pods, by location.
    pub ready_ips: BTreeMap<String, BTreeSet<String>>,
    /// (cloud, edge) weights of edgeshift's HTTPRoute rule.
    pub weights: Option<(i32, i32)>,
    /// The DNSEndpoint's targets.
    pub dns: BTreeSet<String>,
}

impl Sample {
    pub fn ready_counts(&self) -> BTreeMap<String, usize> {
        self.ready
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(l, p)| (l.clone(), p.len()))
            .collect()
    }

    pub fn ready_on(&self, location: &str) -> usize {
        self.ready.get(location).map_or(0, BTreeSet::len)
    }

    /// Ready replicas of a tier that gets traffic: what serves users right now. (Counted from
    /// the pods: the EndpointSlices follow them a moment later and are checked where the
    /// service settles.)
    pub fn serving(&self) -> usize {
        let (cloud, edge) = self.weights.unwrap_or((100, 0));
        self.ready
            .iter()
            .filter(|(at, _)| {
                if at.as_str() == ON_EDGE {
                    edge > 0
                } else {
                    cloud > 0
                }
            })
            .map(|(_, pods)| pods.len())
            .sum()
    }

    pub fn region_down(&self, region: &str) -> bool {
        self.regions
            .get(region)
            .is_some_and(|(p, _)| *p == RegionPhase::Down)
    }

    pub fn probe_failing(&self, region: &str) -> bool {
        self.regions.get(region).is_some_and(|(_, f)| *f)
    }

    pub fn since(&self, t0: Instant) -> Duration {
        self.at
            .map_or(Duration::ZERO, |a| a.saturating_duration_since(t0))
    }
}

/// Samples a service every 250 ms in the background until dropped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    async fn start(client: Client, ns: String, name: String) -> Sampler {
        // Where each node is: its region label, or the edge.
        let locations: BTreeMap<String, String> = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .expect("nodes")
            .items
            .into_iter()
            .map(|n| {
                let at = n
                    .labels()
                    .get("topology.kubernetes.io/region")
                    .cloned()
                    .unwrap_or_else(|| ON_EDGE.into());
                (n.name_any(), at)
            })
            .collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if let Some(s) = sample(&client, &ns, &name, &locations).await {
                    if let Ok(mut v) = sink.lock() {
                        v.push(s);
                    }
                }
            }
        });
        Sampler { samples, task }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn last(&self) -> Option<Sample> {
        self.samples.lock().ok().and_then(|v| v.last().cloned())
    }

    /// The first new sample for which `ok` holds; `Err(last sample)` after `limit`.
    pub async fn until(
        &self,
        limit: Duration,
        ok: impl Fn(&Sample) -> bool,
    ) -> Result<Sample, Box<Sample>> {
        let start = Instant::now();
        let mut seen = self.samples.lock().map(|v| v.len()).unwrap_or(0);
        loop {
            let fresh: Vec<Sample> = self
                .samples
                .lock()
                .map(|v| v[seen.min(v.len())..].to_vec())
                .unwrap_or_default();
            seen += fresh.len();
            if let Some(s) = fresh.into_iter().find(|s| ok(s)) {
                return Ok(s);
            }
            if start.elapsed() > limit {
                return Err(Box::new(self.last().unwrap_or_default()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Like `until`, panicking with the operator's log on timeout.
    pub async fn wait(
        &self,
        drill: &Drill,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Sample) -> bool,
    ) -> Sample {
        match self.until(limit, ok).await {
            Ok(s) => s,
            Err(last) => panic!(
                "timed out after {limit:?} waiting for {what}; last sample: {last:#?}\n--- operator log ---\n{}",
                drill.operator_log(40)
            ),
        }
    }
}

impl Sampler {
    /// One line per change of what users see, for failure messages (and `E2E_TIMELINE=1`).
    pub fn timeline(&self) -> String {
        let samples = self.samples();
        let Some(t0) = samples.first().and_then(|s| s.at) else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut last = String::new();
        for s in &samples {
            let line = s.summary();
            if line != last {
                out.push(format!("  +{:6.2}s {line}", s.since(t0).as_secs_f64()));
                last = line;
            }
        }
        out.join("\n")
    }
}

impl Sample {
    fn summary(&self) -> String {
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|(r, (p, f))| format!("{r}={p:?}{}", if *f { "!" } else { "" }))
            .collect();
        let desired: Vec<String> = self
            .desired
            .iter()
            .map(|(t, n)| format!("{}={n}", t.rsplit_once("-aws-").map_or(t.as_str(), |x| x.1)))
            .collect();
        format!(
            "[{}] {:?} desired[{}] ready{:?} endpoints cloud {} edge {} weights {:?} dns {:?} failover {}",
            regions.join(" "),
            self.phase,
            desired.join(" "),
            self.ready_counts(),
            self.cloud_endpoints.len(),
            self.edge_endpoints.len(),
            self.weights,
            self.dns,
            self.failover.as_deref().unwrap_or("-"),
        )
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() || std::env::var_os("E2E_TIMELINE").is_some() {
            eprintln!("--- what users saw ---\n{}", self.timeline());
        }
    }
}

/// The first sample at or after `from` for which `ok` holds.
pub fn first_after(
    samples: &[Sample],
    from: Instant,
    ok: impl Fn(&Sample) -> bool,
) -> Option<&Sample> {
    samples
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= from))
        .find(|s| ok(s))
}

async fn sample(
    client: &Client,
    ns: &str,
    name: &str,
    locations: &BTreeMap<String, String>,
) -> Option<Sample> {
    let owned = ListParams::default().labels(&format!("{OWNER_LABEL}={ns}"));
    let of_service = ListParams::default().labels(&format!("edgeshift.io/service={name}"));
    let all = ListParams::default();
    let (regions, services, deployments, pods, slices, routes, records) = (
        Api::<CloudRegion>::all(client.clone()),
        Api::<EdgeService>::namespaced(client.clone(), ns),
        Api::<Deployment>::namespaced(client.clone(), ns),
        Api::<Pod>::namespaced(client.clone(), ns),
        Api::<EndpointSlice>::namespaced(client.clone(), ns),
        Api::<HttpRoute>::namespaced(client.clone(), ns),
        Api::<DnsEndpoint>::namespaced(client.clone(), ns),
    );
    let (regions, es, deployments, pods, slices, route, dns) = tokio::join!(
        regions.list(&owned),
        services.get_opt(name),
        deployments.list(&of_service),
        pods.list(&of_service),
        slices.list(&all),
        routes.get_opt(name),
        records.get_opt(name),
    );
    let at = Instant::now();
    let prefix = format!("{ns}-");
    let regions = regions
        .ok()?
        .items
        .into_iter()
        .map(|r| {
            let failing = r
                .status
                .as_ref()
                .is_some_and(|s| s.probes.iter().any(|p| !p.ok));
            let region = r.name_any().strip_prefix(&prefix).unwrap_or("").to_string();
            (region, (r.phase(), failing))
        })
        .collect();
    let es = es.ok()?;
    let status = es.as_ref().and_then(|e| e.status.clone());
    let desired = deployments
        .ok()?
        .items
        .into_iter()
        .filter_map(|d| {
            let target = d.labels().get("edgeshift.io/target")?.clone();
            Some((target, d.spec?.replicas.unwrap_or(1)))
        })
        .collect();
    let mut ready: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut ready_ips: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in pods.ok()?.items {
        if p.metadata.deletion_timestamp.is_some() || !pod_ready(&p) {
            continue;
        }
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let at = locations.get(&node).cloned().unwrap_or_default();
        if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            ready_ips.entry(at.clone()).or_default().insert(ip);
        }
        ready.entry(at).or_default().insert((p.name_any(), node));
    }
    let endpoints_of = |service: &str, slices: &[EndpointSlice]| -> BTreeSet<String> {
        slices
            .iter()
            .filter(|s| {
                s.labels()
                    .get("kubernetes.io/service-name")
                    .map(String::as_str)
                    == Some(service)
            })
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect()
    };
    let slices = slices.ok()?.items;
    let weights = route.ok()?.as_ref().and_then(|r| {
        let rule = r
            .spec
            .rules
            .iter()
            .find(|r| r.name.as_deref() == Some(ROUTE_RULE))?;
        let weight = |backend: String| {
            rule.backend_refs
                .iter()
                .find(|b| b.name == backend)
                .and_then(|b| b.weight)
        };
        Some((
            weight(format!("{name}-cloud"))?,
            weight(format!("{name}-edge"))?,
        ))
    });
    let dns = dns
        .ok()?
        .map(|d| {
            d.spec
                .endpoints
                .iter()
                .flat_map(|e| e.targets.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    Some(Sample {
        at: Some(at),
        regions,
        phase: status.as_ref().and_then(|s| s.phase),
        failover: status
            .as_ref()
            .and_then(|s| s.last_failover.as_ref())
            .map(|f| f.detected_at.0.to_string()),
        desired,
        ready,
        cloud_endpoints: endpoints_of(&format!("{name}-cloud"), &slices),
        edge_endpoints: endpoints_of(&format!("{name}-edge"), &slices),
        ready_ips,
        weights,
        dns,
    })
}

/// The InternalIP/ExternalIP addresses of the nodes running the sample's ready edge pods.
pub async fn edge_node_addresses(client: &Client, sample: &Sample) -> BTreeSet<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut out = BTreeSet::new();
    for (_, node) in sample.ready.get(ON_EDGE).into_iter().flatten() {
        if let Ok(n) = nodes.get(node).await {
            out.extend(edgeshift::controller::traffic::node_addresses(&n));
        }
    }
    out
}

/// What a scenario expects users to see once the service has settled.
pub struct Expect<'a> {
    pub phase: ServicePhase,
    /// Ready pods per location (region label or `edge`); nothing elsewhere.
    pub ready: &'a [(&'a str, usize)],
    /// (cloud, edge) route weights.
    pub weights: (i32, i32),
    /// DNS targets; `None`: the addresses of the nodes running the ready edge pods.
    pub dns: Option<&'a [&'a str]>,
}

impl Expect<'_> {
    /// Whether the sample shows it: pods where expected, the Services' EndpointSlices listing
    /// exactly those pods, the route's weights and the DNS targets.
    pub fn seen_in(&self, s: &Sample, edge_addresses: &BTreeSet<String>) -> bool {
        let want: BTreeMap<String, usize> = self
            .ready
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(l, n)| (l.to_string(), *n))
            .collect();
        let ips = |edge: bool| -> BTreeSet<String> {
            s.ready_ips
                .iter()
                .filter(|(l, _)| (l.as_str() == ON_EDGE) == edge)
                .flat_map(|(_, ips)| ips.iter().cloned())
                .collect()
        };
        let dns_ok = match &self.dns {
            Some(d) => s.dns == d.iter().map(|t| t.to_string()).collect(),
            None => !s.dns.is_empty() && &s.dns == edge_addresses,
        };
        s.phase == Some(self.phase)
            && s.ready_counts() == want
            && s.cloud_endpoints == ips(false)
            && s.edge_endpoints == ips(true)
            && s.weights == Some(self.weights)
            && dns_ok
    }
}

pub const EAST_LB: &str = REGIONS[0].3;
pub const WEST_LB: &str = REGIONS[1].3;

/// All in `us-west-2` (east lost or drained): 4 replicas, DNS on west's load balancer.
pub const CART_ON_WEST: Expect<'static> = Expect {
    phase: ServicePhase::Normal,
    ready: &[("us-west-2", 4)],
    weights: (100, 0),
    dns: Some(&[WEST_LB]),
};

/// Waits until `expect` is seen (edge DNS targets checked against the nodes that run the
/// ready edge pods at that moment).
pub async fn settle(
    drill: &Drill,
    sampler: &Sampler,
    what: &str,
    limit: Duration,
    expect: &Expect<'_>,
) -> Sample {
    let start = Instant::now();
    loop {
        let s = sampler
            .wait(drill, what, limit.saturating_sub(start.elapsed()), |s| {
                expect.seen_in(s, &s.dns)
            })
            .await;
        let edge = edge_node_addresses(&drill.client, &s).await;
        let edge_nodes: BTreeSet<&String> = s
            .ready
            .get(ON_EDGE)
            .into_iter()
            .flatten()
            .map(|(_, n)| n)
            .collect();
        // Every node serving from the edge has an address to publish (KWOK once lost them).
        if expect.seen_in(&s, &edge) && edge.len() >= edge_nodes.len() {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: DNS targets {:?} are not the edge pods' nodes {edge:?}",
            s.dns
        );
    }
}

/// A scenario's recovery time: from the first failed probe of a lost region (as its status
/// shows it) to replicas Ready where they moved (`ready`) and traffic shifted there (`shifted`).
pub struct Rto {
    pub from_injection: Duration,
    pub down: Option<Duration>,
    pub ready: Duration,
    pub shifted: Duration,
}

impl Rto {
    pub fn measure(
        samples: &[Sample],
        injected: Instant,
        lost: &[&str],
        ready: impl Fn(&Sample) -> bool,
        shifted: impl Fn(&Sample) -> bool,
    ) -> Rto {
        let failed = first_after(samples, injected, |s| {
            lost.iter().any(|r| s.probe_failing(r) || s.region_down(r))
        })
        .and_then(|s| s.at)
        .unwrap_or(injected);
        let after = |ok: &dyn Fn(&Sample) -> bool| {
            first_after(samples, failed, ok)
                .map(|s| s.since(failed))
                .unwrap_or_else(|| panic!("the timeline never shows it"))
        };
        let down = first_after(samples, failed, |s| lost.iter().all(|r| s.region_down(r)))
            .map(|s| s.since(failed));
        let ready = after(&ready);
        let shifted = after(&shifted);
        let total = ready.max(shifted);
        Rto {
            from_injection: failed.saturating_duration_since(injected) + total,
            down,
            ready,
            shifted,
        }
    }

    pub fn total(&self) -> Duration {
        self.ready.max(self.shifted)
    }

    pub fn line(&self, moved_to: &str) -> String {
        format!(
            "RTO {} from the first failed probe ({} from injection): Down +{}, {moved_to} Ready +{}, traffic shifted +{}",
            secs(self.total()),
            secs(self.from_injection),
            self.down.map(secs).unwrap_or_else(|| "-".into()),
            secs(self.ready),
            secs(self.shifted),
        )
    }
}

/// A canary endpoint in this process: answers 200 until stopped, then refuses connections.
pub struct Canary {
    pub url: String,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    pub async fn start() -> Canary {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind canary");
        let addr = listener.local_addr().expect("canary address");
        Canary {
            url: format!("http://{addr}/"),
            addr,
            task: tokio::spawn(serve_ok(listener)),
        }
    }

    /// Stops answering: the listener closes, connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Answers again, on the same address.
    pub async fn resume(&mut self) {
        self.task.abort();
        let listener = eventually("canary address free", Duration::from_secs(10), || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.task = tokio::spawn(serve_ok(listener));
    }
}

async fn serve_ok(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut conn, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        });
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}
