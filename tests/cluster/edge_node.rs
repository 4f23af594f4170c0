//! The EdgeNode controller against the real API server: registrations signed here with the
//! library, a trust policy ConfigMap in the test namespace, and the community nodes edge-1..3
//! of the test cluster (edge-4..6 belong to the EdgeService tests).
use std::time::Duration;

use edgeshift::api::{EdgeNode, EdgeNodeStatus};
use edgeshift::trust::NodeKey;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::*;

const EDGE_LABEL: &str = "edgeshift.io/edge";
const VERIFIED_LABEL: &str = "edgeshift.io/verified";

/// A registration of `node` by `operator`, signed with `key`, owned by the test namespace.
fn registration(ns: &str, name: &str, node: &str, operator: &str, key: &NodeKey) -> EdgeNode {
    let mut en: EdgeNode = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {
            "nodeName": node, "operator": operator,
            "publicKey": format!("{}=", "A".repeat(43)), "signature": format!("{}==", "A".repeat(86)),
            "location": {"latitude": 52.52, "longitude": 13.405, "country": "DE"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": 20},
            "pricePerHour": 0.05,
            "labels": {"network": "fiber"}
        }
    }))
    .expect("EdgeNode");
    key.sign(&mut en.spec).expect("sign");
    en
}

async fn create(client: &Client, en: &EdgeNode) {
    Api::<EdgeNode>::all(client.clone())
        .create(&PostParams::default(), en)
        .await
        .unwrap_or_else(|e| panic!("create EdgeNode {}: {e}", en.name_any()));
}

async fn policy(client: &Client, ns: &str, data: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "trust-policy", "namespace": ns},
        "data": data
    }))
    .expect("ConfigMap");
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .patch(
            "trust-policy",
            &PatchParams::apply("edgeshift-e2e").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply trust policy");
}

/// The status once the operator has judged the registration.
async fn judged(
    client: &Client,
    name: &str,
    what: &str,
    ok: impl Fn(&EdgeNodeStatus) -> bool,
) -> EdgeNodeStatus {
    let api: Api<EdgeNode> = Api::all(client.clone());
    eventually(
        &format!("EdgeNode {name}: {what}"),
        Duration::from_secs(60),
        || async {
            let status = api.get(name).await.ok()?.status?;
            ok(&status).then_some(status)
        },
    )
    .await
}

fn condition(status: &EdgeNodeStatus, type_: &str) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Events about a cluster-scoped EdgeNode (recorded in `default`): (type, reason).
async fn events_of(client: &Client, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.involved_object.kind.as_deref() == Some("EdgeNode"))
                .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

async fn has_event(client: &Client, name: &str, type_: &str, reason: &str) {
    eventually(
        &format!("{type_} Event {reason} on EdgeNode {name}"),
        Duration::from_secs(30),
        || async {
            events_of(client, name)
                .await
                .iter()
                .any(|(t, r)| t == type_ && r == reason)
                .then_some(())
        },
    )
    .await;
}

fn has_edge_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key == EDGE_LABEL
                    && t.value.as_deref() == Some("true")
                    && t.effect == "NoSchedule"
            })
        })
}

/// Whether edgeshift's field manager has ever applied anything to the Node.
fn touched_by_edgeshift(node: &Node) -> bool {
    node.managed_fields()
        .iter()
        .any(|m| m.manager.as_deref() == Some("edgeshift"))
}

