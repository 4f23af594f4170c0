//! Turning cached cluster objects into the planner's input. Pure functions over objects, so
//! they are unit-tested without a cluster; the stores only supply the objects.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{EdgeNode, EdgeService};
use crate::controller::child_cache::ChildRecord;
use crate::controller::edge_node;
use crate::planner::{EdgeNodeView, ObservedTarget};

/// Replicas an edge node takes when its registration does not say (Kubernetes' default
/// pods per node).
pub const DEFAULT_EDGE_NODE_PODS: u32 = 110;

/// The planner's view of an EdgeNode for the EdgeService `service` (`namespace/name`): replicas of every
/// other service on the node (the EdgeNode's allocation annotation) count as allocated by
/// others. Without a service none do: counting a service's own replicas against it would
/// make it push itself off the node.
pub fn edge_node_view_for(node: &EdgeNode, service: Option<&str>, now: Timestamp) -> EdgeNodeView {
    let on_probation = node
        .status
        .as_ref()
        .and_then(|s| {
            crate::api::conditions::find_condition(&s.conditions, edge_node::CONDITION_PROBATION)
        })
        .is_some_and(|c| c.status == "True");
    let allocated_by_others = service.map_or(0, |s| edge_node::allocated_by_others(node, s));
    EdgeNodeView::from_edge_node(
        node,
        now,
        DEFAULT_EDGE_NODE_PODS,
        allocated_by_others,
        on_probation,
    )
}

/// The EdgeService's Deployments as they are, by target, from the records of its children
/// (the operator's cache, or the CLI's list of them): those owned by this EdgeService (not
/// by a deleted namesake) with a target label.
pub fn observed_targets<'a>(
    es: &EdgeService,
    deployments: impl IntoIterator<Item = &'a ChildRecord>,
) -> BTreeMap<String, ObservedTarget> {
    let uid = es.uid();
    deployments
        .into_iter()
        .filter(|d| d.owned_by(uid.as_deref()))
        .filter_map(|d| {
            let target = d.target.as_deref()?.to_string();
            let replicas = d.replicas.unwrap_or(1);
            let ready = d.ready_replicas.unwrap_or(0);
            Some((
                target,
                ObservedTarget {
                    replicas: u32::try_from(replicas).unwrap_or(0),
                    ready: u32::try_from(ready).unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// Whether a Pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether a Node's `Ready` condition is `True`.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}
