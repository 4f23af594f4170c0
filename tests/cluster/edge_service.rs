//! The EdgeService controller against the real API server: children with owner references,
//! pods in the right regions, no writes when steady, failover and failback on region
//! verdicts (set here by patching CloudRegion status), garbage collection on delete.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService, ServicePhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::*;

/// A CloudRegion named `name` for the test cluster region `label`, with its verdict set.
async fn region(client: &Client, ns: &str, name: &str, provider: &str, label: &str, phase: &str) {
    let api: Api<CloudRegion> = Api::all(client.clone());
    let obj: CloudRegion = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {"provider": provider, "region": label}
    }))
    .expect("CloudRegion");
    api.patch(
        name,
        &PatchParams::apply("edgeshift-e2e").force(),
        &Patch::Apply(&obj),
    )
    .await
    .expect("apply CloudRegion");
    set_verdict(client, name, phase).await;
}

/// What the prober would write: a verdict and when it last changed.
async fn set_verdict(client: &Client, name: &str, phase: &str) {
    let api: Api<CloudRegion> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase, "lastTransitionTime": now}})),
    )
    .await
    .expect("set CloudRegion verdict");
}

async fn delete_region(client: &Client, name: &str) {
    let _ = Api::<CloudRegion>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn edge_service(
    name: &str,
    replicas: u32,
    regions: &[&str],
    extra: serde_json::Value,
) -> EdgeService {
    let mut spec = json!({
        "replicas": replicas,
        "regions": regions,
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "image": "registry.example/shop:1"}]}},
        "traffic": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("EdgeService")
}

async fn deployment_replicas(api: &Api<Deployment>, name: &str) -> Option<i32> {
    api.get_opt(name).await.ok().flatten()?.spec?.replicas
}

/// Ready pods of the EdgeService, counted per node label value of `topology.kubernetes.io/region`
/// (edge nodes count as `edge`).
async fn ready_pods_by_region(client: &Client, ns: &str, service: &str) -> BTreeMap<String, usize> {
    let nodes: BTreeMap<String, String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .into_iter()
        .map(|n| {
            let region = n
                .labels()
                .get("topology.kubernetes.io/region")
                .cloned()
                .unwrap_or_else(|| "edge".into());
            (n.name_any(), region)
        })
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut by_region = BTreeMap::new();
    for (_, node, _) in ready_pods(&pods, &format!("edgeshift.io/service={service}")).await {
        *by_region
            .entry(nodes.get(&node).cloned().unwrap_or_default())
            .or_insert(0) += 1;
    }
    by_region
}

