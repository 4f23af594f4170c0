//! Scenarios 1, 2, 3, 5 and 6: a region lost with Spillover, a whole provider lost to the edge,
//! recovery and stepwise failback, an edge node lost mid-failover, and the operator killed
//! mid-failover.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use edgeshift::api::{EdgeNode, RegionPhase, ServicePhase};
use edgeshift::controller::traffic::node_addresses;
use edgeshift::controller::traffic::{DnsEndpoint, HttpRoute};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::drill::*;
use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn has_event(events: &[(String, String, String)], type_: &str, reason: &str) -> bool {
    events.iter().any(|(t, r, _)| t == type_ && r == reason)
}

/// The service `shop`, 2 × (east, west), that fails over to the edge with 50 %
/// overprovisioning: 3 edge replicas, at most 1 per node while the nodes are on probation.
async fn shop_on_aws(drill: &Drill) {
    drill
        .service(
            "shop",
            2,
            &[EAST, WEST],
            json!({"mode": "Failover",
                   "edge": edge_of(drill, json!({"maxReplicas": 6, "overprovisionPercent": 50, "warmReplicas": 0}))}),
        )
        .await;
}

/// A drill with `edge_nodes` registered and `shop` serving from the cloud, sampled.
async fn shop_serving(prefix: &str, edge_nodes: &'static [&'static str]) -> (Drill, Sampler) {
    let drill = Drill::new(
        prefix,
        Options {
            edge_nodes,
            ..Options::default()
        },
    )
    .await;
    shop_on_aws(&drill).await;
    let sampler = drill.sampler("shop").await;
    drill
        .serving_from_cloud(&sampler, "shop", &[("us-east-1", 1), ("us-west-2", 1)])
        .await;
    (drill, sampler)
}

const ON_THE_EDGE: Expect<'static> = Expect {
    phase: ServicePhase::OnEdge,
    ready: &[(ON_EDGE, 3)],
    weights: (0, 100),
    dns: None,
};

fn on_edge_ready(s: &Sample) -> bool {
    s.ready_on(ON_EDGE) >= 3
}

fn on_edge_shifted(s: &Sample) -> bool {
    let cloud: BTreeSet<&str> = REGIONS.iter().map(|r| r.3).collect();
    s.weights == Some((0, 100))
        && s.edge_endpoints.len() >= 3
        && !s.dns.is_empty()
        && s.dns.iter().all(|t| !cloud.contains(t.as_str()))
}

/// Edge pods run only on verified community nodes, each EdgeNode still verified.
async fn assert_on_verified_edge_nodes(drill: &Drill, end: &Sample) {
    let nodes: BTreeSet<&str> = end
        .ready
        .get(ON_EDGE)
        .into_iter()
        .flatten()
        .map(|(_, n)| n.as_str())
        .collect();
    let edge: Api<EdgeNode> = Api::all(drill.client.clone());
    for n in &nodes {
        let topo = topology_name(&drill.client, n)
            .await
            .unwrap_or_else(|| panic!("an edge pod runs on {n}, not a community node"));
        let en = edge
            .get(&format!("{}-{topo}", drill.ns))
            .await
            .expect("EdgeNode");
        assert!(
            en.status.as_ref().is_some_and(|s| s.verified),
            "{n} serves without a verified registration: {:?}",
            en.status
        );
    }
}

#[tokio::test]
async fn scenario_1_a_lost_region_spills_over_to_the_other_region_of_its_provider() {
    let _cluster = exclusive_cluster().await;
    let mut faults = Faults::default();
    let drill = Drill::new("chaos-spill", Options::default()).await;
    let sampler = drill
        .cart_on_aws(json!({"stabilizationSeconds": 10, "stepSeconds": 2}))
        .await;

    let injected = faults.region_down(EAST);
    let end = settle(
        &drill,
        &sampler,
        "cart served by us-west-2 alone",
        MINUTE,
        &CART_ON_WEST,
    )
    .await;
    let samples = sampler.samples();
    let rto = Rto::measure(
        &samples,
        injected,
        &[EAST],
        |s| s.ready_on("us-west-2") >= 4,
        |s| s.dns == BTreeSet::from([WEST_LB.to_string()]) && s.cloud_endpoints.len() == 4,
    );
    report("1 region lost, Spillover", &rto.line("us-west-2"));

    // Make-before-break: east was scaled to 0 only once west held all 4 ready.
    let east = drill.region(EAST);
    let emptied = first_after(&samples, injected, |s| s.desired.get(&east) == Some(&0))
        .expect("east scaled to 0");
    assert_eq!(
        emptied.ready_on("us-west-2"),
        4,
        "east emptied before west was ready: {emptied:#?}"
    );
    assert_eq!(end.desired.get(&drill.region(WEST)), Some(&4));
    assert!(end.desired.get("edge").is_none_or(|r| *r == 0), "{end:#?}");
    let es = drill.services().get("cart").await.expect("cart");
    let st = es.status.expect("status");
    let failed_over = st
        .conditions
        .iter()
        .find(|c| c.type_ == "FailedOver")
        .expect("FailedOver condition");
    assert_eq!(
        (failed_over.status.as_str(), failed_over.reason.as_str()),
        ("True", "RegionLost")
    );
    assert!(failed_over.message.contains(&east), "{failed_over:?}");
    let record = st.last_failover.expect("lastFailover");
    assert_eq!(record.from, vec![east.clone()]);
    assert!(record.traffic_shifted_at.is_some(), "{record:?}");
    let events = drill.events("cart").await;
    assert!(has_event(&events, "Warning", "RegionLost"), "{events:?}");
}

