//! Two operators, one Lease: the standby takes over a failover when the leader is killed
//! in the middle of it, and at once when the leader stops gracefully.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, EdgeService};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::*;

const LEASE: &str = "edgeshift-leader";
const LEASE_SECONDS: u64 = 15;

async fn holder(client: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn region(client: &Client, ns: &str, name: &str, label: &str) {
    let api: Api<CloudRegion> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply("edgeshift-e2e").force(),
        &Patch::Apply(json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
            "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
            "spec": {"provider": "aws", "region": label}
        })),
    )
    .await
    .expect("CloudRegion");
    verdict(client, name, "Healthy").await;
}

async fn verdict(client: &Client, name: &str, phase: &str) {
    Api::<CloudRegion>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}})),
        )
        .await
        .expect("verdict");
}

async fn replicas(api: &Api<Deployment>) -> BTreeMap<String, (i32, i32)> {
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|d| {
                    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let ready = d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    (d.metadata.name.unwrap_or_default(), (want, ready))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_standby_takes_over_a_failover_when_the_leader_dies_and_at_once_when_it_stops() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "ha").await;
    let (east, west) = (format!("{}-east", ns.name), format!("{}-west", ns.name));
    region(&client, &ns.name, &east, "us-east-1").await;
    region(&client, &ns.name, &west, "us-west-2").await;
    let lease_args = [
        "--disable-prober",
        "--disable-edge-nodes",
        "--leader-elect",
        "--lease-namespace",
        &ns.name,
        "--lease-duration-seconds",
        "15",
    ];
    let mut first = Operator::start_as(&ns.name, "first", &lease_args);
    eventually(
        "the first operator leads",
        Duration::from_secs(30),
        || async { (holder(&client, &ns.name).await.as_deref() == Some("first")).then_some(()) },
    )
    .await;
    let mut second = Operator::start_as(&ns.name, "second", &lease_args);

    let services: Api<EdgeService> = Api::namespaced(client.clone(), &ns.name);
    let es: EdgeService = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "shop"},
        "spec": {"replicas": 4, "regions": [&east, &west],
                 "template": {"spec": {"containers": [{"name": "app", "image": "registry.example/shop:1"}]}}}
    }))
    .expect("EdgeService");
    services
        .create(&PostParams::default(), &es)
        .await
        .expect("create");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let (east_d, west_d) = (format!("shop-{east}"), format!("shop-{west}"));
    eventually("2 + 2 ready", Duration::from_secs(60), || async {
        let r = replicas(&deployments).await;
        (r.get(&east_d) == Some(&(2, 2)) && r.get(&west_d) == Some(&(2, 2))).then_some(())
    })
    .await;
    assert_eq!(
        holder(&client, &ns.name).await.as_deref(),
        Some("first"),
        "the standby did not take over"
    );

    // East is lost; the leader starts the failover and is SIGKILLed in the middle of it.
    verdict(&client, &east, "Down").await;
    eventually(
        "the failover has started",
        Duration::from_secs(20),
        || async {
            (replicas(&deployments).await.get(&west_d).map(|r| r.0) == Some(4)).then_some(())
        },
    )
    .await;
    let killed = Instant::now();
    first.kill();
    eventually(
        "the standby leads",
        Duration::from_secs(LEASE_SECONDS + 10),
        || async { (holder(&client, &ns.name).await.as_deref() == Some("second")).then_some(()) },
    )
    .await;
    let takeover_kill = killed.elapsed();
    eventually(
        "the standby finishes the failover: west 4/4, east 0",
        Duration::from_secs(60),
        || async {
            let r = replicas(&deployments).await;
            (r.get(&west_d) == Some(&(4, 4)) && r.get(&east_d).map(|r| r.0) == Some(0))
                .then_some(())
        },
    )
    .await;
    // The status follows the children in the same reconcile (after the traffic writes), so
    // it may land a moment after the Deployments do.
    eventually(
        "the status tells the failover (FailedOver=True)",
        Duration::from_secs(20),
        || async {
            let es = services.get("shop").await.ok()?;
            es.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "FailedOver" && c.status == "True")
                .then_some(())
        },
    )
    .await;

    // A graceful stop releases the Lease: a new standby takes over at once.
    let mut third = Operator::start_as(&ns.name, "third", &lease_args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = Instant::now();
    second.terminate();
    eventually(
        "the third operator leads",
        Duration::from_secs(LEASE_SECONDS + 10),
        || async { (holder(&client, &ns.name).await.as_deref() == Some("third")).then_some(()) },
    )
    .await;
    let takeover_term = stopped.elapsed();
    println!(
        "leader takeover: {:.1}s after SIGKILL (lease {LEASE_SECONDS}s), {:.1}s after SIGTERM",
        takeover_kill.as_secs_f64(),
        takeover_term.as_secs_f64()
    );
    assert!(
        takeover_kill <= Duration::from_secs(LEASE_SECONDS + 5),
        "{takeover_kill:?}"
    );
    assert!(takeover_term <= Duration::from_secs(5), "{takeover_term:?}");
    third.terminate();
}
