//! `EdgeService`: a workload that runs in cloud regions and may fall back to verified edge nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{json_schema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The name of the edge target in plans, weights and status (never a region name).
pub const EDGE_TARGET: &str = "edge";

/// A workload spread over cloud regions that falls back to verified edge nodes when regions are
/// lost, and moves back once they have been healthy long enough.
// Clippy reads the repeated `type_ = ...` keys of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgeshift.io",
    version = "v1alpha1",
    kind = "EdgeService",
    plural = "edgeservices",
    singular = "edgeservice",
    shortname = "es",
    category = "edgeshift",
    namespaced,
    status = "EdgeServiceStatus",
    derive = "PartialEq",
    doc = "A workload spread over cloud regions that falls back to verified edge nodes when regions are lost.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Cloud",
        type_ = "string",
        json_path = ".status.cloud",
        description = "Ready / desired replicas in cloud regions"
    ),
    printcolumn(
        name = "Edge",
        type_ = "string",
        json_path = ".status.edge",
        description = "Ready / desired replicas on edge nodes"
    ),
    printcolumn(
        name = "Edge-Traffic",
        type_ = "integer",
        json_path = ".status.edgeTrafficPercent",
        description = "Percent of traffic sent to the edge"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.traffic) || !has(self.traffic.ports) || !self.traffic.ports.exists(p, has(p.hostPort)) || (has(self.fallback) && has(self.fallback.edge) && has(self.fallback.edge.maxPerNode) && self.fallback.edge.maxPerNode == 1)"
).message("spec.fallback.edge.maxPerNode must be 1 when a spec.traffic.ports[] entry sets hostPort: two pods cannot publish the same port on one node")
.field_path(".fallback.edge.maxPerNode"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeServiceSpec {
    /// Replicas the service needs in total, wherever they run (0 to 1000).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: u32,

    /// The pod template for every target (regions and edge). edgeshift adds node affinity,
    /// tolerations and labels per target.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplate,

    /// CloudRegion names, in order of preference (1 to 16, unique). `edge` is reserved.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 253)))]
    #[x_kube(
        merge_strategy = kube::core::ListMerge::Set,
        validation = kube::core::Rule::new("!self.exists(r, r == 'edge')")
            .message("spec.regions must not contain 'edge', the name is reserved for the edge target")
            .reason(kube::core::Reason::FieldValueForbidden)
    )]
    pub regions: Vec<String>,

    /// How replicas are placed over healthy regions: `Spread` (evenly, in list order) or
    /// `Ordered` (all on the first healthy region).
    #[serde(default)]
    pub placement: Placement,

    /// What happens when regions are lost, and how the workload comes back.
    #[serde(default)]
    pub fallback: Fallback,

    /// How traffic reaches the service: ports, and optionally a Gateway API route and DNS.
    #[serde(default)]
    pub traffic: Traffic,
}

fn default_replicas() -> u32 {
    1
}

/// How replicas are placed over healthy regions.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Placement {
    /// Evenly over the healthy regions; the remainder goes to the first ones in list order.
    #[default]
    Spread,
    /// All replicas on the first healthy region of the list.
    Ordered,
}

/// Fallback behaviour.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    /// `Failover`: a lost region's replicas go to the edge while it is lost. `Spillover`: they go
    /// to the other healthy regions first, and to the edge only when none is left. `Disabled`:
    /// never use the edge.
    #[serde(default)]
    pub mode: FallbackMode,

    /// Limits and requirements for edge replicas.
    #[serde(default)]
    pub edge: EdgeFallback,

    /// When and how the workload moves back to recovered regions.
    #[serde(default)]
    pub failback: Failback,
}

/// Where a lost region's replicas go.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum FallbackMode {
    /// The lost region's share goes to the edge, the other regions keep theirs.
    Failover,
    /// Other healthy regions first, the edge only when no listed region is healthy.
    #[default]
    Spillover,
    /// Never use the edge; replicas only move between regions.
    Disabled,
}

