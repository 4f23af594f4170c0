//! Test builders that read like sentences:
//! `EdgeService::test().replicas(3).regions(["aws-us-east-1", "aws-us-west-2"])`,
//! `CloudRegion::test("aws-us-east-1").down()`, `EdgeNode::test("edge-1").score(0.9)`.
//!
//! Public so the controller and cluster tests under `tests/` can use them too.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::cloud_region::{
    CloudRegion, CloudRegionSpec, CloudRegionStatus, HttpProbe, NodeReadiness, Quorum,
    RegionLocation, RegionPhase, RegionProbe,
};
use super::edge_node::{EdgeCapacity, EdgeLocation, EdgeNode, EdgeNodeSpec, EdgeNodeStatus};
use super::edge_service::{
    EdgeRequirements, EdgeService, EdgeServiceSpec, EdgeServiceStatus, Fallback, FallbackMode,
    Placement, Traffic,
};

/// A fixed instant tests can count from: 2025-01-01T00:00:00Z plus `seconds`.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_735_689_600 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A pod template with one container `app` running `image`.
pub fn pod_template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".to_string(),
                image: Some(image.to_string()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

impl EdgeService {
    /// `default/web`: 1 replica of nginx in `aws-us-east-1`, every other field at its default.
    pub fn test() -> Self {
        let mut service = EdgeService::new(
            "web",
            EdgeServiceSpec {
                replicas: 1,
                template: pod_template("nginx:1.27").into(),
                regions: vec!["aws-us-east-1".to_string()],
                placement: Placement::default(),
                fallback: Fallback::default(),
                traffic: Traffic::default(),
            },
        );
        service.metadata.namespace = Some("default".to_string());
        service.metadata.generation = Some(1);
        service
    }

    pub fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.to_string());
        self
    }

    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.to_string());
        self
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    pub fn replicas(mut self, replicas: u32) -> Self {
        self.spec.replicas = replicas;
        self
    }

    pub fn regions<I, S>(mut self, regions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.regions = regions.into_iter().map(Into::into).collect();
        self
    }

    pub fn spread(mut self) -> Self {
        self.spec.placement = Placement::Spread;
        self
    }

    pub fn ordered(mut self) -> Self {
        self.spec.placement = Placement::Ordered;
        self
    }

    pub fn mode(mut self, mode: FallbackMode) -> Self {
        self.spec.fallback.mode = mode;
        self
    }

    pub fn failover(self) -> Self {
        self.mode(FallbackMode::Failover)
    }

    pub fn spillover(self) -> Self {
        self.mode(FallbackMode::Spillover)
    }

    pub fn edge_disabled(self) -> Self {
        self.mode(FallbackMode::Disabled)
    }

    pub fn warm_replicas(mut self, warm: u32) -> Self {
        self.spec.fallback.edge.warm_replicas = warm;
        self
    }

    pub fn max_edge_replicas(mut self, max: u32) -> Self {
        self.spec.fallback.edge.max_replicas = max;
        self
    }

    pub fn overprovision_percent(mut self, percent: u32) -> Self {
        self.spec.fallback.edge.overprovision_percent = percent;
        self
    }

    pub fn max_per_node(mut self, max: u32) -> Self {
        self.spec.fallback.edge.max_per_node = max;
        self
    }

    pub fn edge_requirements(mut self, requirements: EdgeRequirements) -> Self {
        self.spec.fallback.edge.requirements = requirements;
        self
    }

    pub fn stabilization_seconds(mut self, seconds: u32) -> Self {
        self.spec.fallback.failback.stabilization_seconds = seconds;
        self
    }

    pub fn failback_steps<I: IntoIterator<Item = u32>>(mut self, steps: I) -> Self {
        self.spec.fallback.failback.steps = steps.into_iter().collect();
        self
    }

    pub fn step_seconds(mut self, seconds: u32) -> Self {
        self.spec.fallback.failback.step_seconds = seconds;
        self
    }

    pub fn manual_failback(mut self) -> Self {
        self.spec.fallback.failback.automatic = false;
        self
    }

    pub fn with_status(mut self, status: EdgeServiceStatus) -> Self {
        self.status = Some(status);
        self
    }
}

impl CloudRegion {
    /// Region `name`; a name like `aws-us-east-1` gives provider `aws` and region `us-east-1`.
    /// Healthy since [`at(0)`](at), with an HTTP probe.
    pub fn test(name: &str) -> Self {
        let (provider, region) = name.split_once('-').unwrap_or(("test", name));
        let mut cloud_region = CloudRegion::new(
            name,
            CloudRegionSpec {
                provider: provider.to_string(),
                region: region.to_string(),
                node_selector: BTreeMap::new(),
                location: None,
                probes: vec![RegionProbe {
                    name: "api".to_string(),
                    http: Some(HttpProbe {
                        url: format!("https://{name}.example.com/healthz"),
                        expected_status: vec![200],
                        timeout_millis: 1000,
                    }),
                    tcp: None,
                }],
                node_readiness: NodeReadiness::default(),
                interval_seconds: 2,
                failure_threshold: 3,
                success_threshold: 3,
                quorum: Quorum::Majority,
                drain: false,
            },
        );
        cloud_region.metadata.generation = Some(1);
        cloud_region.status = Some(CloudRegionStatus {
            phase: Some(RegionPhase::Healthy),
            last_transition_time: Some(Time(at(0))),
            ..CloudRegionStatus::default()
        });
        cloud_region
    }

