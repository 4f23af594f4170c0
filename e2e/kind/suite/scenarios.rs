//! The scenarios. Each builds its service in a namespace of its own, starts both clients,
//! takes something away with `docker pause`/`stop`/`network disconnect`, and records what
//! the region's status, the pods and the clients saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService, RegionPhase, ServicePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use crate::clients::{outage, DnsClient, Outage, Request, ServiceClient};
use crate::timeline::Timeline;
use crate::*;

const DNS_TTL: u32 = 5;
const STABILIZATION_SECONDS: u32 = 20;
const STEP_SECONDS: u32 = 10;
/// Every region the lane has; a drill restores them all, whatever happened.
const REGIONS: [&str; 3] = ["aws-us-east-1", "aws-us-west-2", "gcp-europe-west1"];

/// Brings every region and edge node back (as the scenario took them away) when a scenario
/// ends, even on a failed assert.
struct Restore(&'static str);
impl Drop for Restore {
    fn drop(&mut self) {
        let kind = repo_dir().join("e2e/kind/kind.sh");
        for r in REGIONS {
            let _ = std::process::Command::new(&kind)
                .args(["region-up", r])
                .env("MODE", self.0)
                .output();
        }
        for n in EDGE_NODES {
            let _ = std::process::Command::new(&kind)
                .args(["edge-node-up", n])
                .env("MODE", self.0)
                .output();
        }
    }
}

/// The workload's pod template: our HTTP server, telling which target and node answered.
fn template(app: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            // The server keeps answering while it terminates (the grace period), so clients
            // that still hold an old DNS answer are served until ExternalDNS and the TTL catch up.
            "terminationGracePeriodSeconds": 15,
            "containers": [{
                "name": "web",
                "image": WORKLOAD_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["serve", "8080"],
                "env": [
                    {"name": "TARGET", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['edgeshift.io/target']"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "ports": [{"name": "http", "containerPort": 8080, "hostPort": HOST_PORT}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
        }
    })
}

/// The shape of a scenario's EdgeService.
struct Shape<'a> {
    regions: &'a [&'a str],
    mode: &'a str,
    placement: &'a str,
    replicas: usize,
    edge: serde_json::Value,
}

/// An EdgeService of `shape` (a region is one node here and the pods publish a hostPort, so a
/// region runs one replica of it), published through DNS with every region's node address as
/// its cloud target.
async fn edge_service(client: &Client, ns: &str, name: &str, shape: Shape<'_>) -> Api<EdgeService> {
    let mut cloud_targets = BTreeMap::new();
    for r in shape.regions {
        cloud_targets.insert(
            r.to_string(),
            vec![internal_ip(&node_named(client, &format!("{r}-1")).await)],
        );
    }
    let es: EdgeService = serde_json::from_value(serde_json::json!({
        "apiVersion": "edgeshift.io/v1alpha1",
        "kind": "EdgeService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": shape.replicas,
            "regions": shape.regions,
            "placement": shape.placement,
            "template": template(name),
            "fallback": {
                "mode": shape.mode,
                "edge": shape.edge,
                "failback": {"stabilizationSeconds": STABILIZATION_SECONDS, "stepSeconds": STEP_SECONDS, "steps": [25, 50, 100]},
            },
            "traffic": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "hostPort": HOST_PORT}],
                "dns": {"hostname": format!("{name}.edgeshift.test"), "ttl": DNS_TTL, "cloudTargets": cloud_targets},
            },
        }
    }))
    .expect("EdgeService");
    let api: Api<EdgeService> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &es)
        .await
        .expect("create EdgeService");
    api
}

/// The same workload as a plain Deployment and Service, relying on Kubernetes alone: it
/// prefers AWS (so it runs there before the loss) and may run anywhere else that is not a
/// community node. `toleration_seconds` None keeps the default tolerations (300 s).
async fn native(client: &Client, ns: &str, name: &str, toleration_seconds: Option<i64>) {
    let mut tpl = template(name);
    tpl["spec"]["containers"][0]["env"][0] =
        serde_json::json!({"name": "TARGET", "value": "native"});
    tpl["spec"]["affinity"] = serde_json::json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "edgeshift.io/provider", "operator": "In", "values": ["aws"]}]}}]}});
    if let Some(s) = toleration_seconds {
        tpl["spec"]["tolerations"] = serde_json::json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}]);
    }
    // No hostPort: only the EdgeService's pods stand for a region's load balancer. Two
    // replicas, which the scheduler spreads over the two AWS nodes.
    tpl["spec"]["containers"][0]["ports"] = serde_json::json!([{"containerPort": 8080}]);
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": tpl}
    }))
    .expect("native Deployment");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .expect("native Service");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create native Deployment");
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create native Service");
}

async fn cluster_ip(client: &Client, ns: &str, name: &str) -> String {
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let deadline = Deadline::new(&format!("Service {ns}/{name}"), Duration::from_secs(60));
    loop {
        let ip = svcs
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.spec?.cluster_ip)
            .filter(|ip| ip != "None");
        if let Some(ip) = ip {
            return ip;
        }
        deadline.tick().await;
    }
}

