//! `EdgeNode`: a community (DePIN) machine registered to host edgeshift workloads.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A community edge node's registration: which Kubernetes Node it is, who operates it, what it
/// offers, and the operator's ed25519 signature over all of it.
// Clippy reads the repeated `type_ = ...` keys of separate printcolumns as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgeshift.io",
    version = "v1alpha1",
    kind = "EdgeNode",
    plural = "edgenodes",
    singular = "edgenode",
    shortname = "enode",
    category = "edgeshift",
    status = "EdgeNodeStatus",
    derive = "PartialEq",
    doc = "A community edge node registered to host edgeshift workloads, signed by its operator.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Operator", type_ = "string", json_path = ".spec.operator"),
    printcolumn(name = "Verified", type_ = "boolean", json_path = ".status.verified"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "Score", type_ = "number", json_path = ".status.score"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeNodeSpec {
    /// The Kubernetes Node this registration is for.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub node_name: String,

    /// The node operator's identity (e.g. a wallet address or account name).
    #[schemars(length(min = 1, max = 128))]
    pub operator: String,

    /// The operator's ed25519 public key, base64 (44 characters).
    #[schemars(length(min = 44, max = 44), regex(pattern = r"^[A-Za-z0-9+/]{43}=$"))]
    pub public_key: String,

    /// ed25519 signature over the canonical encoding of this registration, base64 (88 characters).
    #[schemars(length(min = 88, max = 88), regex(pattern = r"^[A-Za-z0-9+/]{86}==$"))]
    pub signature: String,

    /// Where the node is; used for `maxDistanceKm` requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<EdgeLocation>,

    /// What the node offers to edgeshift workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<EdgeCapacity>,

    /// Asking price per hour of use, in the platform's billing unit (0 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub price_per_hour: Option<f64>,

    /// Labels describing the node (hardware, network, ...), matched by EdgeService edge selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: BTreeMap<String, String>,
}

/// Where an edge node is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeLocation {
    /// Latitude in degrees, -90 to 90.
    #[schemars(range(min = -90.0, max = 90.0))]
    pub latitude: f64,

    /// Longitude in degrees, -180 to 180.
    #[schemars(range(min = -180.0, max = 180.0))]
    pub longitude: f64,

    /// ISO 3166-1 alpha-2 country code (e.g. `DE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: Option<String>,
}

/// Resources an edge node offers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeCapacity {
    /// CPU offered (a Kubernetes quantity, e.g. `4` or `3500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,

    /// Memory offered (a Kubernetes quantity, e.g. `8Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,

    /// At most this many edgeshift replicas on the node; unset means the Node's allocatable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub pods: Option<u32>,
}

/// What edgeshift knows about the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeNodeStatus {
    /// The signature and the trust policy check out; only verified nodes get workloads.
    #[serde(default)]
    pub verified: bool,

    /// The Kubernetes Node is Ready and heart-beating.
    #[serde(default)]
    pub ready: bool,

    /// The Node's last heart-beat (its Ready condition's lastHeartbeatTime) as of the last
    /// change to this status: for a node that stopped, when it was last heard from. A
    /// heart-beat alone is not written, so a steady node costs no API writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,

    /// Rolling fraction of time the node was Ready (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub availability: Option<f64>,

    /// Placement score (higher is preferred) from availability, price and history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,

    /// edgeshift replicas currently placed on the node.
    #[serde(default)]
    pub allocated_replicas: u32,

    /// Machine-readable reason for the current verdict (e.g. `SignatureInvalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// Human-readable explanation of the current verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// The node gets no new workloads until this time (after failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_until: Option<Time>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions (`Verified`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
