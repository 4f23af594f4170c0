//! The planner: where an EdgeService's replicas run and where its traffic goes.
//!
//! `plan()` is a pure, deterministic function of its input (the spec, the previous status, the
//! regions' verdicts, the edge inventory, the observed children and the time): no I/O, no clock,
//! no randomness. The controllers observe, call `plan()`, and apply the result. The rules are
//! described in `docs/planner.md`; the property tests in `properties.rs` check DESIGN §2's
//! invariants over generated inputs.

mod edge;
pub mod fixtures;
mod status;
mod weights;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, ConditionStatus};
use crate::api::{
    EdgeFallback, EdgeServiceSpec, FailoverRecord, FallbackMode, Placement, RegionPhase,
    ServicePhase, TargetKind, EDGE_TARGET,
};

pub use edge::haversine_km;

/// Everything the planner decides from. Build it from the cluster (see `RegionView` and
/// `EdgeNodeView` constructors) and the EdgeService's status (`PreviousState::from_status`).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanInput {
    /// The EdgeService's spec.
    pub spec: EdgeServiceSpec,
    /// The EdgeService's `metadata.generation`, recorded in conditions and status.
    pub generation: Option<i64>,
    /// What the previous plan decided (from the EdgeService's status).
    pub previous: PreviousState,
    /// The CloudRegions the spec names (others are ignored; missing ones count as Unknown).
    pub regions: Vec<RegionView>,
    /// The edge inventory: every EdgeNode, eligible or not.
    pub edge_nodes: Vec<EdgeNodeView>,
    /// The children as they are: per target name (a region, or `edge`), replicas and ready replicas.
    pub observed: BTreeMap<String, ObservedTarget>,
    /// The time of this reconcile (from an injected clock).
    pub now: Timestamp,
}

/// What the previous plan decided, as recorded in the EdgeService's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreviousState {
    pub phase: Option<ServicePhase>,
    /// Desired replicas per target name.
    pub desired: BTreeMap<String, u32>,
    pub failback_step: Option<u32>,
    pub failback_step_since: Option<Timestamp>,
    pub last_failover: Option<FailoverRecord>,
}

/// A point on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
}

impl GeoPoint {
    pub fn new(latitude: f64, longitude: f64) -> Self {
        Self {
            latitude,
            longitude,
        }
    }

    /// Finite and within -90..90 / -180..180.
    pub fn is_valid(&self) -> bool {
        self.latitude.is_finite()
            && self.longitude.is_finite()
            && (-90.0..=90.0).contains(&self.latitude)
            && (-180.0..=180.0).contains(&self.longitude)
    }
}

/// A CloudRegion as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionView {
    /// The CloudRegion's name (as listed in `spec.regions`).
    pub name: String,
    pub provider: String,
    pub phase: RegionPhase,
    /// When the region last became Healthy (its `lastTransitionTime` while Healthy).
    pub healthy_since: Option<Timestamp>,
    /// When the region was declared Down (its `lastTransitionTime` while Down); dates a failover.
    pub down_since: Option<Timestamp>,
    /// `spec.drain`: a planned failover.
    pub draining: bool,
    pub location: Option<GeoPoint>,
}

/// An EdgeNode as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeNodeView {
    /// The Kubernetes Node name (what edge Deployments are pinned to).
    pub name: String,
    pub verified: bool,
    pub ready: bool,
    pub quarantined: bool,
    /// New or recently failed nodes take at most one replica of a service.
    pub on_probation: bool,
    pub availability: Option<f64>,
    pub score: Option<f64>,
    pub price_per_hour: Option<f64>,
    pub location: Option<GeoPoint>,
    pub labels: BTreeMap<String, String>,
    /// Roughly how many replicas the node can run (e.g. its allocatable pods for edgeshift).
    pub capacity_replicas: u32,
    /// Replicas of other EdgeServices already on the node.
    pub allocated_by_others: u32,
}

/// A child (Deployment) as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObservedTarget {
    /// Its `spec.replicas`.
    pub replicas: u32,
    /// Its ready replicas.
    pub ready: u32,
}

/// The planner's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Replicas per target: the service's regions in preference order, then `edge`.
    pub targets: Vec<TargetPlan>,
    /// Edge nodes (Kubernetes Node names) that may host edge replicas, best first.
    /// Empty means no node may: edge pods must not be scheduled anywhere else.
    pub edge_candidates: Vec<String>,
    /// Traffic percent per target; sums to 100 whenever any target has a ready replica.
    pub weights: BTreeMap<String, u32>,
    pub phase: ServicePhase,
    /// Index into the failback steps while a failback moves traffic.
    pub failback_step: Option<u32>,
    pub failback_step_since: Option<Timestamp>,
    /// The failover record to keep in status (updated while an episode runs).
    pub last_failover: Option<FailoverRecord>,
    /// Conditions to set on the EdgeService (always the same four types).
    pub conditions: Vec<PlannedCondition>,
    /// Events worth telling a person (failovers, phase changes, failback steps).
    pub events: Vec<PlanEvent>,
    /// Further explanations (requirements that could not apply, held replicas, ...).
    pub notes: Vec<String>,
}

/// Replicas for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetPlan {
    pub name: String,
    pub kind: TargetKind,
    /// What to set on the target's Deployment now.
    pub replicas: u32,
    /// What the target should get once make-before-break allows (`replicas` may be higher).
    pub planned: u32,
    pub state: TargetState,
}

