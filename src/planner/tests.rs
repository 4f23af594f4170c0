//! Named scenarios: each reads as a story a platform team would tell.

use super::*;
use crate::api::fixtures::at;
use crate::api::{EdgeRequirements, EdgeSelector, EdgeService};

const EAST: &str = "aws-us-east-1";
const WEST: &str = "aws-us-west-2";
const EUROPE: &str = "gcp-europe-west1";

fn edge_nodes(count: usize) -> Vec<EdgeNodeView> {
    (1..=count)
        .map(|i| EdgeNodeView::ready(&format!("edge-{i}")))
        .collect()
}

/// Plans and applies until nothing changes any more (at most 10 rounds, same clock).
/// Six replicas over two Healthy regions, EAST and WEST, with three edge nodes, settled.
fn steady_east_west() -> (PlanInput, Plan) {
    let service = EdgeService::test().replicas(6).regions([EAST, WEST]);
    settle(
        PlanInput::new(service.spec, at(0))
            .region(RegionView::healthy(EAST))
            .region(RegionView::healthy(WEST))
            .edge_nodes(edge_nodes(3)),
    )
}

fn settle(mut input: PlanInput) -> (PlanInput, Plan) {
    let mut plan = plan(&input);
    for _ in 0..10 {
        let next = input.after(&plan);
        let next_plan = super::plan(&next);
        if next_plan == plan && next.observed == input.observed {
            return (next, next_plan);
        }
        input = next;
        plan = next_plan;
    }
    panic!("plan did not settle: {plan:#?}");
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a PlannedCondition {
    plan.condition(type_)
        .unwrap_or_else(|| panic!("plan has no {type_} condition: {:#?}", plan.conditions))
}

#[test]
fn normal_spread_divides_replicas_evenly_in_region_order() {
    let service = EdgeService::test()
        .replicas(7)
        .regions([EAST, WEST, EUROPE])
        .warm_replicas(1);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST))
        .region(RegionView::healthy(WEST))
        .region(RegionView::healthy(EUROPE))
        .edge_nodes(edge_nodes(2));
    let first = plan(&input);
    assert_eq!(
        (
            first.replicas(EAST),
            first.replicas(WEST),
            first.replicas(EUROPE),
            first.replicas(EDGE_TARGET)
        ),
        (3, 2, 2, 1)
    );
    assert_eq!(
        first.weights.values().sum::<u32>(),
        0,
        "nothing is ready yet"
    );
    assert_eq!(first.phase, ServicePhase::Normal);
    assert!(
        first.events.is_empty(),
        "a first Normal plan is no news: {:?}",
        first.events
    );

    let (_, settled) = settle(input);
    assert_eq!(settled.weight(EAST), 43);
    assert_eq!(settled.weight(WEST), 29);
    assert_eq!(settled.weight(EUROPE), 28);
    assert_eq!(
        settled.weight(EDGE_TARGET),
        0,
        "warm edge replicas carry no traffic while the cloud serves"
    );
    assert_eq!(
        condition(&settled, conditions::READY).status,
        ConditionStatus::True
    );
    assert_eq!(
        condition(&settled, conditions::FAILED_OVER).status,
        ConditionStatus::False
    );
    assert_eq!(settled.edge_candidates, vec!["edge-1", "edge-2"]);
}

#[test]
fn ordered_puts_everything_on_the_first_healthy_region() {
    let service = EdgeService::test()
        .replicas(4)
        .regions([EAST, WEST])
        .ordered();
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).degraded())
        .region(RegionView::healthy(WEST));
    let plan = plan(&input);
    assert_eq!(
        (plan.replicas(EAST), plan.replicas(WEST)),
        (4, 0),
        "Degraded still serves"
    );
}

