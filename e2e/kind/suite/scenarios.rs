//! The scenarios. Each builds its service in a namespace of its own, starts both clients,
//! takes something away with `docker pause`/`stop`/`network disconnect`, and records what
//! the region's status, the pods and the clients saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeService, ServicePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kube::Client;

use crate::clients::{outage, DnsClient, Outage, Request, ServiceClient};
use crate::*;

const DNS_TTL: u32 = 5;
const STABILIZATION_SECONDS: u32 = 20;
const STEP_SECONDS: u32 = 10;
/// Every region the lane has; a drill restores them all, whatever happened.
const REGIONS: [&str; 3] = ["aws-us-east-1", "aws-us-west-2", "gcp-europe-west1"];

/// Brings every region and edge node back when a scenario ends, even on a failed assert.
struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        for mode in ["pause", "stop", "disconnect"] {
            for r in REGIONS {
                let _ = std::process::Command::new(repo_dir().join("e2e/kind/kind.sh"))
                    .args(["region-up", r])
                    .env("MODE", mode)
                    .output();
            }
            for n in ["edge-1", "edge-2", "edge-3"] {
                let _ = std::process::Command::new(repo_dir().join("e2e/kind/kind.sh"))
                    .args(["edge-node-up", n])
                    .env("MODE", mode)
                    .output();
            }
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

/// An EdgeService over `regions` with one replica per region (a region is one node here and
/// the pods publish a hostPort), failing over to the edge or spilling over by `mode`.
async fn edge_service(
    client: &Client,
    ns: &str,
    name: &str,
    regions: &[&str],
    mode: &str,
) -> Api<EdgeService> {
    let mut cloud_targets = BTreeMap::new();
    for r in regions {
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
            "replicas": regions.len(),
            "regions": regions,
            "placement": "Spread",
            "template": template(name),
            "fallback": {
                "mode": mode,
                "edge": {"maxReplicas": 3, "maxPerNode": 1},
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
    // Two replicas on two nodes: the hostPort allows one per node, like the EdgeService's.
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": tpl}
    }))
    .expect("native Deployment");
    let mut deploy = deploy;
    if let Some(spec) = deploy.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        if let Some(c) = spec.containers.first_mut() {
            c.ports = Some(vec![serde_json::from_value(
                serde_json::json!({"containerPort": 8080}),
            )
            .expect("port")]);
        }
    }
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