/// How the planner regards a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetState {
    /// A region that serves (Healthy or Degraded) and is not part of a failover.
    Serving,
    /// A region edgeshift cannot judge right now (Unknown, or no CloudRegion): left as it was.
    Unknown,
    /// A region that is Down or draining, or was lost and is not yet back: replicas and traffic
    /// leave it.
    Lost,
    /// A lost region that has been Healthy for the stabilization period and takes its workload back.
    Returning,
    /// The edge.
    Edge,
}

/// A condition to set on the EdgeService.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCondition {
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
}

/// The Event that starts a failover.
pub const REASON_REGION_LOST: &str = "RegionLost";

/// An event to record on the EdgeService.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEvent {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// Kubernetes event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Plan {
    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&TargetPlan> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// Replicas to set on target `name` (0 if the plan has no such target).
    pub fn replicas(&self, name: &str) -> u32 {
        self.target(name).map_or(0, |t| t.replicas)
    }

    /// Traffic percent of target `name`.
    pub fn weight(&self, name: &str) -> u32 {
        self.weights.get(name).copied().unwrap_or(0)
    }

    /// The planned condition of type `type_`.
    pub fn condition(&self, type_: &str) -> Option<&PlannedCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// How the planner classifies a region for this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Serving,
    /// Unknown verdict: keeps what it had (`kept`), or a normal share when nothing is known.
    Unknown,
    /// Lost in this reconcile: starts (or extends) a failover.
    NewlyLost,
    /// Lost earlier in the running episode and not back yet.
    Away,
    /// Lost earlier, stable again, taking its workload back.
    Returning,
}

struct Region<'a> {
    name: &'a str,
    view: Option<&'a RegionView>,
    class: Class,
}

impl Region<'_> {
    fn is_lost(&self) -> bool {
        matches!(self.class, Class::NewlyLost | Class::Away)
    }
}

/// Region replicas and what is left for the edge, for one view of which regions serve.
struct Allocation {
    regions: Vec<u32>,
    /// Replicas the regions cannot take and the edge should (before overprovisioning).
    edge_need: u32,
    /// Replicas nothing can take (fallback Disabled and no region serves).
    unplaced: u32,
    /// Replicas that would have run on lost regions.
    moved: u32,
}

/// Edge replicas for one edge need.
#[derive(Clone, Copy, Debug, Default)]
struct EdgeCount {
    /// What the edge should run, within [warmReplicas, maxReplicas], before capacity.
    want: u32,
    /// What fits on the candidates.
    placed: u32,
}