/// Removes edgeshift's labels and taint from the Nodes, now and when dropped (after the
/// operator, which is declared later and so dropped first).
struct NodeCleanup(Vec<&'static str>);

impl NodeCleanup {
    async fn new(client: &Client, nodes: &[&'static str]) -> Self {
        for n in nodes {
            unmark_edge_node(client, n).await;
        }
        NodeCleanup(nodes.to_vec())
    }
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        let nodes = self.0.clone();
        in_drop(move |client| async move {
            for n in nodes {
                unmark_edge_node(&client, n).await;
            }
        });
    }
}

#[tokio::test]
async fn forged_wrong_key_unknown_revoked_and_tampered_registrations_are_rejected_and_leave_the_node_alone(
) {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "en-reject").await;
    let sfx = &ns.name;
    let alice = NodeKey::generate().expect("key");
    let revoked = NodeKey::generate().expect("key");
    let not_alices = NodeKey::generate().expect("key");
    let mallory = NodeKey::generate().expect("key");
    policy(
        &client,
        &ns.name,
        json!({
            "mode": "strict",
            "allowedOperators": format!("alice: [{}, {}]\n", alice.public_key_base64(), revoked.public_key_base64()),
            "revokedKeys": format!("- {}\n", revoked.public_key_base64()),
        }),
    )
    .await;
    let _cleanup = NodeCleanup::new(&client, &["edge-1"]).await;
    let _operator = Operator::start_with(
        &ns.name,
        &[
            "--disable-prober",
            "--trust-policy",
            &format!("{}/trust-policy", ns.name),
        ],
    );

    let mut forged = registration(sfx, &format!("forged-{sfx}"), "edge-1", "alice", &alice);
    forged.spec.signature = alice.sign_bytes(b"edgeshift-registration-v1\nsomething else\n");
    let wrong_key = registration(
        sfx,
        &format!("wrong-key-{sfx}"),
        "edge-1",
        "alice",
        &not_alices,
    );
    let unknown = registration(
        sfx,
        &format!("unknown-{sfx}"),
        "edge-1",
        "mallory",
        &mallory,
    );
    let revoked_en = registration(sfx, &format!("revoked-{sfx}"), "edge-1", "alice", &revoked);
    let mut tampered = registration(sfx, &format!("tampered-{sfx}"), "edge-1", "alice", &alice);
    tampered.spec.price_per_hour = Some(0.01);
    let no_node = registration(sfx, &format!("no-node-{sfx}"), "edge-404", "alice", &alice);
    let cases = [
        (forged, "InvalidSignature"),
        (wrong_key, "KeyNotAllowed"),
        (unknown, "UnknownOperator"),
        (revoked_en, "Revoked"),
        (tampered, "InvalidSignature"),
        (no_node, "NodeNotFound"),
    ];
    for (en, _) in &cases {
        create(&client, en).await;
    }
    for (en, reason) in &cases {
        let name = en.name_any();
        let status = judged(&client, &name, &format!("rejected as {reason}"), |s| {
            s.reason.as_deref() == Some(*reason)
        })
        .await;
        assert!(!status.verified, "{name}: {status:?}");
        assert_eq!(
            condition(&status, "Verified"),
            Some(("False".to_string(), reason.to_string())),
            "{name}"
        );
        assert!(status.message.as_deref().is_some_and(|m| !m.is_empty()));
        assert_eq!(status.score, None);
        has_event(&client, &name, "Warning", reason).await;
    }

    // Nothing was verified, so edge-1 was never touched: no label, no taint, no field manager.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = Api::<Node>::all(client.clone())
        .get("edge-1")
        .await
        .expect("edge-1");
    assert!(
        !node.labels().contains_key(VERIFIED_LABEL),
        "{:?}",
        node.labels()
    );
    assert!(!has_edge_taint(&node));
    assert!(!touched_by_edgeshift(&node), "{:?}", node.managed_fields());
}

