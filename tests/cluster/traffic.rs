//! Traffic objects against the real API server (Gateway API and ExternalDNS CRDs installed):
//! the HTTPRoute's backend weights and the DNSEndpoint's targets follow the workload from two
//! healthy regions to verified edge nodes, another field manager's additions to the route
//! survive edgeshift's writes, nothing is written while the weights stay, and both objects go
//! when the spec stops asking for them. API discovery tells an installed integration from a
//! missing one (the shared cluster keeps its CRDs, so the missing case is a made-up group).
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService};
use edgeshift::controller::traffic::{
    served, DnsEndpoint, HttpRoute, Installed, Integrations, RouteRule, ROUTE_RULE,
    TRAFFIC_INTEGRATION_UNAVAILABLE,
};
use k8s_openapi::api::core::v1::{Node, NodeAddress, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::*;

/// The community nodes this test fakes as verified, and the public address each gets.
const EDGE_NODES: [(&str, &str); 3] = [
    ("edge-1", "203.0.113.1"),
    ("edge-2", "203.0.113.2"),
    ("edge-3", "203.0.113.3"),
];
const FOREIGN_MANAGER: &str = "platform-team";

async fn region(client: &Client, ns: &str, name: &str, label: &str) {
    let api: Api<CloudRegion> = Api::all(client.clone());
    let obj: CloudRegion = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": {"provider": "aws", "region": label}
    }))
    .expect("CloudRegion");
    api.patch(
        name,
        &PatchParams::apply("edgeshift-e2e").force(),
        &Patch::Apply(&obj),
    )
    .await
    .expect("apply CloudRegion");
    set_verdict(client, name, "Healthy").await;
}

/// What the prober would write (the operator runs with `--disable-prober`).
async fn set_verdict(client: &Client, name: &str, phase: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    Api::<CloudRegion>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase, "lastTransitionTime": now}})),
        )
        .await
        .expect("set CloudRegion verdict");
}

fn addresses_without_external(node: &Node) -> Vec<NodeAddress> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.type_ != "ExternalIP")
        .collect()
}

fn external_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "ExternalIP")
        .map(|a| a.address.clone())
}

/// Sets a node's ExternalIP unless it has it; `None` when that failed.
async fn set_external_ip(api: &Api<Node>, node: &str, ip: &str) -> Option<()> {
    let current = api.get(node).await.ok()?;
    if external_ip(&current).as_deref() != Some(ip) {
        let mut addresses = addresses_without_external(&current);
        addresses.push(NodeAddress {
            type_: "ExternalIP".into(),
            address: ip.into(),
        });
        api.patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": addresses}})),
        )
        .await
        .ok()?;
    }
    Some(())
}

/// Gives a node a public address. KWOK's heartbeat means to keep the addresses it finds, but
/// one in flight may carry the old list (and KWOK has been seen dropping them): set it until
/// it stays.
async fn give_external_ip(client: &Client, node: &str, ip: &str) {
    let api: Api<Node> = Api::all(client.clone());
    eventually(
        &format!("ExternalIP {ip} on {node}"),
        Duration::from_secs(60),
        || async {
            set_external_ip(&api, node, ip).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            (external_ip(&api.get(node).await.ok()?).as_deref() == Some(ip)).then_some(())
        },
    )
    .await;
}

/// Takes back what the test did to the edge nodes (verified labels, public addresses), now
/// and when dropped (after the operator, which is declared later and so dropped first), so
/// the EdgeNode tests find them untouched.
struct EdgeNodesRestored;

async fn restore_edge_nodes(client: &Client) {
    let api: Api<Node> = Api::all(client.clone());
    for (name, _) in EDGE_NODES {
        let labels = json!({"metadata": {"labels": {"edgeshift.io/verified": null, "edgeshift.io/edge": null}}});
        let _ = api
            .patch(name, &PatchParams::default(), &Patch::Merge(labels))
            .await;
        if let Ok(node) = api.get(name).await {
            if external_ip(&node).is_some() {
                let addresses = addresses_without_external(&node);
                let _ = api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"addresses": addresses}})),
                    )
                    .await;
            }
        }
    }
}

