//! DESIGN §2 invariants 1–6, checked over generated inputs (10,000 cases per property).
//!
//! Inputs are deliberately hostile: NaN and negative prices, scores and coordinates, missing
//! CloudRegions, names repeated or reserved, replicas observed above what was asked, previous
//! statuses that do not match the spec, and steps that break the schema's rules.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::*;
use crate::api::fixtures::at;
use crate::api::{EdgeRequirements, EdgeSelector, EdgeService};

const CASES: u32 = 10_000;
const REGION_NAMES: [&str; 4] = [
    "aws-us-east-1",
    "aws-us-west-2",
    "gcp-europe-west1",
    "azure-eastus",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..1.0f64,
        1 => Just(f64::NAN),
        1 => -5.0..5.0f64,
        1 => Just(f64::INFINITY),
    ]
}

fn any_location() -> impl Strategy<Value = Option<GeoPoint>> {
    prop_oneof![
        2 => Just(None),
        4 => (-60.0..60.0f64, -130.0..130.0f64).prop_map(|(lat, lon)| Some(GeoPoint::new(lat, lon))),
        1 => Just(Some(GeoPoint::new(f64::NAN, 500.0))),
    ]
}

fn any_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        select(vec![None, Some("none"), Some("a100")]),
        select(vec![None, Some("a"), Some("b")]),
    )
        .prop_map(|(gpu, tier)| {
            let mut labels = BTreeMap::new();
            if let Some(gpu) = gpu {
                labels.insert("gpu".to_string(), gpu.to_string());
            }
            if let Some(tier) = tier {
                labels.insert("tier".to_string(), tier.to_string());
            }
            labels
        })
}

fn any_requirements() -> impl Strategy<Value = EdgeRequirements> {
    (
        proptest::option::weighted(0.3, 0.0..1.0f64),
        proptest::option::weighted(0.3, prop_oneof![0.0..2.0f64, Just(f64::NAN)]),
        proptest::option::weighted(0.3, 0.0..8000.0f64),
        proptest::option::weighted(0.3, any_labels()),
    )
        .prop_map(
            |(min_availability, max_price_per_hour, max_distance_km, labels)| EdgeRequirements {
                min_availability,
                max_price_per_hour,
                max_distance_km,
                selector: labels.map(|match_labels| EdgeSelector { match_labels }),
            },
        )
}

fn any_spec() -> impl Strategy<Value = EdgeServiceSpec> {
    (
        (
            prop_oneof![
                30 => subsequence(REGION_NAMES.to_vec(), 1..=4).prop_shuffle(),
                1 => Just(Vec::new()),
            ],
            0u32..=20,
            any::<bool>(),
            select(vec![
                FallbackMode::Failover,
                FallbackMode::Spillover,
                FallbackMode::Disabled,
            ]),
            proptest::option::weighted(0.05, Just("edge")),
        ),
        (
            0u32..=5,
            0u32..=20,
            0u32..=200,
            1u32..=5,
            any_requirements(),
        ),
        (
            any::<bool>(),
            0u32..=600,
            prop_oneof![
                4 => Just(vec![25, 50, 100]),
                2 => proptest::collection::btree_set(1u32..=100, 1..4)
                    .prop_map(|s| s.into_iter().chain([100]).collect::<Vec<_>>()),
                1 => proptest::collection::vec(0u32..=150, 0..4),
            ],
            1u32..=60,
        ),
    )
        .prop_map(
            |(
                (regions, replicas, ordered, mode, reserved),
                (warm, max, overprovision, max_per_node, requirements),
                (automatic, stabilization, steps, step_seconds),
            )| {
                let mut service = EdgeService::test()
                    .replicas(replicas)
                    .regions(
                        regions
                            .iter()
                            .map(|r| r.to_string())
                            .chain(reserved.map(String::from)),
                    )
                    .mode(mode)
                    .warm_replicas(warm)
                    .max_edge_replicas(max)
                    .overprovision_percent(overprovision)
                    .max_per_node(max_per_node)
                    .edge_requirements(requirements)
                    .stabilization_seconds(stabilization)
                    .failback_steps(steps)
                    .step_seconds(step_seconds);
                if ordered {
                    service = service.ordered();
                }
                if !automatic {
                    service = service.manual_failback();
                }
                service.spec
            },
        )
}

