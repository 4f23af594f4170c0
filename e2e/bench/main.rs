//! `make bench`: edgeshift measured side by side with plain Kubernetes on one cluster, in one
//! run. Prints one table (median, min, max of the runs; the target; how far from it).
//! Settings come from the environment (see e2e/bench/README.md); e2e/bench/run.sh starts a
//! dedicated cluster for it.
mod stats;

use edgeshift::controller::observe::{node_ready, pod_ready};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService, ServicePhase, TargetKind, TargetStatus};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use stats::{summarize, Summary};

type Res<T> = Result<T, String>;

const MASS_NS: &str = "bench-mass";
const SYSTEM_NS: &str = "bench-system";
const HA_NS: &str = "bench-ha";
const CEILING_NS: &str = "bench-ceiling";
const MANAGER: &str = "edgeshift-bench";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cloud region of the cluster under test.
#[derive(Clone, Debug)]
struct Region {
    name: String,
    provider: String,
    label: String,
}

/// Everything the phases share.
struct Bench {
    client: Client,
    operator_kubeconfig: PathBuf,
    faults: PathBuf,
    runs: usize,
    scales: Vec<usize>,
    regions: Vec<Region>,
    lost_provider: String,
    rto_replicas: i32,
    steady_seconds: u64,
    api_qps: String,
    api_burst: String,
    metrics_port: u16,
    audit_log: PathBuf,
    logs: PathBuf,
    operator_extra: Vec<String>,
    operator: std::sync::Mutex<Option<Child>>,
    started: Instant,
    /// Runs at 10,000 EdgeServices and more (each takes minutes on a small machine).
    large_runs: usize,
    /// Past this, no new measurement starts and the table is printed with what was measured.
    deadline: Option<Instant>,
}

impl Bench {
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `limit`, or less when the deadline comes first.
    fn within_deadline(&self, limit: Duration) -> Duration {
        match self.deadline {
            Some(d) => limit.min(d.saturating_duration_since(Instant::now())),
            None => limit,
        }
    }

    fn lost(&self) -> Vec<&Region> {
        self.regions
            .iter()
            .filter(|r| r.provider == self.lost_provider)
            .collect()
    }

    fn lost_labels(&self) -> BTreeSet<String> {
        self.lost().iter().map(|r| r.label.clone()).collect()
    }

    fn say(&self, msg: &str) {
        eprintln!(
            "[bench {:>5.0}s] {msg}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn inject(&self, args: &[&str]) -> Res<String> {
        let out = Command::new("bash")
            .arg(&self.faults)
            .args(args)
            .output()
            .map_err(|e| format!("running {} {args:?}: {e}", self.faults.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {args:?} failed: {}",
                self.faults.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn provider_down(&self) -> Res<()> {
        for r in self.lost() {
            self.inject(&["region-down", &r.name])?;
        }
        Ok(())
    }

    fn provider_up(&self) -> Res<()> {
        for r in self.lost() {
            self.inject(&["region-up", &r.name])?;
        }
        Ok(())
    }

    fn spawn_operator(&self, log: &str, args: &[String]) -> Res<Child> {
        let file = std::fs::File::create(self.logs.join(log))
            .map_err(|e| format!("creating {log}: {e}"))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        Command::new(env!("CARGO_BIN_EXE_edgeshift"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&self.operator_kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting edgeshift run: {e}"))
    }

    fn operator_pid(&self) -> Option<u32> {
        self.operator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.id())
    }

    fn operator_mib(&self, field: &str) -> Option<f64> {
        let pid = self.operator_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        stats::proc_status_mib(&status, field)
    }

    /// CPU seconds the operator's threads ran, and seconds they waited runnable for a CPU
    /// (summed over its live threads; a thread that exited is not counted).
    fn operator_cpu(&self) -> Option<(f64, f64)> {
        let pid = self.operator_pid()?;
        let (mut run, mut wait) = (0u64, 0u64);
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok();
            if let Some((r, w)) = text.as_deref().and_then(stats::schedstat_ns) {
                run += r;
                wait += w;
            }
        }
        Some((run as f64 / 1e9, wait as f64 / 1e9))
    }

    async fn metrics(&self) -> Res<String> {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .map_err(|e| format!("scraping the operator's metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("reading the operator's metrics: {e}"))
    }

    /// Completed writes by the operator's user between two wall-clock times (unix ms).
    fn audit_writes(&self, from_ms: i64, to_ms: i64) -> Res<Vec<stats::AuditWrite>> {
        let text = std::fs::read_to_string(&self.audit_log).map_err(|e| {
            format!(
                "reading the audit log {}: {e} (the API server needs e2e/bench/audit-policy.yaml)",
                self.audit_log.display()
            )
        })?;
        Ok(text
            .lines()
            .filter_map(stats::parse_audit_line)
            .filter(|w| w.user == "edgeshift" && w.received_ms >= from_ms && w.received_ms <= to_ms)
            .collect())
    }
}

fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

async fn poll<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut probe: F) -> Res<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(every).await;
    }
}

async fn client(path: &PathBuf) -> Res<Client> {
    let kc = Kubeconfig::read_from(path)
        .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
    Client::try_from(config).map_err(|e| format!("client: {e}"))
}

async fn apply<K>(api: &Api<K>, name: &str, obj: serde_json::Value) -> Res<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|e| format!("applying {name}: {e}"))
}

async fn ensure_namespace(c: &Client, name: &str) -> Res<()> {
    apply(
        &Api::<Namespace>::all(c.clone()),
        name,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await?;
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.clone(), name);
    poll(
        "default ServiceAccount",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { sa.get_opt("default").await.ok().flatten() },
    )
    .await
    .map(|_| ())
}

async fn delete_namespace(c: &Client, name: &str) {
    let _ = Api::<Namespace>::all(c.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

// --- set-up ------------------------------------------------------------------------------

async fn install(b: &Bench) -> Res<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(b.client.clone());
    for crd in edgeshift::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let body = serde_json::to_value(&crd).map_err(|e| e.to_string())?;
        apply(&crds, &name, body).await?;
        poll(
            &format!("CRD {name}"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                let c = crds.get(&name).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await?;
    }
    for ns in [SYSTEM_NS, HA_NS, CEILING_NS, MASS_NS] {
        ensure_namespace(&b.client, ns).await?;
    }
    let regions: Api<CloudRegion> = Api::all(b.client.clone());
    for r in &b.regions {
        let probes = match b.inject(&["endpoint", &r.name]) {
            Ok(url) if !url.is_empty() => json!([{"name": "healthz",
                "http": {"url": url, "expectedStatus": [200], "timeoutMillis": 1000}}]),
            _ => json!([]),
        };
        apply(
            &regions,
            &r.name,
            json!({"apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
                "metadata": {"name": r.name},
                "spec": {"provider": r.provider, "region": r.label, "probes": probes,
                         "nodeReadiness": {"minReadyFraction": 0.5},
                         "intervalSeconds": 2, "failureThreshold": 3, "successThreshold": 3,
                         "quorum": "Majority"}}),
        )
        .await?;
    }
    // Verified community nodes, as the EdgeNode controller would leave them (the operator
    // runs with --disable-edge-nodes: registrations are not what is measured here).
    let selector = env_or("BENCH_EDGE_NODE_SELECTOR", "!topology.kubernetes.io/region");
    let nodes: Api<Node> = Api::all(b.client.clone());
    let edge_nodes = nodes
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing edge nodes ({selector}): {e}"))?
        .items;
    let enodes: Api<EdgeNode> = Api::all(b.client.clone());
    for n in &edge_nodes {
        let node = n.name_any();
        let name = format!("bench-{node}");
        apply(
            &enodes,
            &name,
            json!({"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
                "metadata": {"name": name},
                "spec": {"nodeName": node, "operator": "bench",
                         "publicKey": format!("{}=", "A".repeat(43)),
                         "signature": format!("{}==", "B".repeat(86)),
                         "capacity": {"pods": 1000}}}),
        )
        .await?;
        enodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"verified": true, "ready": true,
                    "availability": 1.0, "score": 1.0}})),
            )
            .await
            .map_err(|e| format!("EdgeNode {name} status: {e}"))?;
        nodes
            .patch(
                &node,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"labels": {"edgeshift.io/verified": "true", "edgeshift.io/edge": "true"}},
                    "spec": {"taints": [{"key": "edgeshift.io/edge", "value": "true", "effect": "NoSchedule"}]}
                })),
            )
            .await
            .map_err(|e| format!("labelling node {node}: {e}"))?;
    }
    b.say(&format!(
        "{} regions, {} verified edge nodes",
        b.regions.len(),
        edge_nodes.len()
    ));
    Ok(())
}