#[test]
fn one_region_down_spills_over_to_the_other_region() {
    let (steady, _) = steady_east_west();

    let lost = steady
        .clone()
        .region(RegionView::healthy(EAST).down_since(at(-6)))
        .at(at(1));
    let plan = plan(&lost);
    assert_eq!(plan.replicas(WEST), 6);
    assert_eq!(
        plan.replicas(EAST),
        3,
        "east keeps its replicas until west has 6 ready"
    );
    assert_eq!(plan.target(EAST).map(|t| t.planned), Some(0));
    assert_eq!(
        plan.replicas(EDGE_TARGET),
        0,
        "Spillover uses the edge only when no region is left"
    );
    assert_eq!(plan.weight(EAST), 0, "traffic leaves a Down region at once");
    assert_eq!(plan.weight(WEST), 100);
    assert_eq!(plan.phase, ServicePhase::FailingOver);
    let failed_over = condition(&plan, conditions::FAILED_OVER);
    assert_eq!(failed_over.status, ConditionStatus::True);
    assert_eq!(
        failed_over.message,
        "region aws-us-east-1 is Down: 3 replicas moved to aws-us-west-2 (Spillover)"
    );
    let reasons: Vec<&str> = plan.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["RegionLost"],
        "one Event tells the failover's start"
    );
    assert_eq!(plan.events[0].type_, EventType::Warning);
    let record = plan.last_failover.as_ref().expect("a failover is recorded");
    assert_eq!(record.from, vec![EAST.to_string()]);
    assert_eq!(record.detected_at, Time(at(-6)));
    assert_eq!(record.decision_millis, Some(7000));

    let (_, settled) = settle(lost);
    assert_eq!((settled.replicas(EAST), settled.replicas(WEST)), (0, 6));
    assert_eq!(
        settled.phase,
        ServicePhase::Normal,
        "served from the cloud again"
    );
    assert_eq!(
        condition(&settled, conditions::FAILED_OVER).status,
        ConditionStatus::True
    );
    let record = settled.last_failover.as_ref().expect("still recorded");
    assert!(record.edge_ready_at.is_some() && record.traffic_shifted_at.is_some());
}

#[test]
fn all_regions_of_a_provider_down_moves_the_service_to_the_edge() {
    let service = EdgeService::test().replicas(4).regions([EAST, WEST]);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .region(RegionView::healthy(WEST).down())
        .edge_nodes(edge_nodes(3));
    let first = plan(&input);
    assert_eq!(
        first.replicas(EDGE_TARGET),
        5,
        "4 lost replicas plus 25% overprovisioning"
    );
    assert_eq!(first.phase, ServicePhase::FailingOver);
    assert_eq!(
        condition(&first, conditions::FAILED_OVER).message,
        "all regions of provider aws are lost (region aws-us-east-1 is Down; region aws-us-west-2 is Down): \
         4 replicas moved to the edge as 5 (Spillover)"
    );
    let (_, settled) = settle(input);
    assert_eq!(settled.phase, ServicePhase::OnEdge);
    assert_eq!(settled.weight(EDGE_TARGET), 100);
    assert_eq!((settled.replicas(EAST), settled.replicas(WEST)), (0, 0));
    assert_eq!(
        condition(&settled, conditions::EDGE_CAPACITY_INSUFFICIENT).status,
        ConditionStatus::False
    );
}

#[test]
fn failover_mode_sends_only_the_lost_share_to_the_edge() {
    let service = EdgeService::test()
        .replicas(6)
        .regions([EAST, WEST, EUROPE])
        .failover();
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .region(RegionView::healthy(WEST))
        .region(RegionView::healthy(EUROPE))
        .edge_nodes(edge_nodes(2));
    let (_, settled) = settle(input);
    assert_eq!((settled.replicas(WEST), settled.replicas(EUROPE)), (2, 2));
    assert_eq!(
        settled.replicas(EDGE_TARGET),
        3,
        "2 lost replicas, 25% overprovisioned, rounded up"
    );
    assert_eq!(settled.phase, ServicePhase::OnEdge);
    assert_eq!(settled.weights.values().sum::<u32>(), 100);
    assert_eq!(settled.weight(EDGE_TARGET), 43);
}

#[test]
fn edge_capacity_short_places_what_fits_and_says_so() {
    let service = EdgeService::test().replicas(4).regions([EAST]);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_node(EdgeNodeView::ready("edge-1"));
    let plan = plan(&input);
    assert_eq!(plan.replicas(EDGE_TARGET), 2, "one node, maxPerNode 2");
    assert_eq!(plan.phase, ServicePhase::Degraded);
    let short = condition(&plan, conditions::EDGE_CAPACITY_INSUFFICIENT);
    assert_eq!(short.status, ConditionStatus::True);
    assert_eq!(short.reason, "NotEnoughEdgeNodes");
    assert_eq!(
        short.message,
        "the edge should run 5 replicas but 1 matching edge nodes hold only 2 (maxPerNode 2)"
    );
}

