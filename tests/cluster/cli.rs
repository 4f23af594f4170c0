//! `edgeshift status` and `edgeshift plan` against the real cluster: readable tables, and
//! `plan` writes nothing.
use std::process::Command;
use std::time::Duration;

use edgeshift::api::CloudRegion;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::support::*;

fn edgeshift(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgeshift"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .output()
        .expect("run edgeshift");
    assert!(
        out.status.success(),
        "edgeshift {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn status_shows_regions_and_plan_explains_a_what_if_without_writing() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "cli").await;
    let (lost, healthy) = (format!("{}-lost", ns.name), format!("{}-ok", ns.name));
    let regions: Api<CloudRegion> = Api::all(client.clone());
    for (name, label, phase) in [
        (&lost, "us-east-1", "Down"),
        (&healthy, "us-west-2", "Healthy"),
    ] {
        regions
            .patch(
                name,
                &PatchParams::apply("edgeshift-e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
                    "metadata": {"name": name, "labels": {OWNER_LABEL: &ns.name}},
                    "spec": {"provider": "aws", "region": label}
                })),
            )
            .await
            .expect("CloudRegion");
        regions
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": phase, "nodes": "2/2",
                    "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}})),
            )
            .await
            .expect("verdict");
    }
    let status = edgeshift(&["status", "-n", &ns.name]);
    println!("{status}");
    let line = status
        .lines()
        .find(|l| l.starts_with(&lost))
        .expect("the lost region is listed");
    assert!(line.contains("Down") && line.contains("2/2"), "{line}");
    assert!(status.contains("EDGESERVICE") && status.contains("EDGE NODE"));

    let file = std::env::temp_dir().join(format!("{}-whatif.yaml", ns.name));
    std::fs::write(
        &file,
        format!(
            "apiVersion: edgeshift.io/v1alpha1\nkind: EdgeService\nmetadata:\n  name: whatif\n  namespace: {}\n\
             spec:\n  replicas: 4\n  regions: [{lost}, {healthy}]\n  fallback: {{mode: Spillover}}\n\
             \x20 template:\n    spec:\n      containers: [{{name: app, image: shop:1}}]\n",
            ns.name
        ),
    )
    .expect("write manifest");
    let plan = edgeshift(&["plan", "-f", file.to_str().expect("path")]);
    println!("{plan}");
    let row = |target: &str| {
        plan.lines()
            .find(|l| l.starts_with(target))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row(&lost).contains("Down") && row(&lost).contains("0 -> 0"),
        "{plan}"
    );
    assert!(
        row(&healthy).contains("0 -> 4"),
        "Spillover puts all 4 on the healthy region: {plan}"
    );
    assert!(
        plan.contains("(not in the cluster yet)") && plan.contains("why:"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("region {lost} is Down")),
        "the plan says why: {plan}"
    );

    // A what-if writes nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    assert!(deployments
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .is_empty());
    let services: Api<edgeshift::api::EdgeService> = Api::namespaced(client.clone(), &ns.name);
    assert!(services.get_opt("whatif").await.expect("get").is_none());
    let _ = std::fs::remove_file(file);
}