#[tokio::test]
async fn scenario_2_losing_a_provider_moves_replicas_and_traffic_to_verified_edge_nodes() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    let (drill, sampler) = shop_serving("chaos-provider", &EDGE_NODES).await;

    let injected = faults.region_down(EAST);
    faults.region_down(WEST);
    let end = settle(&drill, &sampler, "shop on the edge", MINUTE, &ON_THE_EDGE).await;
    let rto = Rto::measure(
        &sampler.samples(),
        injected,
        &[EAST, WEST],
        on_edge_ready,
        on_edge_shifted,
    );
    report("2 provider lost, to the edge", &rto.line("edge"));
    report_provider_rto(&rto);

    assert_on_verified_edge_nodes(&drill, &end).await;
    assert_eq!(end.desired.get(&drill.region(EAST)), Some(&0));
    assert_eq!(end.desired.get(&drill.region(WEST)), Some(&0));
    assert_eq!(end.desired.get("edge"), Some(&3));
    let st = drill
        .services()
        .get("shop")
        .await
        .expect("shop")
        .status
        .expect("status");
    assert_eq!(st.edge.as_deref(), Some("3/3"));
    assert_eq!(st.edge_traffic_percent, Some(100));
    let record = st.last_failover.expect("lastFailover");
    assert!(
        record.from.contains(&drill.region(EAST)) && record.from.contains(&drill.region(WEST)),
        "{record:?}"
    );
    assert!(
        record.edge_ready_at.is_some() && record.traffic_shifted_at.is_some(),
        "{record:?}"
    );
    // `kubectl describe` tells the story: the loss, the move, serving from the edge.
    let events = drill.events("shop").await;
    let reasons: Vec<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    assert!(has_event(&events, "Warning", "RegionLost"), "{events:?}");
    assert!(has_event(&events, "Normal", "OnEdge"), "{events:?}");
    println!("[chaos] shop's Events: {reasons:?}");
}