fn dns_server() -> SocketAddr {
    std::fs::read_to_string(state_dir().join("dns-server"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| "127.0.0.1:1053".parse().expect("address"))
}

fn external_dns_interval() -> String {
    std::fs::read_to_string(state_dir().join("external-dns-interval"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

async fn phase(api: &Api<EdgeService>, name: &str) -> Option<ServicePhase> {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|e| e.status?.phase)
}

/// When a region was sampled, its name, whether a probe failed, whether it was Down.
type RegionSample = (Instant, String, bool, bool);

/// Region verdicts and probe results, sampled every 250 ms: the first failed probe and Down.
struct RegionWatch {
    samples: std::sync::Arc<std::sync::Mutex<Vec<RegionSample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RegionWatch {
    fn start(client: &Client) -> RegionWatch {
        let api: Api<CloudRegion> = Api::all(client.clone());
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&Default::default()).await {
                    let at = Instant::now();
                    for r in list.items {
                        let name = r.metadata.name.clone().unwrap_or_default();
                        let status = r.status.unwrap_or_default();
                        let failing =
                            status.probes.iter().any(|p| !p.ok) || status.consecutive_failures > 0;
                        let down = status.phase == Some(edgeshift::api::RegionPhase::Down);
                        if let Ok(mut s) = out.lock() {
                            s.push((at, name, failing, down));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        RegionWatch { samples, task }
    }

    /// The first moment after `t0` any of `regions` showed a failed probe (else `t0`), and
    /// when all of them were Down.
    fn detection(&self, t0: Instant, regions: &[&str]) -> Detection {
        let s = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let failed = s
            .iter()
            .filter(|(at, name, failing, down)| {
                *at >= t0 && regions.contains(&name.as_str()) && (*failing || *down)
            })
            .map(|(at, ..)| *at)
            .min()
            .unwrap_or(t0);
        let mut down_at = BTreeMap::new();
        for (at, name, _, down) in &s {
            if *at >= t0 && *down && regions.contains(&name.as_str()) {
                down_at.entry(name.clone()).or_insert(*at);
            }
        }
        let all_down = (down_at.len() == regions.len())
            .then(|| down_at.values().max().copied())
            .flatten();
        Detection {
            failed,
            down: all_down,
        }
    }
}

/// How a loss was seen: the first failed probe, and when every lost region was Down.
struct Detection {
    failed: Instant,
    down: Option<Instant>,
}

impl Detection {
    /// First failed probe → every lost region Down.
    fn detect(&self) -> Option<Duration> {
        self.down.map(|d| d.saturating_duration_since(self.failed))
    }

    /// First failed probe → `ready` (replicas Ready where they moved).
    fn rto(&self, ready: Instant) -> Option<Duration> {
        Some(ready.saturating_duration_since(self.failed))
    }
}

impl Drop for RegionWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn targets(m: &BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(t, n)| format!("{t}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn window(o: &Outage) -> String {
    o.window_ms.map(secs_ms).unwrap_or_else(|| "0".into())
}

/// The records from `from_ms` on.
fn since(r: &[Request], from_ms: u64) -> Vec<Request> {
    r.iter().filter(|q| q.at_ms >= from_ms).cloned().collect()
}

/// Where every scenario starts: every region Healthy, every edge node verified and ready,
/// both operator pods Ready, and nothing of an earlier scenario still terminating (its pods
/// hold the hostPort a new one needs).
async fn settled(client: &Client) {
    let regions: Api<CloudRegion> = Api::all(client.clone());
    let edge_nodes: Api<EdgeNode> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait_for(
        "every region Healthy, every edge node ready, no scenario namespace terminating",
        Duration::from_secs(300),
        || async {
            let healthy = regions.list(&Default::default()).await.is_ok_and(|l| {
                l.items.len() == REGIONS.len()
                    && l.items.iter().all(|r| {
                        r.status.as_ref().and_then(|s| s.phase) == Some(RegionPhase::Healthy)
                    })
            });
            let edge = edge_nodes.list(&Default::default()).await.is_ok_and(|l| {
                l.items.len() == EDGE_NODES.len()
                    && l.items
                        .iter()
                        .all(|n| n.status.as_ref().is_some_and(|s| s.verified && s.ready))
            });
            let quiet = namespaces.list(&Default::default()).await.is_ok_and(|l| {
                l.items.iter().all(|n| {
                    !n.name_any().starts_with("kind-") || n.metadata.deletion_timestamp.is_none()
                })
            });
            let operator = ready_pods(
                client,
                "edgeshift-system",
                "app.kubernetes.io/name=edgeshift",
            )
            .await
            .len()
                == 2;
            healthy && edge && quiet && operator
        },
    )
    .await;
}

/// The two clients of a scenario: outside through DNS, inside through the Service from a pod
/// on `node`.
struct Clients {
    dns: DnsClient,
    svc: ServiceClient,
    timeline: Timeline,
}

impl Clients {
    async fn start(client: &Client, ns: &str, name: &str, node: &str) -> Clients {
        let timeline = Timeline::start(client, ns);
        let dns = DnsClient::start(dns_server(), format!("{name}.edgeshift.test"), HOST_PORT);
        wait_for(
            &format!("{name} answering through the outside DNS"),
            Duration::from_secs(90),
            || async {
                dns.records()
                    .iter()
                    .rev()
                    .take(20)
                    .filter(|r| r.target.is_some())
                    .count()
                    == 20
            },
        )
        .await;
        let ip = cluster_ip(client, ns, name).await;
        let svc =
            ServiceClient::start(client, ns, &format!("client-{name}"), node, &ip, 1200).await;
        // A few seconds of clean traffic before anything is taken away.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Clients { dns, svc, timeline }
    }

    /// What the cluster did around each of the requests lost in `dns` and `svc` (both
    /// clients' records from `from_ms` on), times relative to `from_ms`.
    fn explain(&self, from_ms: u64, (dns, svc): (&[Request], &[Request])) -> String {
        let window = (5_000, 2_000);
        format!(
            "{}{}",
            self.timeline.around_failures("dns", dns, from_ms, window),
            self.timeline.around_failures("svc", svc, from_ms, window)
        )
    }

    /// Waits until both clients are served by `target` after their outage from `from_ms` on,
    /// and returns what they saw: (DNS, Service).
    async fn until_served_by(&self, from_ms: u64, target: &str) -> (Outage, Outage) {
        let deadline = Deadline::new(
            &format!("both clients served by {target}"),
            Duration::from_secs(60),
        );
        loop {
            let (d, s) = self.since(from_ms).await;
            if served_by(&d, target) && served_by(&s, target) {
                return (d, s);
            }
            deadline.tick().await;
        }
    }

    /// What both clients saw from `from_ms` on: (DNS, Service).
    async fn since(&self, from_ms: u64) -> (Outage, Outage) {
        let (dns, svc) = self.records_since(from_ms).await;
        (outage(&dns), outage(&svc))
    }

    /// Both clients' records from `from_ms` on: (DNS, Service).
    async fn records_since(&self, from_ms: u64) -> (Vec<Request>, Vec<Request>) {
        (
            since(&self.dns.records(), from_ms),
            since(&self.svc.records().await, from_ms),
        )
    }

    async fn stop(self) {
        drop(self.dns);
        self.svc.stop().await;
    }
}

async fn ready_on(client: &Client, ns: &str, app: &str, target: &str) -> Vec<Pod> {
    ready_pods(
        client,
        ns,
        &format!("app={app},edgeshift.io/target={target}"),
    )
    .await
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// Waits until `want` edge replicas are Ready and the phase is OnEdge; returns when the
/// replicas were Ready.
async fn until_on_edge(
    client: &Client,
    api: &Api<EdgeService>,
    ns: &str,
    name: &str,
    want: usize,
) -> Instant {
    let mut ready_at = None;
    let deadline = Deadline::new(
        &format!("{name} OnEdge with {want} edge replicas Ready"),
        Duration::from_secs(180),
    );
    loop {
        if ready_at.is_none() && ready_on(client, ns, name, "edge").await.len() >= want {
            ready_at = Some(Instant::now());
        }
        if ready_at.is_some() && phase(api, name).await == Some(ServicePhase::OnEdge) {
            return ready_at.unwrap_or_else(Instant::now);
        }
        deadline.tick().await;
    }
}

/// Brings `regions` back (by `mode`) and waits for the failback to end: phase Normal, each
/// of `home` serving again and nothing left Ready on `away` (the edge, or the region a
/// Spillover used); then long enough for every DNS answer given meanwhile to expire. Returns
/// what the clients saw from the moment the regions came back: (DNS, Service).
async fn failback(
    client: &Client,
    api: &Api<EdgeService>,
    clients: &Clients,
    (ns, name): (&str, &str),
    (mode, regions): (&str, &[&str]),
    (home, away): (&[&str], &str),
) -> (Outage, Outage) {
    let back_ms = clients::now_ms();
    for r in regions {
        faults_with(&["region-up", r], &[("MODE", mode)]);
    }
    let limit = Duration::from_secs(u64::from(STABILIZATION_SECONDS + 4 * STEP_SECONDS) + 240);
    wait_for(
        &format!("{name} failed back to {home:?}"),
        limit,
        || async {
            if phase(api, name).await != Some(ServicePhase::Normal)
                || !ready_on(client, ns, name, away).await.is_empty()
            {
                return false;
            }
            for h in home {
                if ready_on(client, ns, name, h).await.is_empty() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(u64::from(DNS_TTL) + 5)).await;
    let (dns, svc) = clients.records_since(back_ms).await;
    let seen = (outage(&dns), outage(&svc));
    if seen.0.lost + seen.1.lost > 0 {
        eprintln!(
            "{name}: failback lost requests; what the cluster did around them (s since the regions came back):\n{}",
            clients.explain(back_ms, (&dns, &svc))
        );
    }
    seen
}

/// Failback loses no request through either client, and `home` serves again.
fn assert_failback_lossless(scenario: &str, fb_dns: &Outage, fb_svc: &Outage, home: &[&str]) {
    assert_eq!(
        fb_svc.lost, 0,
        "{scenario}: failback must not fail a request through the Service: {fb_svc:?}"
    );
    assert_eq!(
        fb_dns.lost, 0,
        "{scenario}: failback must not fail a request through DNS: {fb_dns:?}"
    );
    for o in [fb_svc, fb_dns] {
        assert!(
            home.iter().any(|h| served_by(o, h)),
            "{scenario}: after failback {home:?} serve again: {o:?}"
        );
    }
}

fn seconds(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}", d.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

/// One row of the table.
fn row(
    scenario: &str,
    detect: Option<Duration>,
    rto: Option<Duration>,
    dns: Option<&Outage>,
    svc: &Outage,
) -> String {
    format!(
        "{:<36} {:>7} {:>7} {:>8} {:>10} {:>8} {:>10}  {} | {} | {}",
        scenario,
        seconds(detect),
        seconds(rto),
        dns.map(window).unwrap_or_else(|| "-".into()),
        dns.map(|o| format!("{}/{}", o.lost, o.total))
            .unwrap_or_else(|| "-".into()),
        window(svc),
        format!("{}/{}", svc.lost, svc.total),
        targets(&svc.before),
        targets(&svc.during),
        targets(&svc.after),
    )
}

/// The row of a failback: what both clients saw from the moment the region came back, and
/// how many answers were slow (a SYN retransmitted, or worse).
fn failback_row(scenario: &str, dns: &Outage, svc: &Outage) -> String {
    format!(
        "{}\n    answered in >= {} s: DNS {}, Service {}",
        row(scenario, None, None, Some(dns), svc),
        clients::SLOW_MS / 1000,
        dns.slow,
        svc.slow
    )
}

pub fn header() {
    let path = state_dir().join("report.txt");
    if !path.exists() {
        report(&format!(
            "{:<36} {:>7} {:>7} {:>8} {:>10} {:>8} {:>10}  {}",
            "scenario",
            "detect",
            "RTO",
            "DNS win",
            "lost",
            "Svc win",
            "lost",
            "Service client's targets: before | during | after"
        ));
    }
}

const AWS: [&str; 2] = ["aws-us-east-1", "aws-us-west-2"];
const EDGE_NODES: [&str; 3] = ["edge-1", "edge-2", "edge-3"];

/// Provider lost to the edge: both AWS regions' nodes are frozen (`docker pause`: no
/// heart-beats, no answers, as a provider outage looks from outside). The EdgeService fails
/// over to verified edge nodes; the same workload as plain Deployments (default
/// tolerations, and tolerationSeconds 30) waits for Kubernetes to evict and reschedule it.
/// Then AWS returns, and failback moves everything back in steps without a failed request.
#[tokio::test]
async fn s1_provider_lost_to_the_edge() {
    let client = client().await;
    let _restore = Restore("pause");
    header();
    settled(&client).await;
    let ns = TestNamespace::new(&client, "kind-provider").await;
    let gcp_node = node_named(&client, "gcp-europe-west1-1").await.name_any();
    let shape = Shape {
        regions: &AWS,
        mode: "Failover",
        placement: "Spread",
        replicas: 2,
        edge: serde_json::json!({"maxReplicas": 3, "maxPerNode": 1}),
    };
    let api = edge_service(&client, &ns.name, "shop", shape).await;
    native(&client, &ns.name, "native", None).await;
    native(&client, &ns.name, "native-tuned", Some(30)).await;
    wait_for(
        "shop Normal with both AWS replicas Ready",
        Duration::from_secs(120),
        || async {
            phase(&api, "shop").await == Some(ServicePhase::Normal)
                && ready_pods(
                    &client,
                    &ns.name,
                    "app=shop,edgeshift.io/target in (aws-us-east-1,aws-us-west-2)",
                )
                .await
                .len()
                    == 2
        },
    )
    .await;
    let mut aws_nodes = Vec::new();
    for r in AWS {
        aws_nodes.push(node_named(&client, &format!("{r}-1")).await.name_any());
    }
    let mut natives = Vec::new();
    for n in ["native", "native-tuned"] {
        // Both replicas must start in AWS (they prefer it), or the comparison means nothing.
        wait_for(
            &format!("{n}'s 2 replicas Ready on the AWS nodes"),
            Duration::from_secs(120),
            || async {
                let pods = ready_pods(&client, &ns.name, &format!("app={n}")).await;
                pods.len() == 2 && pods.iter().all(|p| aws_nodes.contains(&node_of(p)))
            },
        )
        .await;
        let ip = cluster_ip(&client, &ns.name, n).await;
        natives.push(
            ServiceClient::start(
                &client,
                &ns.name,
                &format!("client-{n}"),
                &gcp_node,
                &ip,
                1200,
            )
            .await,
        );
    }
    let clients = Clients::start(&client, &ns.name, "shop", &gcp_node).await;

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    let t0_ms = clients::now_ms();
    for r in AWS {
        faults(&["region-down", r]);
    }
    let edge_ready = until_on_edge(&client, &api, &ns.name, "shop", 2).await;
    // Kubernetes alone: the plain Deployments come back once their pods are evicted
    // (node-monitor-grace-period + tolerationSeconds) and rescheduled; wait for both.
    let mut native_ready = BTreeMap::new();
    let deadline = Deadline::new(
        "native Deployments Ready again outside AWS",
        Duration::from_secs(480),
    );
    while native_ready.len() < 2 {
        for n in ["native", "native-tuned"] {
            if !native_ready.contains_key(n)
                && ready_pods(&client, &ns.name, &format!("app={n}"))
                    .await
                    .iter()
                    .any(|p| node_of(p) == gcp_node)
            {
                native_ready.insert(n, Instant::now());
            }
        }
        deadline.tick().await;
    }
    // Clients keep going a few more seconds so the windows can close.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = regions.detection(t0, &AWS);
    let detect = seen.detect();
    let (dns_loss, svc_loss) = clients.since(t0_ms).await;
    let native_loss = outage(&since(&natives[0].records().await, t0_ms));
    let tuned_loss = outage(&since(&natives[1].records().await, t0_ms));

    let (fb_dns, fb_svc) = failback(
        &client,
        &api,
        &clients,
        (&ns.name, "shop"),
        ("pause", &AWS),
        (&AWS, "edge"),
    )
    .await;
    clients.stop().await;
    for c in natives {
        c.stop().await;
    }

    report(&row(
        "provider lost to the edge (pause)",
        detect,
        seen.rto(edge_ready),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&row(
        "  native k8s, default tolerations",
        detect,
        seen.rto(native_ready["native"]),
        None,
        &native_loss,
    ));
    report(&row(
        "  native k8s, tolerationSeconds 30",
        detect,
        seen.rto(native_ready["native-tuned"]),
        None,
        &tuned_loss,
    ));
    report(&failback_row(
        "  failback in steps (AWS back)",
        &fb_dns,
        &fb_svc,
    ));
    let ratio = |o: &Outage| match (native_loss.window_ms, o.window_ms) {
        (Some(n), Some(e)) if e > 0 => format!("{:.1}x", n as f64 / e as f64),
        _ => "-".into(),
    };
    report(&format!(
        "  client error window, native default / edgeshift: Service {}, DNS {}; ExternalDNS interval {}, DNS TTL {DNS_TTL}s",
        ratio(&svc_loss),
        ratio(&dns_loss),
        external_dns_interval()
    ));

    // What its KWOK twin asserts: the lost provider's regions are Down, the replicas moved to
    // the edge and the phase says so; plus what the clients saw: the service answered again
    // from the edge, through the Service and through DNS, and failback lost nothing.
    assert!(seen.down.is_some(), "both AWS regions must be Down");
    assert_served_from("the Service client", &svc_loss, "edge");
    assert_served_from("the DNS client", &dns_loss, "edge");
    assert!(
        native_loss.lost > 0,
        "native Kubernetes must have lost requests while its pods sat on frozen nodes: {native_loss:?}"
    );
    assert_failback_lossless("provider loss", &fb_dns, &fb_svc, &AWS);
    assert_no_image_pulls(&client).await;
}

/// Whether `target` answered the client after its outage (or at all, had it none).
fn served_by(o: &Outage, target: &str) -> bool {
    let last = if o.window_ms.is_some() {
        &o.after
    } else {
        &o.before
    };
    last.contains_key(target)
}

/// After the outage, `target` answered the client.
fn assert_served_from(who: &str, o: &Outage, target: &str) {
    assert!(
        served_by(o, target),
        "{who} must be served from {target} after the outage: {o:?}"
    );
}

/// A scenario's start: the cluster settled, a namespace of its own, the EdgeService `name` of
/// `shape` serving from `home`, and both clients running (the Service client on the GCP node).
async fn serving(
    client: &Client,
    ns: &str,
    name: &str,
    shape: Shape<'_>,
    home: &str,
) -> (TestNamespace, Api<EdgeService>, Clients) {
    header();
    settled(client).await;
    let ns = TestNamespace::new(client, ns).await;
    let gcp_node = node_named(client, "gcp-europe-west1-1").await.name_any();
    let api = edge_service(client, &ns.name, name, shape).await;
    wait_for(
        &format!("{name} Ready in {home}"),
        Duration::from_secs(120),
        || async { ready_on(client, &ns.name, name, home).await.len() == 1 },
    )
    .await;
    let clients = Clients::start(client, &ns.name, name, &gcp_node).await;
    (ns, api, clients)
}

/// Region lost with Spillover: `docker stop` of aws-us-east-1's node (the machine is gone,
/// its containers with it). The replica moves to the next region in preference order,
/// gcp-europe-west1, not to the edge; DNS and the Service follow; when the node is started
/// again (kubelet, containerd and the pods restart; the pod network is set up again) the
/// replica and the traffic move back.
#[tokio::test]
async fn s2_region_lost_with_spillover() {
    let client = client().await;
    let _restore = Restore("stop");
    let east = ["aws-us-east-1"];
    let shape = Shape {
        regions: &["aws-us-east-1", "gcp-europe-west1"],
        mode: "Spillover",
        placement: "Ordered",
        replicas: 1,
        edge: serde_json::json!({"maxReplicas": 2, "maxPerNode": 1}),
    };
    let (ns, api, clients) =
        serving(&client, "kind-spillover", "cart", shape, "aws-us-east-1").await;

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    let t0_ms = clients::now_ms();
    faults_with(&["region-down", "aws-us-east-1"], &[("MODE", "stop")]);
    let deadline = Deadline::new("cart Ready in gcp-europe-west1", Duration::from_secs(180));
    while ready_on(&client, &ns.name, "cart", "gcp-europe-west1")
        .await
        .is_empty()
    {
        deadline.tick().await;
    }
    let spilled = Instant::now();
    let seen = regions.detection(t0, &east);
    let (dns_loss, svc_loss) = clients.until_served_by(t0_ms, "gcp-europe-west1").await;
    let es = api.get("cart").await.expect("cart");
    let st = es.status.clone().unwrap_or_default();

    let (fb_dns, fb_svc) = failback(
        &client,
        &api,
        &clients,
        (&ns.name, "cart"),
        ("stop", &east),
        (&east, "gcp-europe-west1"),
    )
    .await;
    clients.stop().await;
    report(&row(
        "region lost, Spillover (stop)",
        seen.detect(),
        seen.rto(spilled),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&failback_row(
        "  failback (node started again)",
        &fb_dns,
        &fb_svc,
    ));

    // The KWOK twin's assertions: the lost region is Down, its replica went to the other
    // region and not to the edge, FailedOver/RegionLost names it.
    assert!(seen.down.is_some(), "aws-us-east-1 must be Down");
    assert!(
        ready_on(&client, &ns.name, "cart", "edge").await.is_empty()
            && !svc_loss.after.contains_key("edge")
            && !dns_loss.after.contains_key("edge"),
        "Spillover uses the other region, not the edge: {svc_loss:?} {dns_loss:?}"
    );
    let failed_over = st
        .conditions
        .iter()
        .find(|c| c.type_ == "FailedOver")
        .unwrap_or_else(|| panic!("FailedOver condition: {st:?}"));
    assert_eq!(
        (failed_over.status.as_str(), failed_over.reason.as_str()),
        ("True", "RegionLost")
    );
    assert!(
        failed_over.message.contains("aws-us-east-1"),
        "{failed_over:?}"
    );
    assert_served_from("the Service client", &svc_loss, "gcp-europe-west1");
    assert_served_from("the DNS client", &dns_loss, "gcp-europe-west1");
    assert_failback_lossless("Spillover", &fb_dns, &fb_svc, &east);
}

/// A region cut off by the network: aws-us-west-2's node leaves the Docker network (`docker
/// network disconnect`): it keeps running, but neither the control plane, the operator nor
/// any client reaches it. edgeshift fails over to the edge; when the node is reconnected
/// (same address, its pod routes set up again) the service fails back.
#[tokio::test]
async fn s3_region_cut_off_by_the_network() {
    let client = client().await;
    let _restore = Restore("disconnect");
    let west = ["aws-us-west-2"];
    let shape = Shape {
        regions: &west,
        mode: "Failover",
        placement: "Spread",
        replicas: 1,
        edge: serde_json::json!({"maxReplicas": 2, "maxPerNode": 1}),
    };
    let (ns, api, clients) = serving(&client, "kind-netcut", "api", shape, "aws-us-west-2").await;

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    let t0_ms = clients::now_ms();
    faults_with(&["region-down", "aws-us-west-2"], &[("MODE", "disconnect")]);
    let edge_ready = until_on_edge(&client, &api, &ns.name, "api", 1).await;
    let seen = regions.detection(t0, &west);
    let (dns_loss, svc_loss) = clients.until_served_by(t0_ms, "edge").await;
    let (fb_dns, fb_svc) = failback(
        &client,
        &api,
        &clients,
        (&ns.name, "api"),
        ("disconnect", &west),
        (&west, "edge"),
    )
    .await;
    clients.stop().await;
    report(&row(
        "region cut off (network disconnect)",
        seen.detect(),
        seen.rto(edge_ready),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&failback_row("  failback (reconnected)", &fb_dns, &fb_svc));

    assert!(seen.down.is_some(), "aws-us-west-2 must be Down");
    assert_served_from("the Service client", &svc_loss, "edge");
    assert_served_from("the DNS client", &dns_loss, "edge");
    assert_failback_lossless("network cut", &fb_dns, &fb_svc, &west);
}

/// The Lease named `<release>-leader` in the operator's namespace and its holder.
async fn leader(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "edgeshift-system");
    leases
        .list(&Default::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|l| l.name_any().ends_with("-leader"))
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

/// The leader pod killed mid-failover: as soon as aws-us-east-1 fails its first probe, the
/// leader's process is frozen (it can neither renew nor release its Lease, as a crashed or
/// hung process) and its pod deleted. The standby takes over when the Lease expires,
/// re-probes from cluster state, and completes the failover alone: one edge Deployment, the
/// edge replicas within bounds, the clients served from the edge.
#[tokio::test]
async fn s4_leader_pod_killed_mid_failover() {
    let client = client().await;
    let _restore = Restore("pause");
    let east = ["aws-us-east-1"];
    let shape = Shape {
        regions: &east,
        mode: "Failover",
        placement: "Spread",
        replicas: 1,
        edge: serde_json::json!({"maxReplicas": 2, "maxPerNode": 1}),
    };
    let (ns, api, clients) = serving(&client, "kind-leader", "pay", shape, "aws-us-east-1").await;
    let old_leader = leader(&client).await.expect("a leader holds the Lease");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "edgeshift-system");
    let leader_node = node_of(&pods.get(&old_leader).await.expect("the leader's pod"));

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    let t0_ms = clients::now_ms();
    faults(&["region-down", "aws-us-east-1"]);
    let deadline = Deadline::new(
        "aws-us-east-1's first failed probe",
        Duration::from_secs(60),
    );
    while regions.detection(t0, &east).failed == t0 {
        deadline.tick().await;
    }
    let killed = Instant::now();
    let frozen = std::process::Command::new("docker")
        .args(["exec", &leader_node, "pkill", "-STOP", "-x", "edgeshift"])
        .status()
        .expect("docker exec");
    assert!(
        frozen.success(),
        "freezing the leader on {leader_node} failed"
    );
    pods.delete(
        &old_leader,
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await
    .expect("delete the leader's pod");
    let deadline = Deadline::new("a new leader", Duration::from_secs(120));
    let new_leader = loop {
        match leader(&client).await {
            Some(h) if h != old_leader => break h,
            _ => deadline.tick().await,
        }
    };
    let took_over = Instant::now();
    let edge_ready = until_on_edge(&client, &api, &ns.name, "pay", 1).await;
    let seen = regions.detection(t0, &east);
    let (dns_loss, svc_loss) = clients.until_served_by(t0_ms, "edge").await;
    // One edge Deployment, within its bounds, made by one field manager: no duplicate from
    // the old leader's last writes and the new leader's first.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let edge: Vec<Deployment> = deployments
        .list(&kube::api::ListParams::default().labels("edgeshift.io/target=edge"))
        .await
        .expect("deployments")
        .items;
    let (fb_dns, fb_svc) = failback(
        &client,
        &api,
        &clients,
        (&ns.name, "pay"),
        ("pause", &east),
        (&east, "edge"),
    )
    .await;
    clients.stop().await;
    report(&row(
        "leader killed mid-failover (pause)",
        seen.detect(),
        seen.rto(edge_ready),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&format!(
        "  new leader {new_leader} {:.1}s after the kill (Lease 15s)",
        took_over.saturating_duration_since(killed).as_secs_f64()
    ));
    report(&failback_row("  failback", &fb_dns, &fb_svc));

    assert_ne!(new_leader, old_leader);
    assert_eq!(edge.len(), 1, "exactly one edge Deployment: {edge:?}");
    let replicas = edge[0].spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    assert!(
        (1..=2).contains(&replicas),
        "edge replicas within [1, maxReplicas 2]: {replicas}"
    );
    assert!(seen.down.is_some(), "aws-us-east-1 must be Down");
    assert_served_from("the Service client", &svc_loss, "edge");
    assert_served_from("the DNS client", &dns_loss, "edge");
    assert_failback_lossless("leader loss", &fb_dns, &fb_svc, &east);
}

/// An edge node lost mid-failover: aws-us-west-2 is lost, two edge replicas serve (one
/// needed, overprovisioned), then the node of one of them is frozen. edgeshift replaces that
/// replica on the remaining verified edge node and takes the lost node out of DNS; the
/// clients' figures show what the lost node cost until Kubernetes marked it NotReady.
#[tokio::test]
async fn s5_edge_node_lost_mid_failover() {
    let client = client().await;
    let _restore = Restore("pause");
    let west = ["aws-us-west-2"];
    let shape = Shape {
        regions: &west,
        mode: "Failover",
        placement: "Spread",
        replicas: 1,
        edge: serde_json::json!({"maxReplicas": 2, "maxPerNode": 1, "overprovisionPercent": 100}),
    };
    let (ns, api, clients) = serving(&client, "kind-edgeloss", "cdn", shape, "aws-us-west-2").await;

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    faults(&["region-down", "aws-us-west-2"]);
    let edge_ready = until_on_edge(&client, &api, &ns.name, "cdn", 2).await;
    let seen = regions.detection(t0, &west);
    let on_edge = ready_on(&client, &ns.name, "cdn", "edge").await;
    let lost_node = node_of(&on_edge[0]);
    let lost_ip = internal_ip(
        &Api::<Node>::all(client.clone())
            .get(&lost_node)
            .await
            .expect("the lost edge node"),
    );
    let lost = Api::<Node>::all(client.clone())
        .get(&lost_node)
        .await
        .ok()
        .and_then(|n| n.labels().get("e2e.edgeshift.io/name").cloned())
        .expect("an edge pod on a community node");
    let t1 = Instant::now();
    let t1_ms = clients::now_ms();
    faults(&["edge-node-down", &lost]);
    let deadline = Deadline::new(
        &format!("2 edge replicas Ready without {lost}"),
        Duration::from_secs(240),
    );
    loop {
        let ready = ready_on(&client, &ns.name, "cdn", "edge").await;
        if ready.len() >= 2 && ready.iter().all(|p| node_of(p) != lost_node) {
            break;
        }
        deadline.tick().await;
    }
    let replaced = Instant::now();
    // edgeshift takes the lost node out of the DNSEndpoint and ExternalDNS out of the zone.
    let deadline = Deadline::new(
        &format!("the outside DNS without {lost}"),
        Duration::from_secs(120),
    );
    loop {
        let now = dns_server_addresses("cdn.edgeshift.test").await;
        if !now.is_empty() && !now.contains(&lost_ip) {
            break;
        }
        deadline.tick().await;
    }
    let out_of_dns = Instant::now();
    // Then both clients are served cleanly again: their last 20 requests all answered. The
    // DNS client may still hold the lost node's address for the record's TTL, and a request
    // to it is recorded only when it gives up (`clients::CONNECT_TIMEOUT`): look past both,
    // at requests old enough to have an outcome, or the failback below counts their losses.
    tokio::time::sleep(Duration::from_secs(u64::from(DNS_TTL) + 1)).await;
    wait_for(
        &format!("both clients served without {lost}"),
        Duration::from_secs(60),
        || async {
            let decided = clients::now_ms().saturating_sub(6_000);
            let tail_ok = |r: Vec<Request>| {
                let r: Vec<&Request> = r.iter().filter(|q| q.at_ms <= decided).collect();
                r.len() > 20 && r.iter().rev().take(20).all(|q| q.target.is_some())
            };
            tail_ok(since(&clients.dns.records(), t1_ms))
                && tail_ok(since(&clients.svc.records().await, t1_ms))
        },
    )
    .await;
    let (dns_loss, svc_loss) = clients.since(t1_ms).await;
    let lost_status = Api::<EdgeNode>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("edge nodes")
        .items
        .into_iter()
        .find(|n| n.spec.node_name == lost_node)
        .and_then(|n| n.status);
    // AWS returns while the edge node is still lost (it comes back when the scenario ends):
    // the failback is measured on its own, not mixed with edge pods moving back onto it.
    let (fb_dns, fb_svc) = failback(
        &client,
        &api,
        &clients,
        (&ns.name, "cdn"),
        ("pause", &west),
        (&west, "edge"),
    )
    .await;
    clients.stop().await;
    faults(&["edge-node-up", &lost]);
    report(&row(
        "edge node lost mid-failover (pause)",
        seen.detect(),
        seen.rto(edge_ready),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&format!(
        "  {lost} frozen {:.1}s after the failover; its replica Ready elsewhere {:.1}s and out of DNS {:.1}s later (windows from the node's loss)",
        t1.saturating_duration_since(edge_ready).as_secs_f64(),
        replaced.saturating_duration_since(t1).as_secs_f64(),
        out_of_dns.saturating_duration_since(t1).as_secs_f64()
    ));
    report(&failback_row("  failback", &fb_dns, &fb_svc));

    assert!(
        lost_status.as_ref().is_some_and(|s| !s.ready),
        "{lost}'s EdgeNode must be not ready: {lost_status:?}"
    );
    assert_served_from("the Service client", &svc_loss, "edge");
    assert_served_from("the DNS client", &dns_loss, "edge");
    assert_failback_lossless("edge node loss", &fb_dns, &fb_svc, &west);
}

/// The addresses the outside DNS gives for `name` now (no cache).
async fn dns_server_addresses(name: &str) -> Vec<String> {
    clients::resolve(dns_server(), name)
        .await
        .into_iter()
        .map(|ip| ip.to_string())
        .collect()
}