impl Drop for EdgeNodesRestored {
    fn drop(&mut self) {
        in_drop(|client| async move { restore_edge_nodes(&client).await });
    }
}

/// EdgeNodes for edge-1..3, verified and ready as the EdgeNode controller would judge them,
/// with a label only this test's service selects; the Nodes labelled verified and given
/// public addresses.
async fn fake_verified_edge_nodes(client: &Client, ns: &str) {
    let edge_api: Api<EdgeNode> = Api::all(client.clone());
    let node_api: Api<Node> = Api::all(client.clone());
    for (node, ip) in EDGE_NODES {
        let name = format!("{node}-{ns}");
        let obj: EdgeNode = serde_json::from_value(json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
            "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
            "spec": {"nodeName": node, "operator": "e2e", "publicKey": format!("{}=", "A".repeat(43)),
                     "signature": format!("{}==", "B".repeat(86)),
                     "labels": {"e2e.edgeshift.io/suite": ns}}
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
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"verified": true, "ready": true, "availability": 1.0, "score": 1.0}})),
            )
            .await
            .expect("EdgeNode status");
        node_api
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"edgeshift.io/verified": "true", "edgeshift.io/edge": "true"}}})),
            )
            .await
            .expect("label edge node");
        give_external_ip(client, node, ip).await;
    }
}

/// `--disable-edge-nodes` keeps the EdgeNode controller off the faked EdgeNodes, where the
/// binary has it.
fn operator_flags() -> Vec<&'static str> {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_edgeshift"))
        .args(["run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut flags = vec!["--disable-prober"];
    if help.contains("--disable-edge-nodes") {
        flags.push("--disable-edge-nodes");
    }
    flags
}

fn our_rule(route: &HttpRoute) -> Option<&RouteRule> {
    route
        .spec
        .rules
        .iter()
        .find(|r| r.name.as_deref() == Some(ROUTE_RULE))
}

/// (cloud, edge) backend weights of edgeshift's rule.
fn weights(route: &HttpRoute) -> Option<(i32, i32)> {
    let rule = our_rule(route)?;
    let weight = |name: String| {
        rule.backend_refs
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.weight)
    };
    Some((
        weight(format!("{}-cloud", route.name_any()))?,
        weight(format!("{}-edge", route.name_any()))?,
    ))
}

/// Record type → targets.
fn records(record: &DnsEndpoint) -> BTreeMap<String, Vec<String>> {
    record
        .spec
        .endpoints
        .iter()
        .map(|e| (e.record_type.clone(), e.targets.clone()))
        .collect()
}

async fn condition(services: &Api<EdgeService>, name: &str) -> Option<(String, String)> {
    let es = services.get(name).await.ok()?;
    let c = es
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == TRAFFIC_INTEGRATION_UNAVAILABLE)?;
    Some((c.status, c.reason))
}