#[test]
fn max_replicas_caps_the_edge() {
    let service = EdgeService::test()
        .replicas(20)
        .regions([EAST])
        .max_edge_replicas(10);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_nodes(edge_nodes(20));
    let plan = plan(&input);
    assert_eq!(plan.replicas(EDGE_TARGET), 10);
    assert_eq!(plan.phase, ServicePhase::Degraded);
    assert_eq!(
        condition(&plan, conditions::EDGE_CAPACITY_INSUFFICIENT).reason,
        "MaxReplicasReached"
    );
}

#[test]
fn disabled_fallback_never_uses_the_edge() {
    let service = EdgeService::test()
        .replicas(3)
        .regions([EAST])
        .edge_disabled()
        .warm_replicas(2);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_nodes(edge_nodes(3));
    let plan = plan(&input);
    assert_eq!(plan.replicas(EDGE_TARGET), 0);
    assert_eq!(plan.phase, ServicePhase::Degraded);
    let short = condition(&plan, conditions::EDGE_CAPACITY_INSUFFICIENT);
    assert_eq!(
        (short.status, short.reason.as_str()),
        (ConditionStatus::True, "EdgeDisabled")
    );
}

#[test]
fn failback_waits_for_stabilization_then_steps_traffic_back() {
    let service = EdgeService::test()
        .replicas(4)
        .regions([EAST])
        .stabilization_seconds(300)
        .step_seconds(30);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_nodes(edge_nodes(3));
    let (on_edge, settled) = settle(input);
    assert_eq!(settled.phase, ServicePhase::OnEdge);
    assert_eq!(settled.replicas(EDGE_TARGET), 5);

    // Healthy again at t=100: nothing moves for 300 s.
    let recovering = on_edge.region(RegionView::healthy(EAST).healthy_since(at(100)));
    let waiting = plan(&recovering.clone().at(at(399)));
    assert_eq!(waiting.phase, ServicePhase::OnEdge);
    assert_eq!(waiting.replicas(EAST), 0);
    let failing_back = condition(&waiting, conditions::FAILING_BACK);
    assert_eq!(failing_back.reason, "WaitingForStabilization");
    assert!(
        failing_back
            .message
            .contains("stable at 2025-01-01T00:06:40Z"),
        "{}",
        failing_back.message
    );

    // Stable at t=400: the cloud scales up first; traffic stays on the edge until it is ready.
    let stable = recovering.at(at(400));
    let scale_up = plan(&stable);
    assert_eq!(scale_up.phase, ServicePhase::FailingBack);
    assert_eq!(scale_up.replicas(EAST), 4);
    assert_eq!(
        scale_up.replicas(EDGE_TARGET),
        5,
        "the edge stays until the last step"
    );
    assert_eq!(scale_up.failback_step, None);
    assert_eq!(scale_up.weight(EDGE_TARGET), 100);

    // East ready: step 1 (25%) at once, then one step per 30 s.
    let step1 = stable.after(&scale_up);
    let plan1 = plan(&step1);
    assert_eq!(plan1.failback_step, Some(0));
    assert_eq!((plan1.weight(EAST), plan1.weight(EDGE_TARGET)), (25, 75));
    assert!(plan1.events.iter().any(|e| e.reason == "FailbackStep"));
    let again = step1.after(&plan1);
    assert_eq!(
        plan(&again),
        plan1.clone().without_events(),
        "nothing moves within a step"
    );

    let plan2 = plan(&step1.after(&plan1).at(at(430)));
    assert_eq!(plan2.failback_step, Some(1));
    assert_eq!((plan2.weight(EAST), plan2.weight(EDGE_TARGET)), (50, 50));
    let step3 = step1.after(&plan1).at(at(430));
    let step3 = step3.after(&plan2).at(at(460));
    let plan3 = plan(&step3);
    assert_eq!(plan3.failback_step, Some(2));
    assert_eq!((plan3.weight(EAST), plan3.weight(EDGE_TARGET)), (100, 0));
    assert_eq!(
        plan3.replicas(EDGE_TARGET),
        5,
        "edge scaled down only after the last step held"
    );

    let done_input = step3.after(&plan3).at(at(490));
    let done = plan(&done_input);
    assert_eq!(done.phase, ServicePhase::Normal);
    assert_eq!(done.replicas(EDGE_TARGET), 0);
    assert_eq!(done.failback_step, None);
    assert!(done.events.iter().any(|e| e.reason == "FailbackCompleted"));
    let record = done.last_failover.as_ref().expect("record kept as history");
    assert_eq!(record.failed_back_at, Some(Time(at(490))));
    assert!(!record.is_active());
    let (_, after) = settle(done_input.after(&done));
    assert_eq!(after.phase, ServicePhase::Normal);
    assert_eq!(after.replicas(EAST), 4);
}