/// Plans replicas, traffic weights and phase for one EdgeService. Pure and deterministic.
pub fn plan(input: &PlanInput) -> Plan {
    let spec = &input.spec;
    let now = input.now;
    let total = spec.replicas;
    let mode = spec.fallback.mode;
    let edge_cfg = &spec.fallback.edge;
    let failback = &spec.fallback.failback;
    let steps = sanitize_steps(&failback.steps);
    let previous = &input.previous;
    let mut notes: Vec<String> = Vec::new();
    let mut events: Vec<PlanEvent> = Vec::new();

    let active_record = previous.last_failover.as_ref().filter(|r| r.is_active());
    let in_episode = |name: &str| active_record.is_some_and(|r| r.from.iter().any(|f| f == name));

    // Which regions serve, which are lost, which come back.
    let mut views: BTreeMap<&str, &RegionView> = BTreeMap::new();
    for view in &input.regions {
        views.entry(view.name.as_str()).or_insert(view);
    }
    let mut seen = BTreeSet::new();
    let mut regions: Vec<Region> = Vec::new();
    for name in &spec.regions {
        if name.is_empty() || name == EDGE_TARGET || !seen.insert(name.as_str()) {
            continue;
        }
        let view = views.get(name.as_str()).copied();
        if view.is_none() {
            notes.push(format!("CloudRegion {name} not found: treated as Unknown"));
        }
        let class = classify(
            view,
            in_episode(name),
            failback.automatic,
            failback.stabilization_seconds,
            now,
        );
        regions.push(Region {
            name: name.as_str(),
            view,
            class,
        });
    }

    // Failback: once every returning region runs its replicas ready, traffic moves back step by step.
    let returning: Vec<usize> = indices(&regions, |r| r.class == Class::Returning);
    let kept = kept_replicas(&regions, previous, total, spec.placement);
    let natural = allocate(&regions, &kept, total, spec.placement, mode, true);
    let returning_ready = returning.iter().all(|&i| {
        let ready = observed(input, regions[i].name).ready;
        ready >= natural.regions[i]
    });
    let last_step = steps.len() - 1;
    let previous_step = previous.failback_step.map(|k| (k as usize).min(last_step));
    let step_millis = i64::from(failback.step_seconds.max(1)) * 1000;
    let mut step: Option<usize> = None;
    let mut step_since: Option<Timestamp> = None;
    let mut completed = false;
    if !returning.is_empty() {
        match previous_step {
            None if returning_ready => {
                step = Some(0);
                step_since = Some(now);
            }
            None => {}
            Some(k) => {
                let since = previous.failback_step_since.unwrap_or(now);
                let held_long_enough = millis_between(since, now) >= step_millis;
                if returning_ready && held_long_enough && k < last_step {
                    step = Some(k + 1);
                    step_since = Some(now);
                } else if returning_ready && held_long_enough {
                    completed = true;
                } else {
                    step = Some(k);
                    step_since = Some(since);
                }
            }
        }
    } else if previous_step.is_some() && previous.phase == Some(ServicePhase::FailingBack) {
        events.push(PlanEvent {
            type_: EventType::Warning,
            reason: "FailbackAborted".into(),
            message: "failback stopped: the returning regions are no longer stable".into(),
        });
    }
    let returned: Vec<String> = if completed {
        returning
            .iter()
            .map(|&i| regions[i].name.to_string())
            .collect()
    } else {
        Vec::new()
    };
    if completed {
        for &i in &returning {
            regions[i].class = Class::Serving;
        }
        events.push(PlanEvent {
            type_: EventType::Normal,
            reason: "FailbackCompleted".into(),
            message: format!(
                "{} took back all of its replicas and traffic",
                list_regions(&returned)
            ),
        });
    }
    let failing_back = regions.iter().any(|r| r.class == Class::Returning);
    if let Some(k) = step {
        if step != previous_step {
            events.push(PlanEvent {
                type_: EventType::Normal,
                reason: "FailbackStep".into(),
                message: format!(
                    "failback step {}/{}: {}% of the traffic of {} moved back",
                    k + 1,
                    steps.len(),
                    steps[k],
                    list_regions(&names_of(&regions, |r| r.class == Class::Returning))
                ),
            });
        }
    }

    // Region replicas: `natural` with returning regions serving, `substitute` without them.
    let kept = kept_replicas(&regions, previous, total, spec.placement);
    let natural = allocate(&regions, &kept, total, spec.placement, mode, true);
    let substitute = allocate(&regions, &kept, total, spec.placement, mode, false);

    // Edge nodes and edge replicas.
    // Distances count from the regions being replaced, or from all of them in normal times.
    let any_episode = regions
        .iter()
        .any(|r| r.is_lost() || r.class == Class::Returning);
    let reference_points: Vec<GeoPoint> = regions
        .iter()
        .filter(|r| !any_episode || r.is_lost() || r.class == Class::Returning)
        .filter_map(|r| r.view.and_then(|v| v.location))
        .filter(GeoPoint::is_valid)
        .collect();
    let candidates = edge::candidates(&input.edge_nodes, edge_cfg, &reference_points);
    notes.extend(candidates.notes.iter().cloned());
    let capacity = candidates.capacity();
    let edge_natural = edge_count(natural.edge_need, edge_cfg, mode, capacity);
    let edge_substitute = edge_count(substitute.edge_need, edge_cfg, mode, capacity);
    let edge_in_use_natural = mode != FallbackMode::Disabled && natural.edge_need > 0;
    let edge_in_use_substitute = mode != FallbackMode::Disabled && substitute.edge_need > 0;

    // Planned replicas. While failing back, substitutes keep what they run until the last step.
    let mut targets: Vec<Target> = Vec::with_capacity(regions.len() + 1);
    for (i, region) in regions.iter().enumerate() {
        let mut planned = natural.regions[i];
        if failing_back && region.class != Class::Returning {
            planned = planned.max(substitute.regions[i]);
        }
        let seen = observed(input, region.name);
        targets.push(Target {
            name: region.name.to_string(),
            kind: TargetKind::Region,
            state: match region.class {
                Class::Serving => TargetState::Serving,
                Class::Unknown => TargetState::Unknown,
                Class::NewlyLost | Class::Away => TargetState::Lost,
                Class::Returning => TargetState::Returning,
            },
            planned,
            current: seen.replicas,
            ready: seen.ready,
            final_replicas: planned,
            allowed_natural: matches!(
                region.class,
                Class::Serving | Class::Unknown | Class::Returning
            ),
            allowed_substitute: matches!(region.class, Class::Serving | Class::Unknown),
        });
    }
    let edge_planned = if failing_back {
        edge_natural.placed.max(edge_substitute.placed)
    } else {
        edge_natural.placed
    };
    let seen = observed(input, EDGE_TARGET);
    targets.push(Target {
        name: EDGE_TARGET.to_string(),
        kind: TargetKind::Edge,
        state: TargetState::Edge,
        planned: edge_planned,
        current: seen.replicas,
        ready: seen.ready,
        final_replicas: edge_planned,
        allowed_natural: edge_in_use_natural,
        allowed_substitute: edge_in_use_substitute,
    });

    // Make-before-break: scale down only while the rest keeps spec.replicas ready.
    hold_until_others_ready(&mut targets, total);
    for t in targets.iter().filter(|t| t.final_replicas > t.planned) {
        notes.push(format!(
            "{} keeps {} replicas (planned {}) until the other targets have {} ready",
            t.name, t.final_replicas, t.planned, total
        ));
    }

    // Traffic weights.
    let blend_percent = if failing_back {
        step.map_or(0, |k| u128::from(steps[k]))
    } else {
        100
    };
    let (weights, weight_note) = traffic_weights(&targets, blend_percent, mode);
    notes.extend(weight_note);
    let weight_map: BTreeMap<String, u32> = targets
        .iter()
        .map(|t| t.name.clone())
        .zip(weights.iter().copied())
        .collect();

    // Phase.
    let serving_planned: u64 = targets
        .iter()
        .filter(|t| match t.state {
            TargetState::Serving | TargetState::Unknown | TargetState::Returning => true,
            TargetState::Edge => edge_in_use_natural || (failing_back && edge_in_use_substitute),
            TargetState::Lost => false,
        })
        .map(|t| u64::from(t.planned))
        .sum();
    let short = total > 0 && serving_planned < u64::from(total);
    let ready_serving: u64 = targets
        .iter()
        .zip(&weights)
        .filter(|(t, w)| **w > 0 && t.state != TargetState::Lost)
        .map(|(t, _)| u64::from(t.ready.min(t.final_replicas)))
        .sum();
    let still_lost = regions.iter().any(Region::is_lost);
    let edge_weight = weight_map.get(EDGE_TARGET).copied().unwrap_or(0);
    let phase = if short {
        ServicePhase::Degraded
    } else if failing_back {
        ServicePhase::FailingBack
    } else if still_lost && ready_serving < u64::from(total) {
        ServicePhase::FailingOver
    } else if still_lost && edge_weight > 0 {
        ServicePhase::OnEdge
    } else {
        ServicePhase::Normal
    };

    // The failover record: one per episode, from the first lost region until all are back.
    let newly_lost: Vec<&Region> = regions
        .iter()
        .filter(|r| r.class == Class::NewlyLost)
        .collect();
    let failover_message = describe_failover(
        &regions,
        &natural,
        &edge_natural,
        mode,
        &names_receiving(&regions),
    );
    let mut record = active_record.cloned();
    if !newly_lost.is_empty() {
        let causes: Vec<String> = newly_lost.iter().map(|r| loss_cause(r)).collect();
        match record.as_mut() {
            Some(active) => {
                active
                    .from
                    .extend(newly_lost.iter().map(|r| r.name.to_string()));
                active.reason = format!("{}; then {}", active.reason, causes.join("; "));
            }
            None => {
                let detected = newly_lost
                    .iter()
                    .filter_map(|r| r.view.and_then(|v| v.down_since))
                    .filter(|t| *t <= now)
                    .min()
                    .unwrap_or(now);
                record = Some(FailoverRecord {
                    from: newly_lost.iter().map(|r| r.name.to_string()).collect(),
                    reason: causes.join("; "),
                    detected_at: Time(detected),
                    decided_at: Time(now),
                    edge_ready_at: None,
                    traffic_shifted_at: None,
                    failed_back_at: None,
                    decision_millis: Some(millis_since(detected, now)),
                    edge_ready_millis: None,
                    traffic_shift_millis: None,
                });
            }
        }
        for region in &newly_lost {
            events.push(PlanEvent {
                type_: EventType::Warning,
                reason: REASON_REGION_LOST.into(),
                message: format!("{}: {}", loss_cause(region), failover_message),
            });
        }
    }
    if let Some(active) = record.as_mut() {
        let listed: BTreeSet<&str> = regions.iter().map(|r| r.name).collect();
        active
            .from
            .retain(|name| listed.contains(name.as_str()) && !returned.contains(name));
        let detected = active.detected_at.0;
        if active.from.is_empty() {
            active.failed_back_at = Some(Time(now));
        } else {
            if active.edge_ready_at.is_none()
                && matches!(phase, ServicePhase::Normal | ServicePhase::OnEdge)
                && ready_serving >= u64::from(total)
            {
                active.edge_ready_at = Some(Time(now));
                active.edge_ready_millis = Some(millis_since(detected, now));
            }
            let lost_carry_traffic = targets
                .iter()
                .zip(&weights)
                .any(|(t, w)| t.state == TargetState::Lost && *w > 0);
            if active.traffic_shifted_at.is_none()
                && !lost_carry_traffic
                && weights.iter().sum::<u32>() == 100
            {
                active.traffic_shifted_at = Some(Time(now));
                active.traffic_shift_millis = Some(millis_since(detected, now));
            }
        }
    }
    let last_failover = record.or_else(|| previous.last_failover.clone());

    // Conditions.
    let mut planned_conditions = Vec::with_capacity(4);
    planned_conditions.push(PlannedCondition {
        type_: conditions::READY.into(),
        status: (ready_serving >= u64::from(total)).into(),
        reason: if ready_serving >= u64::from(total) {
            "ReplicasReady".into()
        } else {
            "ReplicasNotReady".into()
        },
        message: format!("{ready_serving}/{total} replicas ready on targets that receive traffic"),
    });
    planned_conditions.push(if still_lost {
        PlannedCondition {
            type_: conditions::FAILED_OVER.into(),
            status: ConditionStatus::True,
            reason: if regions
                .iter()
                .filter(|r| r.is_lost())
                .all(|r| r.view.is_some_and(|v| v.draining))
            {
                "RegionDraining".into()
            } else {
                "RegionLost".into()
            },
            message: failover_message.clone(),
        }
    } else {
        unknown_regions_condition(&regions).unwrap_or_else(|| PlannedCondition {
            type_: conditions::FAILED_OVER.into(),
            status: ConditionStatus::False,
            reason: "RegionsServing".into(),
            message: "no region of the service is lost".into(),
        })
    });
    planned_conditions.push(failback_condition(
        &regions, step, step_since, &steps, failback,
    ));
    planned_conditions.push(edge_capacity_condition(
        mode,
        &natural,
        edge_natural,
        edge_cfg,
        candidates.nodes.len(),
        capacity,
    ));
    if short {
        notes.push(format!(
            "only {serving_planned} of {total} replicas can be placed on targets that serve"
        ));
    }

    // A failover's start is told once: the RegionLost Event already says what moves where,
    // so the phase change to FailingOver adds none (in a mass failover every Event is one
    // more write to an API server that is busiest then).
    let loss_told =
        phase == ServicePhase::FailingOver && events.iter().any(|e| e.reason == REASON_REGION_LOST);
    if previous.phase != Some(phase)
        && !(previous.phase.is_none() && phase == ServicePhase::Normal)
        && !loss_told
    {
        events.push(PlanEvent {
            type_: if matches!(phase, ServicePhase::Degraded | ServicePhase::FailingOver) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: phase.to_string(),
            message: phase_message(phase, &failover_message, ready_serving, total),
        });
    }

    Plan {
        targets: targets
            .iter()
            .map(|t| TargetPlan {
                name: t.name.clone(),
                kind: t.kind,
                replicas: t.final_replicas,
                planned: t.planned,
                state: t.state,
            })
            .collect(),
        edge_candidates: candidates.nodes.iter().map(|c| c.name.clone()).collect(),
        weights: weight_map,
        phase,
        failback_step: step.and_then(|k| u32::try_from(k).ok()),
        failback_step_since: step_since,
        last_failover,
        conditions: planned_conditions,
        events,
        notes,
    }
}