fn any_region_view(name: &'static str) -> impl Strategy<Value = RegionView> {
    (
        select(vec![
            RegionPhase::Healthy,
            RegionPhase::Degraded,
            RegionPhase::Down,
            RegionPhase::Unknown,
        ]),
        -900i64..=900,
        proptest::bool::weighted(0.1),
        any_location(),
    )
        .prop_map(move |(phase, since, draining, location)| RegionView {
            name: name.to_string(),
            provider: name.split('-').next().unwrap_or(name).to_string(),
            phase,
            healthy_since: (phase == RegionPhase::Healthy).then(|| at(since)),
            down_since: (phase == RegionPhase::Down).then(|| at(since)),
            draining,
            location,
        })
}

fn any_region_views() -> impl Strategy<Value = Vec<RegionView>> {
    (
        any_region_view(REGION_NAMES[0]),
        any_region_view(REGION_NAMES[1]),
        any_region_view(REGION_NAMES[2]),
        any_region_view(REGION_NAMES[3]),
        subsequence(vec![0usize, 1, 2, 3], 0..=4),
    )
        .prop_map(|(a, b, c, d, present)| {
            let all = [a, b, c, d];
            // Regions left out of `present` have no CloudRegion: they count as Unknown.
            present.into_iter().map(|i| all[i].clone()).collect()
        })
}

fn any_edge_node() -> impl Strategy<Value = EdgeNodeView> {
    (
        (
            select(vec!["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"]),
            proptest::bool::weighted(0.85),
            proptest::bool::weighted(0.85),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.1),
        ),
        (
            proptest::option::weighted(0.9, any_f64()),
            proptest::option::weighted(0.9, any_f64()),
            proptest::option::weighted(0.7, any_f64()),
            any_location(),
            any_labels(),
            0u32..=6,
            0u32..=6,
        ),
    )
        .prop_map(
            |(
                (name, verified, ready, quarantined, on_probation),
                (
                    availability,
                    score,
                    price_per_hour,
                    location,
                    labels,
                    capacity_replicas,
                    allocated_by_others,
                ),
            )| EdgeNodeView {
                name: name.to_string(),
                verified,
                ready,
                quarantined,
                on_probation,
                availability,
                score,
                price_per_hour,
                location,
                labels,
                capacity_replicas,
                allocated_by_others,
            },
        )
}

fn any_observed() -> impl Strategy<Value = BTreeMap<String, ObservedTarget>> {
    let target = (0u32..=25, 0u32..=27).prop_map(|(replicas, ready)| ObservedTarget {
        replicas,
        ready: ready.min(replicas + 2),
    });
    proptest::collection::btree_map(
        select(vec![
            REGION_NAMES[0],
            REGION_NAMES[1],
            REGION_NAMES[2],
            REGION_NAMES[3],
            EDGE_TARGET,
        ])
        .prop_map(String::from),
        target,
        0..=5,
    )
}

fn any_previous() -> impl Strategy<Value = PreviousState> {
    let record = (
        subsequence(REGION_NAMES.to_vec(), 0..=3),
        any::<bool>(),
        -900i64..=0,
    )
        .prop_map(|(from, active, detected)| FailoverRecord {
            from: from.into_iter().map(String::from).collect(),
            reason: "generated".into(),
            detected_at: Time(at(detected)),
            decided_at: Time(at(detected)),
            edge_ready_at: None,
            traffic_shifted_at: None,
            failed_back_at: (!active).then(|| Time(at(0))),
            decision_millis: Some(0),
            edge_ready_millis: None,
            traffic_shift_millis: None,
        });
    (
        proptest::option::of(select(vec![
            ServicePhase::Normal,
            ServicePhase::FailingOver,
            ServicePhase::OnEdge,
            ServicePhase::FailingBack,
            ServicePhase::Degraded,
        ])),
        proptest::collection::btree_map(
            select(REGION_NAMES.to_vec()).prop_map(String::from),
            0u32..=10,
            0..=4,
        ),
        proptest::option::weighted(0.3, 0u32..=5),
        proptest::option::of(-300i64..=300),
        proptest::option::weighted(0.6, record),
    )
        .prop_map(
            |(phase, desired, failback_step, since, last_failover)| PreviousState {
                phase,
                desired,
                failback_step,
                failback_step_since: since.map(at),
                last_failover,
            },
        )
}