async fn events_of(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_edge_service_creates_owned_children_in_its_regions_and_is_quiet_when_steady() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "es-children").await;
    let (east, west) = (format!("{}-east", ns.name), format!("{}-west", ns.name));
    region(&client, &ns.name, &east, "aws", "us-east-1", "Healthy").await;
    region(&client, &ns.name, &west, "aws", "us-west-2", "Healthy").await;
    // The test sets the CloudRegion verdicts itself.
    let _operator = Operator::start_with(&ns.name, &["--disable-prober"]);

    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    services
        .create(
            &PostParams::default(),
            &edge_service("shop", 4, &[&east, &west], json!({})),
        )
        .await
        .expect("create EdgeService");
    let es = services.get("shop").await.expect("get EdgeService");
    let uid = es.uid().expect("uid");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    for (name, want) in [
        (format!("shop-{east}"), 2),
        (format!("shop-{west}"), 2),
        ("shop-edge".to_string(), 0),
    ] {
        let d = eventually(
            &format!("Deployment {name} with {want} replicas"),
            Duration::from_secs(30),
            || async {
                let d = deployments.get_opt(&name).await.ok().flatten()?;
                (d.spec.as_ref()?.replicas == Some(want)).then_some(d)
            },
        )
        .await;
        let owner = d
            .owner_references()
            .first()
            .cloned()
            .expect("owner reference");
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("EdgeService", uid.as_str(), Some(true))
        );
        assert_eq!(
            d.managed_fields()
                .iter()
                .filter(|m| m.manager.as_deref() == Some("edgeshift"))
                .count(),
            1
        );
    }
    let svc_api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    for name in ["shop", "shop-cloud", "shop-edge"] {
        let s = eventually(
            &format!("Service {name}"),
            Duration::from_secs(30),
            || async { svc_api.get_opt(name).await.ok().flatten() },
        )
        .await;
        assert_eq!(
            s.owner_references().first().map(|o| o.uid.as_str()),
            Some(uid.as_str()),
            "{name} is owned"
        );
    }

    eventually(
        "2 Ready pods in us-east-1 and 2 in us-west-2",
        Duration::from_secs(60),
        || async {
            let by_region = ready_pods_by_region(&client, &ns.name, "shop").await;
            (by_region
                == BTreeMap::from([("us-east-1".to_string(), 2), ("us-west-2".to_string(), 2)]))
            .then_some(())
        },
    )
    .await;
    let es = eventually(
        "status Normal with cloud 4/4",
        Duration::from_secs(30),
        || async {
            let es = services.get("shop").await.ok()?;
            let st = es.status.clone()?;
            (st.phase == Some(ServicePhase::Normal)
                && st.cloud.as_deref() == Some("4/4")
                && st.observed_generation == es.metadata.generation)
                .then_some(es)
        },
    )
    .await;
    let weights: u32 = es
        .status
        .as_ref()
        .map(|s| s.targets.iter().map(|t| t.traffic_weight).sum())
        .unwrap_or(0);
    assert_eq!(weights, 100, "traffic weights add up to 100");

    // Steady: over 30 s neither the EdgeService nor its children are written.
    let versions = || async {
        let mut v = vec![services.get("shop").await.expect("es").resource_version()];
        for d in deployments
            .list(&ListParams::default())
            .await
            .expect("deployments")
            .items
        {
            v.push(d.resource_version());
        }
        for s in svc_api
            .list(&ListParams::default())
            .await
            .expect("services")
            .items
        {
            v.push(s.resource_version());
        }
        v
    };
    let before = versions().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        versions().await,
        before,
        "a steady EdgeService and its children see no writes"
    );

    // Deleting the EdgeService removes its children (owner references, garbage collector).
    services
        .delete("shop", &DeleteParams::background())
        .await
        .expect("delete");
    eventually(
        "children garbage-collected",
        Duration::from_secs(60),
        || async {
            let d = deployments
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
            let s = svc_api
                .list(&ListParams::default().labels("edgeshift.io/service=shop"))
                .await
                .ok()?
                .items
                .len();
            (d == 0 && s == 0).then_some(())
        },
    )
    .await;
    delete_region(&client, &east).await;
    delete_region(&client, &west).await;
}

