//! `CloudRegion`: a failure domain (one region of one provider) and how edgeshift judges its health.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A cloud region edgeshift watches: which Nodes belong to it, how to probe it, and how many
/// failed probe rounds make it Down.
// Clippy reads the repeated `type_ = ...` keys of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgeshift.io",
    version = "v1alpha1",
    kind = "CloudRegion",
    plural = "cloudregions",
    singular = "cloudregion",
    shortname = "cregion",
    shortname = "cregions",
    category = "edgeshift",
    status = "CloudRegionStatus",
    derive = "PartialEq",
    doc = "A cloud region (one failure domain of one provider) and how edgeshift judges its health.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready-Nodes",
        type_ = "string",
        json_path = ".status.nodes",
        description = "Ready nodes / nodes in the region"
    ),
    printcolumn(
        name = "Drain",
        type_ = "boolean",
        json_path = ".spec.drain",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CloudRegionSpec {
    /// Cloud provider this region belongs to, as a lowercase DNS label (e.g. `aws`, `gcp`).
    /// Regions of one provider are expected to fail together.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub provider: String,

    /// The provider's name for the region (e.g. `us-east-1`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    )]
    pub region: String,

    /// Labels selecting the Nodes of this region. Empty means
    /// `topology.kubernetes.io/region=<spec.region>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub node_selector: BTreeMap<String, String>,

    /// Where the region is, for `maxDistanceKm` requirements of EdgeServices. Optional: without it
    /// distance requirements that refer to this region are ignored (and the EdgeService says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<RegionLocation>,

    /// Named checks of the region's own endpoints (load balancers, APIs). Each sets exactly one of
    /// `http` or `tcp`. Without probes only node readiness judges the region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub probes: Vec<RegionProbe>,

    /// Node `Ready` conditions as one more health signal.
    #[serde(default)]
    pub node_readiness: NodeReadiness,

    /// Seconds between probe rounds.
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 1, max = 300))]
    pub interval_seconds: u32,

    /// Consecutive failed rounds before the region is declared Down.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,

    /// Consecutive successful rounds before a Down region is declared Healthy again.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,

    /// How many probes must fail for a round to count as failed: `Any` (one is enough),
    /// `Majority` (more than half) or `All`.
    #[serde(default)]
    pub quorum: Quorum,

    /// Planned failover (game days, maintenance): `true` treats the region as lost, through the
    /// same path as a real failure, until it is set back to `false`.
    #[serde(default)]
    pub drain: bool,
}

fn default_interval_seconds() -> u32 {
    2
}

fn default_threshold() -> u32 {
    3
}

/// Latitude and longitude of a region, in degrees.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionLocation {
    /// Latitude in degrees, -90 to 90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub latitude: f64,
    /// Longitude in degrees, -180 to 180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub longitude: f64,
}

/// One named check of a region endpoint: exactly one of `http` or `tcp`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.http) != has(self.tcp)")
    .message("spec.probes[]: each probe must set exactly one of http or tcp"))]
#[serde(rename_all = "camelCase")]
pub struct RegionProbe {
    /// Name of the probe, unique within the region (a DNS label, e.g. `api`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// An HTTP(S) GET whose response status must be one of `expectedStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,

    /// A TCP connect to `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
}

/// An HTTP(S) GET check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// URL to GET; must start with `http://` or `https://`.
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("spec.probes[].http.url must start with http:// or https://"))]
    pub url: String,

    /// HTTP status codes that count as success (each 100 to 599).
    #[serde(default = "default_expected_status")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 100, max = 599)))]
    pub expected_status: Vec<u16>,

    /// Time to wait for the response, in milliseconds (100 to 30000).
    #[serde(default = "default_timeout_millis")]
    #[schemars(range(min = 100, max = 30000))]
    pub timeout_millis: u32,
}

/// A TCP connect check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    /// Host name or IP address to connect to.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// TCP port, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Time to wait for the connection, in milliseconds (100 to 30000).
    #[serde(default = "default_timeout_millis")]
    #[schemars(range(min = 100, max = 30000))]
    pub timeout_millis: u32,
}

fn default_expected_status() -> Vec<u16> {
    vec![200]
}

fn default_timeout_millis() -> u32 {
    1000
}

/// Node readiness as a health signal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeReadiness {
    /// Fraction of the region's Nodes that must be `Ready` for a round to pass (0 to 1).
    /// A region without Nodes gives no node signal: only its probes judge it.
    #[serde(default = "default_min_ready_fraction")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_ready_fraction: f64,
}

impl Default for NodeReadiness {
    fn default() -> Self {
        Self {
            min_ready_fraction: default_min_ready_fraction(),
        }
    }
}

fn default_min_ready_fraction() -> f64 {
    0.5
}

/// How many probes must fail for a round to count as failed.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Quorum {
    /// One failed probe fails the round.
    Any,
    /// More than half of the probes must fail.
    #[default]
    Majority,
    /// Every probe must fail.
    All,
}

/// The health verdict of a region.
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
pub enum RegionPhase {
    /// Probes and nodes pass.
    Healthy,
    /// Some checks fail, but not enough to declare the region Down.
    Degraded,
    /// Failed for `failureThreshold` rounds: workloads leave the region.
    Down,
    /// edgeshift cannot tell (e.g. it is partitioned itself): nothing is failed over.
    #[default]
    Unknown,
}

impl std::fmt::Display for RegionPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegionPhase::Healthy => "Healthy",
            RegionPhase::Degraded => "Degraded",
            RegionPhase::Down => "Down",
            RegionPhase::Unknown => "Unknown",
        })
    }
}

/// What edgeshift last saw of the region.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudRegionStatus {
    /// The health verdict: `Healthy`, `Degraded`, `Down` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RegionPhase>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The latest result of each probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeStatus>,

    /// Nodes of the region whose `Ready` condition is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<u32>,

    /// Nodes selected by the region's node selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_nodes: Option<u32>,

    /// Ready and total nodes as `ready/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,

    /// Failed rounds in a row.
    #[serde(default)]
    pub consecutive_failures: u32,

    /// Successful rounds in a row.
    #[serde(default)]
    pub consecutive_successes: u32,

    /// When `phase` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,

    /// Standard conditions (`Healthy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The latest result of one probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    /// The probe's name from `spec.probes`.
    pub name: String,

    /// Whether the probe passed.
    pub ok: bool,

    /// How long the probe took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_millis: Option<u64>,

    /// What went wrong, or a short summary of success.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,

    /// When the probe last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
}

impl CloudRegionSpec {
    /// The Node labels that select this region's Nodes (the default when `nodeSelector` is empty).
    pub fn effective_node_selector(&self) -> BTreeMap<String, String> {
        if self.node_selector.is_empty() {
            BTreeMap::from([(
                "topology.kubernetes.io/region".to_string(),
                self.region.clone(),
            )])
        } else {
            self.node_selector.clone()
        }
    }
}

impl CloudRegion {
    /// The health verdict, `Unknown` until edgeshift has judged the region.
    pub fn phase(&self) -> RegionPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}