fn any_input() -> impl Strategy<Value = PlanInput> {
    (
        any_spec(),
        any_previous(),
        any_region_views(),
        proptest::collection::vec(any_edge_node(), 0..=8),
        any_observed(),
        0i64..=1000,
    )
        .prop_map(
            |(spec, previous, regions, edge_nodes, observed, now)| PlanInput {
                spec,
                generation: Some(1),
                previous,
                regions,
                edge_nodes,
                observed,
                now: at(now),
            },
        )
}

// ---- what the invariants are checked against, computed independently of the planner ----

fn observed(input: &PlanInput, name: &str) -> ObservedTarget {
    input.observed.get(name).copied().unwrap_or_default()
}

/// Replicas that are ready and stay after this plan.
fn serving(input: &PlanInput, target: &TargetPlan) -> u32 {
    observed(input, &target.name).ready.min(target.replicas)
}

fn lost_in_view(input: &PlanInput, name: &str) -> bool {
    input
        .regions
        .iter()
        .find(|r| r.name == name)
        .is_some_and(|r| r.draining || r.phase == RegionPhase::Down)
}

/// Whether `node` meets every requirement that does not depend on which region was lost.
fn meets_basic_requirements(node: &EdgeNodeView, requirements: &EdgeRequirements) -> bool {
    node.verified
        && node.ready
        && !node.quarantined
        && requirements
            .min_availability
            .is_none_or(|min| node.availability.is_some_and(|a| a >= min))
        && requirements
            .max_price_per_hour
            .is_none_or(|max| node.price_per_hour.is_some_and(|p| p >= 0.0 && p <= max))
        && requirements.selector.as_ref().is_none_or(|s| {
            s.match_labels
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
        })
}

fn node_capacity(node: &EdgeNodeView, max_per_node: u32) -> u64 {
    let mut capacity = node
        .capacity_replicas
        .saturating_sub(node.allocated_by_others)
        .min(max_per_node);
    if node.on_probation {
        capacity = capacity.min(1);
    }
    u64::from(capacity)
}

/// Capacity of the plan's candidates, each counted once, from the input's views.
fn candidate_capacity(input: &PlanInput, plan: &Plan) -> u64 {
    plan.edge_candidates
        .iter()
        .map(|name| {
            input
                .edge_nodes
                .iter()
                .filter(|n| &n.name == name)
                .map(|n| node_capacity(n, input.spec.fallback.edge.max_per_node))
                .min()
                .unwrap_or(0)
        })
        .sum()
}

fn edge_of(plan: &Plan) -> &TargetPlan {
    plan.targets
        .iter()
        .find(|t| t.kind == TargetKind::Edge)
        .expect("every plan has an edge target")
}

fn capacity_short(plan: &Plan) -> bool {
    plan.condition(conditions::EDGE_CAPACITY_INSUFFICIENT)
        .is_some_and(|c| c.status == ConditionStatus::True)
}

/// Applies the plan's outcome at the same clock until it settles; returns the settled input and plan.
fn settle(mut input: PlanInput) -> Result<(PlanInput, Plan), TestCaseError> {
    let mut current = plan(&input);
    for _ in 0..12 {
        let next = input.after(&current);
        let next_plan = plan(&next);
        if next_plan == current && next.observed == input.observed {
            return Ok((next, next_plan));
        }
        input = next;
        current = next_plan;
    }
    Err(TestCaseError::fail(format!(
        "no fixed point after 12 rounds: {current:#?}"
    )))
}