/// The provider-loss RTO against the target: ≤ 10 s from the first failed probe (printed, not
/// asserted: speed targets belong to `make bench`).
fn report_provider_rto(rto: &Rto) {
    let target = Duration::from_secs(10);
    report(
        "provider-loss RTO vs target",
        &format!(
            "{} (target ≤ {}): {}",
            secs(rto.total()),
            secs(target),
            if rto.total() <= target {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
}

#[tokio::test]
async fn scenario_3_recovery_fails_back_in_steps_after_the_soak_window_never_below_replicas() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    let drill = Drill::new(
        "chaos-failback",
        Options {
            edge_nodes: &EDGE_NODES,
            ..Options::default()
        },
    )
    .await;
    let soak = Duration::from_secs(10);
    drill
        .service(
            "shop",
            2,
            &[EAST, WEST],
            json!({"mode": "Failover",
                   "edge": edge_of(&drill, json!({"maxReplicas": 6, "overprovisionPercent": 50, "warmReplicas": 1})),
                   "failback": {"stabilizationSeconds": soak.as_secs(), "steps": [25, 50, 100], "stepSeconds": 3}}),
        )
        .await;
    let sampler = drill.sampler("shop").await;
    // One warm replica on the edge from the start, without traffic.
    drill
        .serving_from_cloud(
            &sampler,
            "shop",
            &[("us-east-1", 1), ("us-west-2", 1), (ON_EDGE, 1)],
        )
        .await;
    let injected = faults.region_down(EAST);
    faults.region_down(WEST);
    settle(&drill, &sampler, "shop on the edge", MINUTE, &ON_THE_EDGE).await;
    let rto = Rto::measure(
        &sampler.samples(),
        injected,
        &[EAST, WEST],
        on_edge_ready,
        on_edge_shifted,
    );
    report("3 provider lost (1 warm edge replica)", &rto.line("edge"));

    let recovered = Instant::now();
    faults.region_up(EAST);
    faults.region_up(WEST);
    let end = settle(
        &drill,
        &sampler,
        "shop back on aws with one warm edge replica",
        Duration::from_secs(120),
        &Expect {
            phase: ServicePhase::Normal,
            ready: &[("us-east-1", 1), ("us-west-2", 1), (ON_EDGE, 1)],
            weights: (100, 0),
            dns: Some(&[EAST_LB, WEST_LB]),
        },
    )
    .await;
    assert_eq!(
        end.desired.get("edge"),
        Some(&1),
        "edge back to warmReplicas"
    );
    let samples = sampler.samples();
    let (east, west) = (drill.region(EAST), drill.region(WEST));
    let back: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= recovered))
        .collect();

    // Each region takes replicas back only after the soak window of its own continuous
    // health (times in status are whole seconds, hence the slack).
    let mut waited = Vec::new();
    for (region, name) in [(EAST, &east), (WEST, &west)] {
        let healthy = first_after(&samples, recovered, |s| {
            s.regions
                .get(region)
                .is_some_and(|(p, _)| *p == RegionPhase::Healthy)
        })
        .and_then(|s| s.at)
        .unwrap_or_else(|| panic!("{region} Healthy again"));
        let scaled = first_after(&samples, recovered, |s| {
            s.desired.get(name).is_some_and(|r| *r > 0)
        })
        .unwrap_or_else(|| panic!("{region} scaled up again"));
        let after = scaled.since(healthy);
        assert!(
            after + Duration::from_millis(1500) >= soak,
            "{region} took replicas back {after:?} after it was Healthy, before the {soak:?} soak window"
        );
        waited.push(format!("{region} {}", secs(after)));
    }
    // Traffic follows ready replicas: the first cloud traffic goes to a ready region.
    let first_cloud = back
        .iter()
        .find(|s| s.weights.is_some_and(|(c, _)| c > 0))
        .expect("cloud traffic again");
    // In steps: the cloud's weight rose through 25 and 50 to 100, never back. (Within a step
    // the cloud gets less while only part of it is ready.)
    let mut steps: Vec<i32> = back.iter().filter_map(|s| s.weights.map(|w| w.0)).collect();
    steps.dedup();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1])
            && [25, 50, 100].iter().all(|s| steps.contains(s))
            && steps.last() == Some(&100),
        "cloud weights during failback: {steps:?}"
    );
    // Make-before-break all the way: from the failover's end until failback completed, the
    // replicas behind weighted backends never fell below 2.
    let low: Vec<(Duration, usize)> = back
        .iter()
        .filter(|s| s.serving() < 2)
        .map(|s| (s.since(recovered), s.serving()))
        .collect();
    assert!(
        low.is_empty(),
        "serving replicas fell below 2 at (time since recovery, serving): {low:?}"
    );
    // The cloud was scaled up before any traffic went to it (its share follows its ready
    // replicas: one of two ready gets part of the step), the edge scaled down last.
    assert!(
        !first_cloud.cloud_endpoints.is_empty(),
        "traffic went to a cloud without ready replicas: {first_cloud:#?}"
    );
    let edge_down = back
        .iter()
        .find(|s| s.desired.get("edge").is_some_and(|r| *r < 3))
        .expect("edge scaled down");
    assert_eq!(
        edge_down.weights,
        Some((100, 0)),
        "the edge shrank before all traffic was back: {edge_down:#?}"
    );
    assert_eq!(end.desired.get(&east), Some(&1));
    assert_eq!(end.desired.get(&west), Some(&1));
    report(
        "3 recovery",
        &format!(
            "failback began after each region's soak ({}; soak {}), cloud weights {steps:?}, completed {} after recovery; serving never below 2 ({} samples)",
            waited.join(", "),
            secs(soak),
            secs(end.since(recovered)),
            back.len()
        ),
    );
    let events = drill.events("shop").await;
    for reason in ["FailbackStep", "FailbackCompleted"] {
        assert!(has_event(&events, "Normal", reason), "{reason}: {events:?}");
    }
    let record = drill
        .services()
        .get("shop")
        .await
        .expect("shop")
        .status
        .and_then(|s| s.last_failover)
        .expect("lastFailover");
    assert!(record.failed_back_at.is_some(), "{record:?}");
}