#[tokio::test]
async fn a_down_region_spills_over_make_before_break_and_fails_back_after_stabilization() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "es-spill").await;
    let (east, west) = (format!("{}-east", ns.name), format!("{}-west", ns.name));
    region(&client, &ns.name, &east, "aws", "us-east-1", "Healthy").await;
    region(&client, &ns.name, &west, "aws", "us-west-2", "Healthy").await;
    // The test sets the CloudRegion verdicts itself.
    let _operator = Operator::start_with(&ns.name, &["--disable-prober"]);
    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    let extra = json!({"fallback": {"mode": "Spillover", "failback": {"stabilizationSeconds": 8, "stepSeconds": 1}}});
    services
        .create(
            &PostParams::default(),
            &edge_service("cart", 4, &[&east, &west], extra),
        )
        .await
        .expect("create EdgeService");
    eventually(
        "4 Ready pods, 2 per region",
        Duration::from_secs(60),
        || async {
            let by_region = ready_pods_by_region(&client, &ns.name, "cart").await;
            (by_region
                == BTreeMap::from([("us-east-1".to_string(), 2), ("us-west-2".to_string(), 2)]))
            .then_some(())
        },
    )
    .await;

    // The verdict says east is Down: its replicas move to west; east is emptied only once
    // west holds all 4 ready.
    set_verdict(&client, &east, "Down").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let (east_d, west_d) = (format!("cart-{east}"), format!("cart-{west}"));
    let saw_overlap = std::sync::atomic::AtomicBool::new(false);
    eventually(
        "west runs 4 and east 0",
        Duration::from_secs(60),
        || async {
            let (e, w) = (
                deployment_replicas(&deployments, &east_d).await?,
                deployment_replicas(&deployments, &west_d).await?,
            );
            if e > 0 && w == 4 {
                saw_overlap.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let by_region = ready_pods_by_region(&client, &ns.name, "cart").await;
            (e == 0 && w == 4 && by_region.get("us-west-2") == Some(&4)).then_some(())
        },
    )
    .await;
    assert!(
        saw_overlap.into_inner(),
        "west was scaled up before east was scaled down (make-before-break)"
    );
    let es = eventually(
        "status names the lost region",
        Duration::from_secs(20),
        || async {
            let es = services.get("cart").await.ok()?;
            let failed_over = es.status.as_ref()?.conditions.iter().any(|c| {
                c.type_ == "FailedOver" && c.status == "True" && c.message.contains(&east)
            });
            failed_over.then_some(es)
        },
    )
    .await;
    let st = es.status.clone().expect("status");
    assert!(
        st.targets
            .iter()
            .any(|t| t.name == west && t.traffic_weight == 100),
        "all traffic on west: {:?}",
        st.targets
    );
    let events = events_of(&client, &ns.name, "cart").await;
    assert!(!events.is_empty(), "the failover is told through Events");
    println!("events: {events:?}");

    // East recovers: nothing moves back before the 8 s stabilization window...
    let recovered = Instant::now();
    set_verdict(&client, &east, "Healthy").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        deployment_replicas(&deployments, &east_d).await,
        Some(0),
        "no failback before stabilizationSeconds"
    );
    // ...then it does, back to 2 + 2, with traffic shared again.
    eventually("failback to 2 + 2", Duration::from_secs(90), || async {
        let es = services.get("cart").await.ok()?;
        let st = es.status?;
        let by_region = ready_pods_by_region(&client, &ns.name, "cart").await;
        let weights_ok = st.targets.iter().filter(|t| t.traffic_weight > 0).count() == 2;
        (st.phase == Some(ServicePhase::Normal)
            && deployment_replicas(&deployments, &east_d).await == Some(2)
            && deployment_replicas(&deployments, &west_d).await == Some(2)
            && by_region.get("us-east-1") == Some(&2)
            && weights_ok)
            .then_some(())
    })
    .await;
    assert!(
        recovered.elapsed() >= Duration::from_secs(8),
        "failback waited for the stabilization window"
    );
    delete_region(&client, &east).await;
    delete_region(&client, &west).await;
}

