//! Invalid objects are refused by the API server itself (CRD schema and CEL rules), each
//! with a message that names the offending field.
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::Api;
use serde_json::{json, Value};

use crate::support::*;

fn valid_edge_service() -> Value {
    json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "valid"},
        "spec": {
            "replicas": 2,
            "regions": ["aws-us-east-1", "aws-us-west-2"],
            "template": {"spec": {"containers": [{"name": "app", "image": "shop:1"}]}},
            "fallback": {"mode": "Spillover", "edge": {"maxReplicas": 4, "warmReplicas": 1},
                         "failback": {"steps": [25, 50, 100]}},
            "traffic": {"ports": [{"name": "http", "port": 80}]}
        }
    })
}

fn valid_cloud_region() -> Value {
    json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
        "metadata": {"name": "valid-region"},
        "spec": {
            "provider": "aws", "region": "us-east-1",
            "probes": [{"name": "lb", "http": {"url": "http://127.0.0.11:18080/healthz"}}]
        }
    })
}

fn valid_edge_node() -> Value {
    json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
        "metadata": {"name": "valid-node"},
        "spec": {
            "nodeName": "edge-1", "operator": "0xabc",
            "publicKey": format!("{}=", "A".repeat(43)),
            "signature": format!("{}==", "B".repeat(86)),
            "location": {"latitude": 50.1, "longitude": 8.6, "country": "DE"},
            "pricePerHour": 0.05
        }
    })
}

/// Sets `value` at a JSON pointer, creating nothing: the parent must exist.
fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer with a parent");
    let target = base
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent} in base object"));
    match target {
        Value::Object(map) => {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.to_string(), value);
            }
        }
        Value::Array(items) => {
            let i: usize = key.parse().expect("array index");
            items[i] = value;
        }
        _ => panic!("{parent} is not a container"),
    }
    base
}