#[tokio::test]
async fn scenario_5_an_edge_node_lost_mid_failover_has_its_replicas_replaced_on_other_edge_nodes() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    let (drill, sampler) = shop_serving("chaos-edgeloss", &EDGE_NODES).await;
    let injected = faults.region_down(EAST);
    faults.region_down(WEST);

    // As soon as an edge pod has a node, that node goes away.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &drill.ns);
    let lost_node = eventually("an edge pod bound to a node", MINUTE, || async {
        let list = pods
            .list(
                &ListParams::default().labels("edgeshift.io/service=shop,edgeshift.io/target=edge"),
            )
            .await
            .ok()?;
        list.items
            .iter()
            .find_map(|p| p.spec.as_ref()?.node_name.clone())
    })
    .await;
    let lost_addresses: BTreeSet<String> = Api::<Node>::all(client.clone())
        .get(&lost_node)
        .await
        .map(|n| node_addresses(&n).into_iter().collect())
        .unwrap_or_default();
    let lost = topology_name(&client, &lost_node)
        .await
        .expect("an edge pod on a community node");
    let at_loss = sampler.last().unwrap_or_default();
    faults.edge_node_down(lost);
    report(
        "5 edge node lost mid-failover",
        &format!(
            "{lost} stopped {} after the provider was lost, with {} of 3 edge pods Ready",
            secs(injected.elapsed()),
            at_loss.ready_on(ON_EDGE)
        ),
    );
    let on_lost = |s: &Sample| {
        s.ready
            .get(ON_EDGE)
            .into_iter()
            .flatten()
            .any(|(_, n)| *n == lost_node)
    };
    let points_at_lost = |s: &Sample| s.dns.iter().any(|t| lost_addresses.contains(t));
    let end = settle(
        &drill,
        &sampler,
        &format!("3 edge pods Ready without {lost}"),
        Duration::from_secs(90),
        &ON_THE_EDGE,
    )
    .await;
    // The end state may be reached before the lost node's pod is marked unready; wait for it.
    let end = if on_lost(&end) || points_at_lost(&end) {
        sampler
            .wait(&drill, &format!("no ready pod on {lost}"), MINUTE, |s| {
                ON_THE_EDGE.seen_in(s, &s.dns) && !on_lost(s) && !points_at_lost(s)
            })
            .await
    } else {
        end
    };
    assert_on_verified_edge_nodes(&drill, &end).await;
    assert!(
        !points_at_lost(&end),
        "DNS still points at {lost}: {end:#?}"
    );
    let rto = Rto::measure(
        &sampler.samples(),
        injected,
        &[EAST, WEST],
        |s| s.ready_on(ON_EDGE) >= 3 && !on_lost(s),
        |s| on_edge_shifted(s) && !points_at_lost(s),
    );
    report(
        "5 edge node lost mid-failover",
        &rto.line(&format!("edge without {lost}")),
    );
    let status = Api::<EdgeNode>::all(client.clone())
        .get(&format!("{}-{lost}", drill.ns))
        .await
        .expect("EdgeNode")
        .status
        .expect("status");
    assert!(!status.ready, "{lost}'s EdgeNode still ready: {status:?}");
}

/// What a namespace holds for the service `shop`, normalized so two drills compare: children
/// by kind and name, each with one controller owner (the EdgeService); Deployment replicas by
/// target; ReplicaSets with replicas per Deployment; live pods per target; route weights and
/// the number of DNS targets.
#[derive(Debug, PartialEq)]
struct EndState {
    children: BTreeSet<(String, String)>,
    replicas: BTreeMap<String, i32>,
    scaled_replica_sets: BTreeMap<String, usize>,
    pods: BTreeMap<String, usize>,
    ready: BTreeMap<String, usize>,
    weights: Option<(i32, i32)>,
    dns_targets: usize,
    phase: Option<ServicePhase>,
}