/// Region verdicts and probe results, sampled every 250 ms: the first failed probe and Down.
struct RegionWatch {
    samples: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, bool, bool)>>>,
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
    fn first_failed_and_down(&self, t0: Instant, regions: &[&str]) -> (Instant, Option<Instant>) {
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
        (failed, all_down)
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

pub fn header() {
    let path = state_dir().join("report.txt");
    if !path.exists() {
        report(&format!(
            "{:<34} {:>8} {:>8} {:>9} {:>10} {:>9} {:>10}  {}",
            "scenario",
            "detect",
            "RTO",
            "DNS win",
            "lost",
            "Svc win",
            "lost",
            "targets (Service client: before | during | after)"
        ));
    }
}

/// Provider lost to the edge: both AWS regions' nodes are frozen (`docker pause`: no
/// heart-beats, no answers, as a provider outage looks from outside). The EdgeService fails
/// over to verified edge nodes; the same workload as plain Deployments (default
/// tolerations, and tolerationSeconds 30) waits for Kubernetes to evict and reschedule it.
/// Then AWS returns, and failback moves everything back in steps without a failed request.
#[tokio::test]
async fn s1_provider_lost_to_the_edge() {
    let client = client().await;
    let _restore = Restore;
    header();
    let ns = TestNamespace::new(&client, "kind-provider").await;
    let gcp = node_named(&client, "gcp-europe-west1-1").await;
    let gcp_node = gcp.metadata.name.clone().unwrap_or_default();
    let api = edge_service(
        &client,
        &ns.name,
        "shop",
        &["aws-us-east-1", "aws-us-west-2"],
        "Failover",
    )
    .await;
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
                    "app=shop,edgeshift.io/target notin (edge)",
                )
                .await
                .len()
                    == 2
        },
    )
    .await;
    for n in ["native", "native-tuned"] {
        wait_for(
            &format!("{n} Ready on AWS"),
            Duration::from_secs(120),
            || async {
                ready_pods(&client, &ns.name, &format!("app={n}"))
                    .await
                    .len()
                    == 2
            },
        )
        .await;
    }
    let dns = DnsClient::start(dns_server(), "shop.edgeshift.test".into(), HOST_PORT);
    wait_for(
        "shop resolvable through the outside DNS",
        Duration::from_secs(60),
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
    let shop_ip = cluster_ip(&client, &ns.name, "shop").await;
    let svc =
        ServiceClient::start(&client, &ns.name, "client-shop", &gcp_node, &shop_ip, 1200).await;
    let native_ip = cluster_ip(&client, &ns.name, "native").await;
    let native_svc = ServiceClient::start(
        &client,
        &ns.name,
        "client-native",
        &gcp_node,
        &native_ip,
        1200,
    )
    .await;
    let tuned_ip = cluster_ip(&client, &ns.name, "native-tuned").await;
    let tuned_svc = ServiceClient::start(
        &client,
        &ns.name,
        "client-native-tuned",
        &gcp_node,
        &tuned_ip,
        1200,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let regions = RegionWatch::start(&client);
    let t0 = Instant::now();
    let t0_ms = clients::now_ms();
    faults(&["region-down", "aws-us-east-1"]);
    faults(&["region-down", "aws-us-west-2"]);
    // edgeshift: replicas Ready on the edge, and the phase OnEdge.
    let mut edge_ready = None;
    let deadline = Deadline::new(
        "shop OnEdge with 2 edge replicas Ready",
        Duration::from_secs(120),
    );
    loop {
        if edge_ready.is_none()
            && ready_pods(&client, &ns.name, "app=shop,edgeshift.io/target=edge")
                .await
                .len()
                >= 2
        {
            edge_ready = Some(Instant::now());
        }
        if edge_ready.is_some() && phase(&api, "shop").await == Some(ServicePhase::OnEdge) {
            break;
        }
        deadline.tick().await;
    }
    // Kubernetes alone: the plain Deployments come back once their pods are evicted
    // (node-monitor-grace-period + tolerationSeconds) and rescheduled; wait for both.
    let mut native_ready = BTreeMap::new();
    let deadline = Deadline::new(
        "native Deployments Ready again outside AWS",
        Duration::from_secs(480),
    );
    while native_ready.len() < 2 {
        for n in ["native", "native-tuned"] {
            if !native_ready.contains_key(n) {
                let pods = ready_pods(&client, &ns.name, &format!("app={n}")).await;
                if pods.iter().any(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(gcp_node.as_str())
                }) {
                    native_ready.insert(n, Instant::now());
                }
            }
        }
        deadline.tick().await;
    }
    // Clients keep going a few more seconds so the windows can close.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (failed, down) = regions.first_failed_and_down(t0, &["aws-us-east-1", "aws-us-west-2"]);
    let edge_ready = edge_ready.unwrap_or(t0);
    let rto = edge_ready.saturating_duration_since(failed);
    let detect = down.map(|d| d.saturating_duration_since(failed));
    let dns_loss = outage(&since(&dns.records(), t0_ms));
    let svc_loss = outage(&since(&svc.records().await, t0_ms));
    let native_loss = outage(&since(&native_svc.records().await, t0_ms));
    let tuned_loss = outage(&since(&tuned_svc.records().await, t0_ms));
    let native_rto = native_ready["native"].saturating_duration_since(failed);
    let tuned_rto = native_ready["native-tuned"].saturating_duration_since(failed);

    // Failback: AWS returns; after the stabilization time edgeshift scales the cloud up,
    // moves traffic back in steps and scales the edge down last, make-before-break.
    let back_ms = clients::now_ms();
    faults(&["region-up", "aws-us-east-1"]);
    faults(&["region-up", "aws-us-west-2"]);
    let limit = Duration::from_secs(u64::from(STABILIZATION_SECONDS + 4 * STEP_SECONDS) + 180);
    wait_for("shop Normal again, the edge scaled down", limit, || async {
        phase(&api, "shop").await == Some(ServicePhase::Normal)
            && ready_pods(&client, &ns.name, "app=shop,edgeshift.io/target=edge")
                .await
                .is_empty()
    })
    .await;
    // Long enough for every DNS answer given during failback to expire and be replaced.
    tokio::time::sleep(Duration::from_secs(u64::from(DNS_TTL) + 5)).await;
    let dns_back = since(&dns.records(), back_ms);
    let svc_back = since(&svc.records().await, back_ms);
    let fb_dns = outage(&dns_back);
    let fb_svc = outage(&svc_back);
    drop(dns);
    for c in [svc, native_svc, tuned_svc] {
        c.stop().await;
    }

    let line = |scenario: &str, rto: String, o_dns: Option<&Outage>, o_svc: &Outage| {
        format!(
            "{:<34} {:>8} {:>8} {:>9} {:>10} {:>9} {:>10}  {} | {} | {}",
            scenario,
            detect
                .map(|d| format!("{:.1}", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            rto,
            o_dns.map(window).unwrap_or_else(|| "-".into()),
            o_dns
                .map(|o| o.lost.to_string())
                .unwrap_or_else(|| "-".into()),
            window(o_svc),
            o_svc.lost,
            targets(&o_svc.before),
            targets(&o_svc.during),
            targets(&o_svc.after),
        )
    };
    report(&line(
        "provider lost to the edge (pause)",
        format!("{:.1}", rto.as_secs_f64()),
        Some(&dns_loss),
        &svc_loss,
    ));
    report(&line(
        "  native k8s, default tolerations",
        format!("{:.1}", native_rto.as_secs_f64()),
        None,
        &native_loss,
    ));
    report(&line(
        "  native k8s, tolerationSeconds 30",
        format!("{:.1}", tuned_rto.as_secs_f64()),
        None,
        &tuned_loss,
    ));
    report(&line(
        "  failback in steps (AWS back)",
        "-".into(),
        Some(&fb_dns),
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
    assert!(down.is_some(), "both AWS regions must be Down");
    assert!(
        svc_loss.after.contains_key("edge"),
        "the Service client must be served from the edge: {svc_loss:?}"
    );
    assert!(
        dns_loss.after.contains_key("edge"),
        "the DNS client must be served from the edge: {dns_loss:?}"
    );
    assert!(
        svc_loss.window_ms.is_some() || svc_loss.lost == 0,
        "{svc_loss:?}"
    );
    assert_eq!(
        fb_svc.lost, 0,
        "failback must not fail a request through the Service: {fb_svc:?}"
    );
    assert_eq!(
        fb_dns.lost, 0,
        "failback must not fail a request through DNS: {fb_dns:?}"
    );
    assert!(
        fb_svc
            .after
            .keys()
            .chain(fb_svc.before.keys())
            .any(|t| t.starts_with("aws-")),
        "after failback the cloud serves again: {fb_svc:?}"
    );
    assert_no_image_pulls(&client).await;
}