async fn start_operator(b: &Bench) -> Res<()> {
    let mut args: Vec<String> = [
        "--disable-edge-nodes",
        "--leader-elect",
        "--lease-namespace",
        SYSTEM_NS,
        "--identity",
        "bench-operator",
        "--log-level",
        "info",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{}", b.metrics_port),
        "--kube-api-qps".into(),
        b.api_qps.clone(),
        "--kube-api-burst".into(),
        b.api_burst.clone(),
    ]);
    args.extend(b.operator_extra.iter().cloned());
    let child = b.spawn_operator("operator-bench.log", &args)?;
    *b.operator.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    poll(
        "the operator's metrics",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            b.metrics()
                .await
                .ok()
                .filter(|m| m.contains("edgeshift_leader 1"))
        },
    )
    .await?;
    let regions: Api<CloudRegion> = Api::all(b.client.clone());
    poll(
        "every region Healthy",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            all_phase(&regions, b.regions.iter(), "Healthy")
                .await
                .then_some(())
        },
    )
    .await?;
    b.say("operator leads; every region Healthy");
    Ok(())
}

async fn all_phase<'a>(
    api: &Api<CloudRegion>,
    regions: impl Iterator<Item = &'a Region>,
    phase: &str,
) -> bool {
    for r in regions {
        let Ok(cr) = api.get(&r.name).await else {
            return false;
        };
        let p = cr
            .status
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        if p != phase {
            return false;
        }
    }
    true
}

/// After a provider comes back: its regions Healthy and its nodes Ready.
async fn wait_recovered(b: &Bench) -> Res<()> {
    let regions: Api<CloudRegion> = Api::all(b.client.clone());
    let nodes: Api<Node> = Api::all(b.client.clone());
    poll(
        "the provider back",
        Duration::from_secs(300),
        Duration::from_secs(1),
        || async {
            let all = nodes.list(&ListParams::default()).await.ok()?;
            let ready = all.items.iter().all(node_ready);
            (ready && all_phase(&regions, b.regions.iter(), "Healthy").await).then_some(())
        },
    )
    .await
}

// --- 1. RTO against native Kubernetes ------------------------------------------------------

#[derive(Default)]
struct RtoResults {
    edgeshift: Vec<f64>,
    detection: Vec<f64>,
    after_detection: Vec<f64>,
    native_default: Vec<f64>,
    native_tuned: Vec<f64>,
    takeover_kill: Vec<f64>,
    takeover_term: Vec<f64>,
}

fn container() -> serde_json::Value {
    json!([{"name": "app", "image": "registry.example/bench/app:1"}])
}

fn native_deployment(name: &str, b: &Bench, replicas: i32, tuned: bool) -> serde_json::Value {
    let cloud: Vec<&str> = b.regions.iter().map(|r| r.label.as_str()).collect();
    let mut tolerations =
        vec![json!({"key": "edgeshift.io/edge", "operator": "Exists", "effect": "NoSchedule"})];
    if tuned {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}));
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "containers": container(),
            "tolerations": tolerations,
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchExpressions": [
                    {"key": "topology.kubernetes.io/region", "operator": "In", "values": cloud}]}}]}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/region",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": name}}}]
        }}}})
}