#[tokio::test]
async fn losing_every_region_of_a_provider_moves_the_service_to_verified_edge_nodes() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "es-edge").await;
    let sfx = ns.name.clone();
    let (east, west) = (format!("{sfx}-east"), format!("{sfx}-west"));
    region(&client, &ns.name, &east, "aws", "us-east-1", "Healthy").await;
    region(&client, &ns.name, &west, "aws", "us-west-2", "Healthy").await;
    // Until the EdgeNode controller exists, the test does what it will do: the EdgeNode's
    // verdict in status, and the Node labelled as verified.
    let edge_api: Api<EdgeNode> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    for n in ["edge-4", "edge-5", "edge-6"] {
        let name = format!("{n}-{sfx}");
        let obj: EdgeNode = serde_json::from_value(json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
            "metadata": {"name": name, "labels": {OWNER_LABEL: &ns.name}},
            "spec": {"nodeName": n, "operator": "e2e", "publicKey": format!("{}=", "A".repeat(43)),
                     "signature": format!("{}==", "B".repeat(86)),
                     "labels": {"e2e-test": &ns.name}}
        }))
        .expect("EdgeNode");
        edge_api
            .patch(
                &name,
                &PatchParams::apply("edgeshift-e2e").force(),
                &Patch::Apply(&obj),
            )
            .await
            .expect("EdgeNode");
        edge_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"verified": true, "ready": true, "availability": 1.0, "score": 1.0}})))
            .await
            .expect("EdgeNode status");
        node_api
            .patch(n, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"edgeshift.io/verified": "true", "edgeshift.io/edge": "true"}}})))
            .await
            .expect("label edge node");
    }
    // The test sets the CloudRegion verdicts and fakes the EdgeNode verification itself.
    let _operator = Operator::start_with(&ns.name, &["--disable-prober", "--disable-edge-nodes"]);
    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    // Only this test's EdgeNodes qualify: other tests register edge nodes at the same time.
    let extra = json!({"fallback": {"mode": "Failover", "edge": {
        "maxReplicas": 6, "overprovisionPercent": 50, "maxPerNode": 2,
        "requirements": {"selector": {"matchLabels": {"e2e-test": &ns.name}}}}}});
    services
        .create(
            &PostParams::default(),
            &edge_service("api", 2, &[&east, &west], extra),
        )
        .await
        .expect("create EdgeService");
    eventually(
        "1 Ready pod per region",
        Duration::from_secs(60),
        || async {
            let by_region = ready_pods_by_region(&client, &ns.name, "api").await;
            (by_region
                == BTreeMap::from([("us-east-1".to_string(), 1), ("us-west-2".to_string(), 1)]))
            .then_some(())
        },
    )
    .await;

    set_verdict(&client, &east, "Down").await;
    set_verdict(&client, &west, "Down").await;
    // 2 replicas lost, +50 % overprovisioning = 3 on the edge, only on the verified nodes.
    let es = eventually(
        "3 edge pods Ready and all traffic on the edge",
        Duration::from_secs(60),
        || async {
            let by_region = ready_pods_by_region(&client, &ns.name, "api").await;
            let es = services.get("api").await.ok()?;
            let st = es.status.clone()?;
            // A rollout of the edge Deployment may briefly surge above 3: wait for 3/3.
            (by_region.get("edge") == Some(&3)
                && st.edge.as_deref() == Some("3/3")
                && st.edge_traffic_percent == Some(100)
                && st.phase == Some(ServicePhase::OnEdge))
            .then_some(es)
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    for (pod, node, _) in ready_pods(&pods, "edgeshift.io/target=edge").await {
        assert!(
            ["edge-4", "edge-5", "edge-6"].contains(&node.as_str()),
            "edge pod {pod} runs on {node}"
        );
    }
    let st = es.status.expect("status");
    let record = st.last_failover.expect("lastFailover");
    assert!(
        record.from.contains(&east) && record.from.contains(&west),
        "{record:?}"
    );

    services
        .delete("api", &DeleteParams::background())
        .await
        .expect("delete");
    for n in ["edge-4", "edge-5", "edge-6"] {
        let _ = edge_api
            .delete(&format!("{n}-{sfx}"), &DeleteParams::default())
            .await;
    }
    delete_region(&client, &east).await;
    delete_region(&client, &west).await;
}

/// A test namespace, two Healthy aws CloudRegions `<ns>-east` and `<ns>-west` (verdicts set by
/// the test: operators here run with `--disable-prober`), and the EdgeService `shop` of 4
/// replicas over them; no operator yet.
async fn shop_over_two_regions(
    client: &Client,
    prefix: &str,
) -> (TestNamespace, String, String, Api<EdgeService>) {
    let ns = TestNamespace::new(client, prefix).await;
    let (east, west) = (format!("{}-east", ns.name), format!("{}-west", ns.name));
    region(client, &ns.name, &east, "aws", "us-east-1", "Healthy").await;
    region(client, &ns.name, &west, "aws", "us-west-2", "Healthy").await;
    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    services
        .create(
            &PostParams::default(),
            &edge_service("shop", 4, &[&east, &west], json!({})),
        )
        .await
        .expect("create shop");
    (ns, east, west, services)
}

/// The EdgeService CRD as an older, looser release had it: the pod template unchecked. What
/// it stored stays stored after the real CRD is back (the API server does not re-validate).
fn loose_edge_service_crd() -> serde_json::Value {
    let crd = edgeshift::api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "EdgeService")
        .expect("EdgeService CRD");
    let mut crd = serde_json::to_value(crd).expect("CRD as JSON");
    let template = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/template")
        .expect("template schema");
    *template = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crd
}