/// Limits and requirements for edge replicas.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("self.warmReplicas <= self.maxReplicas")
    .message("spec.fallback.edge.warmReplicas must be <= spec.fallback.edge.maxReplicas")
    .field_path(".warmReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeFallback {
    /// Most replicas ever placed on the edge (0 to 1000).
    #[serde(default = "default_edge_max_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_replicas: u32,

    /// Replicas kept on the edge at all times, so a failover starts warm (0 to 1000, at most
    /// `maxReplicas`). They carry no traffic while the cloud serves.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub warm_replicas: u32,

    /// Extra edge replicas, in percent of what the lost regions ran, because single edge nodes
    /// are less reliable (0 to 200).
    #[serde(default = "default_overprovision_percent")]
    #[schemars(range(min = 0, max = 200))]
    pub overprovision_percent: u32,

    /// Most replicas of this service on one edge node (1 to 1000).
    #[serde(default = "default_max_per_node")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_per_node: u32,

    /// What an edge node must offer to be used.
    #[serde(default)]
    pub requirements: EdgeRequirements,

    /// RuntimeClass for edge pods (e.g. a sandboxed runtime such as gVisor or Kata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub runtime_class_name: Option<String>,

    /// Whether edge pods may mount Secrets. Off by default: community nodes are not trusted
    /// with credentials.
    #[serde(default)]
    pub allow_secrets: bool,
}

impl Default for EdgeFallback {
    fn default() -> Self {
        Self {
            max_replicas: default_edge_max_replicas(),
            warm_replicas: 0,
            overprovision_percent: default_overprovision_percent(),
            max_per_node: default_max_per_node(),
            requirements: EdgeRequirements::default(),
            runtime_class_name: None,
            allow_secrets: false,
        }
    }
}

fn default_edge_max_replicas() -> u32 {
    10
}

fn default_overprovision_percent() -> u32 {
    25
}

fn default_max_per_node() -> u32 {
    2
}

/// What an edge node must offer to be used.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeRequirements {
    /// Lowest rolling availability (0 to 1) a node must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_availability: Option<f64>,

    /// Highest price per hour a node may ask (0 or more). Nodes without a price are not used
    /// when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_price_per_hour: Option<f64>,

    /// Greatest distance in km from the lost region (from the service's regions while none is
    /// lost). Nodes without a location are not used when this is set; regions without a
    /// location make it ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub max_distance_km: Option<f64>,

    /// Labels the EdgeNode must carry (`spec.labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<EdgeSelector>,
}

/// A label selector over EdgeNode labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSelector {
    /// Every label here must be present on the EdgeNode with the same value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: BTreeMap<String, String>,
}

/// When and how the workload moves back to recovered regions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failback {
    /// Move back on its own once lost regions are stable. With `false` the workload stays where
    /// it is until this is set to `true`.
    #[serde(default = "default_true")]
    pub automatic: bool,

    /// Seconds a lost region must stay continuously Healthy before failback starts (0 to 86400).
    #[serde(default = "default_stabilization_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub stabilization_seconds: u32,

    /// Traffic steps of a failback, in percent of the recovered regions' traffic moved back:
    /// strictly ascending, each 1 to 100, ending at 100.
    #[serde(default = "default_steps")]
    #[schemars(length(min = 1, max = 10), inner(range(min = 1, max = 100)))]
    #[x_kube(
        validation = kube::core::Rule::new("self.isSorted() && self.all(s, self.indexOf(s) == self.lastIndexOf(s))")
            .message("spec.fallback.failback.steps must be strictly ascending"),
        validation = kube::core::Rule::new("self[size(self) - 1] == 100")
            .message("spec.fallback.failback.steps must end with 100")
    )]
    pub steps: Vec<u32>,

    /// Seconds each traffic step holds before the next one (1 to 3600).
    #[serde(default = "default_step_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub step_seconds: u32,
}

impl Default for Failback {
    fn default() -> Self {
        Self {
            automatic: true,
            stabilization_seconds: default_stabilization_seconds(),
            steps: default_steps(),
            step_seconds: default_step_seconds(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_stabilization_seconds() -> u32 {
    300
}

fn default_steps() -> Vec<u32> {
    vec![25, 50, 100]
}

fn default_step_seconds() -> u32 {
    30
}

/// How traffic reaches the service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// Ports the service exposes (unique names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub ports: Vec<ServicePort>,

    /// Publish a Gateway API `HTTPRoute` with per-target backend weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,

    /// Publish an ExternalDNS `DNSEndpoint` listing the targets that have ready replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

/// One port of the service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name, unique within the service (an IANA service name, e.g. `http`).
    #[schemars(
        length(min = 1, max = 15),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Port the Services expose (1 to 65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Container port traffic goes to; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<u16>,

    /// `TCP` or `UDP`.
    #[serde(default)]
    pub protocol: Protocol,

    /// Port edge pods publish on their node, so DNS can point clients at edge nodes directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub host_port: Option<u16>,
}

/// Transport protocol of a port.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// A Gateway API route for the service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Gateways the `HTTPRoute` attaches to.
    #[schemars(length(min = 1, max = 16))]
    pub parent_refs: Vec<ParentRef>,

    /// Host names the route matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub hostnames: Vec<String>,
}

/// A reference to a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the Gateway; defaults to the EdgeService's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,

    /// Listener of the Gateway to attach to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// DNS publication of the service (ExternalDNS `DNSEndpoint`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    /// Fully qualified host name clients resolve (e.g. `shop.example.com`).
    #[schemars(
        length(min = 1, max = 253),
        regex(
            pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$"
        )
    )]
    pub hostname: String,