#[tokio::test]
async fn route_weights_and_dns_targets_follow_the_workload_to_the_edge_and_keep_foreign_rules() {
    // Verified EdgeNodes are cluster-wide: another test's EdgeService would place pods on them.
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "traffic").await;
    let sfx = ns.name.clone();
    let (east, west) = (format!("{sfx}-east"), format!("{sfx}-west"));
    region(&client, &ns.name, &east, "us-east-1").await;
    region(&client, &ns.name, &west, "us-west-2").await;
    restore_edge_nodes(&client).await;
    let _restore = EdgeNodesRestored;
    fake_verified_edge_nodes(&client, &ns.name).await;
    let _operator = Operator::start_with(&ns.name, &operator_flags());

    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    let es: EdgeService = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "shop"},
        "spec": {
            "replicas": 2,
            "regions": [east, west],
            "template": {"metadata": {"labels": {"app": "shop"}},
                         "spec": {"containers": [{"name": "app", "image": "registry.example/shop:1"}]}},
            "fallback": {"mode": "Failover",
                         "edge": {"maxReplicas": 6, "overprovisionPercent": 50, "maxPerNode": 1,
                                  "requirements": {"selector": {"matchLabels": {"e2e.edgeshift.io/suite": &ns.name}}}}},
            "traffic": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "hostPort": 8080}],
                "gateway": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
                            "hostnames": ["shop.example.com"]},
                "dns": {"hostname": "shop.example.com", "ttl": 30,
                        "cloudTargets": {east.clone(): ["198.51.100.10"],
                                         west.clone(): ["198.51.100.20", "2001:db8::20"]}}
            }
        }
    }))
    .expect("EdgeService");
    services
        .create(&PostParams::default(), &es)
        .await
        .expect("create EdgeService");
    let uid = services.get("shop").await.expect("EdgeService").uid();

    // Both regions serve: all route traffic to the cloud, DNS on the regional load balancers.
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), &ns.name);
    let dns: Api<DnsEndpoint> = Api::namespaced(client.clone(), &ns.name);
    let route = eventually(
        "HTTPRoute shop with cloud 100 / edge 0",
        Duration::from_secs(60),
        || async {
            let r = routes.get_opt("shop").await.ok()??;
            (weights(&r) == Some((100, 0))).then_some(r)
        },
    )
    .await;
    assert_eq!(route.spec.hostnames, ["shop.example.com"]);
    assert_eq!(
        (
            route.spec.parent_refs[0].name.as_str(),
            route.spec.parent_refs[0].namespace.as_deref()
        ),
        ("public", Some("gateways"))
    );
    let rule = our_rule(&route).expect("edgeshift's rule");
    assert!(rule.backend_refs.iter().all(|b| b.port == Some(80)));
    let owner = &route.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid), owner.controller),
        ("EdgeService", uid.as_ref(), Some(true))
    );
    let cloud_records = BTreeMap::from([
        (
            "A".to_string(),
            vec!["198.51.100.10".to_string(), "198.51.100.20".to_string()],
        ),
        ("AAAA".to_string(), vec!["2001:db8::20".to_string()]),
    ]);
    let record = eventually(
        "DNSEndpoint shop on the cloud targets",
        Duration::from_secs(60),
        || async {
            let r = dns.get_opt("shop").await.ok()??;
            (records(&r) == cloud_records).then_some(r)
        },
    )
    .await;
    assert!(record
        .spec
        .endpoints
        .iter()
        .all(|e| e.dns_name == "shop.example.com" && e.record_ttl == Some(30)));
    assert_eq!(
        condition(&services, "shop").await,
        Some(("False".to_string(), "Published".to_string()))
    );

    // Another manager adds a filter to edgeshift's rule and a rule of its own (as `kubectl
    // edit` would: read, change, write with the resourceVersion).
    let live = routes.get("shop").await.expect("route");
    let mut rules = serde_json::to_value(&live.spec.rules).expect("rules");
    let ours = live
        .spec
        .rules
        .iter()
        .position(|r| r.name.as_deref() == Some(ROUTE_RULE))
        .expect("our rule");
    rules[ours]["filters"] = json!([{"type": "RequestHeaderModifier",
        "requestHeaderModifier": {"add": [{"name": "x-team", "value": "platform"}]}}]);
    rules
        .as_array_mut()
        .expect("rules list")
        .push(json!({"name": "admin",
        "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
        "backendRefs": [{"name": "shop", "port": 80}]}));
    let foreign = routes
        .patch(
            "shop",
            &PatchParams {
                field_manager: Some(FOREIGN_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": live.resource_version()},
                                 "spec": {"rules": rules}}),
            ),
        )
        .await
        .expect("foreign manager edits the route");

    // Steady: reconciles (forced here by touching the EdgeService) write neither object.
    for i in 0..3 {
        services
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"e2e.edgeshift.io/touch": i.to_string()}}}),
                ),
            )
            .await
            .expect("touch");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = routes.get("shop").await.expect("route");
    assert_eq!(
        still.resource_version(),
        foreign.resource_version(),
        "the route was rewritten though the weights did not change"
    );
    assert_eq!(
        dns.get("shop").await.expect("record").resource_version(),
        record.resource_version(),
        "the DNS record was rewritten though its targets did not change"
    );

    // The provider is lost: the workload and all traffic move to the verified edge nodes.
    set_verdict(&client, &east, "Down").await;
    set_verdict(&client, &west, "Down").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let public: BTreeMap<&str, &str> = EDGE_NODES.into_iter().collect();
    let node_api: Api<Node> = Api::all(client.clone());
    let (route, record) = eventually(
        "HTTPRoute cloud 0 / edge 100 and DNSEndpoint on the edge nodes of ready edge pods",
        Duration::from_secs(90),
        || async {
            let route = routes.get_opt("shop").await.ok()??;
            let record = dns.get_opt("shop").await.ok()??;
            let edge_pods =
                ready_pods(&pods, "edgeshift.io/service=shop,edgeshift.io/target=edge").await;
            // Should KWOK have dropped an address meanwhile, the fixture puts it back.
            for (_, node, _) in &edge_pods {
                if let Some(ip) = public.get(node.as_str()) {
                    set_external_ip(&node_api, node, ip).await;
                }
            }
            let expected: BTreeSet<String> = edge_pods
                .iter()
                .filter_map(|(_, node, _)| public.get(node.as_str()).map(|ip| ip.to_string()))
                .collect();
            let published: BTreeSet<String> = records(&record).into_values().flatten().collect();
            // How many edge pods the planner runs is its business (and other sessions' tests
            // may claim edge-1..3 too): the record lists the nodes of whichever are ready.
            (weights(&route) == Some((0, 100)) && !expected.is_empty() && published == expected)
                .then_some((route, record))
        },
    )
    .await;
    assert_eq!(
        records(&record).keys().collect::<Vec<_>>(),
        ["A"],
        "only the edge nodes' IPv4 addresses: {record:?}"
    );

    // What the other manager added is still there.
    let rule = our_rule(&route).expect("edgeshift's rule");
    let filters = rule.extra.get("filters").expect("the foreign filter");
    assert_eq!(
        filters[0]["requestHeaderModifier"]["add"][0]["name"],
        "x-team"
    );
    assert!(
        route
            .spec
            .rules
            .iter()
            .any(|r| r.name.as_deref() == Some("admin")),
        "the foreign rule survived: {:?}",
        route.spec.rules
    );
    assert_eq!(route.spec.rules.len(), 2);

    // The spec stops asking: both objects go.
    services
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"traffic": {"gateway": null, "dns": null}}})),
        )
        .await
        .expect("drop gateway and dns");
    eventually(
        "HTTPRoute and DNSEndpoint deleted",
        Duration::from_secs(60),
        || async {
            let route = routes.get_opt("shop").await.ok()?;
            let record = dns.get_opt("shop").await.ok()?;
            (route.is_none() && record.is_none()).then_some(())
        },
    )
    .await;
    eventually(
        "TrafficIntegrationUnavailable False/NotRequested",
        Duration::from_secs(30),
        || async {
            (condition(&services, "shop").await
                == Some(("False".to_string(), "NotRequested".to_string())))
            .then_some(())
        },
    )
    .await;

    services
        .delete("shop", &DeleteParams::background())
        .await
        .expect("delete");
    let edge_api: Api<EdgeNode> = Api::all(client.clone());
    for (node, _) in EDGE_NODES {
        let _ = edge_api
            .delete(&format!("{node}-{sfx}"), &DeleteParams::default())
            .await;
    }
    for r in [&east, &west] {
        let _ = Api::<CloudRegion>::all(client.clone())
            .delete(r, &DeleteParams::default())
            .await;
    }
}

#[tokio::test]
async fn discovery_tells_installed_integrations_from_missing_ones() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    let integrations = Integrations::new(client.clone(), Duration::from_secs(60));
    assert_eq!(
        integrations.installed().await,
        Installed {
            gateway: true,
            dns: true
        },
        "the test cluster has the Gateway API and DNSEndpoint CRDs"
    );
    // What a cluster without the CRD answers: a group/version that is not served.
    assert_eq!(
        served(&client, "gateway.example.com/v1", "httproutes").await,
        Some(false)
    );
    assert_eq!(
        served(&client, "gateway.networking.k8s.io/v1", "nosuchroutes").await,
        Some(false)
    );
}