/// A target while planning.
struct Target {
    name: String,
    kind: TargetKind,
    state: TargetState,
    planned: u32,
    current: u32,
    ready: u32,
    final_replicas: u32,
    /// May carry traffic once failback is complete (or when none is running).
    allowed_natural: bool,
    /// May carry traffic while the returning regions have not taken theirs back.
    allowed_substitute: bool,
}

impl Target {
    /// Replicas that are ready and will stay.
    fn serving(&self) -> u128 {
        u128::from(self.ready.min(self.final_replicas))
    }
}

fn classify(
    view: Option<&RegionView>,
    in_episode: bool,
    automatic: bool,
    stabilization_seconds: u32,
    now: Timestamp,
) -> Class {
    let lost_now = view.is_some_and(|v| v.draining || v.phase == RegionPhase::Down);
    if lost_now {
        return if in_episode {
            Class::Away
        } else {
            Class::NewlyLost
        };
    }
    if in_episode {
        let stable = view.is_some_and(|v| is_stable(v, stabilization_seconds, now));
        return if stable && automatic {
            Class::Returning
        } else {
            Class::Away
        };
    }
    match view.map(|v| v.phase) {
        Some(RegionPhase::Healthy | RegionPhase::Degraded) => Class::Serving,
        _ => Class::Unknown,
    }
}