    /// Record TTL in seconds; short, so clients follow a failover quickly (1 to 86400).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: u32,

    /// Per region, the addresses (load balancer IPs or host names) that serve the service in
    /// normal times. Listed only while the region has ready replicas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub cloud_targets: BTreeMap<String, Vec<String>>,
}

fn default_ttl() -> u32 {
    60
}

/// The phase of an EdgeService.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum ServicePhase {
    /// Served from its regions as planned (a region may be lost with its replicas spilled over).
    #[default]
    Normal,
    /// Replicas are moving away from lost regions and are not all ready yet.
    FailingOver,
    /// Serving partly or fully from edge nodes.
    OnEdge,
    /// Recovered regions are taking their replicas and traffic back.
    FailingBack,
    /// Fewer replicas can be placed than `spec.replicas`, or nothing can serve.
    Degraded,
}

impl std::fmt::Display for ServicePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServicePhase::Normal => "Normal",
            ServicePhase::FailingOver => "FailingOver",
            ServicePhase::OnEdge => "OnEdge",
            ServicePhase::FailingBack => "FailingBack",
            ServicePhase::Degraded => "Degraded",
        })
    }
}

/// Whether a target is a cloud region or the edge.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum TargetKind {
    /// A cloud region (a Deployment pinned to the region's Nodes).
    Region,
    /// Verified edge nodes (a Deployment pinned to the edge candidates).
    Edge,
}

/// What edgeshift last decided and saw for the service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeServiceStatus {
    /// `Normal`, `FailingOver`, `OnEdge`, `FailingBack` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ServicePhase>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Desired and ready replicas and traffic weight per target (each region, and `edge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub targets: Vec<TargetStatus>,

    /// Ready / desired replicas over all cloud regions, e.g. `4/6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,

    /// Ready / desired replicas on the edge, e.g. `1/1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,

    /// Percent of traffic sent to the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_traffic_percent: Option<u32>,

    /// Edge nodes (Kubernetes Node names) that may host edge replicas, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edge_candidates: Vec<String>,

    /// Index into `spec.fallback.failback.steps` of the traffic step in effect during a failback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_step: Option<u32>,

    /// When the current failback step took effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_step_since: Option<Time>,

    /// The latest failover: from where, why, and how long each stage took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,

    /// Standard conditions (`Ready`, `FailedOver`, `FailingBack`, `EdgeCapacityInsufficient`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Replicas and traffic of one target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// A region name from `spec.regions`, or `edge`.
    pub name: String,

    /// `Region` or `Edge`.
    pub kind: TargetKind,

    /// Replicas edgeshift wants on the target now.
    pub desired_replicas: u32,

    /// Replicas of the target that are ready.
    pub ready_replicas: u32,

    /// Percent of traffic sent to the target (all targets add up to 100 while any is ready).
    pub traffic_weight: u32,
}

/// A failover episode: it starts when a region is lost and ends when the last lost region has
/// taken its workload back (`failedBackAt`). Durations are measured from `detectedAt`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// Regions the workload left during this episode and has not moved back to.
    pub from: Vec<String>,

    /// Why, in words (e.g. `region aws-us-east-1 is Down`).
    pub reason: String,

    /// When the first region of the episode was declared lost.
    pub detected_at: Time,

    /// When edgeshift planned the failover.
    pub decided_at: Time,

    /// When the substitute targets first had `spec.replicas` ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_ready_at: Option<Time>,

    /// When traffic first left the lost regions completely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_shifted_at: Option<Time>,

    /// When the workload had moved back to every region of the episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_back_at: Option<Time>,

    /// Milliseconds from detection to the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_millis: Option<u64>,

    /// Milliseconds from detection until the substitutes were ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_ready_millis: Option<u64>,

    /// Milliseconds from detection until traffic had left the lost regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_shift_millis: Option<u64>,
}

impl FailoverRecord {
    /// Whether the episode is still going on (some region has not taken its workload back).
    pub fn is_active(&self) -> bool {
        self.failed_back_at.is_none() && !self.from.is_empty()
    }
}