#[test]
fn flapping_verdicts_do_not_flap_the_workload() {
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST])
        .stabilization_seconds(300);
    let mut input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST))
        .edge_nodes(edge_nodes(2));
    let mut lost_events = 0;
    let mut edge_replicas = Vec::new();
    // Down and Healthy every 20 s for 10 minutes: never 300 s of continuous health.
    for round in 0..30 {
        let t = at(round * 20);
        let view = if round % 2 == 1 {
            RegionView::healthy(EAST).down_since(t)
        } else if round == 0 {
            RegionView::healthy(EAST)
        } else {
            RegionView::healthy(EAST).healthy_since(t)
        };
        input = input.region(view).at(t);
        let plan = plan(&input);
        lost_events += plan
            .events
            .iter()
            .filter(|e| e.reason == "RegionLost")
            .count();
        if round > 0 {
            assert_ne!(plan.phase, ServicePhase::FailingBack, "round {round}");
            assert_eq!(
                plan.target(EAST).map(|t| t.planned),
                Some(0),
                "round {round}"
            );
            edge_replicas.push(plan.replicas(EDGE_TARGET));
        }
        input = input.after(&plan);
    }
    assert_eq!(
        lost_events, 1,
        "one failover for the whole flapping episode"
    );
    assert!(edge_replicas.iter().all(|&r| r == 3), "{edge_replicas:?}");
}

/// `FailedOver=False/RegionsUnknown`, the message ending with the regions it names.
fn assert_nothing_moved_because(plan: &Plan, regions: &str) {
    let failed_over = condition(plan, conditions::FAILED_OVER);
    assert_eq!(
        (failed_over.status, failed_over.reason.as_str()),
        (ConditionStatus::False, REASON_REGIONS_UNKNOWN)
    );
    assert!(
        failed_over.message.ends_with(&format!(": {regions}")),
        "{}",
        failed_over.message
    );
}

#[test]
fn unknown_verdict_changes_nothing() {
    let (steady, before) = steady_east_west();
    let unknown = steady
        .region(RegionView::healthy(EAST).unknown())
        .at(at(60));
    let plan = plan(&unknown);
    assert_eq!((plan.replicas(EAST), plan.replicas(WEST)), (3, 3));
    assert_eq!(plan.replicas(EDGE_TARGET), 0);
    assert_eq!(plan.weights, before.weights);
    assert!(plan.last_failover.is_none());
    assert_eq!(
        plan.target(EAST).map(|t| t.state),
        Some(TargetState::Unknown)
    );
    // The status says why nothing moved.
    assert_nothing_moved_because(&plan, &format!("{EAST} (verdict Unknown)"));
}

#[test]
fn a_region_whose_cloud_region_is_gone_keeps_its_replicas_and_the_status_says_why() {
    let (steady, before) = steady_east_west();
    // The CloudRegion of EAST was deleted (a GitOps prune): the planner no longer sees it.
    let mut pruned = steady.at(at(60));
    pruned.regions.retain(|r| r.name != EAST);
    let plan = plan(&pruned);
    assert_eq!((plan.replicas(EAST), plan.replicas(WEST)), (3, 3));
    assert_eq!(plan.replicas(EDGE_TARGET), 0);
    assert_eq!(plan.weights, before.weights);
    assert!(plan.last_failover.is_none());
    assert!(plan.events.iter().all(|e| e.reason != "RegionLost"));
    assert_nothing_moved_because(&plan, &format!("{EAST} (no CloudRegion)"));
}