/// Healthy (not draining) for at least the stabilization period.
fn is_stable(view: &RegionView, stabilization_seconds: u32, now: Timestamp) -> bool {
    view.phase == RegionPhase::Healthy
        && !view.draining
        && view.healthy_since.is_some_and(|since| {
            millis_between(since, now) >= i64::from(stabilization_seconds) * 1000
        })
}

/// Reason of `FailedOver=False` while some region cannot be judged.
pub const REASON_REGIONS_UNKNOWN: &str = "RegionsUnknown";

/// Why nothing moved although some region cannot be judged (no CloudRegion, or its verdict
/// Unknown): their replicas stay where they run, and the condition names them.
fn unknown_regions_condition(regions: &[Region]) -> Option<PlannedCondition> {
    let unknown: Vec<String> = regions
        .iter()
        .filter(|r| r.class == Class::Unknown)
        .map(|r| match r.view {
            None => format!("{} (no CloudRegion)", r.name),
            Some(_) => format!("{} (verdict Unknown)", r.name),
        })
        .collect();
    (!unknown.is_empty()).then(|| PlannedCondition {
        type_: conditions::FAILED_OVER.into(),
        status: ConditionStatus::False,
        reason: REASON_REGIONS_UNKNOWN.into(),
        message: format!(
            "nothing fails over from a region edgeshift cannot judge; their replicas stay where they run: {}",
            unknown.join(", ")
        ),
    })
}

/// Replicas an Unknown region keeps: what the previous plan gave it, or its normal share when
/// there is no previous plan. Other regions get `None`.
fn kept_replicas(
    regions: &[Region],
    previous: &PreviousState,
    total: u32,
    placement: Placement,
) -> Vec<Option<u32>> {
    let first_not_lost = regions
        .iter()
        .position(|r| !r.is_lost() && r.class != Class::Returning);
    let shares = spread(total, regions.len());
    regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (r.class == Class::Unknown).then(|| {
                previous
                    .desired
                    .get(r.name)
                    .copied()
                    .unwrap_or(match placement {
                        Placement::Spread => shares[i],
                        Placement::Ordered if first_not_lost == Some(i) => total,
                        Placement::Ordered => 0,
                    })
            })
        })
        .collect()
}

