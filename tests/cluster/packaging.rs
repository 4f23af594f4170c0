//! Packaging: the Helm chart lints, its CRDs and the plain `manifests/install.yaml` are in
//! sync with what they are made from, the API server accepts every object the chart renders,
//! and `helm install` / `helm uninstall` create and remove exactly the operator's objects
//! with least-privilege RBAC.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edgeshift::trust::{Mode, NodeKey, TrustPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::Api;

use crate::support::*;

const CHART: &str = "charts/edgeshift";

/// The pinned helm and kubectl of the test cluster (`e2e/lib/common.sh`).
struct Tools {
    helm: PathBuf,
    kubectl: PathBuf,
}

fn tools() -> Tools {
    let out = Command::new("bash")
        .args([
            "-c",
            ". e2e/lib/common.sh; echo \"$HELM_BIN\"; echo \"$KUBECTL\"",
        ])
        .current_dir(repo_dir())
        .output()
        .expect("run bash to read e2e/lib/common.sh");
    assert!(
        out.status.success(),
        "e2e/lib/common.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(PathBuf::from);
    let (helm, kubectl) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    for bin in [&helm, &kubectl] {
        assert!(
            bin.is_file(),
            "{} is missing: build it with `make cluster-build`",
            bin.display()
        );
    }
    Tools { helm, kubectl }
}

impl Tools {
    /// helm against the cluster under test, run from the repository.
    fn helm(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.current_dir(repo_dir())
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(args);
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.current_dir(repo_dir())
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(args);
        cmd
    }

    /// `helm template` of the chart into `namespace`. The kube version only satisfies the
    /// chart's kubeVersion check offline (the pinned helm's built-in default is v1.20).
    fn render(&self, release: &str, namespace: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "template",
            release,
            CHART,
            "--namespace",
            namespace,
            "--kube-version",
            "1.34.0",
        ];
        args.extend_from_slice(extra);
        run(&mut self.helm(&args), None)
    }
}

/// Runs `cmd` (feeding `input` on stdin), panics with its output unless it succeeds, and
/// returns its stdout.
fn run(cmd: &mut Command, input: Option<&str>) -> String {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects of a multi-document YAML stream, empty documents skipped.
fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn kinds(objects: &[serde_json::Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn yaml_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect()
}

#[test]
fn the_chart_lints_strictly_and_installs_the_crate_version() {
    let tools = tools();
    run(&mut tools.helm(&["lint", "--strict", CHART]), None);
    let chart: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_dir().join(CHART).join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion (the default image tag) must be the crate version"
    );
}

#[test]
fn the_charts_crds_are_byte_identical_to_the_generated_ones() {
    let generated = repo_dir().join("crds");
    let in_chart = repo_dir().join(CHART).join("crds");
    assert_eq!(
        yaml_files(&in_chart),
        yaml_files(&generated),
        "charts/edgeshift/crds/ must hold exactly the files of crds/: run `make chart-crds`"
    );
    for name in yaml_files(&generated) {
        let want = std::fs::read(generated.join(&name)).expect("read crds/");
        let got = std::fs::read(in_chart.join(&name)).expect("read chart crds/");
        assert!(
            want == got,
            "charts/edgeshift/crds/{name} differs from crds/{name}: run `make chart-crds`"
        );
    }
}

#[test]
fn the_plain_install_manifest_is_a_fresh_render_of_the_chart() {
    let tools = tools();
    let fresh = std::env::temp_dir().join(format!("edgeshift-install-{}.yaml", std::process::id()));
    // The Makefile's own recipe, written elsewhere; `-o chart-crds` keeps it from copying
    // the CRDs into the chart (the test above checks those).
    let out = fresh.to_string_lossy().into_owned();
    run(
        Command::new("make")
            .current_dir(repo_dir())
            .args([
                "-s",
                "--no-print-directory",
                "-o",
                "chart-crds",
                "manifests",
            ])
            .arg(format!("MANIFESTS_OUT={out}"))
            .arg(format!("HELM={}", tools.helm.display())),
        None,
    );
    let fresh_text = std::fs::read_to_string(&fresh).expect("read the fresh render");
    let _ = std::fs::remove_file(&fresh);
    let committed = std::fs::read_to_string(repo_dir().join("manifests/install.yaml"))
        .expect("manifests/install.yaml exists");
    assert!(
        committed == fresh_text,
        "manifests/install.yaml is stale: run `make manifests`"
    );
    let objects = documents(&committed);
    let kinds = kinds(&objects);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("Namespace"),
        "the Namespace comes first"
    );
    assert_eq!(objects[0]["metadata"]["name"], "edgeshift-system");
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "PodDisruptionBudget",
        "Deployment",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "install.yaml has no {kind}: {kinds:?}"
        );
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "CustomResourceDefinition")
            .count(),
        3
    );
    assert!(
        !kinds.iter().any(|k| k == "ServiceMonitor"),
        "ServiceMonitor is opt-in"
    );
}

