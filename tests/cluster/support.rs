//! What every cluster test needs: a client for the test cluster, a namespace of its own,
//! polling with deadlines, and the fault injector (`e2e/cluster.sh` by default).
pub use edgeshift::controller::observe::{node_ready, pod_ready};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the cluster under test: `E2E_KUBECONFIG`, else the local cluster's.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("E2E_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join("target/e2e/kubeconfig"))
}

pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read kubeconfig {}: {e} (start the cluster with `make cluster-up`)",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client from kubeconfig")
}

/// Label on cluster-scoped objects a test creates: the test's namespace, so they are
/// deleted with it.
pub const OWNER_LABEL: &str = "e2e.edgeshift.io/owner";

/// A namespace that lives as long as the test; deleted (in the background) on drop.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() % 1_000_000)
                .unwrap_or(0)
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "edgeshift.io/e2e": "true" } }
        }))
        .expect("namespace manifest");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        eventually(
            "default ServiceAccount",
            Duration::from_secs(30),
            || async { sa.get_opt("default").await.ok().flatten() },
        )
        .await;
        TestNamespace { name }
    }
}

/// Runs `cleanup` to completion from a `Drop`, even while the test panics: the test's
/// runtime is finishing, so this uses a thread with a runtime and a client of its own.
pub fn in_drop<F, Fut>(cleanup: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move { cleanup(client().await).await });
    })
    .join();
}

/// Runs the fault injector from a `Drop` (e.g. `region-up` after a failed test): reports
/// failures on stderr instead of panicking, which would abort the test binary while unwinding.
pub fn undo_fault(args: &[&str]) {
    let injector = injector();
    match Command::new("bash").arg(&injector).args(args).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("{args:?}: {e}"),
    }
}

/// Takes edgeshift's labels (`edgeshift.io/edge`, `edgeshift.io/verified`) and its edge taint
/// off a community Node, so the next test finds it as the cluster made it.
pub async fn unmark_edge_node(client: &Client, name: &str) {
    const EDGE: &str = "edgeshift.io/edge";
    let api: Api<Node> = Api::all(client.clone());
    for _ in 0..10 {
        let Ok(node) = api.get(name).await else {
            return;
        };
        let taints: Vec<_> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != EDGE)
            .collect();
        // The resourceVersion makes this a compare-and-swap of the taint list.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": node.metadata.resource_version,
                         "labels": {EDGE: null, "edgeshift.io/verified": null}},
            "spec": {"taints": taints}
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace (and the cluster-scoped objects labelled with it) even when the
    /// test panicked.
    fn drop(&mut self) {
        let name = self.name.clone();
        in_drop(move |client| async move {
            {
                let api = Api::<Namespace>::all(client.clone());
                let _ = api.delete(&name, &DeleteParams::background()).await;
                // Cluster-scoped objects the test made carry its namespace as a label.
                let owned = ListParams::default().labels(&format!("{OWNER_LABEL}={name}"));
                let regions = Api::<edgeshift::api::CloudRegion>::all(client.clone());
                let _ = regions
                    .delete_collection(&DeleteParams::background(), &owned)
                    .await;
                let nodes = Api::<edgeshift::api::EdgeNode>::all(client);
                let _ = nodes
                    .delete_collection(&DeleteParams::background(), &owned)
                    .await;
            }
        });
    }
}

/// Polls `probe` every 250 ms until it yields `Some`, or panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The fault injector: `E2E_FAULTS`, else the local cluster's `e2e/cluster.sh`.
fn injector() -> PathBuf {
    std::env::var("E2E_FAULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_dir().join("e2e/cluster.sh"))
}

/// Runs the fault injector: `E2E_FAULTS` (default `e2e/cluster.sh`) with the given args,
/// e.g. `region-down aws-us-east-1`. The kind injector in e2e/kind/ takes the same args.
pub fn inject(args: &[&str]) {
    let injector = injector();
    let out = Command::new("bash")
        .arg(&injector)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", injector.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        injector.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nodes of a region, by the standard region label value (e.g. `us-east-1`).
pub async fn region_nodes(client: &Client, region_label: &str) -> Vec<Node> {
    Api::<Node>::all(client.clone())
        .list(
            &ListParams::default().labels(&format!("topology.kubernetes.io/region={region_label}")),
        )
        .await
        .expect("list nodes")
        .items
}

/// Ready, not-terminating pods matching `selector`, as (pod name, node name, pod IP).
pub async fn ready_pods(api: &Api<Pod>, selector: &str) -> Vec<(String, String, String)> {
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let ip = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), node, ip)
        })
        .collect()
}

