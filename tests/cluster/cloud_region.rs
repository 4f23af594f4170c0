//! The region prober against the real API server and a real operator process: verdicts from
//! real health endpoints and Node heartbeats, a region taken away and brought back, at most one
//! status write a minute when steady, and the partition guard.
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, RegionPhase};
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::support::*;

/// Creates CloudRegion `name` (owned by the test namespace) with `spec`.
async fn region(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    let obj: CloudRegion = serde_json::from_value(json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
        "metadata": {"name": name, "labels": {OWNER_LABEL: ns}},
        "spec": spec
    }))
    .expect("CloudRegion");
    Api::<CloudRegion>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("edgeshift-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply CloudRegion");
}

/// The region once `accept` holds for it, polled every 250 ms.
async fn region_when(
    client: &Client,
    name: &str,
    what: &str,
    limit: Duration,
    accept: impl Fn(&CloudRegion) -> bool,
) -> CloudRegion {
    let api: Api<CloudRegion> = Api::all(client.clone());
    eventually(&format!("CloudRegion {name} {what}"), limit, || async {
        let r = api.get(name).await.ok()?;
        accept(&r).then_some(r)
    })
    .await
}

fn condition(r: &CloudRegion, type_: &str) -> Option<(String, String, String)> {
    r.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Events about a CloudRegion (cluster-scoped objects' Events live in `default`), as (reason, message).
async fn region_events(client: &Client, name: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
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

/// Brings a region back when dropped, even when the test failed: later tests need it.
struct RegionDown {
    region: &'static str,
    down: bool,
}

impl RegionDown {
    fn inject(region: &'static str) -> RegionDown {
        inject(&["region-down", region]);
        RegionDown { region, down: true }
    }

    fn up(&mut self) {
        inject(&["region-up", self.region]);
        self.down = false;
    }
}

impl Drop for RegionDown {
    fn drop(&mut self) {
        if self.down {
            undo_fault(&["region-up", self.region]);
        }
    }
}

#[tokio::test]
async fn a_lost_region_is_declared_down_within_seconds_and_healthy_again_after_it_returns() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "cr-down").await;
    let name = format!("{}-east", ns.name);
    let endpoint = region_endpoint("aws-us-east-1");
    region(
        &client,
        &ns.name,
        &name,
        json!({"provider": "aws", "region": "us-east-1",
               "probes": [{"name": "api", "http": {"url": endpoint}}]}),
    )
    .await;
    let operator = Operator::start(&ns.name);

    let healthy = region_when(
        &client,
        &name,
        "Healthy with 2/2 nodes",
        Duration::from_secs(60),
        |r| {
            let s = r.status.as_ref();
            r.phase() == RegionPhase::Healthy && s.and_then(|s| s.nodes.as_deref()) == Some("2/2")
        },
    )
    .await;
    let st = healthy.status.clone().expect("status");
    let probe = st.probes.first().expect("a probe result");
    assert_eq!(probe.name, "api");
    assert!(probe.ok, "{probe:?}");
    assert!(probe.latency_millis.is_some(), "{probe:?}");
    assert_eq!(probe.message, format!("{endpoint}: status 200"));
    assert_eq!((st.ready_nodes, st.total_nodes), (Some(2), Some(2)));
    assert_eq!(st.observed_generation, healthy.metadata.generation);
    assert_eq!(
        condition(&healthy, "Healthy").map(|c| (c.0, c.1)),
        Some(("True".into(), "ChecksPassing".into()))
    );
    assert_eq!(
        condition(&healthy, "Partitioned").map(|c| c.0),
        Some("False".into())
    );

    // The region goes away: its endpoint stops answering, its nodes stop heart-beating.
    let injected = Instant::now();
    let mut lost = RegionDown::inject("aws-us-east-1");
    let injection_took = injected.elapsed();
    let down = region_when(&client, &name, "Down", Duration::from_secs(30), |r| {
        r.phase() == RegionPhase::Down
    })
    .await;
    let to_down = injected.elapsed();
    println!(
        "region-down → Down in {:.1}s (the injection itself took {:.1}s)",
        to_down.as_secs_f64(),
        injection_took.as_secs_f64()
    );
    let st = down.status.clone().expect("status");
    assert!(st.consecutive_failures >= 3, "{st:?}");
    assert!(!st.probes[0].ok);
    assert!(
        st.probes[0].message.starts_with(&format!("{endpoint}: ")),
        "{}",
        st.probes[0].message
    );
    let (status, reason, message) = condition(&down, "Healthy").expect("Healthy condition");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "RegionDown"));
    assert!(message.contains("probe api"), "{message}");
    assert!(
        to_down < Duration::from_secs(10),
        "Down took {to_down:?}; expected about 4–6 s after the first failed probe\n{}",
        operator.log_tail(30)
    );
    let events = eventually("a RegionDown Event", Duration::from_secs(10), || async {
        let events = region_events(&client, &name).await;
        events
            .iter()
            .any(|(reason, _)| reason == "RegionDown")
            .then_some(events)
    })
    .await;
    println!("events: {events:?}");

    // The nodes follow: NotReady, which the status counts.
    region_when(
        &client,
        &name,
        "0/2 nodes Ready",
        Duration::from_secs(60),
        |r| r.status.as_ref().and_then(|s| s.nodes.as_deref()) == Some("0/2"),
    )
    .await;

    // Back: Healthy again once the endpoint answers and the nodes are Ready for 3 rounds.
    let returned = Instant::now();
    lost.up();
    let back = region_when(
        &client,
        &name,
        "Healthy again",
        Duration::from_secs(90),
        |r| r.phase() == RegionPhase::Healthy,
    )
    .await;
    println!(
        "region-up → Healthy in {:.1}s",
        returned.elapsed().as_secs_f64()
    );
    assert_eq!(
        back.status.as_ref().and_then(|s| s.nodes.as_deref()),
        Some("2/2")
    );
    eventually("a RegionHealthy Event", Duration::from_secs(10), || async {
        region_events(&client, &name)
            .await
            .iter()
            .any(|(reason, _)| reason == "RegionHealthy")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_steady_healthy_region_is_written_at_most_once_a_minute() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "cr-steady").await;
    let name = format!("{}-west", ns.name);
    let endpoint = region_endpoint("aws-us-west-2");
    // http://HOST:PORT/healthz -> the same endpoint as a TCP probe.
    let authority = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (host, port) = authority
        .split_once(':')
        .expect("host:port in the endpoint URL");
    let port: u16 = port.parse().expect("endpoint port");
    region(
        &client,
        &ns.name,
        &name,
        json!({"provider": "aws", "region": "us-west-2",
               "probes": [{"name": "lb", "http": {"url": endpoint}},
                          {"name": "lb-tcp", "tcp": {"host": host, "port": port}}]}),
    )
    .await;
    let _operator = Operator::start(&ns.name);
    let api: Api<CloudRegion> = Api::all(client.clone());
    let healthy = region_when(&client, &name, "Healthy", Duration::from_secs(60), |r| {
        r.phase() == RegionPhase::Healthy
    })
    .await;
    let st = healthy.status.clone().expect("status");
    assert!(st.probes.iter().all(|p| p.ok), "{:?}", st.probes);
    assert_eq!(st.probes.len(), 2);

    // Probe rounds every 2 s, but over the next 30 s no status write at all...
    let became_healthy = Instant::now();
    let mut versions = vec![healthy.resource_version()];
    while became_healthy.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rv = api.get(&name).await.expect("get").resource_version();
        if versions.last() != Some(&rv) {
            versions.push(rv);
        }
    }
    assert_eq!(
        versions.len(),
        1,
        "a steady region saw writes within 30 s: {versions:?}"
    );
    // ...and one heartbeat with fresh probe results about a minute after the last write.
    let heartbeat = region_when(&client, &name, "heartbeat", Duration::from_secs(45), |r| {
        r.resource_version() != healthy.resource_version()
    })
    .await;
    let since_healthy = became_healthy.elapsed();
    println!(
        "first write after Healthy came {:.0}s later",
        since_healthy.as_secs_f64()
    );
    assert!(
        since_healthy >= Duration::from_secs(50),
        "heartbeat after {since_healthy:?}"
    );
    let newest = |r: &CloudRegion| {
        r.status.as_ref().and_then(|s| {
            s.probes
                .iter()
                .filter_map(|p| p.last_probe_time.clone())
                .max()
        })
    };
    assert!(newest(&heartbeat) > newest(&healthy), "fresh probe times");
    assert_eq!(heartbeat.phase(), RegionPhase::Healthy);
}