#[tokio::test]
async fn the_api_server_accepts_every_object_the_chart_renders() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "pkg-dryrun").await;
    let tools = tools();
    let allowed = NodeKey::from_seed([1; 32]).public_key_base64();
    let revoked = NodeKey::from_seed([2; 32]).public_key_base64();
    let variants: [(&str, Vec<String>); 2] = [
        ("defaults", vec!["--include-crds".into()]),
        (
            "every option on",
            vec![
                "--set-json".into(),
                format!(r#"trustPolicy={{"mode":"open","allowedOperators":{{"alice":["{allowed}"]}},"revokedKeys":["{revoked}"]}}"#),
                "--set-json".into(),
                r#"partitionGuard.canaries=["https://canary.example/204","tcp://192.0.2.1:443"]"#.into(),
                "--set".into(),
                "logJson=true,watchNamespace=demo,replicaCount=3,priorityClassName=system-cluster-critical".into(),
                "--set".into(),
                "kubeApi.qps=0,kubeApi.burst=10,concurrency=32".into(),
                "--set-json".into(),
                r#"extraArgs=["--resync-seconds=600"]"#.into(),
            ],
        ),
    ];
    for (what, extra) in variants {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rendered = tools.render("dryrun", &ns.name, &extra);
        // A server-side dry run: admission, schema and RBAC validation, nothing persisted,
        // so the cluster-scoped names cannot collide with anything.
        run(
            &mut tools.kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=edgeshift-packaging-test",
                "--dry-run=server",
                "-f",
                "-",
            ]),
            Some(&rendered),
        );
        let objects = documents(&rendered);
        let policy = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "edgeshift-trust-policy")
            .unwrap_or_else(|| panic!("{what}: no trust policy ConfigMap"));
        let data: BTreeMap<String, String> =
            serde_json::from_value(policy["data"].clone()).expect("ConfigMap data is strings");
        let parsed = TrustPolicy::from_data(&data).unwrap_or_else(|e| {
            panic!("{what}: the operator rejects the chart's trust policy: {e}")
        });
        let args: Vec<String> = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .and_then(|d| {
                serde_json::from_value(
                    d["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
                )
                .ok()
            })
            .unwrap_or_else(|| panic!("{what}: no operator Deployment with args"));
        let (qps, burst, concurrency, extra) = if what == "every option on" {
            (
                "--kube-api-qps=0",
                "--kube-api-burst=10",
                "--concurrency=32",
                true,
            )
        } else {
            (
                "--kube-api-qps=800",
                "--kube-api-burst=1600",
                "--concurrency=64",
                false,
            )
        };
        for flag in [qps, burst, concurrency] {
            assert!(
                args.iter().any(|a| a == flag),
                "{what}: {flag} not in {args:?}"
            );
        }
        assert_eq!(
            args.last().map(String::as_str) == Some("--resync-seconds=600"),
            extra,
            "{what}: extraArgs come last: {args:?}"
        );
        if what == "every option on" {
            assert_eq!(parsed.mode, Mode::Open);
            assert!(parsed.allowed_operators["alice"].contains(&allowed));
            assert!(parsed.revoked_keys.contains(&revoked));
        } else {
            assert_eq!(parsed, TrustPolicy::strict_empty());
        }
        assert!(
            !kinds(&objects).iter().any(|k| k == "ServiceMonitor"),
            "{what}: no ServiceMonitor unless asked"
        );
    }

    // The ServiceMonitor only when enabled (its CRD is not installed here: render only).
    let with_monitor = tools.render(
        "dryrun",
        &ns.name,
        &["--set", "metrics.serviceMonitor.enabled=true"],
    );
    let monitors: Vec<_> = documents(&with_monitor)
        .into_iter()
        .filter(|o| o["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(monitors.len(), 1);
    assert_eq!(monitors[0]["spec"]["endpoints"][0]["port"], "metrics");
}

#[tokio::test]
async fn kubectl_explain_documents_the_pod_fields_of_the_template() {
    let _cluster = shared_cluster().await;
    ensure_crds().await;
    let tools = tools();
    // The API server publishes a CRD's schema to its OpenAPI a moment after the CRD is
    // established; `kubectl explain` reads it from there.
    let field = "edgeservice.spec.template.spec.containers.ports.containerPort";
    let text = eventually(
        "kubectl explain to find the pod fields",
        Duration::from_secs(30),
        || async {
            let out = tools.kubectl(&["explain", field]).output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("containerPort")).then_some(text)
        },
    )
    .await;
    assert!(text.contains("<integer>"), "{text}");
    assert!(text.to_lowercase().contains("port to expose"), "{text}");
}