proptest! {
    #![proptest_config(config())]

    /// Invariant 1 — capacity: the targets that serve are planned at least spec.replicas, or
    /// EdgeCapacityInsufficient says why not (and then the edge takes all it can).
    #[test]
    fn capacity_is_met_or_the_shortfall_is_reported(input in any_input()) {
        let plan = plan(&input);
        let planned: u64 = plan.targets.iter()
            .filter(|t| t.state != TargetState::Lost)
            .map(|t| u64::from(t.planned))
            .sum();
        prop_assert!(
            planned >= u64::from(input.spec.replicas) || capacity_short(&plan),
            "{planned} planned for {} replicas, no EdgeCapacityInsufficient: {plan:#?}", input.spec.replicas
        );
        if plan.phase == ServicePhase::Degraded {
            prop_assert!(capacity_short(&plan), "Degraded without a reason: {plan:#?}");
        }
        let short = plan.condition(conditions::EDGE_CAPACITY_INSUFFICIENT);
        if short.is_some_and(|c| c.status == ConditionStatus::True && c.reason == "NotEnoughEdgeNodes") {
            prop_assert_eq!(u64::from(edge_of(&plan).planned), candidate_capacity(&input, &plan),
                "a short edge uses all the capacity there is");
        }
        prop_assert_eq!(plan.conditions.len(), 4);
    }

    /// Invariant 2 — bounds: edge replicas within [warm, max] and what the candidates hold;
    /// candidates are verified, ready, not quarantined and match; Disabled never uses the edge.
    #[test]
    fn edge_replicas_stay_within_bounds_and_on_eligible_nodes(input in any_input()) {
        let plan = plan(&input);
        let edge_cfg = &input.spec.fallback.edge;
        let edge = edge_of(&plan);
        let capacity = candidate_capacity(&input, &plan);
        let current = observed(&input, EDGE_TARGET).replicas;
        prop_assert!(edge.replicas == edge.planned || edge.replicas == current.max(edge.planned));
        if input.spec.fallback.mode == FallbackMode::Disabled {
            prop_assert_eq!(edge.planned, 0);
            prop_assert!(edge.replicas <= current);
            prop_assert_eq!(plan.weight(EDGE_TARGET), 0);
        } else {
            prop_assert!(edge.planned <= edge_cfg.max_replicas);
            prop_assert!(u64::from(edge.planned) <= capacity, "{} planned on capacity {capacity}", edge.planned);
            let floor = u64::from(edge_cfg.warm_replicas.min(edge_cfg.max_replicas)).min(capacity);
            prop_assert!(u64::from(edge.planned) >= floor, "{} planned, floor {floor}", edge.planned);
        }
        let mut ranked: Vec<(f64, &str)> = Vec::new();
        for name in &plan.edge_candidates {
            let views: Vec<&EdgeNodeView> = input.edge_nodes.iter().filter(|n| &n.name == name).collect();
            prop_assert!(
                views.iter().all(|n| meets_basic_requirements(n, &edge_cfg.requirements)),
                "candidate {name} is not eligible: {views:#?}"
            );
            if let Some(limit) = edge_cfg.requirements.max_distance_km {
                let located: Vec<GeoPoint> = input.regions.iter()
                    .filter(|r| input.spec.regions.contains(&r.name))
                    .filter_map(|r| r.location)
                    .filter(GeoPoint::is_valid)
                    .collect();
                let ignored = plan.notes.iter().any(|n| n.starts_with("maxDistanceKm"));
                let near = views.iter().all(|n| n.location.filter(GeoPoint::is_valid).is_some_and(|at| {
                    located.iter().any(|r| haversine_km(at, *r) <= limit)
                }));
                prop_assert!(ignored || near, "candidate {name} is farther than {limit} km from every region");
            }
            let score = views.iter()
                .map(|n| n.score.filter(|s| s.is_finite()).unwrap_or(f64::NEG_INFINITY))
                .fold(f64::INFINITY, f64::min);
            ranked.push((score, name.as_str()));
        }
        let mut unique = plan.edge_candidates.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), plan.edge_candidates.len(), "a node listed twice");
        for pair in ranked.windows(2) {
            prop_assert!(
                pair[0].0 > pair[1].0 || (pair[0].0 == pair[1].0 && pair[0].1 < pair[1].1),
                "candidates not ranked by score then name: {ranked:?}"
            );
        }
    }

    /// Invariant 3 — make-before-break: weight only with a ready replica; a target is lowered
    /// only while the targets that serve keep spec.replicas ready; lost regions get traffic only
    /// when nothing else is ready.
    #[test]
    fn nothing_breaks_before_its_replacement_is_ready(input in any_input()) {
        let plan = plan(&input);
        let retained: u64 = plan.targets.iter()
            .filter(|t| t.state != TargetState::Lost)
            .map(|t| u64::from(serving(&input, t)))
            .sum();
        let others_ready = plan.targets.iter()
            .any(|t| t.state != TargetState::Lost && serving(&input, t) > 0
                && !(t.kind == TargetKind::Edge && input.spec.fallback.mode == FallbackMode::Disabled));
        for target in &plan.targets {
            let seen = observed(&input, &target.name);
            prop_assert!(target.replicas >= target.planned);
            if target.replicas < seen.replicas {
                prop_assert!(retained >= u64::from(input.spec.replicas),
                    "{} lowered {} -> {} with only {retained} ready elsewhere", target.name, seen.replicas, target.replicas);
            }
            if plan.weight(&target.name) > 0 {
                prop_assert!(serving(&input, target) >= 1, "{} has weight without a ready replica", target.name);
            }
            if plan.weight(&target.name) > 0 && target.state == TargetState::Lost {
                prop_assert!(!others_ready, "lost {} has traffic while others are ready", target.name);
            }
            if target.kind == TargetKind::Region && lost_in_view(&input, &target.name) {
                prop_assert_eq!(target.state, TargetState::Lost, "a Down or draining region is lost");
            }
        }
    }

    /// Invariant 6 — traffic weights sum to 100 whenever a target that may serve has a ready replica.
    #[test]
    fn weights_sum_to_100_whenever_anything_is_ready(input in any_input()) {
        let plan = plan(&input);
        let sum: u32 = plan.weights.values().sum();
        let any_ready = plan.targets.iter().any(|t| serving(&input, t) > 0
            && !(t.kind == TargetKind::Edge && input.spec.fallback.mode == FallbackMode::Disabled));
        prop_assert_eq!(sum, if any_ready { 100 } else { 0 }, "weights {:?}", plan.weights);
        prop_assert_eq!(plan.weights.len(), plan.targets.len());
    }

    /// Invariant 5 — idempotence: the same input (in any order) gives the same plan, and a
    /// converged cluster reaches a fixed point with no events and an unchanged status: no writes.
    #[test]
    fn plans_are_deterministic_and_converge_to_zero_writes(input in any_input(), seed in any::<u64>()) {
        let plan1 = plan(&input);
        prop_assert_eq!(&plan(&input), &plan1);

        // Views of one node that differ would make "in any order" ambiguous: keep unique names.
        let mut names = std::collections::BTreeSet::new();
        let mut unique_input = input.clone();
        unique_input.edge_nodes.retain(|n| names.insert(n.name.clone()));
        let mut unique_shuffled = unique_input.clone();
        unique_shuffled.edge_nodes.reverse();
        let nodes = unique_shuffled.edge_nodes.len();
        if nodes > 0 {
            unique_shuffled.edge_nodes.rotate_left((seed % 97) as usize % nodes);
        }
        let regions = unique_shuffled.regions.len();
        if regions > 0 {
            unique_shuffled.regions.rotate_left((seed % 89) as usize % regions);
        }
        prop_assert_eq!(plan(&unique_shuffled), plan(&unique_input));

        let (settled_input, settled) = settle(input)?;
        prop_assert!(settled.events.is_empty(), "a settled plan still announces {:?}", settled.events);
        let status = settled.status(&settled_input, None);
        let again = settled_input.after(&settled);
        let replanned = plan(&again);
        prop_assert_eq!(&replanned, &settled);
        let later = PlanInput { now: again.now, ..again.clone() };
        prop_assert_eq!(replanned.status(&later, Some(&status)), status, "a steady cluster sees a status write");
    }
}

