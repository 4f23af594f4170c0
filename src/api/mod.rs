//! The `edgeshift.io/v1alpha1` API: CRD types, their schemas and validation rules.
//!
//! `crds/*.yaml` is generated from these types (`crds_yaml()`); the `crds_are_up_to_date` test
//! fails when they drift, and rewrites them with `EDGESHIFT_UPDATE_CRDS=1`.

pub mod cloud_region;
pub mod conditions;
pub mod edge_node;
pub mod edge_service;
pub mod fixtures;

pub use cloud_region::{
    CloudRegion, CloudRegionSpec, CloudRegionStatus, HttpProbe, NodeReadiness, ProbeStatus, Quorum,
    RegionLocation, RegionPhase, RegionProbe, TcpProbe,
};
pub use conditions::{set_condition, ConditionStatus};
pub use edge_node::{EdgeCapacity, EdgeLocation, EdgeNode, EdgeNodeSpec, EdgeNodeStatus};
pub use edge_service::{
    Dns, EdgeFallback, EdgeRequirements, EdgeSelector, EdgeService, EdgeServiceSpec,
    EdgeServiceStatus, Failback, FailoverRecord, Fallback, FallbackMode, Gateway, ParentRef,
    Placement, PodTemplate, Protocol, ServicePhase, ServicePort, TargetKind, TargetStatus,
    EDGE_TARGET,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every edgeshift kind.
pub const GROUP: &str = "edgeshift.io";

/// Every edgeshift CRD, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [CloudRegion::crd(), EdgeNode::crd(), EdgeService::crd()]
        .into_iter()
        .map(unwrap_descriptions)
        .collect()
}

/// Joins the hard-wrapped lines of doc comments into paragraphs, so `kubectl explain` can wrap
/// them itself instead of breaking lines in odd places.
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = unwrap_lines(text)
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

/// `"one\ntwo\n\nthree"` → `"one two\n\nthree"`.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The file name (under `crds/`) each CRD is written to: `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document, with the generated-file header.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from src/api by `edgeshift crd`; do not edit by hand.\n---\n{body}"
    ))
}

/// Every CRD as YAML, one document each, as `kubectl apply -f -` takes them.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