async fn apply_crd(client: &Client, crd: &serde_json::Value) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().expect("CRD name");
    api.patch(
        name,
        &PatchParams::apply("edgeshift-e2e").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
}

#[tokio::test]
async fn an_unreadable_edge_service_is_marked_and_every_other_one_is_still_reconciled() {
    // The CRD is loosened for a moment: no other test may create EdgeServices meanwhile.
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let (ns, east, west, services) = shop_over_two_regions(&client, "es-unreadable").await;

    // An object stored before the schema described the pod template: a string port.
    let broken = json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "broken", "namespace": &ns.name},
        "spec": {"replicas": 2, "regions": [&east],
                 "template": {"spec": {"containers": [{"name": "app", "image": "shop:1",
                                                       "ports": [{"containerPort": "8080"}]}]}}}
    });
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns.name,
        &kube::api::ApiResource::erase::<EdgeService>(&()),
    );
    let broken_obj: kube::api::DynamicObject =
        serde_json::from_value(broken.clone()).expect("object");
    let real_crd = serde_json::to_value(
        edgeshift::api::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "EdgeService")
            .expect("EdgeService CRD"),
    )
    .expect("CRD as JSON");
    apply_crd(&client, &loose_edge_service_crd()).await;
    let stored = eventually(
        "the loose CRD to accept the string port",
        Duration::from_secs(30),
        || async { raw.create(&PostParams::default(), &broken_obj).await.ok() },
    )
    .await;
    apply_crd(&client, &real_crd).await;
    let mut probe = broken_obj.clone();
    probe.metadata.name = Some("probe".into());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        "the real CRD to refuse the string port again",
        Duration::from_secs(30),
        || async { raw.create(&dry_run, &probe).await.is_err().then_some(()) },
    )
    .await;
    assert!(
        services.get("broken").await.is_err(),
        "the stored object must be unreadable to the typed client"
    );
    assert_eq!(
        stored.data["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        "8080"
    );

    // The operator starts with the unreadable object stored: the others are reconciled.
    let operator = Operator::start_with(&ns.name, &["--disable-prober"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let (east_d, west_d) = (format!("shop-{east}"), format!("shop-{west}"));
    eventually("shop's 2 + 2 replicas", Duration::from_secs(30), || async {
        (deployment_replicas(&deployments, &east_d).await == Some(2)
            && deployment_replicas(&deployments, &west_d).await == Some(2))
        .then_some(())
    })
    .await;
    drop(operator);

    // Restarted, with the object still there: a change to another EdgeService converges.
    let _operator = Operator::start_as(&ns.name, "restarted", &["--disable-prober"]);
    services
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .expect("scale shop");
    eventually(
        "shop converges to 3 + 3 and observes generation 2",
        Duration::from_secs(30),
        || async {
            let es = services.get("shop").await.ok()?;
            let observed = es.status.as_ref()?.observed_generation;
            (observed == Some(2)
                && deployment_replicas(&deployments, &east_d).await == Some(3)
                && deployment_replicas(&deployments, &west_d).await == Some(3))
            .then_some(())
        },
    )
    .await;

    // The unreadable one says why, once, and nothing was built from it.
    let condition = eventually(
        "broken to carry Ready=False/InvalidSpec",
        Duration::from_secs(30),
        || async {
            let obj = raw.get("broken").await.ok()?;
            let conditions = obj.data.pointer("/status/conditions")?.as_array()?.clone();
            conditions
                .into_iter()
                .find(|c| c["type"] == "Ready" && c["status"] == "False")
                .filter(|c| c["reason"] == "InvalidSpec")
        },
    )
    .await;
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot read")
            && message
                .contains("spec.template.spec.containers[0].ports[0].containerPort: invalid type"),
        "{condition}"
    );
    let events = eventually(
        "a Warning Event on broken",
        Duration::from_secs(30),
        || async {
            let events = events_of(&client, &ns.name, "broken").await;
            events
                .iter()
                .any(|(reason, _)| reason == "InvalidSpec")
                .then_some(events)
        },
    )
    .await;
    assert!(
        events
            .iter()
            .any(|(_, m)| m.contains("cannot read this EdgeService")),
        "{events:?}"
    );
    assert!(
        deployments
            .get_opt(&format!("broken-{east}"))
            .await
            .expect("get")
            .is_none(),
        "a Deployment was built from an unreadable object"
    );
    // Marked once: the status is not rewritten while nothing changes.
    let rv = raw
        .get("broken")
        .await
        .expect("broken")
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        raw.get("broken")
            .await
            .expect("broken")
            .metadata
            .resource_version,
        rv
    );
    let log = std::fs::read_to_string(repo_dir().join(format!(
        "target/e2e/logs/operator-{}-restarted.log",
        ns.name
    )))
    .unwrap_or_default();
    assert!(
        !log.contains("failed to perform initial object list"),
        "the list failed"
    );
}