/// Places `total` replicas over the regions. `returning_serves` says whether returning regions
/// take replicas (the natural plan) or count as lost (the plan they are returning from).
fn allocate(
    regions: &[Region],
    kept: &[Option<u32>],
    total: u32,
    placement: Placement,
    mode: FallbackMode,
    returning_serves: bool,
) -> Allocation {
    let mut counts: Vec<u32> = kept.iter().map(|k| k.unwrap_or(0)).collect();
    let kept_sum: u32 = kept
        .iter()
        .flatten()
        .fold(0u32, |acc, k| acc.saturating_add(*k));
    let rest = total.saturating_sub(kept_sum);
    let serves = |r: &Region| match r.class {
        Class::Serving => true,
        Class::Returning => returning_serves,
        _ => false,
    };
    let pool: Vec<usize> = (0..regions.len()).filter(|&i| kept[i].is_none()).collect();
    let receivers: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|&i| serves(&regions[i]))
        .collect();
    let mut allocation = Allocation {
        regions: Vec::new(),
        edge_need: 0,
        unplaced: 0,
        moved: 0,
    };

    if regions.is_empty() {
        // No usable region at all: like a list without a healthy region.
        if mode == FallbackMode::Disabled {
            allocation.unplaced = rest;
        } else {
            allocation.edge_need = rest;
        }
        return allocation;
    }
    if pool.is_empty() {
        // Every region is Unknown: a changed spec.replicas still lands on them.
        for (i, share) in spread(rest, regions.len()).into_iter().enumerate() {
            counts[i] = counts[i].saturating_add(share);
        }
        allocation.regions = counts;
        return allocation;
    }

    // What each region of the pool would run if none were lost.
    let home: Vec<u32> = match placement {
        Placement::Spread => spread(rest, pool.len()),
        Placement::Ordered => (0..pool.len())
            .map(|k| if k == 0 { rest } else { 0 })
            .collect(),
    };
    allocation.moved = pool
        .iter()
        .zip(&home)
        .filter(|(&i, _)| !serves(&regions[i]))
        .map(|(_, &h)| h)
        .sum();

    match mode {
        FallbackMode::Failover => {
            for (&i, &share) in pool.iter().zip(&home) {
                if serves(&regions[i]) {
                    counts[i] = share;
                }
            }
            allocation.edge_need = allocation.moved;
        }
        FallbackMode::Spillover | FallbackMode::Disabled => {
            if receivers.is_empty() {
                if mode == FallbackMode::Spillover {
                    allocation.edge_need = rest;
                } else {
                    allocation.unplaced = rest;
                }
            } else {
                match placement {
                    Placement::Spread => {
                        for (&i, share) in receivers.iter().zip(spread(rest, receivers.len())) {
                            counts[i] = share;
                        }
                    }
                    Placement::Ordered => counts[receivers[0]] = rest,
                }
            }
        }
    }
    allocation.regions = counts;
    allocation
}

/// `total` split evenly over `n`, the remainder to the first ones.
fn spread(total: u32, n: usize) -> Vec<u32> {
    let Ok(n32) = u32::try_from(n) else {
        return vec![0; n];
    };
    if n32 == 0 {
        return Vec::new();
    }
    let (base, remainder) = (total / n32, total % n32);
    (0..n32).map(|k| base + u32::from(k < remainder)).collect()
}

/// Edge replicas for an edge need: overprovisioned, within [warm, max], and what fits.
fn edge_count(need: u32, edge: &EdgeFallback, mode: FallbackMode, capacity: u64) -> EdgeCount {
    if mode == FallbackMode::Disabled {
        return EdgeCount::default();
    }
    let max = edge.max_replicas;
    let warm = edge.warm_replicas.min(max);
    let want = if need == 0 {
        warm
    } else {
        let factor = 100 + u64::from(edge.overprovision_percent);
        let overprovisioned = (u64::from(need) * factor).div_ceil(100);
        u32::try_from(overprovisioned)
            .unwrap_or(u32::MAX)
            .clamp(warm, max)
    };
    let placed = u32::try_from(u64::from(want).min(capacity)).unwrap_or(want);
    EdgeCount { want, placed }
}

/// Lowers targets to their planned replicas only while the targets that serve keep
/// `total` ready replicas (each counted up to what it keeps). Lost regions go first: their
/// replicas serve nothing, so they only wait for the rest to be ready.
fn hold_until_others_ready(targets: &mut [Target], total: u32) {
    for t in targets.iter_mut() {
        t.final_replicas = t.planned.max(t.current);
    }
    let retained = |targets: &[Target]| -> u128 {
        targets
            .iter()
            .filter(|t| t.state != TargetState::Lost)
            .map(Target::serving)
            .sum()
    };
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&i| (targets[i].state != TargetState::Lost, i));
    for i in order {
        if targets[i].planned >= targets[i].current {
            continue;
        }
        let held = targets[i].final_replicas;
        targets[i].final_replicas = targets[i].planned;
        if retained(targets) < u128::from(total) {
            targets[i].final_replicas = held;
        }
    }
}

/// Weights proportional to ready replicas. During a failback the returning regions get
/// `blend_percent` of their natural share; the rest stays with the substitutes. When no
/// preferred target is ready, any ready target that is not lost serves, and lost regions only
/// as a last resort (never the edge with fallback Disabled).
fn traffic_weights(
    targets: &[Target],
    blend_percent: u128,
    mode: FallbackMode,
) -> (Vec<u32>, Option<String>) {
    let natural: Vec<u128> = targets
        .iter()
        .map(|t| if t.allowed_natural { t.serving() } else { 0 })
        .collect();
    let substitute: Vec<u128> = targets
        .iter()
        .map(|t| if t.allowed_substitute { t.serving() } else { 0 })
        .collect();
    let (natural_total, substitute_total) = (
        natural.iter().sum::<u128>(),
        substitute.iter().sum::<u128>(),
    );
    let shares: Vec<u128> = if blend_percent >= 100 || substitute_total == 0 {
        natural
    } else if natural_total == 0 {
        substitute
    } else {
        natural
            .iter()
            .zip(&substitute)
            .map(|(n, s)| {
                (100 - blend_percent) * s * natural_total + blend_percent * n * substitute_total
            })
            .collect()
    };
    if shares.iter().any(|s| *s > 0) {
        return (weights::largest_remainder(&shares), None);
    }
    let usable = |t: &Target| !(t.state == TargetState::Edge && mode == FallbackMode::Disabled);
    let fallback: Vec<u128> = targets
        .iter()
        .map(|t| {
            if usable(t) && t.state != TargetState::Lost {
                t.serving()
            } else {
                0
            }
        })
        .collect();
    if fallback.iter().any(|s| *s > 0) {
        return (
            weights::largest_remainder(&fallback),
            Some(
                "no preferred target has ready replicas: traffic goes to the targets that do"
                    .into(),
            ),
        );
    }
    let last_resort: Vec<u128> = targets
        .iter()
        .map(|t| {
            if t.state == TargetState::Lost {
                t.serving()
            } else {
                0
            }
        })
        .collect();
    if last_resort.iter().any(|s| *s > 0) {
        return (
            weights::largest_remainder(&last_resort),
            Some("nothing else is ready: traffic stays on lost regions as a last resort".into()),
        );
    }
    (vec![0; targets.len()], None)
}