fn resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("edgeshift.io", "v1alpha1", kind),
        &plural,
    )
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_naming_the_field() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "validation").await;

    let es = valid_edge_service;
    let cr = valid_cloud_region;
    let en = valid_edge_node;
    // (what is wrong, object, a piece of the message that names the field)
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no regions",
            with(es(), "/spec/regions", json!([])),
            "spec.regions",
        ),
        (
            "duplicate regions",
            with(es(), "/spec/regions", json!(["a", "a"])),
            "spec.regions",
        ),
        (
            "negative replicas",
            with(es(), "/spec/replicas", json!(-1)),
            "spec.replicas",
        ),
        (
            "too many replicas",
            with(es(), "/spec/replicas", json!(100000)),
            "spec.replicas",
        ),
        (
            "unknown placement",
            with(es(), "/spec/placement", json!("Random")),
            "spec.placement",
        ),
        (
            "unknown fallback mode",
            with(es(), "/spec/fallback/mode", json!("Teleport")),
            "spec.fallback.mode",
        ),
        (
            "warm above max",
            with(es(), "/spec/fallback/edge/warmReplicas", json!(9)),
            "warmReplicas",
        ),
        (
            "steps not ascending",
            with(es(), "/spec/fallback/failback/steps", json!([50, 25, 100])),
            "spec.fallback.failback.steps",
        ),
        (
            "steps not ending at 100",
            with(es(), "/spec/fallback/failback/steps", json!([25, 50])),
            "spec.fallback.failback.steps",
        ),
        (
            "stabilization negative",
            with(
                es(),
                "/spec/fallback/failback/stabilizationSeconds",
                json!(-5),
            ),
            "spec.fallback.failback.stabilizationSeconds",
        ),
        (
            "template without containers",
            with(es(), "/spec/template/spec", json!({"containers": []})),
            "spec.template.spec.containers",
        ),
        (
            "container without image",
            with(
                es(),
                "/spec/template/spec/containers/0",
                json!({"name": "app"}),
            ),
            "image",
        ),
        (
            // The pod template carries Kubernetes' own schema: an ill-typed field is refused
            // here, not found later by the operator's decoder.
            "containerPort as a string",
            with(
                es(),
                "/spec/template/spec/containers/0",
                json!({"name": "app", "image": "shop:1", "ports": [{"containerPort": "8080"}]}),
            ),
            "spec.template.spec.containers[0].ports[0].containerPort",
        ),
        (
            "restartPolicy not a string",
            with(es(), "/spec/template/spec/restartPolicy", json!(1)),
            "spec.template.spec.restartPolicy",
        ),
        (
            "too many containers",
            with(
                es(),
                "/spec/template/spec/containers",
                json!((0..=edgeshift::api::edge_service::MAX_CONTAINERS)
                    .map(|i| json!({"name": format!("c{i}"), "image": "shop:1"}))
                    .collect::<Vec<_>>()),
            ),
            "spec.template.spec.containers",
        ),
        (
            "template label not a string",
            with(
                es(),
                "/spec/template",
                json!({"metadata": {"labels": {"tier": 1}},
                "spec": {"containers": [{"name": "app", "image": "shop:1"}]}}),
            ),
            "spec.template.metadata.labels.tier",
        ),
        (
            "port out of range",
            with(es(), "/spec/traffic/ports/0/port", json!(70000)),
            "spec.traffic.ports[0].port",
        ),
        (
            "hostPort with maxPerNode 2",
            with(
                with(es(), "/spec/traffic/ports/0/hostPort", json!(30080)),
                "/spec/fallback/edge/maxPerNode",
                json!(2),
            ),
            "spec.fallback.edge.maxPerNode",
        ),
        (
            "overprovision too high",
            with(es(), "/spec/fallback/edge/overprovisionPercent", json!(500)),
            "spec.fallback.edge.overprovisionPercent",
        ),
        (
            "probe with http and tcp",
            with(
                cr(),
                "/spec/probes/0/tcp",
                json!({"host": "127.0.0.1", "port": 80}),
            ),
            "spec.probes[0]",
        ),
        (
            "probe with neither",
            with(cr(), "/spec/probes/0", json!({"name": "lb"})),
            "spec.probes[0]",
        ),
        (
            "probe url not http",
            with(cr(), "/spec/probes/0/http/url", json!("ftp://example.com/")),
            "spec.probes[0].http.url",
        ),
        (
            "failure threshold zero",
            with(cr(), "/spec/failureThreshold", json!(0)),
            "spec.failureThreshold",
        ),
        (
            "success threshold zero",
            with(cr(), "/spec/successThreshold", json!(0)),
            "spec.successThreshold",
        ),
        (
            "unknown quorum",
            with(cr(), "/spec/quorum", json!("Most")),
            "spec.quorum",
        ),
        (
            "ready fraction above 1",
            with(
                cr(),
                "/spec/nodeReadiness",
                json!({"minReadyFraction": 1.5}),
            ),
            "spec.nodeReadiness.minReadyFraction",
        ),
        (
            "interval zero",
            with(cr(), "/spec/intervalSeconds", json!(0)),
            "spec.intervalSeconds",
        ),
        (
            "missing provider",
            with(cr(), "/spec/provider", Value::Null),
            "spec.provider",
        ),
        (
            "edge node latitude out of range",
            with(en(), "/spec/location/latitude", json!(123.0)),
            "spec.location.latitude",
        ),
        (
            "edge node negative price",
            with(en(), "/spec/pricePerHour", json!(-1.0)),
            "spec.pricePerHour",
        ),
        (
            "edge node key not base64",
            with(en(), "/spec/publicKey", json!("not-a-key")),
            "spec.publicKey",
        ),
        (
            "edge node without signature",
            with(en(), "/spec/signature", Value::Null),
            "spec.signature",
        ),
        (
            "edge node bad country",
            with(en(), "/spec/location/country", json!("Germany")),
            "spec.location.country",
        ),
    ];
    assert!(cases.len() >= 15);

    // The valid objects are accepted: the failures below are about the one broken field.
    for base in [es(), cr(), en()] {
        let kind = base["kind"].as_str().expect("kind").to_string();
        let api = dyn_api(&client, &kind, &ns.name);
        let mut obj: DynamicObject = serde_json::from_value(base).expect("object");
        obj.metadata.name = Some(format!("valid-{}", ns.name));
        obj.metadata.labels = Some([(OWNER_LABEL.to_string(), ns.name.clone())].into());
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("the valid {kind} must be accepted: {e}"));
    }

    let mut failures = vec![];
    for (i, (what, object, field)) in cases.into_iter().enumerate() {
        let kind = object["kind"].as_str().expect("kind").to_string();
        let api = dyn_api(&client, &kind, &ns.name);
        let mut obj: DynamicObject = serde_json::from_value(object).expect("object");
        obj.metadata.name = Some(format!("bad-{i}-{}", ns.name));
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{kind} with {what}: accepted, should be refused")),
            Err(kube::Error::Api(status)) => {
                println!("{kind} with {what}: {}", status.message);
                if status.code != 422 || !status.message.contains(field) {
                    failures.push(format!(
                        "{kind} with {what}: code {} message {:?} does not name {field:?}",
                        status.code, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{kind} with {what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn dyn_api(client: &kube::Client, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let ar = resource(kind);
    if kind == "EdgeService" {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}
