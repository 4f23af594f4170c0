//! The kind lane's chaos suite: real kubelets, containerd, kube-proxy and containers, the
//! operator running as pods installed by Helm, real requests measured by clients.
//!
//! `make kind-test` brings the cluster up (`e2e/kind/kind.sh up`), runs these scenarios one
//! at a time and prints one table (target/e2e-kind/report.txt). Each scenario records:
//! the RTO from the first failed probe (as the lost region's status shows it) to replicas
//! Ready elsewhere; the error window a client saw through DNS and through the Service (first
//! failed request → first of 20 consecutive successes) and the requests it lost; which
//! targets served before, during and after; and, in the provider-loss scenario, the same
//! workload as a plain Deployment relying on Kubernetes alone, on the same cluster.

mod clients;
mod scenarios;
mod timeline;

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

pub const WORKLOAD_IMAGE: &str = "edgeshift.local/workload:dev";
/// The port the workload's pods publish on their node, cloud and edge alike: DNS answers
/// carry no port, so a region's "load balancer" and an edge node serve on the same one.
pub const HOST_PORT: u16 = 30080;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn state_dir() -> PathBuf {
    std::env::var_os("EDGESHIFT_KIND_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target/e2e-kind"))
}

pub async fn client() -> Client {
    let path = std::env::var_os("E2E_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir().join("kubeconfig"));
    let kc = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Runs the fault injector (`E2E_FAULTS`, default e2e/kind/kind.sh) and returns its output.
pub fn faults(args: &[&str]) -> String {
    faults_with(args, &[])
}

pub fn faults_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let script = std::env::var("E2E_FAULTS")
        .unwrap_or_else(|_| repo_dir().join("e2e/kind/kind.sh").display().to_string());
    let out = Command::new(&script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `ok` every 250 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !ok().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// For waits that keep state between polls: `tick` sleeps 250 ms, panicking past the limit.
pub struct Deadline {
    what: String,
    start: Instant,
    limit: Duration,
}

impl Deadline {
    pub fn new(what: &str, limit: Duration) -> Deadline {
        Deadline {
            what: what.to_string(),
            start: Instant::now(),
            limit,
        }
    }

    pub async fn tick(&self) {
        assert!(
            self.start.elapsed() < self.limit,
            "timed out after {:?} waiting for {}",
            self.limit,
            self.what
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} gone"), Duration::from_secs(60), || async {
        matches!(api.get_opt(name).await, Ok(None))
    })
    .await;
}

/// The kind node carrying topology name `name` (label `e2e.edgeshift.io/name`).
pub async fn node_named(client: &Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&ListParams::default().labels(&format!("e2e.edgeshift.io/name={name}")))
        .await
        .expect("nodes")
        .items
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no node labelled e2e.edgeshift.io/name={name}"))
}

pub fn internal_ip(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_else(|| panic!("node {} has no InternalIP", node.name_any()))
}

/// A namespace of its own for a scenario, deleted (with what is in it) when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, name: &str) -> TestNamespace {
        let api: Api<Namespace> = Api::all(client.clone());
        if api.get_opt(name).await.ok().flatten().is_some() {
            let _ = api.delete(name, &DeleteParams::default()).await;
            wait_for(
                &format!("namespace {name} gone"),
                Duration::from_secs(180),
                || async { matches!(api.get_opt(name).await, Ok(None)) },
            )
            .await;
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("namespace");
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        TestNamespace {
            name: name.to_string(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort; the next scenario waits for it to be gone. A runtime of its own with a
        // client of its own: the test's client is driven by the test's runtime, which this
        // thread blocks while it waits.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                rt.block_on(async move {
                    let api: Api<Namespace> = Api::all(client().await);
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                });
            }
        })
        .join();
    }
}

/// Events that mean an image was (or would have been) pulled: the lane must never pull.
pub async fn image_pull_events(client: &Client) -> Vec<String> {
    let events: Api<Event> = Api::all(client.clone());
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            let text = format!(
                "{} {}",
                e.reason.as_deref().unwrap_or(""),
                e.message.as_deref().unwrap_or("")
            );
            [
                "ErrImagePull",
                "ImagePullBackOff",
                "ErrImageNeverPull",
                "Pulling image",
            ]
            .iter()
            .any(|w| text.contains(w))
        })
        .map(|e| {
            format!(
                "{}/{}: {} {}",
                e.involved_object.namespace.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

pub async fn assert_no_image_pulls(client: &Client) {
    let pulls = image_pull_events(client).await;
    assert!(
        pulls.is_empty(),
        "the kind lane must never pull an image: {pulls:#?}"
    );
}

/// Pods of `ns` with label `selector` that are Ready, by the node they run on.
pub async fn ready_pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// A line of the report table (target/e2e-kind/report.txt), printed by `make kind-test`.
pub fn report(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = state_dir().join("report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

pub fn secs_ms(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

/// No scenario may pull an image; checked last, over the whole run's Events.
#[tokio::test]
async fn z_no_image_was_pulled() {
    let client = client().await;
    assert_no_image_pulls(&client).await;
    // And every pod of the lane runs an image that is present on its node.
    let pods: Api<Pod> = Api::all(client.clone());
    for p in pods.list(&ListParams::default()).await.expect("pods").items {
        for c in p.spec.map(|s| s.containers).unwrap_or_default() {
            let image = c.image.unwrap_or_default();
            let preloaded = image.starts_with("registry.k8s.io/")
                || image.starts_with("edgeshift.local/")
                || image.starts_with("ghcr.io/edgeshift/");
            assert!(
                preloaded,
                "pod {}/{} runs image {image}, which the lane did not build",
                p.metadata.namespace.unwrap_or_default(),
                p.metadata.name.unwrap_or_default()
            );
        }
    }
}

/// After every scenario: the operator's pods never restarted (no panic, no crash, no
/// failed liveness probe through five outages), and their memory: the process's resident
/// set and its peak, from /proc inside the node (one operator pod per node here).
#[tokio::test]
async fn y_operator_pods_survived_the_run() {
    let client = client().await;
    let pods = ready_pods(
        &client,
        "edgeshift-system",
        "app.kubernetes.io/name=edgeshift",
    )
    .await;
    assert_eq!(pods.len(), 2, "both operator replicas Ready at the end");
    let mut memory = Vec::new();
    for p in &pods {
        let name = p.name_any();
        let restarts: i32 = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        assert_eq!(restarts, 0, "operator pod {name} restarted");
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let out = Command::new("docker")
            .args(["exec", &node, "sh", "-c"])
            .arg("for p in $(pgrep -x edgeshift); do grep -E '^(VmRSS|VmHWM):' /proc/$p/status; done")
            .output()
            .expect("docker exec");
        let text = String::from_utf8_lossy(&out.stdout);
        let kib = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (rss, peak) = (kib("VmRSS:"), kib("VmHWM:"));
        assert!(rss > 0, "no memory figure for {name} on {node}: {text}");
        memory.push(format!(
            "{name} {:.1} MiB (peak {:.1})",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        ));
    }
    report(&format!(
        "operator pods at the end, resident: {}",
        memory.join(", ")
    ));
}