/// Steps usable whatever the spec says: within 1..=100, ascending, unique, ending at 100.
fn sanitize_steps(steps: &[u32]) -> Vec<u32> {
    let mut clean: Vec<u32> = steps
        .iter()
        .copied()
        .filter(|s| (1..=100).contains(s))
        .collect();
    clean.sort_unstable();
    clean.dedup();
    if clean.last() != Some(&100) {
        clean.push(100);
    }
    clean
}

fn observed(input: &PlanInput, name: &str) -> ObservedTarget {
    input.observed.get(name).copied().unwrap_or_default()
}

fn indices(regions: &[Region], pred: impl Fn(&Region) -> bool) -> Vec<usize> {
    (0..regions.len()).filter(|&i| pred(&regions[i])).collect()
}

fn names_of(regions: &[Region], pred: impl Fn(&Region) -> bool) -> Vec<String> {
    regions
        .iter()
        .filter(|r| pred(r))
        .map(|r| r.name.to_string())
        .collect()
}

fn names_receiving(regions: &[Region]) -> Vec<String> {
    names_of(regions, |r| {
        matches!(r.class, Class::Serving | Class::Returning)
    })
}

/// Milliseconds from `from` to `to` (negative when `to` is earlier).
fn millis_between(from: Timestamp, to: Timestamp) -> i64 {
    to.as_millisecond().saturating_sub(from.as_millisecond())
}

/// Milliseconds from `from` to `to`, 0 when `to` is earlier.
fn millis_since(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(millis_between(from, to)).unwrap_or(0)
}

fn list_regions(names: &[String]) -> String {
    match names {
        [] => "no region".into(),
        [one] => format!("region {one}"),
        many => format!("regions {}", many.join(", ")),
    }
}

fn loss_cause(region: &Region) -> String {
    match region.view {
        Some(v) if v.draining => format!("region {} is draining", region.name),
        Some(v) if v.phase == RegionPhase::Down => format!("region {} is Down", region.name),
        Some(v) if v.phase == RegionPhase::Healthy => match v.healthy_since {
            Some(since) => format!(
                "region {} is Healthy since {since}, not yet stable",
                region.name
            ),
            None => format!("region {} is Healthy, not yet stable", region.name),
        },
        Some(v) => format!("region {} is {} and not back yet", region.name, v.phase),
        None => format!("region {} has no CloudRegion", region.name),
    }
}