async fn end_state(drill: &Drill, end: &Sample) -> EndState {
    let client = &drill.client;
    let ns = &drill.ns;
    let uid = drill.services().get("shop").await.expect("shop").uid();
    let strip = |name: &str| name.replace(&format!("{ns}-"), "");
    let mut children = BTreeSet::new();
    let owned_once =
        |kind: &str,
         name: &str,
         refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            let controllers: Vec<_> = refs.iter().filter(|r| r.controller == Some(true)).collect();
            assert!(
                controllers.len() == 1
                    && controllers[0].kind == "EdgeService"
                    && Some(&controllers[0].uid) == uid.as_ref(),
                "{kind} {name} is not owned by the EdgeService alone: {refs:?}"
            );
        };
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("deployments");
    let mut replicas = BTreeMap::new();
    for d in &deployments.items {
        owned_once("Deployment", &d.name_any(), d.owner_references());
        children.insert(("Deployment".to_string(), strip(&d.name_any())));
        let target = d
            .labels()
            .get("edgeshift.io/target")
            .cloned()
            .unwrap_or_default();
        replicas.insert(
            strip(&target),
            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        );
    }
    for s in Api::<Service>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("services")
        .items
    {
        owned_once("Service", &s.name_any(), s.owner_references());
        children.insert(("Service".to_string(), s.name_any()));
    }
    let routes = Api::<HttpRoute>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("routes");
    for r in &routes.items {
        owned_once("HTTPRoute", &r.name_any(), r.owner_references());
        children.insert(("HTTPRoute".to_string(), r.name_any()));
    }
    let records = Api::<DnsEndpoint>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("records");
    for r in &records.items {
        owned_once("DNSEndpoint", &r.name_any(), r.owner_references());
        children.insert(("DNSEndpoint".to_string(), r.name_any()));
    }
    let mut scaled_replica_sets = BTreeMap::new();
    for rs in Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("replicasets")
        .items
    {
        if rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
            let owner = rs
                .owner_references()
                .first()
                .map(|o| strip(&o.name))
                .unwrap_or_default();
            *scaled_replica_sets.entry(owner).or_insert(0) += 1;
        }
    }
    let mut pods = BTreeMap::new();
    for p in Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
    {
        if p.metadata.deletion_timestamp.is_none() {
            let target = p
                .labels()
                .get("edgeshift.io/target")
                .cloned()
                .unwrap_or_default();
            *pods.entry(strip(&target)).or_insert(0) += 1;
        }
    }
    EndState {
        children,
        replicas,
        scaled_replica_sets,
        pods,
        ready: end.ready_counts(),
        weights: end.weights,
        dns_targets: end.dns.len(),
        phase: end.phase,
    }
}

#[tokio::test]
async fn scenario_6_the_operator_killed_mid_failover_reaches_the_same_end_state_without_orphans() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    // Two operators, each with its own namespace, copy of the service and three community
    // nodes (a node registered twice serves only while both registrations qualify): one runs
    // through the failover undisturbed, the other is SIGKILLed in the middle of it and restarted.
    let (calm, calm_sampler) = shop_serving("chaos-calm", &EDGE_NODES[..3]).await;
    let (mut killed, sampler) = shop_serving("chaos-killed", &EDGE_NODES[3..]).await;

    let injected = faults.region_down(EAST);
    faults.region_down(WEST);
    let decided = sampler
        .wait(&killed, "the failover decided", MINUTE, |s| {
            s.desired.get("edge").is_some_and(|r| *r > 0)
        })
        .await;
    killed.kill_operator();
    let at_kill = sampler.last().unwrap_or(decided);
    report(
        "6 operator killed mid-failover",
        &format!(
            "SIGKILL {} after injection, {} of 3 edge pods Ready, edge weight {:?}; restarted 3 s later",
            secs(injected.elapsed()),
            at_kill.ready_on(ON_EDGE),
            at_kill.weights.map(|w| w.1)
        ),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    killed.restart_operator();

    let calm_end = settle(
        &calm,
        &calm_sampler,
        "the calm shop on the edge",
        MINUTE,
        &ON_THE_EDGE,
    )
    .await;
    let killed_end = settle(
        &killed,
        &sampler,
        "the killed shop on the edge",
        MINUTE,
        &ON_THE_EDGE,
    )
    .await;
    let rto = Rto::measure(
        &sampler.samples(),
        injected,
        &[EAST, WEST],
        on_edge_ready,
        on_edge_shifted,
    );
    report(
        "6 operator killed mid-failover",
        &rto.line("edge (3 s without an operator)"),
    );
    // Let anything a confused restart would do show up before comparing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calm_state = end_state(&calm, &calm_end).await;
    let killed_state = end_state(&killed, &killed_end).await;
    assert_eq!(
        killed_state, calm_state,
        "the restarted operator's end state differs from the uninterrupted one"
    );
    assert!(
        killed_state.scaled_replica_sets.values().all(|n| *n <= 1),
        "duplicate ReplicaSets: {killed_state:?}"
    );
    assert_eq!(
        killed_state.pods.get("edge"),
        Some(&3),
        "edge pods (no duplicates): {killed_state:?}"
    );
    assert_on_verified_edge_nodes(&killed, &killed_end).await;
    let events = killed.events("shop").await;
    assert!(has_event(&events, "Normal", "OnEdge"), "{events:?}");
}