    fn with_phase(mut self, phase: RegionPhase, since: Timestamp) -> Self {
        let status = self.status.get_or_insert_with(CloudRegionStatus::default);
        status.phase = Some(phase);
        status.last_transition_time = Some(Time(since));
        self
    }

    pub fn healthy_since(self, since: Timestamp) -> Self {
        self.with_phase(RegionPhase::Healthy, since)
    }

    pub fn down(self) -> Self {
        self.down_since(at(0))
    }

    pub fn down_since(self, since: Timestamp) -> Self {
        self.with_phase(RegionPhase::Down, since)
    }

    pub fn degraded(self) -> Self {
        self.with_phase(RegionPhase::Degraded, at(0))
    }

    pub fn unknown(self) -> Self {
        self.with_phase(RegionPhase::Unknown, at(0))
    }

    pub fn draining(mut self) -> Self {
        self.spec.drain = true;
        self
    }

    pub fn located(mut self, latitude: f64, longitude: f64) -> Self {
        self.spec.location = Some(RegionLocation {
            latitude,
            longitude,
        });
        self
    }

    pub fn nodes(mut self, ready: u32, total: u32) -> Self {
        let status = self.status.get_or_insert_with(CloudRegionStatus::default);
        status.ready_nodes = Some(ready);
        status.total_nodes = Some(total);
        status.nodes = Some(format!("{ready}/{total}"));
        self
    }
}

/// A syntactically valid (but not real) base64 ed25519 public key.
pub const TEST_PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A syntactically valid (but not real) base64 ed25519 signature.
pub const TEST_SIGNATURE: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

impl EdgeNode {
    /// Edge node `name` on Kubernetes Node `name`: verified, ready, score 0.5, room for 4 pods.
    pub fn test(name: &str) -> Self {
        let mut node = EdgeNode::new(
            name,
            EdgeNodeSpec {
                node_name: name.to_string(),
                operator: "operator-1".to_string(),
                public_key: TEST_PUBLIC_KEY.to_string(),
                signature: TEST_SIGNATURE.to_string(),
                location: None,
                capacity: Some(EdgeCapacity {
                    cpu: None,
                    memory: None,
                    pods: Some(4),
                }),
                price_per_hour: None,
                labels: BTreeMap::new(),
            },
        );
        node.metadata.generation = Some(1);
        node.status = Some(EdgeNodeStatus {
            verified: true,
            ready: true,
            availability: Some(0.99),
            score: Some(0.5),
            ..EdgeNodeStatus::default()
        });
        node
    }

    fn status_mut(&mut self) -> &mut EdgeNodeStatus {
        self.status.get_or_insert_with(EdgeNodeStatus::default)
    }

    pub fn operated_by(mut self, operator: &str) -> Self {
        self.spec.operator = operator.to_string();
        self
    }

    pub fn unverified(mut self) -> Self {
        self.status_mut().verified = false;
        self
    }

    pub fn not_ready(mut self) -> Self {
        self.status_mut().ready = false;
        self
    }

    pub fn score(mut self, score: f64) -> Self {
        self.status_mut().score = Some(score);
        self
    }

    pub fn availability(mut self, availability: f64) -> Self {
        self.status_mut().availability = Some(availability);
        self
    }

    pub fn allocated(mut self, replicas: u32) -> Self {
        self.status_mut().allocated_replicas = replicas;
        self
    }

    pub fn quarantined_until(mut self, until: Timestamp) -> Self {
        self.status_mut().quarantined_until = Some(Time(until));
        self
    }

    pub fn price(mut self, price_per_hour: f64) -> Self {
        self.spec.price_per_hour = Some(price_per_hour);
        self
    }

    pub fn pods(mut self, pods: u32) -> Self {
        let capacity = self.spec.capacity.get_or_insert(EdgeCapacity {
            cpu: None,
            memory: None,
            pods: None,
        });
        capacity.pods = Some(pods);
        self
    }

    pub fn located(mut self, latitude: f64, longitude: f64, country: &str) -> Self {
        self.spec.location = Some(EdgeLocation {
            latitude,
            longitude,
            country: Some(country.to_string()),
        });
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.spec.labels.insert(key.to_string(), value.to_string());
        self
    }
}
