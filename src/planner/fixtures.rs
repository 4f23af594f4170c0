//! Test builders for planner inputs:
//! `PlanInput::new(spec, at(0)).region(RegionView::healthy("aws-us-east-1")).edge_node(EdgeNodeView::ready("n1"))`.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::fixtures::at;
use crate::api::{EdgeServiceSpec, RegionPhase};

use super::{EdgeNodeView, GeoPoint, ObservedTarget, Plan, PlanInput, PreviousState, RegionView};

impl RegionView {
    /// Region `name` (provider = the part before the first `-`), Healthy for a day before `at(0)`.
    pub fn healthy(name: &str) -> Self {
        Self {
            name: name.to_string(),
            provider: name.split('-').next().unwrap_or(name).to_string(),
            phase: RegionPhase::Healthy,
            healthy_since: Some(at(-86_400)),
            down_since: None,
            draining: false,
            location: None,
        }
    }

    pub fn healthy_since(mut self, since: Timestamp) -> Self {
        self.phase = RegionPhase::Healthy;
        self.healthy_since = Some(since);
        self.down_since = None;
        self
    }

    pub fn down(self) -> Self {
        self.down_since(at(0))
    }

    pub fn down_since(mut self, since: Timestamp) -> Self {
        self.phase = RegionPhase::Down;
        self.healthy_since = None;
        self.down_since = Some(since);
        self
    }

    pub fn degraded(mut self) -> Self {
        self.phase = RegionPhase::Degraded;
        self.healthy_since = None;
        self
    }

    pub fn unknown(mut self) -> Self {
        self.phase = RegionPhase::Unknown;
        self.healthy_since = None;
        self.down_since = None;
        self
    }

    pub fn draining(mut self) -> Self {
        self.draining = true;
        self
    }

    pub fn located(mut self, latitude: f64, longitude: f64) -> Self {
        self.location = Some(GeoPoint::new(latitude, longitude));
        self
    }
}

impl EdgeNodeView {
    /// Edge node `name`: verified, ready, availability 0.99, score 0.5, room for 4 replicas.
    pub fn ready(name: &str) -> Self {
        Self {
            name: name.to_string(),
            verified: true,
            ready: true,
            quarantined: false,
            on_probation: false,
            availability: Some(0.99),
            score: Some(0.5),
            price_per_hour: None,
            location: None,
            labels: BTreeMap::new(),
            capacity_replicas: 4,
            allocated_by_others: 0,
        }
    }

    pub fn unverified(mut self) -> Self {
        self.verified = false;
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }

    pub fn quarantined(mut self) -> Self {
        self.quarantined = true;
        self
    }

    pub fn on_probation(mut self) -> Self {
        self.on_probation = true;
        self
    }

    pub fn score(mut self, score: f64) -> Self {
        self.score = Some(score);
        self
    }

    pub fn availability(mut self, availability: f64) -> Self {
        self.availability = Some(availability);
        self
    }

    pub fn price(mut self, price_per_hour: f64) -> Self {
        self.price_per_hour = Some(price_per_hour);
        self
    }

    pub fn located(mut self, latitude: f64, longitude: f64) -> Self {
        self.location = Some(GeoPoint::new(latitude, longitude));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn capacity(mut self, replicas: u32) -> Self {
        self.capacity_replicas = replicas;
        self
    }

    pub fn allocated(mut self, replicas: u32) -> Self {
        self.allocated_by_others = replicas;
        self
    }
}

impl PlanInput {
    /// A first reconcile of `spec` at `now`: no regions, no edge nodes, no children yet.
    pub fn new(spec: EdgeServiceSpec, now: Timestamp) -> Self {
        Self {
            spec,
            generation: Some(1),
            previous: PreviousState::default(),
            regions: Vec::new(),
            edge_nodes: Vec::new(),
            observed: BTreeMap::new(),
            now,
        }
    }

    pub fn region(mut self, region: RegionView) -> Self {
        self.regions.retain(|r| r.name != region.name);
        self.regions.push(region);
        self
    }

    pub fn edge_node(mut self, node: EdgeNodeView) -> Self {
        self.edge_nodes.push(node);
        self
    }

    pub fn edge_nodes<I: IntoIterator<Item = EdgeNodeView>>(mut self, nodes: I) -> Self {
        self.edge_nodes.extend(nodes);
        self
    }

    /// Target `name` runs `replicas`, `ready` of them ready.
    pub fn observed(mut self, name: &str, replicas: u32, ready: u32) -> Self {
        self.observed
            .insert(name.to_string(), ObservedTarget { replicas, ready });
        self
    }

    pub fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }

    /// The next reconcile after `plan` was applied and every target converged: the plan's status
    /// as previous state, and each target running its planned replicas, all ready.
    pub fn after(&self, plan: &Plan) -> Self {
        let mut next = self.clone();
        next.previous = PreviousState::from_status(&plan.status(self, None));
        next.observed = plan
            .targets
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    ObservedTarget {
                        replicas: t.replicas,
                        ready: t.replicas,
                    },
                )
            })
            .collect();
        next
    }

    /// Like [`after`](Self::after), but the children did not change (nothing became ready).
    pub fn after_unconverged(&self, plan: &Plan) -> Self {
        let mut next = self.clone();
        next.previous = PreviousState::from_status(&plan.status(self, None));
        next
    }
}
