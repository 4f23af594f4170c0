//! Scenarios 4, 7 and 8: never fooled by a flapping region or by the operator's own lost
//! network, and a planned failover (`drain`) there and back.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use edgeshift::api::{CloudRegion, RegionPhase, ServicePhase};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::drill::*;
use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn failovers(samples: &[Sample]) -> BTreeSet<String> {
    samples.iter().filter_map(|s| s.failover.clone()).collect()
}

/// Healthy → Down transitions of a region along the timeline.
fn downs(samples: &[Sample], region: &str) -> usize {
    samples
        .windows(2)
        .filter(|w| !w[0].region_down(region) && w[1].region_down(region))
        .count()
}

#[tokio::test]
async fn scenario_4_a_region_flapping_every_2s_for_60s_fails_over_at_most_once() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    let drill = Drill::new(
        "chaos-flap",
        Options {
            edge_nodes: &EDGE_NODES,
            ..Options::default()
        },
    )
    .await;
    drill
        .service(
            "shop",
            2,
            &[EAST, WEST],
            json!({"mode": "Failover",
                   "edge": edge_of(&drill, json!({"maxReplicas": 4})),
                   "failback": {"stabilizationSeconds": 10, "stepSeconds": 1}}),
        )
        .await;
    let sampler = drill.sampler("shop").await;
    drill
        .serving_from_cloud(&sampler, "shop", &[("us-east-1", 1), ("us-west-2", 1)])
        .await;

    // Down and up every 2 s for 60 s: 15 outages.
    let start = Instant::now();
    let mut toggles = 0;
    while start.elapsed() < MINUTE {
        let next = start + Duration::from_secs(2 * (toggles + 1));
        if toggles % 2 == 0 {
            faults.region_down(EAST);
        } else {
            faults.region_up(EAST);
        }
        toggles += 1;
        tokio::time::sleep_until(next.into()).await;
    }
    if toggles % 2 == 1 {
        faults.region_up(EAST);
    }
    let flapped = start.elapsed();
    // Whatever happened, the service ends up back in its regions.
    settle(
        &drill,
        &sampler,
        "shop back in its regions",
        Duration::from_secs(120),
        &Expect {
            phase: ServicePhase::Normal,
            ready: &[("us-east-1", 1), ("us-west-2", 1)],
            weights: (100, 0),
            dns: Some(&[EAST_LB, WEST_LB]),
        },
    )
    .await;
    let samples = sampler.samples();
    let episodes = failovers(&samples);
    let down = downs(&samples, EAST);
    let events = drill.events("shop").await;
    let lost_events = events.iter().filter(|(_, r, _)| r == "RegionLost").count();
    report(
        "4 flapping region",
        &format!(
            "{} outages in {}: {down} Down verdict(s), {} failover(s), {lost_events} RegionLost Event(s)",
            toggles.div_ceil(2),
            secs(flapped),
            episodes.len()
        ),
    );
    assert!(episodes.len() <= 1, "failovers: {episodes:?}");
    assert!(down <= 1, "{down} Down verdicts for a flapping region");
    assert!(lost_events <= 1, "{events:?}");
    // The edge was scaled up at most once.
    let scale_ups = samples
        .windows(2)
        .filter(|w| {
            w[0].desired.get("edge").copied().unwrap_or(0) == 0
                && w[1].desired.get("edge").copied().unwrap_or(0) > 0
        })
        .count();
    assert!(scale_ups <= 1, "the edge was scaled up {scale_ups} times");
}

