//! The test cluster behaves like a real one: scheduling by region, EndpointSlices, node
//! loss with NotReady, taints and evictions, and the regions' health endpoints.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::support::*;

/// A Deployment of `replicas` pods, required to run in `regions` and preferring the first.
fn deployment(
    name: &str,
    replicas: i32,
    regions: &[&str],
    toleration_seconds: Option<i64>,
) -> Deployment {
    let mut tolerations = vec![];
    if let Some(secs) = toleration_seconds {
        for key in [
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/not-ready",
        ] {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs}));
        }
    }
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "containers": [{ "name": "app", "image": "registry.example/app:1", "ports": [{"containerPort": 8080}] }],
                    "tolerations": tolerations,
                    "affinity": { "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{
                            "matchExpressions": [{ "key": "topology.kubernetes.io/region", "operator": "In", "values": regions }]
                        }]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 100, "preference": {
                            "matchExpressions": [{ "key": "topology.kubernetes.io/region", "operator": "In", "values": [regions[0]] }]
                        }}]
                    }}
                }
            }
        }
    }))
    .expect("deployment manifest")
}

async fn node_names(client: &kube::Client, region_label: &str) -> BTreeSet<String> {
    region_nodes(client, region_label)
        .await
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect()
}

/// Nodes are found by their topology name (label `e2e.edgeshift.io/name`), so the same
/// tests run on kind, whose node names cannot be chosen.
fn find_node<'a>(nodes: &'a [Node], name: &str) -> &'a Node {
    nodes
        .iter()
        .find(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("e2e.edgeshift.io/name"))
                .map(String::as_str)
                == Some(name)
        })
        .unwrap_or_else(|| panic!("node {name} (label e2e.edgeshift.io/name={name}) missing"))
}

#[tokio::test]
async fn the_cluster_has_three_regions_and_six_edge_nodes_all_ready() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .items;
    for (region, label, provider) in [
        ("aws-us-east-1", "us-east-1", "aws"),
        ("aws-us-west-2", "us-west-2", "aws"),
        ("gcp-europe-west1", "europe-west1", "gcp"),
    ] {
        for n in 1..=2 {
            let name = format!("{region}-{n}");
            let node = find_node(&nodes, &name);
            let labels = node.metadata.labels.clone().unwrap_or_default();
            assert_eq!(
                labels
                    .get("topology.kubernetes.io/region")
                    .map(String::as_str),
                Some(label),
                "{name}"
            );
            assert_eq!(
                labels.get("edgeshift.io/provider").map(String::as_str),
                Some(provider),
                "{name}"
            );
        }
    }
    for n in 1..=6 {
        let name = format!("edge-{n}");
        let node = find_node(&nodes, &name);
        assert!(!node
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key("topology.kubernetes.io/region"));
    }
    let api = Api::<Node>::all(client.clone());
    eventually("all 12 nodes Ready", Duration::from_secs(60), || async {
        let items = api.list(&ListParams::default()).await.ok()?.items;
        (items.iter().filter(|n| node_ready(n)).count() >= 12).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deployment_pinned_to_a_region_runs_there_and_its_service_lists_the_pods() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-pinned").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", 3, &["us-west-2"], None),
        )
        .await
        .expect("create deployment");
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] }
    }))
    .expect("service manifest");
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let running = eventually("3 Ready pods", Duration::from_secs(60), || async {
        let ready = ready_pods(&pods, "app=web").await;
        (ready.len() == 3).then_some(ready)
    })
    .await;
    let region = node_names(&client, "us-west-2").await;
    for (pod, node, ip) in &running {
        assert!(
            region.contains(node),
            "pod {pod} runs on {node}, not in us-west-2 {region:?}"
        );
        assert!(!ip.is_empty(), "pod {pod} has no IP");
    }

    let want: BTreeSet<String> = running.iter().map(|(_, _, ip)| ip.clone()).collect();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "EndpointSlices listing the 3 pod IPs as ready",
        Duration::from_secs(30),
        || async {
            let items = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?
                .items;
            let got: BTreeSet<String> = items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .flat_map(|e| e.addresses.iter().cloned())
                .collect();
            (got == want).then_some(())
        },
    )
    .await;
}

/// Region loss as in production: the nodes stop heart-beating, turn NotReady, get tainted,
/// and pods that tolerate that for only 5 s are evicted and rescheduled in another region.
#[tokio::test]
async fn losing_a_region_evicts_its_pods_to_another_region_and_it_comes_back() {
    let _faults = exclusive_cluster().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-loss").await;
    let url = region_endpoint("aws-us-east-1");
    assert_eq!(
        http_status(&url).await,
        Some(200),
        "{url} answers before the loss"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .create(
            &PostParams::default(),
            &deployment("mover", 2, &["us-east-1", "europe-west1"], Some(5)),
        )
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let east = node_names(&client, "us-east-1").await;
    let europe = node_names(&client, "europe-west1").await;
    eventually(
        "2 Ready pods in us-east-1",
        Duration::from_secs(60),
        || async {
            let ready = ready_pods(&pods, "app=mover").await;
            (ready.len() == 2 && ready.iter().all(|(_, n, _)| east.contains(n))).then_some(())
        },
    )
    .await;

    let lost_at = Instant::now();
    inject(&["region-down", "aws-us-east-1"]);
    let nodes = Api::<Node>::all(client.clone());
    eventually(
        "us-east-1 nodes NotReady within 30 s",
        Duration::from_secs(30),
        || async {
            let items = region_nodes(&client, "us-east-1").await;
            (items.len() == 2 && items.iter().all(|n| !node_ready(n))).then_some(())
        },
    )
    .await;
    let not_ready_after = lost_at.elapsed();
    // The other regions are untouched.
    let others = nodes
        .list(
            &ListParams::default()
                .labels("topology.kubernetes.io/region in (us-west-2,europe-west1)"),
        )
        .await
        .expect("list nodes")
        .items;
    assert!(
        others.iter().all(node_ready),
        "only us-east-1 nodes turned NotReady"
    );
    assert_eq!(
        http_status(&url).await,
        None,
        "{url} stops answering with the region"
    );

    eventually(
        "pods evicted and Ready in europe-west1",
        Duration::from_secs(60),
        || async {
            let ready = ready_pods(&pods, "app=mover").await;
            (ready.len() == 2 && ready.iter().all(|(_, n, _)| europe.contains(n))).then_some(())
        },
    )
    .await;
    println!(
        "region loss: NotReady after {:.1}s, pods Ready in europe-west1 after {:.1}s",
        not_ready_after.as_secs_f64(),
        lost_at.elapsed().as_secs_f64()
    );

    inject(&["region-up", "aws-us-east-1"]);
    eventually(
        "us-east-1 nodes Ready again",
        Duration::from_secs(60),
        || async {
            let items = region_nodes(&client, "us-east-1").await;
            (items.len() == 2 && items.iter().all(node_ready)).then_some(())
        },
    )
    .await;
    assert_eq!(http_status(&url).await, Some(200), "{url} answers again");
}