#[tokio::test]
async fn when_every_canary_fails_a_lost_region_is_unknown_and_never_down() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    ensure_crds().await;
    let ns = TestNamespace::new(&client, "cr-canary").await;
    let name = format!("{}-lost", ns.name);
    // Nothing answers its endpoint and it has no Nodes: without the guard it would be Down
    // after 3 rounds (6 s).
    region(
        &client,
        &ns.name,
        &name,
        json!({"provider": "lostcloud", "region": "nowhere-1",
               "probes": [{"name": "api", "http": {"url": "http://127.0.0.1:9/healthz"}}]}),
    )
    .await;
    let _operator = Operator::start_with(&ns.name, &["--canary", "http://127.0.0.1:9/"]);

    let partitioned = region_when(
        &client,
        &name,
        "Partitioned",
        Duration::from_secs(30),
        |r| condition(r, "Partitioned").is_some_and(|c| c.0 == "True"),
    )
    .await;
    let (_, reason, message) = condition(&partitioned, "Partitioned").expect("condition");
    assert_eq!(reason, "CanariesFailing");
    assert!(
        message.contains("http://127.0.0.1:9/: connection refused"),
        "{message}"
    );
    assert_eq!(
        condition(&partitioned, "Healthy").map(|c| (c.0, c.1)),
        Some(("Unknown".into(), "Partitioned".into()))
    );

    // Many times failureThreshold rounds later, still Unknown, with no failures counted.
    let api: Api<CloudRegion> = Api::all(client.clone());
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(15) {
        let r = api.get(&name).await.expect("get");
        assert_eq!(r.phase(), RegionPhase::Unknown, "{:?}", r.status);
        assert_eq!(
            r.status.as_ref().map(|s| s.consecutive_failures),
            Some(0),
            "{:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let events = region_events(&client, &name).await;
    let partition_events = events.iter().filter(|(r, _)| r == "Partitioned").count();
    assert_eq!(
        partition_events, 1,
        "one Partitioned Event per episode: {events:?}"
    );
    assert!(!events.iter().any(|(r, _)| r == "RegionDown"), "{events:?}");
}