/// GET an URL with a short timeout; `Some(status)` when something answered.
pub async fn http_status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .ok()?;
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The health endpoint URL of a region, as the fault injector reports it.
pub fn region_endpoint(region: &str) -> String {
    let injector = injector();
    let out = Command::new("bash")
        .arg(&injector)
        .args(["endpoint", region])
        .output()
        .expect("run the fault injector");
    assert!(
        out.status.success(),
        "endpoint {region}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Installs (server-side applies) edgeshift's CRDs once per test binary and waits until
/// the API server serves them.
pub async fn ensure_crds() {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
            use kube::api::{Patch, PatchParams};
            let api: Api<CustomResourceDefinition> = Api::all(client().await);
            for crd in edgeshift::api::crds() {
                let name = crd.metadata.name.clone().expect("CRD name");
                api.patch(&name, &PatchParams::apply("edgeshift-e2e").force(), &Patch::Apply(&crd))
                    .await
                    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
                eventually(&format!("CRD {name} Established"), Duration::from_secs(30), || async {
                    let c = api.get(&name).await.ok()?;
                    c.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                })
                .await;
            }
        })
        .await;
}

/// An `edgeshift run` process watching one namespace, probing only the CloudRegions and
/// verifying only the EdgeNodes labelled with it (`OWNER_LABEL`); killed on drop. Its log goes to
/// `target/e2e/logs/operator-<namespace>.log`.
pub struct Operator {
    child: std::process::Child,
    log: PathBuf,
}

impl Operator {
    pub fn start(namespace: &str) -> Operator {
        Self::start_with(namespace, &[])
    }

    pub fn start_with(namespace: &str, extra: &[&str]) -> Operator {
        Self::start_logged(namespace, &format!("operator-{namespace}.log"), extra)
    }

    /// One of several operators in `namespace` (HA tests), with its own Lease identity.
    pub fn start_as(namespace: &str, identity: &str, extra: &[&str]) -> Operator {
        let mut args = vec!["--identity", identity];
        args.extend_from_slice(extra);
        Self::start_logged(
            namespace,
            &format!("operator-{namespace}-{identity}.log"),
            &args,
        )
    }

    /// SIGTERM: a graceful stop (the operator releases its Lease); waits for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn start_logged(namespace: &str, log_name: &str, extra: &[&str]) -> Operator {
        let logs = repo_dir().join("target/e2e/logs");
        std::fs::create_dir_all(&logs).expect("create log dir");
        let log = logs.join(log_name);
        let file = std::fs::File::create(&log).expect("create operator log");
        // Parallel tests' operators never probe each other's CloudRegions.
        let region_selector = if extra.contains(&"--region-selector") {
            vec![]
        } else {
            vec![
                "--region-selector".to_string(),
                format!("{OWNER_LABEL}={namespace}"),
            ]
        };
        // ... and never verify each other's EdgeNodes.
        let edge_node_selector = if extra.contains(&"--edge-node-selector") {
            vec![]
        } else {
            vec![
                "--edge-node-selector".to_string(),
                format!("{OWNER_LABEL}={namespace}"),
            ]
        };
        let child = Command::new(env!("CARGO_BIN_EXE_edgeshift"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--log-level",
                "info,edgeshift=debug",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(extra)
            .args(region_selector)
            .args(edge_node_selector)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start edgeshift run");
        Operator { child, log }
    }

    /// The operator's log so far, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

/// Tests that take a region or node of the shared cluster away hold this exclusively; every
/// other test holds it shared, so a fault never lands in the middle of an unrelated test.
/// (tokio's lock is fair: a waiting fault test is not starved by a stream of shared ones.)
static CLUSTER_FAULTS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// For tests that only need the cluster as it is (no injected faults).
pub async fn shared_cluster() -> tokio::sync::RwLockReadGuard<'static, ()> {
    CLUSTER_FAULTS.read().await
}

/// For tests that inject faults (`region-down`, `edge-node-down`, ...).
pub async fn exclusive_cluster() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    CLUSTER_FAULTS.write().await
}