#[test]
fn a_partitioned_operator_keeps_the_previous_plan() {
    let service = EdgeService::test().replicas(6).regions([EAST, WEST]);
    let (steady, before) = settle(
        PlanInput::new(service.spec, at(0))
            .region(RegionView::healthy(EAST).down())
            .region(RegionView::healthy(WEST))
            .edge_nodes(edge_nodes(3)),
    );
    let partitioned = steady
        .region(RegionView::healthy(EAST).unknown())
        .region(RegionView::healthy(WEST).unknown())
        .at(at(3600));
    let plan = plan(&partitioned);
    let replicas = |plan: &Plan| {
        plan.targets
            .iter()
            .map(|t| (t.name.clone(), t.replicas))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        replicas(&plan),
        replicas(&before),
        "no failover and no failback while blind"
    );
    assert_eq!(plan.last_failover, before.last_failover);
    assert_eq!(plan.weights, before.weights);
}

#[test]
fn a_draining_region_fails_over_like_a_lost_one() {
    let service = EdgeService::test().replicas(2).regions([EAST, WEST]);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).draining())
        .region(RegionView::healthy(WEST));
    let (_, settled) = settle(input);
    assert_eq!((settled.replicas(EAST), settled.replicas(WEST)), (0, 2));
    let failed_over = condition(&settled, conditions::FAILED_OVER);
    assert_eq!(failed_over.reason, "RegionDraining");
    assert_eq!(
        failed_over.message,
        "region aws-us-east-1 is draining: 1 replicas moved to aws-us-west-2 (Spillover)"
    );
}

#[test]
fn manual_failback_waits_for_the_user() {
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST])
        .manual_failback();
    let (on_edge, _) = settle(
        PlanInput::new(service.spec, at(0))
            .region(RegionView::healthy(EAST).down())
            .edge_nodes(edge_nodes(2)),
    );
    let healthy = on_edge
        .region(RegionView::healthy(EAST).healthy_since(at(10)))
        .at(at(100_000));
    let plan = plan(&healthy);
    assert_eq!(plan.phase, ServicePhase::OnEdge);
    assert_eq!(plan.replicas(EAST), 0);
    assert_eq!(
        condition(&plan, conditions::FAILING_BACK).reason,
        "ManualFailback"
    );
}

#[test]
fn edge_candidates_are_ranked_by_score_then_name_and_filtered() {
    let service = EdgeService::test()
        .replicas(4)
        .regions([EAST])
        .max_per_node(3);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_node(EdgeNodeView::ready("b").score(0.9))
        .edge_node(EdgeNodeView::ready("a").score(0.9))
        .edge_node(EdgeNodeView::ready("c").score(0.95).on_probation())
        .edge_node(EdgeNodeView::ready("d").score(f64::NAN))
        .edge_node(EdgeNodeView::ready("e").unverified().score(1.0))
        .edge_node(EdgeNodeView::ready("f").not_ready().score(1.0))
        .edge_node(EdgeNodeView::ready("g").quarantined().score(1.0))
        .edge_node(EdgeNodeView::ready("h").capacity(5).allocated(5));
    let plan = plan(&input);
    assert_eq!(plan.edge_candidates, vec!["c", "a", "b", "d"]);
    // c on probation takes 1, a and b 3 each (maxPerNode), d 3: 10 >= 5 wanted.
    assert_eq!(plan.replicas(EDGE_TARGET), 5);
}

#[test]
fn requirements_filter_edge_nodes_safely() {
    let requirements = EdgeRequirements {
        min_availability: Some(0.9),
        max_price_per_hour: Some(1.0),
        max_distance_km: Some(1000.0),
        selector: Some(EdgeSelector {
            match_labels: [("gpu".to_string(), "none".to_string())].into(),
        }),
    };
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST])
        .edge_requirements(requirements);
    let near = |name: &str| {
        EdgeNodeView::ready(name)
            .price(0.5)
            .located(40.0, -75.0)
            .label("gpu", "none")
    };
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down().located(38.9, -77.0))
        .edge_node(near("ok"))
        .edge_node(near("nan-price").price(f64::NAN))
        .edge_node(near("negative-price").price(-1.0))
        .edge_node(near("too-expensive").price(2.0))
        .edge_node({
            let mut no_price = near("no-price");
            no_price.price_per_hour = None;
            no_price
        })
        .edge_node({
            let mut nowhere = near("no-location");
            nowhere.location = None;
            nowhere
        })
        .edge_node(near("bad-location").located(f64::NAN, 500.0))
        .edge_node(near("far").located(50.1, 8.7))
        .edge_node(near("flaky").availability(0.5))
        .edge_node(near("nan-availability").availability(f64::NAN))
        .edge_node(near("other-label").label("gpu", "a100"));
    let plan = plan(&input);
    assert_eq!(plan.edge_candidates, vec!["ok"]);
}