/// One region's verdict over time, for the hysteresis simulation.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Healthy,
    Down,
    Unknown,
}

fn verdict_sequence() -> impl Strategy<Value = Vec<(Verdict, i64)>> {
    proptest::collection::vec(
        (
            prop_oneof![4 => Just(Verdict::Healthy), 3 => Just(Verdict::Down), 1 => Just(Verdict::Unknown)],
            1i64..=200,
        ),
        1..=24,
    )
}

proptest! {
    #![proptest_config(config())]

    /// Invariant 4 — hysteresis: failback only after stabilizationSeconds of continuous health,
    /// one failover per Down episode, and flapping verdicts never flap the workload.
    #[test]
    fn failback_waits_for_continuous_health_and_flapping_does_not_flap(
        sequence in verdict_sequence(),
        stabilization in 0u32..=400,
        mode in select(vec![FallbackMode::Failover, FallbackMode::Spillover]),
        two_regions in any::<bool>(),
        partial_ready in any::<bool>(),
    ) {
        const EAST: &str = "aws-us-east-1";
        const WEST: &str = "aws-us-west-2";
        let mut service = EdgeService::test()
            .replicas(4)
            .mode(mode)
            .stabilization_seconds(stabilization)
            .step_seconds(15);
        service = if two_regions { service.regions([EAST, WEST]) } else { service.regions([EAST]) };
        let mut input = PlanInput::new(service.spec, at(0))
            .region(RegionView::healthy(EAST))
            .region(RegionView::healthy(WEST))
            .edge_nodes((1..=4).map(|i| EdgeNodeView::ready(&format!("n{i}"))));
        let mut now = 0i64;
        let mut healthy_since: Option<i64> = Some(-86_400);
        let mut last = Verdict::Healthy;
        let mut lost_events = 0usize;
        let mut completed = 0usize;
        let mut east_lost_before = false;
        let mut ever_stable_while_lost = false;

        for (verdict, step) in sequence {
            // A verdict, then a few reconciles while it holds.
            let started = now;
            let view = match verdict {
                Verdict::Healthy => {
                    if !matches!(last, Verdict::Healthy) || healthy_since.is_none() {
                        healthy_since = Some(started);
                    }
                    RegionView::healthy(EAST).healthy_since(at(healthy_since.unwrap_or(started)))
                }
                Verdict::Down => {
                    healthy_since = None;
                    RegionView::healthy(EAST).down_since(at(started))
                }
                Verdict::Unknown => {
                    // Unknown says nothing about continuous health: count it as a break.
                    healthy_since = None;
                    RegionView::healthy(EAST).unknown()
                }
            };
            last = verdict;
            input = input.region(view);
            for tick in [0, step / 2, step] {
                now = started + tick;
                input = input.at(at(now));
                let plan = plan(&input);
                let east = plan.target(EAST).map(|t| t.state);
                let stable = healthy_since.is_some_and(|since| now - since >= i64::from(stabilization));
                if east_lost_before && stable {
                    ever_stable_while_lost = true;
                }
                if matches!(east, Some(TargetState::Returning)) {
                    prop_assert!(stable, "failback at t={now} before {stabilization}s of health (since {healthy_since:?})");
                }
                if east_lost_before && matches!(east, Some(TargetState::Serving)) {
                    prop_assert!(stable, "east serving again at t={now} without {stabilization}s of health");
                }
                if matches!(verdict, Verdict::Unknown) {
                    prop_assert!(!plan.events.iter().any(|e| e.reason == "RegionLost"), "failover on Unknown");
                }
                lost_events += plan.events.iter().filter(|e| e.reason == "RegionLost").count();
                completed += plan.events.iter().filter(|e| e.reason == "FailbackCompleted").count();
                east_lost_before = matches!(east, Some(TargetState::Lost | TargetState::Returning));
                // Children follow the plan; sometimes only half of them get ready.
                let mut next = input.after(&plan);
                if partial_ready {
                    for seen in next.observed.values_mut() {
                        seen.ready = seen.replicas.div_ceil(2);
                    }
                }
                input = next;
            }
        }
        prop_assert!(lost_events <= completed + 1,
            "{lost_events} failovers for {completed} completed failbacks");
        if !ever_stable_while_lost {
            prop_assert_eq!(completed, 0, "failback without ever being stable");
            prop_assert!(lost_events <= 1, "{} failovers while the region never stabilized", lost_events);
        }
    }
}