/// The pod template as the operator holds it: the JSON of a `PodTemplateSpec`, checked when
/// the EdgeService is read and parsed again only when a child is built from it.
///
/// A deserialized `PodTemplateSpec` is ~2 KB inline before any of its strings (its `PodSpec`
/// alone has some forty optional fields); 10,000 cached EdgeServices spent ~50 MB on them. The
/// text of a typical template is a tenth of that, and cloning it (each reconcile hands the
/// spec to the planner) is a reference count.
#[derive(Clone, PartialEq, Eq)]
pub struct PodTemplate(std::sync::Arc<str>);

impl PodTemplate {
    /// The template as Kubernetes' type. The text was written from a `PodTemplateSpec` (see
    /// `From` and `Deserialize`), so reading it back cannot fail; were it ever to, the result
    /// is an empty template, which the API server refuses in the child (no containers).
    pub fn spec(&self) -> PodTemplateSpec {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The JSON text (compact, fields in `PodTemplateSpec`'s order).
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl From<PodTemplateSpec> for PodTemplate {
    fn from(spec: PodTemplateSpec) -> Self {
        PodTemplate::from(&spec)
    }
}

impl From<&PodTemplateSpec> for PodTemplate {
    fn from(spec: &PodTemplateSpec) -> Self {
        // Serializing a k8s-openapi type to a string does not fail (no maps with non-string
        // keys, no fallible Serialize impls).
        PodTemplate(serde_json::to_string(spec).unwrap_or_default().into())
    }
}

impl Default for PodTemplate {
    fn default() -> Self {
        PodTemplate::from(PodTemplateSpec::default())
    }
}

impl std::fmt::Debug for PodTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PodTemplate").field(&&*self.0).finish()
    }
}

impl Serialize for PodTemplate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PodTemplate {
    /// Read as a `PodTemplateSpec`, so a template Kubernetes' type does not accept is refused
    /// here as it was before (the same error, the same place), then kept as text.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PodTemplateSpec::deserialize(deserializer).map(PodTemplate::from)
    }
}

/// The pod template's schema: Kubernetes' own `PodSpec` schema (k8s-openapi's, with its field
/// documentation), so the API server refuses an ill-typed template (`containerPort: "8080"`)
/// with the field's path, and `kubectl explain edgeservice.spec.template.spec` documents pod
/// fields. The metadata keeps what a pod template's metadata means to a Deployment: labels and
/// annotations. On top of Kubernetes' rules: one to [`MAX_CONTAINERS`] containers, each with
/// an image (a Deployment needs them; Kubernetes checks it only when the child is created),
/// and at most as many init containers.
fn pod_template_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut spec = generator.subschema_for::<PodSpec>();
    if let Some(init) = spec
        .get_mut("properties")
        .and_then(|p| p.get_mut("initContainers"))
        .and_then(serde_json::Value::as_object_mut)
    {
        init.insert("maxItems".into(), MAX_CONTAINERS.into());
    }
    if let Some(containers) = spec
        .get_mut("properties")
        .and_then(|p| p.get_mut("containers"))
        .and_then(serde_json::Value::as_object_mut)
    {
        containers.insert("minItems".into(), 1.into());
        containers.insert("maxItems".into(), MAX_CONTAINERS.into());
        if let Some(required) = containers
            .get_mut("items")
            .and_then(|i| i.as_object_mut())
            .map(|i| i.entry("required").or_insert_with(|| serde_json::json!([])))
            .and_then(serde_json::Value::as_array_mut)
        {
            if !required.iter().any(|r| r == "image") {
                required.push("image".into());
            }
        }
    }
    let string_map = |what: &str| {
        serde_json::json!({
            "description": what,
            "type": "object",
            "maxProperties": 64,
            "additionalProperties": { "type": "string" }
        })
    };
    json_schema!({
        "description": "Pod template for every target (a core/v1 PodTemplateSpec).",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": {
                "description": "Labels and annotations for the pods.",
                "type": "object",
                "properties": {
                    "labels": string_map("Labels added to every pod."),
                    "annotations": string_map("Annotations added to every pod.")
                }
            },
            "spec": spec
        }
    })
}

/// Most containers, and most init containers, in the pod template (the API server refuses
/// more).
pub const MAX_CONTAINERS: u32 = 16;

impl EdgeServiceSpec {
    /// Whether the service may ever run on the edge: fallback enabled, or warm edge replicas.
    pub fn uses_edge(&self) -> bool {
        self.fallback.mode != FallbackMode::Disabled || self.fallback.edge.warm_replicas > 0
    }
}

impl EdgeService {
    /// The service's phase, `Normal` before edgeshift has planned it.
    pub fn phase(&self) -> ServicePhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}