#[test]
fn distance_is_ignored_with_a_note_when_the_region_has_no_location() {
    let requirements = EdgeRequirements {
        max_distance_km: Some(10.0),
        ..EdgeRequirements::default()
    };
    let service = EdgeService::test()
        .replicas(1)
        .regions([EAST])
        .edge_requirements(requirements);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .edge_node(EdgeNodeView::ready("anywhere"));
    let plan = plan(&input);
    assert_eq!(plan.edge_candidates, vec!["anywhere"]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("maxDistanceKm 10 ignored")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn zero_candidates_or_all_quarantined_is_a_clear_capacity_condition() {
    let service = EdgeService::test()
        .replicas(3)
        .regions([EAST])
        .warm_replicas(1);
    for nodes in [
        vec![],
        vec![
            EdgeNodeView::ready("q1").quarantined(),
            EdgeNodeView::ready("q2").quarantined(),
        ],
    ] {
        let input = PlanInput::new(service.spec.clone(), at(0))
            .region(RegionView::healthy(EAST).down())
            .edge_nodes(nodes);
        let plan = plan(&input);
        assert!(plan.edge_candidates.is_empty());
        assert_eq!(plan.replicas(EDGE_TARGET), 0);
        assert_eq!(plan.phase, ServicePhase::Degraded);
        let short = condition(&plan, conditions::EDGE_CAPACITY_INSUFFICIENT);
        assert_eq!(short.status, ConditionStatus::True);
        assert_eq!(
            short.message,
            "the edge should run 4 replicas but 0 matching edge nodes hold only 0 (maxPerNode 2)"
        );
    }
}

#[test]
fn warm_replicas_that_do_not_fit_are_reported_without_degrading() {
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST])
        .warm_replicas(3);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST))
        .edge_node(EdgeNodeView::ready("edge-1"));
    let plan = plan(&input);
    assert_eq!(plan.replicas(EDGE_TARGET), 2);
    assert_eq!(plan.phase, ServicePhase::Normal);
    assert_eq!(
        condition(&plan, conditions::EDGE_CAPACITY_INSUFFICIENT).status,
        ConditionStatus::True
    );
}

#[test]
fn a_scale_down_waits_until_the_rest_is_ready() {
    let service = EdgeService::test().replicas(6).regions([EAST, WEST]);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .region(RegionView::healthy(WEST))
        .observed(EAST, 3, 3)
        .observed(WEST, 6, 4);
    let plan = plan(&input);
    assert_eq!(plan.replicas(EAST), 3, "west has 4 of 6 ready");
    let ready = input.observed(WEST, 6, 6);
    assert_eq!(super::plan(&ready).replicas(EAST), 0);
}

#[test]
fn when_nothing_preferred_is_ready_traffic_goes_to_what_is() {
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST])
        .warm_replicas(1);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST))
        .edge_nodes(edge_nodes(1))
        .observed(EAST, 2, 0)
        .observed(EDGE_TARGET, 1, 1);
    let plan = plan(&input);
    assert_eq!(plan.weight(EDGE_TARGET), 100);
    assert!(!plan.notes.is_empty());
}

#[test]
fn a_new_region_lost_during_an_episode_extends_it() {
    let service = EdgeService::test()
        .replicas(4)
        .regions([EAST, WEST, EUROPE]);
    let (steady, _) = settle(
        PlanInput::new(service.spec, at(0))
            .region(RegionView::healthy(EAST).down())
            .region(RegionView::healthy(WEST))
            .region(RegionView::healthy(EUROPE))
            .edge_nodes(edge_nodes(3)),
    );
    let second = steady
        .region(RegionView::healthy(WEST).down_since(at(50)))
        .at(at(50));
    let plan = plan(&second);
    let record = plan.last_failover.as_ref().expect("recorded");
    assert_eq!(record.from, vec![EAST.to_string(), WEST.to_string()]);
    assert_eq!(
        record.detected_at,
        Time(at(0)),
        "the episode keeps its start"
    );
    assert_eq!(plan.target(EUROPE).map(|t| t.planned), Some(4));
}