#[tokio::test]
async fn the_examples_are_accepted_by_the_api_server_as_they_are() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "pkg-examples").await;
    let tools = tools();
    let dry_run = |yaml: &str| {
        run(
            &mut tools.kubectl(&[
                "apply",
                "--server-side",
                "--field-manager=edgeshift-packaging-test",
                "--dry-run=server",
                "-f",
                "-",
            ]),
            Some(yaml),
        )
    };
    let read = |name: &str| {
        std::fs::read_to_string(repo_dir().join("manifests/examples").join(name))
            .unwrap_or_else(|e| panic!("manifests/examples/{name}: {e}"))
    };

    let regions = read("cloudregions.yaml");
    let out = dry_run(&regions);
    for name in ["aws-us-east-1", "aws-us-west-2", "gcp-europe-west1"] {
        assert!(
            out.contains(&format!("cloudregion.edgeshift.io/{name}")),
            "{out}"
        );
    }

    // A dry run creates no namespace, so the EdgeServices are checked in the test's own
    // namespace instead of `demo`; nothing else about them changes.
    let services = documents(&read("edgeservices.yaml"));
    assert_eq!(kinds(&services)[0], "Namespace");
    assert_eq!(services[0]["metadata"]["name"], "demo");
    let moved: Vec<String> = services[1..]
        .iter()
        .map(|o| {
            assert_eq!(o["metadata"]["namespace"], "demo");
            let mut o = o.clone();
            o["metadata"]["namespace"] = ns.name.clone().into();
            serde_yaml::to_string(&o).expect("serialize example")
        })
        .collect();
    let out = dry_run(&moved.join("---\n"));
    for name in ["shop", "api", "reports"] {
        assert!(
            out.contains(&format!("edgeservice.edgeshift.io/{name}")),
            "{out}"
        );
    }
}

/// Uninstalls the release when the test ends, passed or not, so its cluster-scoped RBAC
/// never outlives it.
struct Release<'a> {
    tools: &'a Tools,
    name: String,
    namespace: String,
    installed: bool,
}