/// The FailedOver condition of `name`: (status, reason, message).
async fn failed_over(services: &Api<EdgeService>, name: &str) -> Option<(String, String, String)> {
    let es = services.get(name).await.ok()?;
    let c = es
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "FailedOver")?;
    Some((c.status, c.reason, c.message))
}

#[tokio::test]
async fn a_region_with_an_unknown_verdict_or_no_cloud_region_keeps_its_deployment() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let (ns, east, west, services) = shop_over_two_regions(&client, "es-keep").await;
    let _operator = Operator::start_with(&ns.name, &["--disable-prober"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let (east_d, west_d) = (format!("shop-{east}"), format!("shop-{west}"));
    let both = || async {
        (
            deployment_replicas(&deployments, &east_d).await,
            deployment_replicas(&deployments, &west_d).await,
        )
    };
    eventually("2 + 2 replicas", Duration::from_secs(30), || async {
        (both().await == (Some(2), Some(2))).then_some(())
    })
    .await;

    // East's verdict goes Unknown: nothing moves, and the status says why.
    set_verdict(&client, &east, "Unknown").await;
    let (_, _, message) = eventually(
        "FailedOver=False/RegionsUnknown naming east",
        Duration::from_secs(30),
        || async {
            failed_over(&services, "shop")
                .await
                .filter(|(s, r, _)| s == "False" && r == "RegionsUnknown")
        },
    )
    .await;
    assert!(
        message.contains(&format!("{east} (verdict Unknown)")),
        "{message}"
    );
    assert_eq!(both().await, (Some(2), Some(2)));

    // East's CloudRegion is deleted (a GitOps prune): its Deployment stays, as it was.
    set_verdict(&client, &east, "Healthy").await;
    delete_region(&client, &east).await;
    let (_, _, message) = eventually(
        "FailedOver=False/RegionsUnknown naming east without a CloudRegion",
        Duration::from_secs(30),
        || async {
            failed_over(&services, "shop").await.filter(|(s, r, m)| {
                s == "False" && r == "RegionsUnknown" && m.contains("(no CloudRegion)")
            })
        },
    )
    .await;
    assert!(
        message.contains(&format!("{east} (no CloudRegion)")),
        "{message}"
    );
    // Over a few reconciles (a change to the service asks for one): still there, unscaled.
    services
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}, "spec": {"fallback": {"failback": {"stabilizationSeconds": 31}}}})),
        )
        .await
        .expect("touch shop");
    eventually("generation 2 observed", Duration::from_secs(30), || async {
        let es = services.get("shop").await.ok()?;
        (es.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            both().await,
            (Some(2), Some(2)),
            "a region still listed lost or shrank its Deployment"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