fn edge_service(name: &str, regions: &[&str], replicas: i32) -> serde_json::Value {
    json!({"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService", "metadata": {"name": name},
        "spec": {"replicas": replicas, "regions": regions, "placement": "Spread",
            "fallback": {"mode": "Failover",
                "edge": {"maxReplicas": replicas, "maxPerNode": replicas, "overprovisionPercent": 0},
                "failback": {"automatic": true, "stabilizationSeconds": 5, "steps": [100], "stepSeconds": 1}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": container()}}}})
}

/// Ready pods of `selector` on nodes that are not in the lost regions.
async fn ready_elsewhere(
    pods: &Api<Pod>,
    selector: &str,
    lost_nodes: &BTreeSet<String>,
) -> Option<i32> {
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    Some(
        list.items
            .iter()
            .filter(|p| pod_ready(p))
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| !lost_nodes.contains(n))
            })
            .count() as i32,
    )
}

async fn lost_nodes(b: &Bench) -> Res<BTreeSet<String>> {
    let labels = b.lost_labels();
    let nodes = Api::<Node>::all(b.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    Ok(nodes
        .items
        .iter()
        .filter(|n| {
            n.labels()
                .get("topology.kubernetes.io/region")
                .is_some_and(|l| labels.contains(l))
        })
        .map(|n| n.name_any())
        .collect())
}

async fn rto(b: &Bench, out: &mut RtoResults) -> Res<()> {
    let lost_nodes = lost_nodes(b).await?;
    let replicas = b.rto_replicas;
    let all_regions: Vec<&str> = b.regions.iter().map(|r| r.name.as_str()).collect();
    for run in 0..b.runs {
        let ns = format!("bench-rto-{run}");
        ensure_namespace(&b.client, &ns).await?;
        let es_api: Api<EdgeService> = Api::namespaced(b.client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(b.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(b.client.clone(), &ns);
        apply(
            &es_api,
            "rto-es",
            edge_service("rto-es", &all_regions, replicas),
        )
        .await?;
        // Native Kubernetes takes 1.5 (tuned) to 6 (defaults) minutes per provider loss: all
        // their runs are measured in the first loss, as independent Deployments (same event,
        // separate workloads); later losses time edgeshift alone.
        let natives: Vec<(String, bool)> = if run == 0 {
            (0..b.runs)
                .flat_map(|k| {
                    [
                        (format!("native-tuned-{k}"), true),
                        (format!("native-default-{k}"), false),
                    ]
                })
                .collect()
        } else {
            vec![]
        };
        for (d, tuned) in &natives {
            apply(&deployments, d, native_deployment(d, b, replicas, *tuned)).await?;
        }
        let mut workloads: Vec<(String, String)> = vec![("edgeshift".into(), "app=rto-es".into())];
        workloads.extend(natives.iter().map(|(d, _)| (d.clone(), format!("app={d}"))));
        poll(
            "the RTO workloads ready in the cloud",
            Duration::from_secs(180),
            Duration::from_millis(500),
            || async {
                for (_, sel) in &workloads {
                    let list = pods.list(&ListParams::default().labels(sel)).await.ok()?;
                    let ready = list.items.iter().filter(|p| pod_ready(p)).count() as i32;
                    if ready < replicas {
                        return None;
                    }
                }
                let es = es_api.get("rto-es").await.ok()?;
                (es.status.and_then(|s| s.phase) == Some(ServicePhase::Normal)).then_some(())
            },
        )
        .await?;
        let regions: Api<CloudRegion> = Api::all(b.client.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        b.say(&format!(
            "RTO run {}: losing provider {}",
            run + 1,
            b.lost_provider
        ));
        let t0 = Instant::now();
        b.provider_down()?;
        let mut done: BTreeMap<String, f64> = BTreeMap::new();
        let mut detected: Option<f64> = None;
        let mut takeover: Option<tokio::task::JoinHandle<Res<Takeovers>>> = None;
        let limit = if run == 0 { 900.0 } else { 300.0 };
        while done.len() < workloads.len() && t0.elapsed().as_secs_f64() < limit {
            if detected.is_none() && all_phase(&regions, b.lost().into_iter(), "Down").await {
                detected = Some(t0.elapsed().as_secs_f64());
            }
            for (name, sel) in &workloads {
                if done.contains_key(name) {
                    continue;
                }
                if ready_elsewhere(&pods, sel, &lost_nodes)
                    .await
                    .is_some_and(|n| n >= replicas)
                {
                    let t = t0.elapsed().as_secs_f64();
                    b.say(&format!("  {name} ready elsewhere after {t:.1}s"));
                    done.insert(name.clone(), t);
                }
            }
            // While the native defaults wait out their 300 s, the leader takeovers (their
            // own operators and Lease, nothing shared) are measured.
            if run == 0
                && takeover.is_none()
                && done.contains_key("edgeshift")
                && natives
                    .iter()
                    .all(|(d, tuned)| !tuned || done.contains_key(d))
            {
                let runs = b.runs;
                let kubeconfig = b.operator_kubeconfig.clone();
                let logs = b.logs.clone();
                let c = b.client.clone();
                takeover = Some(tokio::spawn(async move {
                    takeovers(c, kubeconfig, logs, runs).await
                }));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if let Some(t) = done.get("edgeshift") {
            out.edgeshift.push(*t);
            if let Some(d) = detected {
                out.detection.push(d);
                out.after_detection.push(t - d);
            }
        }
        for (d, tuned) in &natives {
            if let Some(t) = done.get(d) {
                let runs = if *tuned {
                    &mut out.native_tuned
                } else {
                    &mut out.native_default
                };
                runs.push(*t);
            }
        }
        if let Some(task) = takeover {
            match task.await {
                Ok(Ok(times)) => {
                    for (kill, term) in times {
                        out.takeover_kill.push(kill);
                        out.takeover_term.push(term);
                    }
                }
                Ok(Err(e)) => b.say(&format!("leader takeover: {e}")),
                Err(e) => b.say(&format!("leader takeover task: {e}")),
            }
        }
        b.provider_up()?;
        wait_recovered(b).await?;
        delete_namespace(&b.client, &ns).await;
    }
    Ok(())
}

// --- 6. leader takeover ----------------------------------------------------------------------

struct Standby(Child);

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Per run: (seconds until a standby leads after SIGKILL of the leader, after SIGTERM).
type Takeovers = Vec<(f64, f64)>;

async fn takeovers(c: Client, kubeconfig: PathBuf, logs: PathBuf, runs: usize) -> Res<Takeovers> {
    let leases: Api<Lease> = Api::namespaced(c, HA_NS);
    let start = |lease: &str, id: &str| -> Res<Standby> {
        let log = std::fs::File::create(logs.join(format!("operator-{lease}-{id}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        Command::new(env!("CARGO_BIN_EXE_edgeshift"))
            .args([
                "run",
                "--namespace",
                HA_NS,
                "--disable-prober",
                "--disable-edge-nodes",
                "--leader-elect",
            ])
            .args([
                "--lease-namespace",
                HA_NS,
                "--lease-name",
                lease,
                "--identity",
                id,
            ])
            .args(["--lease-duration-seconds", "15"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map(Standby)
            .map_err(|e| format!("starting an HA operator: {e}"))
    };
    let leads = |lease: String, id: &'static str| {
        let leases = leases.clone();
        async move {
            poll(
                &format!("{id} leads {lease}"),
                Duration::from_secs(60),
                Duration::from_millis(100),
                || async { (holder(&leases, &lease).await.as_deref() == Some(id)).then_some(()) },
            )
            .await
        }
    };
    let mut out = Vec::new();
    for run in 0..runs {
        let lease = format!("bench-ha-{run}");
        let mut first = start(&lease, "first")?;
        leads(lease.clone(), "first").await?;
        let second = start(&lease, "second")?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t = Instant::now();
        let _ = first.0.kill();
        leads(lease.clone(), "second").await?;
        let kill = t.elapsed().as_secs_f64();
        let _third = start(&lease, "third")?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &second.0.id().to_string()])
            .status();
        leads(lease.clone(), "third").await?;
        let term = t.elapsed().as_secs_f64();
        out.push((kill, term));
    }
    Ok(out)
}

// --- 2-5. mass failover, decision latency, memory, steady writes --------------------------------

#[derive(Default)]
struct ScaleResults {
    affected: usize,
    patched: Vec<f64>,
    patched_after_detection: Vec<f64>,
    ready: Vec<f64>,
    failover_writes_per_s: Vec<f64>,
    ceiling: Vec<f64>,
    decision_p50: Vec<f64>,
    decision_p99: Vec<f64>,
    rss_steady: Vec<f64>,
    rss_peak: Vec<f64>,
    /// The operator's CPU from the loss until every child was patched, in cores (CPU
    /// seconds per second), and the share of its runnable time spent waiting for a CPU.
    operator_cores: Vec<f64>,
    operator_cpu_wait: Vec<f64>,
    setup_seconds: f64,
    /// At 10,000: affected EdgeServices with every edge pod Ready, of all affected, when the
    /// watch stopped (seconds after the loss).
    ready_at_cutoff: Vec<(usize, usize, f64)>,
}

#[derive(Default)]
struct SteadyResults {
    writes_per_min: Vec<f64>,
    lease_per_min: Vec<f64>,
    heartbeat_per_min: Vec<f64>,
    by_agent: BTreeMap<String, usize>,
}

fn mass_service(i: usize, b: &Bench) -> (String, serde_json::Value) {
    let name = format!("svc-{i:05}");
    let region = &b.regions[i % b.regions.len()].name;
    // 1-2 replicas each; the services added for the 10,000 scale run one, which keeps the
    // cluster's own part of a failover (pods to create, bind and start) within the budget.
    let replicas = if i < 1000 { 1 + (i % 2) as i32 } else { 1 };
    let body = edge_service(&name, &[region.as_str()], replicas);
    (name, body)
}

/// Caches of the mass namespace: its EdgeServices and their edge Deployments.
struct MassView {
    services: Store<EdgeService>,
    edge: Store<Deployment>,
}

fn mass_view(c: &Client) -> MassView {
    let (services, w1) = reflector::store::<EdgeService>();
    let (edge, w2) = reflector::store::<Deployment>();
    let s1 = watcher(
        Api::<EdgeService>::namespaced(c.clone(), MASS_NS),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(w1)
    .applied_objects();
    let s2 = watcher(
        Api::<Deployment>::namespaced(c.clone(), MASS_NS),
        watcher::Config::default().labels("edgeshift.io/target=edge"),
    )
    .default_backoff()
    .modify(|d: &mut Deployment| d.metadata.managed_fields = None)
    .reflect(w2)
    .applied_objects();
    tokio::spawn(s1.for_each(|_| async {}));
    tokio::spawn(s2.for_each(|_| async {}));
    MassView { services, edge }
}

/// Normal, `cloud(target)` summed over the regions at least the spec's replicas, nothing
/// asked of the edge.
fn normal_with(es: &EdgeService, cloud: fn(&TargetStatus) -> u32) -> bool {
    let Some(status) = es.status.as_ref() else {
        return false;
    };
    let sum = |kind: TargetKind, count: fn(&TargetStatus) -> u32| -> u32 {
        status
            .targets
            .iter()
            .filter(|t| t.kind == kind)
            .map(count)
            .sum()
    };
    status.phase == Some(ServicePhase::Normal)
        && sum(TargetKind::Region, cloud) >= es.spec.replicas
        && sum(TargetKind::Edge, |t| t.desired_replicas) == 0
}

/// Normal, every cloud replica ready, nothing asked of the edge.
fn settled(es: &EdgeService) -> bool {
    normal_with(es, |t| t.ready_replicas)
}

/// Normal, the cloud replicas planned and written, nothing asked of the edge: the operator's
/// part of setting a service up, whether or not the controller-manager has started its pods.
fn planned(es: &EdgeService) -> bool {
    normal_with(es, |t| t.desired_replicas)
}

async fn wait_settled(b: &Bench, view: &MassView, count: usize, limit: Duration) -> Res<()> {
    wait_all(b, view, count, limit, "settled", settled).await
}

async fn wait_all(
    b: &Bench,
    view: &MassView,
    count: usize,
    limit: Duration,
    what: &str,
    test: fn(&EdgeService) -> bool,
) -> Res<()> {
    let last = std::cell::Cell::new(Instant::now());
    poll(
        &format!("{count} EdgeServices {what}"),
        limit,
        Duration::from_secs(2),
        || async {
            let state = view.services.state();
            let n = state.iter().filter(|es| test(es)).count();
            if last.get().elapsed() > Duration::from_secs(30) {
                b.say(&format!("  {n}/{count} {what}"));
                last.set(Instant::now());
            }
            (state.len() >= count && n >= count).then_some(())
        },
    )
    .await
}

/// The API server's write ceiling: a plain concurrent patch client, no rate limit.
async fn write_ceiling(b: &Bench, seconds: u64) -> Res<f64> {
    const OBJECTS: usize = 200;
    let workers = env_num("BENCH_CEILING_WORKERS", 64usize);
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), CEILING_NS);
    for i in 0..OBJECTS {
        let name = format!("ceiling-{i}");
        if cms.get_opt(&name).await.ok().flatten().is_none() {
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": name}, "data": {"n": "0"}}))
                    .map_err(|e| e.to_string())?;
            cms.create(&PostParams::default(), &cm)
                .await
                .map_err(|e| format!("ConfigMap: {e}"))?;
        }
    }
    let ok = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let cms = cms.clone();
            let ok = ok.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < until {
                    let name = format!("ceiling-{}", (w + i as usize * workers) % OBJECTS);
                    let patch = json!({"data": {"n": format!("{w}-{i}")}});
                    if cms
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .is_ok()
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn steady_writes(b: &Bench, out: &mut SteadyResults) -> Res<()> {
    let window = b.steady_seconds.max(1);
    b.say(&format!(
        "steady writes: watching {window}s of a steady cluster"
    ));
    let from = now_ms();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let to = now_ms();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = b.audit_writes(from, to)?;
    let minutes = window as f64 / 60.0;
    // The Lease renewals and the CloudRegion status heartbeat are by design; the rest not.
    let lease = |w: &stats::AuditWrite| w.resource == "leases";
    let heartbeat =
        |w: &stats::AuditWrite| w.resource == "cloudregions" && w.subresource == "status";
    let other = |w: &stats::AuditWrite| !lease(w) && !heartbeat(w);
    for w in writes.iter().filter(|w| other(w)) {
        *out.by_agent
            .entry(format!(
                "{} {} {}/{}",
                w.user_agent, w.verb, w.resource, w.subresource
            ))
            .or_default() += 1;
    }
    // One window, split into whole minutes so the figure has runs to summarize.
    let per_minute = |filter: &dyn Fn(&stats::AuditWrite) -> bool| -> Vec<f64> {
        let n = (window / 60).max(1) as i64;
        let span = (to - from) / n;
        (0..n)
            .map(|k| {
                let (a, z) = (from + k * span, from + (k + 1) * span);
                writes
                    .iter()
                    .filter(|w| filter(w) && w.received_ms >= a && w.received_ms < z)
                    .count() as f64
                    * 60_000.0
                    / span as f64
            })
            .collect()
    };
    out.writes_per_min = per_minute(&other);
    out.lease_per_min = per_minute(&lease);
    out.heartbeat_per_min = per_minute(&heartbeat);
    b.say(&format!(
        "  {} writes besides {} lease renewals and {} region heartbeats in {minutes:.1} min",
        writes.iter().filter(|w| other(w)).count(),
        writes.iter().filter(|w| lease(w)).count(),
        writes.iter().filter(|w| heartbeat(w)).count()
    ));
    Ok(())
}

async fn mass(
    b: &Bench,
    scale: usize,
    existing: usize,
    view: &MassView,
    steady: Option<&mut SteadyResults>,
    more_scales: bool,
) -> Res<ScaleResults> {
    let mut out = ScaleResults::default();
    let es_api: Api<EdgeService> = Api::namespaced(b.client.clone(), MASS_NS);
    let t = Instant::now();
    b.say(&format!("mass: creating EdgeServices {existing}..{scale}"));
    futures::stream::iter(existing..scale)
        .map(|i| {
            let es_api = es_api.clone();
            let (name, body) = mass_service(i, b);
            async move { apply(&es_api, &name, body).await.map(|_| ()) }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    // At 10,000 the controller-manager cannot start every cloud pod within the bench's time
    // here (about 6 pods/s on 2 cores): the failover starts once the operator has done its
    // part, and the cluster's part is reported as far as it got (README: "At 10,000").
    let big = scale >= 10_000;
    let limit = b.within_deadline(Duration::from_secs(3600));
    let state = if big {
        wait_all(b, view, scale, limit, "planned", planned).await?;
        "planned"
    } else {
        wait_settled(b, view, scale, limit).await?;
        "settled"
    };
    out.setup_seconds = t.elapsed().as_secs_f64();
    b.say(&format!(
        "  {scale} EdgeServices {state} in {:.0}s",
        out.setup_seconds
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    for _ in 0..3 {
        if let Some(m) = b.operator_mib("VmRSS") {
            out.rss_steady.push(m);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if let Some(steady) = steady {
        if let Err(e) = steady_writes(b, steady).await {
            b.say(&format!("steady writes: {e}"));
        }
    }
    for _ in 0..b.runs {
        out.ceiling.push(write_ceiling(b, 5).await?);
    }
    b.say(&format!(
        "  write ceiling {:?} writes/s",
        out.ceiling.iter().map(|c| c.round()).collect::<Vec<_>>()
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;

    let lost: BTreeSet<String> = b.lost().iter().map(|r| r.name.clone()).collect();
    let regions: Api<CloudRegion> = Api::all(b.client.clone());
    let runs = if scale >= 10_000 {
        b.large_runs
    } else {
        b.runs
    };
    for run in 0..runs {
        if b.past_deadline() {
            b.say(&format!("mass {scale}: deadline reached after {run} runs"));
            break;
        }
        let affected: BTreeMap<String, i32> = view
            .services
            .state()
            .iter()
            .filter(|es| es.spec.regions.iter().any(|r| lost.contains(r)))
            .map(|es| (es.name_any(), es.spec.replicas as i32))
            .collect();
        out.affected = affected.len();
        let before =
            stats::histogram_buckets(&b.metrics().await?, "edgeshift_decision_latency_seconds");
        b.say(&format!(
            "mass {scale} run {}: losing provider {} ({} EdgeServices affected)",
            run + 1,
            b.lost_provider,
            affected.len()
        ));
        let wall0 = now_ms();
        let t0 = Instant::now();
        let cpu0 = b.operator_cpu();
        b.provider_down()?;
        let (mut patched, mut ready, mut detected) = (None, None, None);
        let mut last = Instant::now();
        let mut ready_count = 0;
        let window = Duration::from_secs(env_num("BENCH_LARGE_READY_WINDOW", 60u64));
        let watching = |patched: Option<(f64, i64)>, t: Duration| {
            if big {
                // The children, then `window` more of the cluster's part, at most 10 minutes.
                t < Duration::from_secs(600)
                    && patched.is_none_or(|(p, _)| t < Duration::from_secs_f64(p) + window)
            } else {
                t < Duration::from_secs(1200)
            }
        };
        while ready.is_none() && watching(patched, t0.elapsed()) {
            if detected.is_none() && all_phase(&regions, b.lost().into_iter(), "Down").await {
                detected = Some(t0.elapsed().as_secs_f64());
            }
            let edge: BTreeMap<String, (i32, i32)> = view
                .edge
                .state()
                .iter()
                .filter_map(|d| {
                    let svc = d.labels().get("edgeshift.io/service")?.clone();
                    let want = d.spec.as_ref()?.replicas.unwrap_or(0);
                    let ready = d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    Some((svc, (want, ready)))
                })
                .collect();
            let n_patched = affected
                .iter()
                .filter(|(s, r)| edge.get(*s).is_some_and(|e| e.0 >= **r))
                .count();
            let n_ready = affected
                .iter()
                .filter(|(s, r)| edge.get(*s).is_some_and(|e| e.0 >= **r && e.1 >= **r))
                .count();
            if patched.is_none() && n_patched == affected.len() {
                let secs = t0.elapsed().as_secs_f64();
                patched = Some((secs, now_ms()));
                if let (Some((run0, wait0)), Some((run1, wait1))) = (cpu0, b.operator_cpu()) {
                    let (run, wait) = (run1 - run0, wait1 - wait0);
                    out.operator_cores.push(run / secs.max(0.1));
                    if run + wait > 0.0 {
                        out.operator_cpu_wait.push(wait / (run + wait) * 100.0);
                    }
                }
                b.say(&format!(
                    "  every affected EdgeService's children patched after {secs:.1}s"
                ));
            }
            ready_count = n_ready;
            if n_ready == affected.len() {
                ready = Some(t0.elapsed().as_secs_f64());
            }
            if last.elapsed() > Duration::from_secs(15) {
                b.say(&format!(
                    "  t={:.0}s patched {n_patched}/{} ready {n_ready}",
                    t0.elapsed().as_secs_f64(),
                    affected.len()
                ));
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match ready {
            Some(ready) => {
                b.say(&format!(
                    "  every affected EdgeService's edge pods ready after {ready:.1}s"
                ));
                out.ready.push(ready);
            }
            None if big => {
                let at = t0.elapsed().as_secs_f64();
                b.say(&format!(
                    "  {ready_count}/{} affected EdgeServices had their edge pods ready after {at:.0}s",
                    affected.len()
                ));
                out.ready_at_cutoff.push((ready_count, affected.len(), at));
            }
            None => {
                b.say(&format!(
                    "mass {scale}: the edge pods were not all ready in 1200s"
                ));
                break;
            }
        }
        if let Some((p, p_wall)) = patched {
            out.patched.push(p);
            if let Some(d) = detected {
                out.patched_after_detection.push(p - d);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            match b.audit_writes(wall0, p_wall) {
                Ok(w) => {
                    let w: Vec<_> = w.into_iter().filter(|w| w.resource != "leases").collect();
                    if let Some(first) = w.iter().map(|w| w.received_ms).min() {
                        let secs = ((p_wall - first) as f64 / 1000.0).max(0.1);
                        out.failover_writes_per_s.push(w.len() as f64 / secs);
                    }
                }
                Err(e) => b.say(&format!("failover writes: {e}")),
            }
        }
        let after =
            stats::histogram_buckets(&b.metrics().await?, "edgeshift_decision_latency_seconds");
        let delta = stats::bucket_delta(&before, &after);
        if let (Some(p50), Some(p99)) =
            (stats::quantile(&delta, 0.5), stats::quantile(&delta, 0.99))
        {
            out.decision_p50.push(p50 * 1000.0);
            out.decision_p99.push(p99 * 1000.0);
        }
        if let Some(m) = b.operator_mib("VmHWM") {
            out.rss_peak.push(m);
        }
        b.provider_up()?;
        wait_recovered(b).await?;
        // The next run, or the next scale, starts from a settled cluster: services still
        // failing back would count as planned-elsewhere work in the next measurement (a
        // larger scale created while 667 services wait for their cloud replicas never
        // reaches "planned"). After the very last run there is nothing to wait for.
        if run + 1 < runs || more_scales {
            // What was measured so far is kept when failback does not finish in time.
            let limit = b.within_deadline(Duration::from_secs(1800));
            let back = if big {
                wait_all(b, view, scale, limit, "planned", planned).await
            } else {
                wait_settled(b, view, scale, limit).await
            };
            if let Err(e) = back {
                b.say(&format!("mass {scale}: after run {}: {e}", run + 1));
                break;
            }
            b.say("  failed back; every EdgeService settled");
        }
    }
    Ok(out)
}

// --- the table -----------------------------------------------------------------------------

struct Row {
    figure: String,
    unit: &'static str,
    s: Option<Summary>,
    target: String,
    verdict: String,
}

fn row(
    figure: impl Into<String>,
    unit: &'static str,
    v: &[f64],
    target: &str,
    check: impl Fn(f64) -> String,
) -> Row {
    let s = summarize(v);
    Row {
        figure: figure.into(),
        unit,
        s,
        target: target.into(),
        verdict: s
            .map(|s| check(s.median))
            .unwrap_or_else(|| "not measured".into()),
    }
}

fn at_most(limit: f64) -> impl Fn(f64) -> String {
    move |m| {
        let word = if m <= limit { "meets" } else { "MISSES" };
        format!("{word} ({:.2}x of target)", m / limit)
    }
}

/// `check` where the row has a target, nothing where it has none.
fn target_if(on: bool, check: impl Fn(f64) -> String) -> impl Fn(f64) -> String {
    move |m| if on { check(m) } else { String::new() }
}

fn at_least(limit: f64) -> impl Fn(f64) -> String {
    move |m| {
        let word = if m >= limit { "meets" } else { "MISSES" };
        format!("{word} ({:.2}x of target)", m / limit)
    }
}

fn info(_: f64) -> String {
    String::new()
}

fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    // The native runs share the first loss, so each is set against the median edgeshift RTO.
    let m = summarize(b).map(|s| s.median);
    a.iter().filter_map(|x| m.map(|m| x / m)).collect()
}

fn print_table(rows: &[Row], header: &str) {
    let fmt = |x: f64| {
        if x.abs() >= 100.0 {
            format!("{x:.0}")
        } else if x.abs() >= 10.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.2}")
        }
    };
    println!("{header}");
    let w = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(10)
        .max(10);
    println!(
        "{:<w$}  {:>8}  {:>8}  {:>8}  {:>4}  {:<7}  {:<14}  vs target",
        "figure", "median", "min", "max", "runs", "unit", "target"
    );
    println!("{}", "-".repeat(w + 90));
    for r in rows {
        match r.s {
            Some(s) => println!(
                "{:<w$}  {:>8}  {:>8}  {:>8}  {:>4}  {:<7}  {:<14}  {}",
                r.figure,
                fmt(s.median),
                fmt(s.min),
                fmt(s.max),
                s.runs,
                r.unit,
                r.target,
                r.verdict
            ),
            None => println!(
                "{:<w$}  {:>8}  {:>8}  {:>8}  {:>4}  {:<7}  {:<14}  {}",
                r.figure, "-", "-", "-", 0, r.unit, r.target, r.verdict
            ),
        }
    }
}

async fn main_async() -> Res<()> {
    let started = Instant::now();
    let kubeconfig = PathBuf::from(env_or(
        "BENCH_KUBECONFIG",
        &repo_dir()
            .join("target/e2e-bench/kubeconfig")
            .display()
            .to_string(),
    ));
    let operator_kubeconfig = std::env::var_os("BENCH_OPERATOR_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| kubeconfig.clone());
    let state = kubeconfig.parent().map(PathBuf::from).unwrap_or_default();
    let logs = PathBuf::from(env_or(
        "BENCH_LOGS",
        &state.join("logs").display().to_string(),
    ));
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let regions = env_or(
        "BENCH_REGIONS",
        "aws-us-east-1:aws:us-east-1,aws-us-west-2:aws:us-west-2,gcp-europe-west1:gcp:europe-west1",
    )
    .split(',')
    .filter_map(|r| {
        let mut p = r.split(':');
        Some(Region {
            name: p.next()?.to_string(),
            provider: p.next()?.to_string(),
            label: p.next()?.to_string(),
        })
    })
    .collect();
    let b = Bench {
        client: client(&kubeconfig).await?,
        operator_kubeconfig,
        faults: PathBuf::from(env_or(
            "BENCH_FAULTS",
            &repo_dir().join("e2e/cluster.sh").display().to_string(),
        )),
        runs: env_num("BENCH_RUNS", 3usize).max(1),
        scales: env_or("BENCH_SCALES", "1000,10000")
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
        regions,
        lost_provider: env_or("BENCH_LOST_PROVIDER", "aws"),
        rto_replicas: env_num("BENCH_RTO_REPLICAS", 6),
        steady_seconds: env_num("BENCH_STEADY_SECONDS", 300u64),
        api_qps: env_or("BENCH_KUBE_API_QPS", "800"),
        api_burst: env_or("BENCH_KUBE_API_BURST", "1600"),
        metrics_port: env_num("BENCH_METRICS_PORT", 28090u16),
        audit_log: PathBuf::from(env_or(
            "BENCH_AUDIT_LOG",
            &logs.join("audit.log").display().to_string(),
        )),
        logs,
        operator_extra: env_or("BENCH_OPERATOR_ARGS", "")
            .split_whitespace()
            .map(String::from)
            .collect(),
        operator: std::sync::Mutex::new(None),
        started,
        large_runs: env_num("BENCH_LARGE_RUNS", 1usize).max(1),
        deadline: env_num("BENCH_DEADLINE_MINUTES", 0u64)
            .checked_mul(60)
            .filter(|s| *s > 0)
            .map(|s| started + Duration::from_secs(s)),
    };
    let phases = env_or("BENCH_PHASES", "rto,mass");
    install(&b).await?;
    start_operator(&b).await?;

    let mut rto_out = RtoResults::default();
    if phases.contains("rto") {
        if let Err(e) = rto(&b, &mut rto_out).await {
            b.say(&format!("RTO: {e}"));
            let _ = b.provider_up();
        }
    }
    let mut scales: Vec<(usize, ScaleResults)> = Vec::new();
    let mut steady = SteadyResults::default();
    if phases.contains("mass") {
        let view = mass_view(&b.client);
        let mut existing = 0;
        let mut steady_done = false;
        let all_scales = b.scales.clone();
        for (k, &scale) in all_scales.iter().enumerate() {
            let steady_here = (!steady_done && b.steady_seconds > 0).then_some(&mut steady);
            steady_done = true;
            let more_scales = k + 1 < all_scales.len();
            match mass(&b, scale, existing, &view, steady_here, more_scales).await {
                Ok(r) => scales.push((scale, r)),
                Err(e) => {
                    b.say(&format!("mass failover at {scale}: {e}"));
                    let _ = b.provider_up();
                    break;
                }
            }
            existing = scale;
        }
    }
    if let Some(mut op) = b.operator.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = Command::new("kill")
            .args(["-TERM", &op.id().to_string()])
            .status();
        let _ = op.wait();
    }

    let mut rows = vec![
        row(
            "1 RTO edgeshift: provider loss -> replicas Ready elsewhere",
            "s",
            &rto_out.edgeshift,
            "<= detect+3",
            info,
        ),
        row(
            "1   detection: loss -> lost regions Down",
            "s",
            &rto_out.detection,
            "",
            info,
        ),
        row(
            "1   edgeshift RTO minus detection",
            "s",
            &rto_out.after_detection,
            "<= 3",
            at_most(3.0),
        ),
        row(
            "1 RTO native, default tolerations (300s), grace 50s",
            "s",
            &rto_out.native_default,
            "",
            info,
        ),
        row(
            "1 RTO native, tolerationSeconds 30, grace 50s",
            "s",
            &rto_out.native_tuned,
            "",
            info,
        ),
        row(
            "1   ratio native default / edgeshift",
            "x",
            &ratios(&rto_out.native_default, &rto_out.edgeshift),
            ">= 20",
            at_least(20.0),
        ),
        row(
            "1   ratio native tuned / edgeshift",
            "x",
            &ratios(&rto_out.native_tuned, &rto_out.edgeshift),
            "",
            info,
        ),
    ];
    for (scale, r) in &scales {
        let ceiling = summarize(&r.ceiling).map(|s| s.median).unwrap_or(f64::NAN);
        let fraction: Vec<f64> = r
            .failover_writes_per_s
            .iter()
            .map(|w| w / ceiling * 100.0)
            .collect();
        let big = *scale >= 10_000;
        rows.push(row(
            format!(
                "2 mass {scale} ({} affected): children patched, from loss",
                r.affected
            ),
            "s",
            &r.patched,
            if big { "<= 60" } else { "" },
            move |m| if big { at_most(60.0)(m) } else { String::new() },
        ));
        rows.push(row(
            format!("2 mass {scale}: children patched, from detection"),
            "s",
            &r.patched_after_detection,
            "",
            info,
        ));
        rows.push(row(
            format!("2 mass {scale}: all edge pods Ready, from loss"),
            "s",
            &r.ready,
            "",
            info,
        ));
        rows.push(row(
            format!("2 mass {scale}: API write ceiling (64 patchers)"),
            "w/s",
            &r.ceiling,
            "",
            info,
        ));
        rows.push(row(
            format!("2 mass {scale}: edgeshift failover writes"),
            "w/s",
            &r.failover_writes_per_s,
            "",
            info,
        ));
        rows.push(row(
            format!("2 mass {scale}:   as % of the ceiling"),
            "%",
            &fraction,
            if big { ">= 70" } else { "" },
            move |m| {
                if big {
                    at_least(70.0)(m)
                } else {
                    String::new()
                }
            },
        ));
        rows.push(row(
            format!("2 mass {scale}: operator CPU, loss -> children patched"),
            "cores",
            &r.operator_cores,
            "",
            info,
        ));
        rows.push(row(
            format!("2 mass {scale}:   of its runnable time, waiting for a CPU"),
            "%",
            &r.operator_cpu_wait,
            "",
            info,
        ));
        let is_1000 = *scale == 1000;
        rows.push(row(
            format!("3 decision latency p50 at {scale}"),
            "ms",
            &r.decision_p50,
            "",
            info,
        ));
        rows.push(row(
            format!("3 decision latency p99 at {scale}"),
            "ms",
            &r.decision_p99,
            if is_1000 { "<= 100" } else { "" },
            target_if(is_1000, at_most(100.0)),
        ));
        rows.push(row(
            format!("4 operator RSS steady at {scale}"),
            "MiB",
            &r.rss_steady,
            if big { "<= 100" } else { "" },
            target_if(big, at_most(100.0)),
        ));
        rows.push(row(
            format!("4 operator RSS peak (VmHWM) at {scale}"),
            "MiB",
            &r.rss_peak,
            if big { "<= 100" } else { "" },
            target_if(big, at_most(100.0)),
        ));
    }
    let steady_scale = scales.first().map(|(s, _)| *s).unwrap_or(0);
    rows.push(row(
        format!("5 steady writes/min by edgeshift, {steady_scale} EdgeServices"),
        "/min",
        &steady.writes_per_min,
        "0",
        |m| {
            if m == 0.0 {
                "meets".into()
            } else {
                "MISSES".into()
            }
        },
    ));
    rows.push(row(
        "5   Lease renewals/min (leader election)",
        "/min",
        &steady.lease_per_min,
        "",
        info,
    ));
    rows.push(row(
        "5   CloudRegion status heartbeats/min (3 regions)",
        "/min",
        &steady.heartbeat_per_min,
        "",
        info,
    ));
    rows.push(row(
        "6 leader takeover after SIGKILL (lease 15s)",
        "s",
        &rto_out.takeover_kill,
        "<= 17",
        at_most(17.0),
    ));
    rows.push(row(
        "6 leader takeover after SIGTERM",
        "s",
        &rto_out.takeover_term,
        "<= 3",
        at_most(3.0),
    ));
    let header = format!(
        "edgeshift benchmark: runs {} ({} at >= 10,000), scales {:?}, lost provider {}, operator --kube-api-qps {} --kube-api-burst {} {}, took {:.0} min",
        b.runs, b.large_runs, b.scales, b.lost_provider, b.api_qps, b.api_burst, b.operator_extra.join(" "),
        started.elapsed().as_secs_f64() / 60.0
    );
    print_table(&rows, &header);
    if !steady.by_agent.is_empty() {
        println!("steady writes besides the Lease and region heartbeats, by user agent, verb and resource:");
        for (k, v) in &steady.by_agent {
            println!("  {v:>6}  {k}");
        }
    }
    for (scale, r) in &scales {
        let state = if *scale >= 10_000 {
            "planned (children written)"
        } else {
            "settled (cloud replicas Ready)"
        };
        println!(
            "mass {scale}: {scale} EdgeServices created and {state} in {:.0}s",
            r.setup_seconds
        );
        for (n, of, at) in &r.ready_at_cutoff {
            println!(
                "mass {scale}: {n}/{of} affected EdgeServices had every edge pod Ready {at:.0}s after the loss, when the watch stopped (the cluster's part; README: \"At 10,000\")"
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