impl Release<'_> {
    fn uninstall(&mut self) {
        if std::mem::take(&mut self.installed) {
            run(
                &mut self.tools.helm(&[
                    "uninstall",
                    &self.name,
                    "--namespace",
                    &self.namespace,
                    "--wait",
                    "--timeout",
                    "60s",
                ]),
                None,
            );
        }
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed {
            let _ = self
                .tools
                .helm(&["uninstall", &self.name, "--namespace", &self.namespace])
                .output();
        }
    }
}

/// Every (API group, resource, verb) the operator's ClusterRole grants: exactly these.
fn expected_cluster_grants() -> BTreeSet<(String, String, String)> {
    let read = ["get", "list", "watch"].as_slice();
    let manage = [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ]
    .as_slice();
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "edgeshift.io",
            &["edgeservices", "cloudregions", "edgenodes"],
            read,
        ),
        (
            "edgeshift.io",
            &[
                "edgeservices/status",
                "cloudregions/status",
                "edgenodes/status",
            ],
            &["get", "patch", "update"],
        ),
        ("edgeshift.io", &["edgenodes"], &["patch"]),
        ("apps", &["deployments"], manage),
        ("", &["services"], manage),
        ("", &["nodes"], &["get", "list", "watch", "patch"]),
        ("", &["pods"], read),
        ("events.k8s.io", &["events"], &["create", "patch"]),
        ("", &["events"], &["create", "patch"]),
        ("gateway.networking.k8s.io", &["httproutes"], manage),
        ("externaldns.k8s.io", &["dnsendpoints"], manage),
        ("apiextensions.k8s.io", &["customresourcedefinitions"], read),
    ];
    let mut grants = BTreeSet::new();
    for (group, resources, verbs) in table {
        for r in *resources {
            for v in *verbs {
                grants.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    grants
}

fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for g in rule.api_groups.iter().flatten() {
            for r in rule.resources.iter().flatten() {
                for v in &rule.verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn assert_no_wildcards_or_secrets(what: &str, rules: &[PolicyRule]) {
    for rule in rules {
        let words = rule
            .api_groups
            .iter()
            .flatten()
            .chain(rule.resources.iter().flatten())
            .chain(rule.resource_names.iter().flatten())
            .chain(rule.verbs.iter())
            .chain(rule.non_resource_urls.iter().flatten());
        for w in words {
            assert!(!w.contains('*'), "{what} grants a wildcard: {rule:?}");
            assert!(
                !w.starts_with("secrets"),
                "{what} grants access to Secrets: {rule:?}"
            );
        }
    }
}

/// `kubectl auth can-i` as the operator's ServiceAccount: what the API server's own
/// authorizer decides.
fn can_i(tools: &Tools, sa: &str, args: &[&str]) -> bool {
    let out = tools
        .kubectl(&["auth", "can-i", "--as", sa])
        .args(args)
        .output()
        .expect("kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test]
async fn helm_install_creates_the_operator_with_least_privilege_and_uninstall_removes_it() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "pkg-helm").await;
    let tools = tools();
    // The operator's pods must pass the `restricted` Pod Security Standard.
    run(
        &mut tools.kubectl(&[
            "label",
            "namespace",
            &ns.name,
            "pod-security.kubernetes.io/enforce=restricted",
        ]),
        None,
    );
    // Release name = namespace name (unique per run): the cluster-scoped ClusterRole and
    // ClusterRoleBinding are named after it, so parallel runs do not collide.
    let mut release = Release {
        tools: &tools,
        name: ns.name.clone(),
        namespace: ns.name.clone(),
        installed: true,
    };
    run(
        &mut tools.helm(&[
            "install",
            &release.name,
            CHART,
            "--namespace",
            &ns.name,
            "--set-json",
            r#"partitionGuard.canaries=["https://canary.example/204"]"#,
        ]),
        None,
    );
    let fullname = format!("{}-edgeshift", release.name);
    let sa_user = format!("system:serviceaccount:{}:{fullname}", ns.name);

    // CRDs: helm installs them only where they are missing, and other tests have already
    // installed them here, so this shows they are there, not who made them (the CRD files
    // are compared byte for byte above).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for plural in ["cloudregions", "edgenodes", "edgeservices"] {
        crds.get(&format!("{plural}.edgeshift.io"))
            .await
            .expect("CRD installed");
    }

    // RBAC: exactly the grants the operator needs, no wildcards, no Secrets.
    let cluster_role = Api::<ClusterRole>::all(client.clone())
        .get(&fullname)
        .await
        .expect("ClusterRole named after the release");
    let rules = cluster_role.rules.clone().unwrap_or_default();
    assert_no_wildcards_or_secrets("ClusterRole", &rules);
    assert_eq!(
        grants(&rules),
        expected_cluster_grants(),
        "ClusterRole grants"
    );
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get(&fullname)
        .await
        .expect("ClusterRoleBinding");
    assert_eq!(binding.role_ref.name, fullname);
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (fullname.as_str(), Some(ns.name.as_str()))
    );

    let role = Api::<Role>::namespaced(client.clone(), &ns.name)
        .get(&fullname)
        .await
        .expect("Role in the release namespace");
    let role_rules = role.rules.clone().unwrap_or_default();
    assert_no_wildcards_or_secrets("Role", &role_rules);
    let role_grants = grants(&role_rules);
    for (group, resource, verb) in [
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),
        ("", "configmaps", "watch"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "list"),
        ("coordination.k8s.io", "leases", "watch"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "patch"),
    ] {
        assert!(
            role_grants.contains(&(group.into(), resource.into(), verb.into())),
            "Role lacks {verb} {group}/{resource}: {role_rules:?}"
        );
    }
    assert_eq!(
        role_grants.len(),
        9,
        "Role grants more than it needs: {role_rules:?}"
    );
    Api::<RoleBinding>::namespaced(client.clone(), &ns.name)
        .get(&fullname)
        .await
        .expect("RoleBinding");

    // The API server's authorizer agrees, as the ServiceAccount itself.
    let lease = format!("{fullname}-leader");
    let allowed: &[&[&str]] = &[
        &["patch", "nodes"],
        &["create", "deployments.apps", "-n", "default"],
        &[
            "patch",
            "edgeservices.edgeshift.io",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["watch", "customresourcedefinitions.apiextensions.k8s.io"],
        &["create", "leases.coordination.k8s.io", "-n", &ns.name],
        &[
            "update",
            &format!("leases.coordination.k8s.io/{lease}"),
            "-n",
            &ns.name,
        ],
        &["watch", "configmaps/edgeshift-trust-policy", "-n", &ns.name],
        // The standby watches the Lease to take over as soon as the leader releases it.
        &[
            "watch",
            &format!("leases.coordination.k8s.io/{lease}"),
            "-n",
            &ns.name,
        ],
    ];
    for args in allowed {
        assert!(
            can_i(&tools, &sa_user, args),
            "the operator should be allowed to {args:?}"
        );
    }
    let denied: &[&[&str]] = &[
        &["get", "secrets", "-n", &ns.name],
        &["list", "secrets", "--all-namespaces"],
        &["update", "edgeservices.edgeshift.io", "-n", "default"],
        &["delete", "nodes"],
        &["get", "configmaps", "-n", "default"],
        &["get", "configmaps/kube-root-ca.crt", "-n", &ns.name],
        &[
            "update",
            "leases.coordination.k8s.io/someone-else",
            "-n",
            &ns.name,
        ],
        &["create", "leases.coordination.k8s.io", "-n", "kube-system"],
    ];
    for args in denied {
        assert!(
            !can_i(&tools, &sa_user, args),
            "the operator must not be allowed to {args:?}"
        );
    }

    // The trust policy, ServiceAccount and PodDisruptionBudget.
    let policy = Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
        .get("edgeshift-trust-policy")
        .await
        .expect("trust policy ConfigMap");
    // Parsed by the operator's own parser: what the chart ships is what the operator accepts.
    assert_eq!(
        TrustPolicy::from_data(&policy.data.unwrap_or_default()),
        Ok(TrustPolicy::strict_empty()),
        "the default trust policy: strict, nobody allowed, nothing revoked"
    );
    Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .get(&fullname)
        .await
        .expect("ServiceAccount");
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns.name)
        .get(&fullname)
        .await
        .expect("PodDisruptionBudget");
    assert_eq!(
        pdb.spec.and_then(|s| s.min_available),
        Some(IntOrString::Int(1))
    );

    // The Deployment: two replicas with leader election, the exact operator flags.
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get(&fullname)
        .await
        .expect("Deployment");
    let spec = deployment.spec.expect("Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(fullname.as_str()));
    let container = &pod.containers[0];
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        [
            "run".to_string(),
            "--leader-elect".into(),
            format!("--lease-name={lease}"),
            "--lease-namespace=$(POD_NAMESPACE)".into(),
            "--lease-duration-seconds=15".into(),
            "--metrics-bind-address=0.0.0.0:8080".into(),
            "--trust-policy=$(POD_NAMESPACE)/edgeshift-trust-policy".into(),
            "--canary=https://canary.example/204".into(),
            "--kube-api-qps=800".into(),
            "--kube-api-burst=1600".into(),
            "--concurrency=64".into(),
            "--log-level=info".into(),
        ]
    );
    let env: Vec<_> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
    let sc = container
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone(), h.port.clone()))
    };
    let metrics_port = IntOrString::String("metrics".into());
    assert_eq!(
        path(&container.liveness_probe),
        Some((Some("/healthz".into()), metrics_port.clone()))
    );
    assert_eq!(
        path(&container.readiness_probe),
        Some((Some("/readyz".into()), metrics_port))
    );
    assert!(
        pod.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some("edgeshift.io/edge")
                && t.effect.as_deref() == Some("NoSchedule")),
        "a replica may run on an edge node"
    );
    let spread: Vec<_> = pod
        .topology_spread_constraints
        .iter()
        .flatten()
        .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
        .collect();
    assert_eq!(
        spread,
        [
            ("topology.kubernetes.io/region", "ScheduleAnyway"),
            ("kubernetes.io/hostname", "DoNotSchedule")
        ]
    );

    // The ReplicaSet could create the pods in a `restricted` namespace, so they pass Pod
    // Security admission. Whether they run is not asserted: KWOK nodes have no container
    // runtime and only fake a pod's status, so "Running" here would prove nothing about
    // the image (which cannot be built without Docker either).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    eventually(
        "the operator's two pods are created",
        Duration::from_secs(60),
        || async {
            let n = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?
                .items
                .len();
            (n >= 2).then_some(())
        },
    )
    .await;

    // Uninstall removes everything the release made, cluster-scoped RBAC included; the
    // CRDs stay (helm never deletes CRDs, and the cluster's other tests use them).
    release.uninstall();
    eventually(
        "the release's objects are gone",
        Duration::from_secs(60),
        || async {
            let gone = Api::<ClusterRole>::all(client.clone())
                .get_opt(&fullname)
                .await
                .ok()?
                .is_none()
                && Api::<ClusterRoleBinding>::all(client.clone())
                    .get_opt(&fullname)
                    .await
                    .ok()?
                    .is_none()
                && Api::<Deployment>::namespaced(client.clone(), &ns.name)
                    .get_opt(&fullname)
                    .await
                    .ok()?
                    .is_none()
                && Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
                    .get_opt("edgeshift-trust-policy")
                    .await
                    .ok()?
                    .is_none()
                && Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns.name)
                    .get_opt(&fullname)
                    .await
                    .ok()?
                    .is_none();
            gone.then_some(())
        },
    )
    .await;
    for plural in ["cloudregions", "edgenodes", "edgeservices"] {
        crds.get(&format!("{plural}.edgeshift.io"))
            .await
            .expect("CRDs stay after uninstall");
    }
}