/// "region aws-us-east-1 is Down: 3 replicas moved to aws-us-west-2 (Spillover)".
fn describe_failover(
    regions: &[Region],
    natural: &Allocation,
    edge: &EdgeCount,
    mode: FallbackMode,
    receivers: &[String],
) -> String {
    let lost: Vec<&Region> = regions.iter().filter(|r| r.is_lost()).collect();
    if lost.is_empty() {
        return "no region of the service is lost".into();
    }
    let providers: BTreeSet<&str> = lost
        .iter()
        .filter_map(|r| r.view.map(|v| v.provider.as_str()))
        .collect();
    let whole_provider = providers.len() == 1
        && receivers.is_empty()
        && regions.iter().all(|r| r.is_lost())
        && lost.len() > 1
        && lost.iter().all(|r| r.view.is_some());
    let causes = if whole_provider {
        format!(
            "all regions of provider {} are lost ({})",
            providers.iter().next().copied().unwrap_or("?"),
            lost.iter()
                .map(|r| loss_cause(r))
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else {
        lost.iter()
            .map(|r| loss_cause(r))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let moved = natural.moved;
    let mode_name = match mode {
        FallbackMode::Failover => "Failover",
        FallbackMode::Spillover => "Spillover",
        FallbackMode::Disabled => "fallback Disabled",
    };
    let outcome = if moved == 0 && natural.edge_need == 0 && natural.unplaced == 0 {
        "none of the service's replicas ran there".to_string()
    } else if natural.unplaced > 0 {
        format!(
            "{} replicas have nowhere to go ({mode_name})",
            natural.unplaced
        )
    } else if natural.edge_need > 0 {
        let short = if edge.placed < natural.edge_need {
            format!(", only {} fit", edge.placed)
        } else {
            String::new()
        };
        format!(
            "{} replicas moved to the edge as {}{short} ({mode_name})",
            natural.edge_need, edge.want
        )
    } else {
        format!(
            "{moved} replicas moved to {} ({mode_name})",
            receivers.join(", ")
        )
    };
    format!("{causes}: {outcome}")
}

fn failback_condition(
    regions: &[Region],
    step: Option<usize>,
    step_since: Option<Timestamp>,
    steps: &[u32],
    failback: &crate::api::Failback,
) -> PlannedCondition {
    let returning = names_of(regions, |r| r.class == Class::Returning);
    let condition = |status: ConditionStatus, reason: &str, message: String| PlannedCondition {
        type_: conditions::FAILING_BACK.into(),
        status,
        reason: reason.into(),
        message,
    };
    if !returning.is_empty() {
        return match step {
            Some(k) => condition(
                ConditionStatus::True,
                "TrafficStep",
                format!(
                    "{}: step {}/{} ({}% of their traffic back) since {}",
                    list_regions(&returning),
                    k + 1,
                    steps.len(),
                    steps[k],
                    step_since.map_or_else(|| "now".to_string(), |t| t.to_string())
                ),
            ),
            None => condition(
                ConditionStatus::True,
                "WaitingForReplicas",
                format!(
                    "{} stable again: waiting for {} replicas to be ready before moving traffic back",
                    list_regions(&returning),
                    if returning.len() == 1 { "its" } else { "their" },
                ),
            ),
        };
    }
    // Newly lost regions are away too: the failover's first status says what its next one
    // will, or the reconcile its own child writes trigger would write the status again.
    let away: Vec<&Region> = regions
        .iter()
        .filter(|r| matches!(r.class, Class::Away | Class::NewlyLost))
        .collect();
    let healthy_away: Vec<&&Region> = away
        .iter()
        .filter(|r| {
            r.view
                .is_some_and(|v| v.phase == RegionPhase::Healthy && !v.draining)
        })
        .collect();
    if !healthy_away.is_empty() && !failback.automatic {
        let names: Vec<String> = healthy_away.iter().map(|r| r.name.to_string()).collect();
        return condition(
            ConditionStatus::False,
            "ManualFailback",
            format!(
                "{} Healthy again; automatic failback is off: set spec.fallback.failback.automatic to true to move back",
                list_regions(&names)
            ),
        );
    }
    if !healthy_away.is_empty() {
        let parts: Vec<String> = healthy_away
            .iter()
            .map(|r| match r.view.and_then(|v| v.healthy_since) {
                Some(since) => match since
                    .as_millisecond()
                    .checked_add(i64::from(failback.stabilization_seconds) * 1000)
                {
                    Some(ms) => match Timestamp::from_millisecond(ms) {
                        Ok(at) => {
                            format!("region {} Healthy since {since}, stable at {at}", r.name)
                        }
                        Err(_) => format!("region {} Healthy since {since}", r.name),
                    },
                    None => format!("region {} Healthy since {since}", r.name),
                },
                None => format!("region {} Healthy", r.name),
            })
            .collect();
        return condition(
            ConditionStatus::False,
            "WaitingForStabilization",
            format!(
                "{} ({}s of continuous health needed)",
                parts.join("; "),
                failback.stabilization_seconds
            ),
        );
    }
    if !away.is_empty() {
        let names: Vec<String> = away.iter().map(|r| r.name.to_string()).collect();
        return condition(
            ConditionStatus::False,
            "RegionsStillLost",
            format!("{} not Healthy yet", list_regions(&names)),
        );
    }
    condition(
        ConditionStatus::False,
        "NothingToFailBack",
        "the workload runs where it belongs".into(),
    )
}

fn edge_capacity_condition(
    mode: FallbackMode,
    natural: &Allocation,
    edge: EdgeCount,
    edge_cfg: &EdgeFallback,
    candidate_count: usize,
    capacity: u64,
) -> PlannedCondition {
    let condition = |status: ConditionStatus, reason: &str, message: String| PlannedCondition {
        type_: conditions::EDGE_CAPACITY_INSUFFICIENT.into(),
        status,
        reason: reason.into(),
        message,
    };
    if mode == FallbackMode::Disabled {
        return if natural.unplaced > 0 {
            condition(
                ConditionStatus::True,
                "EdgeDisabled",
                format!(
                    "{} replicas have no healthy region and fallback mode is Disabled",
                    natural.unplaced
                ),
            )
        } else {
            condition(
                ConditionStatus::False,
                "EdgeDisabled",
                "fallback mode is Disabled".into(),
            )
        };
    }
    if edge.placed < edge.want {
        return condition(
            ConditionStatus::True,
            "NotEnoughEdgeNodes",
            format!(
                "the edge should run {} replicas but {} matching edge nodes hold only {} (maxPerNode {})",
                edge.want, candidate_count, capacity, edge_cfg.max_per_node
            ),
        );
    }
    if edge.placed < natural.edge_need {
        return condition(
            ConditionStatus::True,
            "MaxReplicasReached",
            format!(
                "the edge should take {} replicas but spec.fallback.edge.maxReplicas is {}",
                natural.edge_need, edge_cfg.max_replicas
            ),
        );
    }
    condition(
        ConditionStatus::False,
        "EdgeCapacitySufficient",
        format!(
            "the edge has room for the {} replicas it should run",
            edge.placed
        ),
    )
}

fn phase_message(phase: ServicePhase, failover: &str, ready: u64, total: u32) -> String {
    match phase {
        ServicePhase::Normal => format!("serving from the cloud ({ready}/{total} ready)"),
        ServicePhase::FailingOver => format!("failing over: {failover}"),
        ServicePhase::OnEdge => format!("serving from the edge: {failover}"),
        ServicePhase::FailingBack => "recovered regions are taking their workload back".into(),
        ServicePhase::Degraded => format!("fewer than {total} replicas can be placed: {failover}"),
    }
}