#[tokio::test]
async fn scenario_7_when_the_canaries_fail_too_nothing_fails_over() {
    let _cluster = exclusive_cluster().await;
    let client = client().await;
    let _clean = CleanEdgeNodes::now(&client).await;
    let mut faults = Faults::default();
    let mut canary = Canary::start().await;
    let drill = Drill::new(
        "chaos-partition",
        Options {
            edge_nodes: &EDGE_NODES,
            canaries: vec![canary.url.clone()],
        },
    )
    .await;
    drill
        .service(
            "shop",
            2,
            &[EAST, WEST],
            json!({"mode": "Failover", "edge": edge_of(&drill, json!({"maxReplicas": 4}))}),
        )
        .await;
    let sampler = drill.sampler("shop").await;
    drill
        .serving_from_cloud(&sampler, "shop", &[("us-east-1", 1), ("us-west-2", 1)])
        .await;

    // The operator's own network fails: its canaries stop answering just as the whole provider
    // seems to vanish. It must presume itself cut off and move nothing.
    let cut = Instant::now();
    canary.stop();
    faults.region_down(EAST);
    faults.region_down(WEST);
    let regions: Api<CloudRegion> = Api::all(client.clone());
    let east = drill.region(EAST);
    let partitioned = eventually("east Partitioned", MINUTE, || async {
        let r = regions.get(&east).await.ok()?;
        let c = r
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Partitioned" && c.status == "True")?
            .clone();
        Some(c)
    })
    .await;
    assert_eq!(partitioned.reason, "CanariesFailing");
    // Five times the 6 s a real loss needs to be declared.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(cut.elapsed())).await;
    let during = sampler.samples();
    let during: Vec<&Sample> = during
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= cut))
        .collect();
    for s in &during {
        for r in [EAST, WEST, EUROPE] {
            assert!(
                !s.region_down(r),
                "{r} judged Down while partitioned: {s:#?}"
            );
        }
        assert!(
            s.failover.is_none(),
            "failed over while partitioned: {s:#?}"
        );
        assert!(
            s.desired.get("edge").is_none_or(|r| *r == 0),
            "edge scaled up while partitioned: {s:#?}"
        );
        assert_ne!(s.weights.map(|w| w.1), Some(100), "{s:#?}");
    }
    let last = during.last().expect("samples while partitioned");
    assert!(
        last.regions
            .values()
            .all(|(phase, _)| *phase == RegionPhase::Unknown),
        "verdicts while partitioned: {:?}",
        last.regions
    );
    let region_events = drill.region_events(EAST).await;
    assert!(
        region_events
            .iter()
            .any(|(t, r)| t == "Warning" && r == "Partitioned"),
        "{region_events:?}"
    );
    report(
        "7 canaries failing",
        &format!(
            "provider down and canaries failing for {}: 0 failovers, verdicts {:?}",
            secs(cut.elapsed()),
            last.regions.values().map(|(p, _)| *p).collect::<Vec<_>>()
        ),
    );

    // The network returns with the regions: still nothing moves.
    faults.region_up(EAST);
    faults.region_up(WEST);
    canary.resume().await;
    drill.settled().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = sampler.samples();
    assert!(failovers(&all).is_empty(), "a failover after the partition");
    let events = drill.events("shop").await;
    assert!(
        !events.iter().any(|(_, r, _)| r == "RegionLost"),
        "{events:?}"
    );
}

#[tokio::test]
async fn scenario_8_drain_is_a_planned_failover_and_back() {
    let _cluster = exclusive_cluster().await;
    let drill = Drill::new("chaos-drain", Options::default()).await;
    let sampler = drill
        .cart_on_aws(json!({"stabilizationSeconds": 5, "steps": [50, 100], "stepSeconds": 2}))
        .await;

    let regions: Api<CloudRegion> = Api::all(drill.client.clone());
    let east = drill.region(EAST);
    let drain = |on: bool| {
        let regions = regions.clone();
        let east = east.clone();
        async move {
            regions
                .patch(
                    &east,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"drain": on}})),
                )
                .await
                .expect("drain");
        }
    };
    let drained = Instant::now();
    drain(true).await;
    let moved = settle(
        &drill,
        &sampler,
        "cart moved to us-west-2",
        MINUTE,
        &CART_ON_WEST,
    )
    .await;
    let samples = sampler.samples();
    let emptied =
        first_after(&samples, drained, |s| s.desired.get(&east) == Some(&0)).expect("east emptied");
    assert_eq!(emptied.ready_on("us-west-2"), 4, "{emptied:#?}");
    // No serving gap: the planned move never left users with fewer than 4 replicas.
    let low: Vec<usize> = samples
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= drained))
        .map(Sample::serving)
        .filter(|n| *n < 4)
        .collect();
    assert!(low.is_empty(), "serving dipped during the drain: {low:?}");
    let st = drill
        .services()
        .get("cart")
        .await
        .expect("cart")
        .status
        .expect("status");
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == "FailedOver")
        .expect("FailedOver");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RegionDraining")
    );
    // The region itself stays probed and says why its workloads left.
    let r = regions.get(&east).await.expect("east");
    let draining = r
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Draining"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(
        draining,
        Some(("True".to_string(), "DrainRequested".to_string()))
    );
    report(
        "8 drain",
        &format!(
            "planned failover done {} after drain: true (region {:?}, Draining=True)",
            secs(moved.since(drained)),
            r.phase()
        ),
    );

    let undrained = Instant::now();
    drain(false).await;
    let back = settle(
        &drill,
        &sampler,
        "cart back on 2 + 2",
        Duration::from_secs(90),
        &Expect {
            phase: ServicePhase::Normal,
            ready: &[("us-east-1", 2), ("us-west-2", 2)],
            weights: (100, 0),
            dns: Some(&[EAST_LB, WEST_LB]),
        },
    )
    .await;
    let low: Vec<usize> = sampler
        .samples()
        .iter()
        .filter(|s| s.at.is_some_and(|a| a >= undrained))
        .map(Sample::serving)
        .filter(|n| *n < 4)
        .collect();
    assert!(low.is_empty(), "serving dipped during failback: {low:?}");
    report(
        "8 drain",
        &format!(
            "back on 2 + 2 {} after drain: false (soak 5 s, steps 50/100)",
            secs(back.since(undrained))
        ),
    );
    let events = drill.events("cart").await;
    assert!(
        events.iter().any(|(_, r, _)| r == "FailbackCompleted"),
        "{events:?}"
    );
}
