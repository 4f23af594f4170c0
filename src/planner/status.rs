//! Between the API objects and the planner: views built from CloudRegions and EdgeNodes, the
//! previous decision read from an EdgeService's status, and a plan written back as status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::set_condition;
use crate::api::{CloudRegion, EdgeNode, EdgeServiceStatus, RegionPhase, TargetKind, TargetStatus};

use super::{EdgeNodeView, GeoPoint, Plan, PlanInput, PreviousState, RegionView};

impl PreviousState {
    /// What the previous plan decided, as its status recorded it.
    pub fn from_status(status: &EdgeServiceStatus) -> Self {
        Self {
            phase: status.phase,
            desired: status
                .targets
                .iter()
                .map(|t| (t.name.clone(), t.desired_replicas))
                .collect(),
            failback_step: status.failback_step,
            failback_step_since: status.failback_step_since.as_ref().map(|t| t.0),
            last_failover: status.last_failover.clone(),
        }
    }
}

impl Plan {
    /// The EdgeService status this plan leads to. Conditions come from `previous` and only move
    /// their `lastTransitionTime` when their status changes, so an unchanged plan gives an
    /// unchanged status (and no write).
    pub fn status(
        &self,
        input: &PlanInput,
        previous: Option<&EdgeServiceStatus>,
    ) -> EdgeServiceStatus {
        let mut conditions = previous.map(|s| s.conditions.clone()).unwrap_or_default();
        for c in &self.conditions {
            set_condition(
                &mut conditions,
                &c.type_,
                c.status,
                &c.reason,
                &c.message,
                input.generation,
                input.now,
            );
        }
        let targets: Vec<TargetStatus> = self
            .targets
            .iter()
            .map(|t| TargetStatus {
                name: t.name.clone(),
                kind: t.kind,
                desired_replicas: t.replicas,
                ready_replicas: input.observed.get(&t.name).map_or(0, |o| o.ready),
                traffic_weight: self.weight(&t.name),
            })
            .collect();
        let sum = |kind: TargetKind| -> (u64, u64) {
            targets
                .iter()
                .filter(|t| t.kind == kind)
                .fold((0, 0), |(ready, desired), t| {
                    (
                        ready + u64::from(t.ready_replicas),
                        desired + u64::from(t.desired_replicas),
                    )
                })
        };
        let (cloud_ready, cloud_desired) = sum(TargetKind::Region);
        let (edge_ready, edge_desired) = sum(TargetKind::Edge);
        EdgeServiceStatus {
            phase: Some(self.phase),
            observed_generation: input.generation,
            targets,
            cloud: Some(format!("{cloud_ready}/{cloud_desired}")),
            edge: Some(format!("{edge_ready}/{edge_desired}")),
            edge_traffic_percent: Some(self.weight(crate::api::EDGE_TARGET)),
            edge_candidates: self.edge_candidates.clone(),
            failback_step: self.failback_step,
            failback_step_since: self.failback_step_since.map(Time),
            last_failover: self.last_failover.clone(),
            conditions,
        }
    }
}

impl RegionView {
    /// The planner's view of a CloudRegion (phase `Unknown` until it has been judged).
    pub fn from_cloud_region(region: &CloudRegion) -> Self {
        let status = region.status.as_ref();
        let phase = region.phase();
        let since = status
            .and_then(|s| s.last_transition_time.as_ref())
            .map(|t| t.0);
        Self {
            name: region.metadata.name.clone().unwrap_or_default(),
            provider: region.spec.provider.clone(),
            phase,
            healthy_since: since.filter(|_| phase == RegionPhase::Healthy),
            down_since: since.filter(|_| phase == RegionPhase::Down),
            draining: region.spec.drain,
            location: region
                .spec
                .location
                .as_ref()
                .map(|l| GeoPoint::new(l.latitude, l.longitude)),
        }
    }
}

impl EdgeNodeView {
    /// The planner's view of an EdgeNode. `node_pods` is the Node's allocatable pods (used when
    /// the registration offers no `capacity.pods`); `allocated_by_others` counts replicas of
    /// other EdgeServices on it; `on_probation` comes from the trust policy.
    pub fn from_edge_node(
        node: &EdgeNode,
        now: Timestamp,
        node_pods: u32,
        allocated_by_others: u32,
        on_probation: bool,
    ) -> Self {
        let status = node.status.clone().unwrap_or_default();
        Self {
            name: node.spec.node_name.clone(),
            verified: status.verified,
            ready: status.ready,
            quarantined: status.quarantined_until.is_some_and(|until| until.0 > now),
            on_probation,
            availability: status.availability,
            score: status.score,
            price_per_hour: node.spec.price_per_hour,
            location: node
                .spec
                .location
                .as_ref()
                .map(|l| GeoPoint::new(l.latitude, l.longitude)),
            labels: node.spec.labels.clone(),
            capacity_replicas: node
                .spec
                .capacity
                .as_ref()
                .and_then(|c| c.pods)
                .map_or(node_pods, |pods| pods.min(node_pods)),
            allocated_by_others,
        }
    }
}