#[tokio::test]
async fn a_valid_registration_labels_and_taints_its_node_and_a_revoked_key_unlabels_it() {
    // Exclusive: a Node serves only while every registration naming it is verified, and the
    // other trust tests register edge-1..3 with forged keys.
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "en-valid").await;
    let key = NodeKey::generate().expect("key");
    policy(&client, &ns.name, json!({"mode": "open"})).await;
    let _cleanup = NodeCleanup::new(&client, &["edge-2"]).await;
    let _operator = Operator::start_with(
        &ns.name,
        &[
            "--disable-prober",
            "--trust-policy",
            &format!("{}/trust-policy", ns.name),
        ],
    );
    let name = format!("edge-2-{}", ns.name);
    // A label of this test's own, signed with the rest, so only its EdgeService uses the node.
    let mut en = registration(&ns.name, &name, "edge-2", "bob", &key);
    en.spec.labels.insert("e2e-test".into(), ns.name.clone());
    key.sign(&mut en.spec).expect("sign");
    create(&client, &en).await;

    let status = judged(&client, &name, "verified", |s| {
        s.verified && s.last_heartbeat.is_some()
    })
    .await;
    assert!(status.ready);
    assert_eq!(status.availability, Some(1.0));
    assert!(status.score.is_some_and(|s| s > 0.0), "{status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("Probation"),
        "a new node is on probation"
    );
    assert_eq!(
        condition(&status, "Verified"),
        Some(("True".into(), "Verified".into()))
    );
    assert_eq!(
        condition(&status, "Ready"),
        Some(("True".into(), "NodeReady".into()))
    );
    assert_eq!(
        condition(&status, "Probation"),
        Some(("True".into(), "Probation".into()))
    );
    assert_eq!(
        condition(&status, "Quarantined").map(|c| c.0),
        Some("False".into())
    );
    has_event(&client, &name, "Normal", "Verified").await;

    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually(
        "edge-2 labelled and tainted",
        Duration::from_secs(30),
        || async {
            let node = nodes.get("edge-2").await.ok()?;
            let labels = node.labels();
            (labels.get(EDGE_LABEL).map(String::as_str) == Some("true")
                && labels.get(VERIFIED_LABEL).map(String::as_str) == Some("true")
                && has_edge_taint(&node))
            .then_some(node)
        },
    )
    .await;
    // Only our fields: the Node's own labels are all still there.
    assert_eq!(
        node.labels()
            .get("kubernetes.io/hostname")
            .map(String::as_str),
        Some("edge-2")
    );

    // A steady node costs no writes: the Node heart-beats (as its kubelet would, set here
    // because KWOK with leases beats only every ~10 minutes) and its EdgeNode stays as it was;
    // the next real change carries that heart-beat along.
    let edge_nodes: Api<EdgeNode> = Api::all(client.clone());
    let before = edge_nodes.get(&name).await.expect("EdgeNode");
    let beat = Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .expect("round");
    nodes
        .patch_status(
            "edge-2",
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [
                {"type": "Ready", "lastHeartbeatTime": beat.to_string()}
            ]}})),
        )
        .await
        .expect("Node heart-beat");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = edge_nodes.get(&name).await.expect("EdgeNode");
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "a heart-beat alone wrote the EdgeNode: {:?}",
        after.status
    );
    let mut cheaper = after.clone();
    cheaper.spec.price_per_hour = Some(0.02);
    key.sign(&mut cheaper.spec).expect("sign");
    edge_nodes
        .replace(&name, &PostParams::default(), &cheaper)
        .await
        .expect("a new price");
    let repriced = judged(&client, &name, "re-scored", |s| s.score > status.score).await;
    // (KWOK may have beaten again since: at least ours.)
    assert!(
        repriced
            .last_heartbeat
            .as_ref()
            .is_some_and(|t| t.0 >= beat),
        "the write for the new price records the latest heart-beat: {:?}",
        repriced.last_heartbeat
    );

    // Edge pods land there: a service that keeps one warm replica on the edge.
    let region = format!("{}-region", ns.name);
    let regions: Api<edgeshift::api::CloudRegion> = Api::all(client.clone());
    regions
        .patch(
            &region,
            &PatchParams::apply("edgeshift-e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
                "metadata": {"name": region, "labels": {OWNER_LABEL: &ns.name}},
                "spec": {"provider": "aws", "region": "us-west-2"}
            })),
        )
        .await
        .expect("CloudRegion");
    regions
        .patch_status(
            &region,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Healthy", "lastTransitionTime": Timestamp::now().to_string()}})),
        )
        .await
        .expect("CloudRegion verdict");
    let es: edgeshift::api::EdgeService = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "warm", "namespace": &ns.name},
        "spec": {
            "replicas": 1, "regions": [region],
            "template": {"spec": {"containers": [{"name": "app", "image": "registry.example/warm:1"}]}},
            "fallback": {"edge": {"warmReplicas": 1, "maxReplicas": 2,
                                  "requirements": {"selector": {"matchLabels": {"e2e-test": &ns.name}}}}}
        }
    }))
    .expect("EdgeService");
    Api::<edgeshift::api::EdgeService>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &es)
        .await
        .expect("create EdgeService");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let (pod, node, _) = eventually(
        "the warm edge replica Ready",
        Duration::from_secs(60),
        || async {
            ready_pods(&pods, "edgeshift.io/target=edge")
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(node, "edge-2", "edge pod {pod} runs on the verified node");

    // The platform team revokes the key: the Node loses the verified label, keeps the taint.
    policy(
        &client,
        &ns.name,
        json!({"mode": "open", "revokedKeys": format!("- {}\n", key.public_key_base64())}),
    )
    .await;
    let status = judged(&client, &name, "revoked", |s| {
        s.reason.as_deref() == Some("Revoked")
    })
    .await;
    assert!(!status.verified);
    has_event(&client, &name, "Warning", "Revoked").await;
    eventually(
        "edge-2 without the verified label",
        Duration::from_secs(30),
        || async {
            let node = nodes.get("edge-2").await.ok()?;
            (!node.labels().contains_key(VERIFIED_LABEL) && has_edge_taint(&node)).then_some(())
        },
    )
    .await;
}

/// Brings an edge node back even when the test fails half-way.
struct EdgeNodeUp(&'static str);

impl Drop for EdgeNodeUp {
    fn drop(&mut self) {
        undo_fault(&["edge-node-up", self.0]);
    }
}

#[tokio::test]
async fn an_edge_node_that_flaps_three_times_is_quarantined() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "en-flap").await;
    let key = NodeKey::generate().expect("key");
    policy(&client, &ns.name, json!({"mode": "open"})).await;
    let _cleanup = NodeCleanup::new(&client, &["edge-3"]).await;
    let _restore = EdgeNodeUp("edge-3");
    let _operator = Operator::start_with(
        &ns.name,
        &[
            "--disable-prober",
            "--trust-policy",
            &format!("{}/trust-policy", ns.name),
            "--quarantine-flaps",
            "3",
            "--quarantine-window-seconds",
            "600",
            "--quarantine-seconds",
            "900",
            // Each flap is down only seconds: a short window makes that visible in availability.
            "--availability-window-seconds",
            "60",
        ],
    );
    let name = format!("edge-3-{}", ns.name);
    create(
        &client,
        &registration(&ns.name, &name, "edge-3", "carol", &key),
    )
    .await;
    judged(&client, &name, "verified and ready", |s| {
        s.verified && s.ready
    })
    .await;

    let nodes: Api<Node> = Api::all(client.clone());
    for flap in 1..=3 {
        inject(&["edge-node-down", "edge-3"]);
        eventually(
            &format!("flap {flap}: edge-3 NotReady"),
            Duration::from_secs(60),
            || async {
                let node = nodes.get("edge-3").await.ok()?;
                (!node_ready(&node)).then_some(())
            },
        )
        .await;
        judged(
            &client,
            &name,
            &format!("flap {flap}: seen not ready"),
            |s| !s.ready,
        )
        .await;
        inject(&["edge-node-up", "edge-3"]);
        eventually(
            &format!("flap {flap}: edge-3 Ready again"),
            Duration::from_secs(60),
            || async {
                let node = nodes.get("edge-3").await.ok()?;
                node_ready(&node).then_some(())
            },
        )
        .await;
        judged(
            &client,
            &name,
            &format!("flap {flap}: seen ready again"),
            |s| s.ready,
        )
        .await;
    }

    let status = judged(&client, &name, "quarantined", |s| {
        s.reason.as_deref() == Some("Quarantined")
    })
    .await;
    let until = status
        .quarantined_until
        .as_ref()
        .expect("quarantinedUntil")
        .0;
    let now = Timestamp::now();
    assert!(until > now, "quarantined until {until}, now {now}");
    assert!(until.duration_since(now).as_secs() <= 900);
    assert!(
        status.verified,
        "quarantine is not a verdict on the registration"
    );
    assert_eq!(
        condition(&status, "Quarantined"),
        Some(("True".into(), "Quarantined".into()))
    );
    assert!(status.availability.is_some_and(|a| a < 1.0), "{status:?}");
    has_event(&client, &name, "Warning", "Quarantined").await;
}