#[test]
fn status_round_trips_through_previous_state() {
    let service = EdgeService::test()
        .replicas(3)
        .regions([EAST, WEST])
        .warm_replicas(1);
    let input = PlanInput::new(service.spec, at(0))
        .region(RegionView::healthy(EAST).down())
        .region(RegionView::healthy(WEST))
        .edge_nodes(edge_nodes(2))
        .observed(WEST, 1, 1);
    let plan = plan(&input);
    let status = plan.status(&input, None);
    assert_eq!(status.phase, Some(plan.phase));
    assert_eq!(status.cloud.as_deref(), Some("1/3"));
    assert_eq!(status.edge.as_deref(), Some("0/1"));
    assert_eq!(status.conditions.len(), 4);
    let previous = PreviousState::from_status(&status);
    assert_eq!(previous.desired.get(WEST), Some(&3));
    assert_eq!(previous.last_failover, plan.last_failover);
    // The same plan again leaves the status as it was, transition times included.
    let later = input.clone().at(at(60));
    assert_eq!(
        plan.status(&later, Some(&status)).conditions,
        status.conditions
    );
}

#[test]
fn views_are_built_from_api_objects() {
    use crate::api::{CloudRegion, EdgeNode};
    let region =
        RegionView::from_cloud_region(&CloudRegion::test(EAST).down_since(at(5)).located(1.0, 2.0));
    assert_eq!(region.phase, RegionPhase::Down);
    assert_eq!(region.down_since, Some(at(5)));
    assert_eq!(region.healthy_since, None);
    assert_eq!(region.provider, "aws");
    assert_eq!(region.location, Some(GeoPoint::new(1.0, 2.0)));

    let node = EdgeNode::test("n1")
        .price(0.2)
        .quarantined_until(at(100))
        .pods(3);
    let view = EdgeNodeView::from_edge_node(&node, at(0), 110, 1, false);
    assert!(view.quarantined && view.verified && view.ready);
    assert_eq!(view.capacity_replicas, 3);
    let later = EdgeNodeView::from_edge_node(&node, at(101), 2, 0, true);
    assert!(!later.quarantined);
    assert_eq!(
        later.capacity_replicas, 2,
        "never more than the Node's allocatable pods"
    );
}

impl Plan {
    /// The same plan without its events (a repeated reconcile tells nothing new).
    fn without_events(mut self) -> Self {
        self.events.clear();
        self
    }
}

/// A reconcile's own child writes trigger the next reconcile of the service at once: with the
/// edge at the replicas just written (none ready yet), a failover's next plan must say what
/// its first one said, or every status in a mass failover is written twice.
#[test]
fn a_failovers_first_status_is_what_its_next_reconcile_computes() {
    let service = EdgeService::test()
        .replicas(2)
        .regions([EAST, WEST])
        .failover();
    let input = PlanInput::new(service.spec, at(1))
        .region(RegionView::healthy(EAST).down())
        .region(RegionView::healthy(WEST))
        .edge_nodes(edge_nodes(2))
        .observed(EAST, 1, 1)
        .observed(WEST, 1, 1)
        .observed(EDGE_TARGET, 0, 0);
    let first = plan(&input);
    assert_eq!(first.phase, ServicePhase::FailingOver);
    let status = first.status(&input, None);
    let failing_back = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::FAILING_BACK)
        .expect("FailingBack condition");
    assert_eq!(failing_back.reason, "RegionsStillLost");

    let mut next = input.clone().at(at(2));
    next.previous = PreviousState::from_status(&status);
    next.observed.insert(
        EDGE_TARGET.into(),
        ObservedTarget {
            replicas: first.replicas(EDGE_TARGET),
            ready: 0,
        },
    );
    let second = plan(&next);
    assert!(second.events.is_empty(), "{:?}", second.events);
    assert_eq!(second.status(&next, Some(&status)), status);
}
