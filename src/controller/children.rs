//! What an EdgeService owns, built as plain objects from the spec and the plan (no client):
//! a Deployment per region `<name>-<region>`, a Deployment `<name>-edge`, and the Services
//! `<name>`, `<name>-cloud`, `<name>-edge`.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ContainerPort, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    PodTemplateSpec, Service, ServicePort as K8sServicePort, ServiceSpec, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::{EdgeService, Protocol, EDGE_TARGET};

/// The one field manager edgeshift applies with.
pub const FIELD_MANAGER: &str = "edgeshift";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_SERVICE: &str = "edgeshift.io/service";
pub const LABEL_TARGET: &str = "edgeshift.io/target";
pub const LABEL_TIER: &str = "edgeshift.io/tier";
/// Hash of what edgeshift last applied to a child; equal hash means nothing to write.
pub const ANNOTATION_APPLIED_HASH: &str = "edgeshift.io/applied-hash";
pub const EDGE_LABEL: &str = "edgeshift.io/edge";
pub const VERIFIED_LABEL: &str = "edgeshift.io/verified";
pub const EDGE_TAINT_KEY: &str = "edgeshift.io/edge";

pub fn deployment_name(service: &str, target: &str) -> String {
    format!("{service}-{target}")
}

/// Where a target's pods may run.
#[derive(Clone, Debug, PartialEq)]
pub enum Pinning {
    /// A cloud region's nodes, by the region's node selector (all labels must match).
    Region(BTreeMap<String, String>),
    /// Verified edge nodes, by name.
    Edge(Vec<String>),
}

fn owner_reference(es: &EdgeService) -> Option<OwnerReference> {
    es.controller_owner_ref(&())
}

fn base_labels(es: &EdgeService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        (LABEL_SERVICE.to_string(), es.name_any()),
    ])
}

fn tier(target: &str) -> &'static str {
    if target == EDGE_TARGET {
        "edge"
    } else {
        "cloud"
    }
}

/// The Deployment of one target (`<name>-<region>` or `<name>-edge`) with `replicas` pods.
pub fn deployment(es: &EdgeService, target: &str, replicas: u32, pinning: &Pinning) -> Deployment {
    let name = es.name_any();
    let selector = BTreeMap::from([
        (LABEL_SERVICE.to_string(), name.clone()),
        (LABEL_TARGET.to_string(), target.to_string()),
    ]);
    let mut template: PodTemplateSpec = es.spec.template.spec();
    let mut meta = template.metadata.take().unwrap_or_default();
    let mut pod_labels = meta.labels.take().unwrap_or_default();
    pod_labels.append(&mut selector.clone());
    pod_labels.insert(LABEL_TIER.to_string(), tier(target).to_string());
    pod_labels.insert(LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string());
    meta.labels = Some(pod_labels);
    template.metadata = Some(meta);

    let mut spec = template.spec.take().unwrap_or_default();
    let term = match pinning {
        Pinning::Region(node_selector) => NodeSelectorTerm {
            match_expressions: Some(
                node_selector
                    .iter()
                    .map(|(k, v)| requirement(k, vec![v.clone()]))
                    .collect(),
            ),
            ..Default::default()
        },
        Pinning::Edge(nodes) => NodeSelectorTerm {
            match_expressions: Some(vec![
                requirement(VERIFIED_LABEL, vec!["true".into()]),
                if nodes.is_empty() {
                    // No candidate: a requirement no node meets (every node has a hostname).
                    NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "DoesNotExist".into(),
                        values: None,
                    }
                } else {
                    requirement("kubernetes.io/hostname", nodes.clone())
                },
            ]),
            ..Default::default()
        },
    };
    let mut affinity = spec.affinity.take().unwrap_or_default();
    affinity.node_affinity = Some(merge_node_affinity(affinity.node_affinity.take(), term));
    spec.affinity = Some(affinity);
    if let Pinning::Edge(_) = pinning {
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        tolerations.push(Toleration {
            key: Some(EDGE_TAINT_KEY.into()),
            operator: Some("Equal".into()),
            value: Some("true".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
        spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        // Community hosts are not vetted: restricted pods, no service account token.
        crate::trust::harden_for_edge(&mut spec, &es.spec.fallback.edge);
        publish_host_ports(&mut spec, &es.spec.traffic.ports);
    }
    template.spec = Some(spec);

    Deployment {
        metadata: child_meta(es, &deployment_name(&name, target), target),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template,
            // Make-before-break inside a target too: a new pod is Ready before an old one goes.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::String("25%".into())),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Edge pods publish `traffic.ports[].hostPort` on their node, so DNS can send clients to
/// the node's address while the cloud's load balancers are gone. The port goes on the
/// container that declares the target port, else on the first container.
fn publish_host_ports(spec: &mut PodSpec, ports: &[crate::api::ServicePort]) {
    for p in ports {
        let Some(host_port) = p.host_port else {
            continue;
        };
        let target = i32::from(p.target_port.unwrap_or(p.port));
        let protocol = match p.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        let declared = spec.containers.iter().position(|c| {
            c.ports
                .as_ref()
                .is_some_and(|ps| ps.iter().any(|cp| cp.container_port == target))
        });
        let Some(container) = spec.containers.get_mut(declared.unwrap_or(0)) else {
            continue;
        };
        let container_ports = container.ports.get_or_insert_with(Vec::new);
        match container_ports
            .iter_mut()
            .find(|cp| cp.container_port == target)
        {
            Some(cp) => cp.host_port = Some(i32::from(host_port)),
            None => container_ports.push(ContainerPort {
                name: Some(p.name.clone()),
                container_port: target,
                host_port: Some(i32::from(host_port)),
                protocol: Some(protocol.into()),
                ..Default::default()
            }),
        }
    }
}

fn requirement(key: &str, values: Vec<String>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: "In".into(),
        values: Some(values),
    }
}

/// Adds our term's requirements to every term the template already has (terms are ORed, so
/// each must carry the pinning), or makes it the only term.
fn merge_node_affinity(existing: Option<NodeAffinity>, ours: NodeSelectorTerm) -> NodeAffinity {
    let mut affinity = existing.unwrap_or_default();
    let ours_exprs = ours.match_expressions.clone().unwrap_or_default();
    let terms = match affinity
        .required_during_scheduling_ignored_during_execution
        .take()
        .map(|s| s.node_selector_terms)
    {
        Some(terms) if !terms.is_empty() => terms
            .into_iter()
            .map(|mut t| {
                t.match_expressions
                    .get_or_insert_with(Vec::new)
                    .extend(ours_exprs.iter().cloned());
                t
            })
            .collect(),
        _ => vec![ours],
    };
    affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: terms,
    });
    affinity
}

fn child_meta(es: &EdgeService, name: &str, target: &str) -> ObjectMeta {
    let mut labels = base_labels(es);
    labels.insert(LABEL_TARGET.to_string(), target.to_string());
    labels.insert(LABEL_TIER.to_string(), tier(target).to_string());
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: es.namespace(),
        labels: Some(labels),
        owner_references: owner_reference(es).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The three Services: `<name>` (every ready pod), `<name>-cloud`, `<name>-edge`.
pub fn services(es: &EdgeService) -> Vec<Service> {
    let name = es.name_any();
    let ports: Vec<K8sServicePort> = es
        .spec
        .traffic
        .ports
        .iter()
        .map(|p| K8sServicePort {
            name: Some(p.name.clone()),
            port: i32::from(p.port),
            target_port: Some(IntOrString::Int(i32::from(p.target_port.unwrap_or(p.port)))),
            protocol: Some(
                match p.protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                }
                .into(),
            ),
            ..Default::default()
        })
        .collect();
    [
        (name.clone(), None),
        (format!("{name}-cloud"), Some("cloud")),
        (format!("{name}-edge"), Some("edge")),
    ]
    .into_iter()
    .map(|(svc_name, tier)| {
        let mut selector = BTreeMap::from([(LABEL_SERVICE.to_string(), name.clone())]);
        let mut labels = base_labels(es);
        if let Some(t) = tier {
            selector.insert(LABEL_TIER.to_string(), t.to_string());
            labels.insert(LABEL_TIER.to_string(), t.to_string());
        }
        Service {
            metadata: ObjectMeta {
                name: Some(svc_name),
                namespace: es.namespace(),
                labels: Some(labels),
                owner_references: owner_reference(es).map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector),
                // A Service without ports is headless: it still lists endpoints.
                cluster_ip: ports.is_empty().then(|| "None".to_string()),
                ports: (!ports.is_empty()).then(|| ports.clone()),
                ..Default::default()
            }),
            status: None,
        }
    })
    .collect()
}

/// A stable 64-bit FNV-1a hash of an object's JSON, stored on what we apply so that an
/// unchanged child is never written again.
pub fn applied_hash<T: serde::Serialize>(obj: &T) -> String {
    let bytes = serde_json::to_vec(obj).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Stamps the hash of `obj` (computed without the annotation) into its annotations.
pub fn with_hash<T: Resource + serde::Serialize>(mut obj: T) -> (T, String) {
    let hash = applied_hash(&obj);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_APPLIED_HASH.to_string(), hash.clone());
    (obj, hash)
}

/// Whether an observed child already carries what we would apply.
pub fn is_current<T: Resource>(observed: &T, hash: &str) -> bool {
    observed
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_APPLIED_HASH))
        .is_some_and(|h| h == hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> EdgeService {
        let mut es: EdgeService = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeshift.io/v1alpha1",
            "kind": "EdgeService",
            "metadata": {"name": "shop", "namespace": "prod", "uid": "u-1"},
            "spec": {
                "replicas": 3,
                "regions": ["aws-us-east-1", "aws-us-west-2"],
                "template": {"metadata": {"labels": {"app": "shop"}},
                             "spec": {"containers": [{"name": "app", "image": "shop:1"}]}},
                "traffic": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }
        }))
        .expect("valid EdgeService");
        es.metadata.uid = Some("u-1".into());
        es
    }

    #[test]
    fn region_deployment_is_pinned_to_the_region_and_owned() {
        let es = service();
        let sel = BTreeMap::from([(
            "topology.kubernetes.io/region".to_string(),
            "us-east-1".to_string(),
        )]);
        let d = deployment(&es, "aws-us-east-1", 2, &Pinning::Region(sel));
        assert_eq!(d.metadata.name.as_deref(), Some("shop-aws-us-east-1"));
        let owner = &d.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("EdgeService", Some(true))
        );
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.expect("pod spec");
        let terms = pod
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required affinity")
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        let exprs = terms[0].match_expressions.clone().expect("expressions");
        assert_eq!(exprs[0].key, "topology.kubernetes.io/region");
        assert_eq!(exprs[0].values, Some(vec!["us-east-1".to_string()]));
        assert!(
            pod.tolerations.is_none(),
            "cloud pods do not tolerate the edge taint"
        );
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("labels");
        assert_eq!(
            labels.get("app").map(String::as_str),
            Some("shop"),
            "template labels kept"
        );
        assert_eq!(labels.get(LABEL_TIER).map(String::as_str), Some("cloud"));
    }

    #[test]
    fn edge_deployment_tolerates_the_taint_and_is_pinned_to_candidates() {
        let es = service();
        let d = deployment(
            &es,
            EDGE_TARGET,
            4,
            &Pinning::Edge(vec!["edge-1".into(), "edge-2".into()]),
        );
        let pod = d.spec.expect("spec").template.spec.expect("pod spec");
        let tol = &pod.tolerations.expect("tolerations")[0];
        assert_eq!(tol.key.as_deref(), Some(EDGE_TAINT_KEY));
        let exprs = pod
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms[0]
            .match_expressions
            .clone()
            .expect("exprs");
        assert!(exprs.iter().any(|e| e.key == "kubernetes.io/hostname"
            && e.values == Some(vec!["edge-1".to_string(), "edge-2".to_string()])));
        assert!(exprs.iter().any(|e| e.key == VERIFIED_LABEL));
    }

    #[test]
    fn only_edge_pods_are_restricted() {
        let mut es = service();
        es.spec.fallback.edge.runtime_class_name = Some("gvisor".into());
        let edge = deployment(&es, EDGE_TARGET, 1, &Pinning::Edge(vec!["edge-1".into()]));
        let pod = edge.spec.expect("spec").template.spec.expect("pod spec");
        assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        let sc = pod.containers[0]
            .security_context
            .clone()
            .expect("restricted");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let cloud = deployment(&es, "aws-us-east-1", 1, &Pinning::Region(BTreeMap::new()));
        let pod = cloud.spec.expect("spec").template.spec.expect("pod spec");
        assert!(pod.security_context.is_none() && pod.runtime_class_name.is_none());
    }

    #[test]
    fn an_edge_deployment_without_candidates_matches_no_node() {
        let d = deployment(&service(), EDGE_TARGET, 0, &Pinning::Edge(vec![]));
        let pod = d.spec.expect("spec").template.spec.expect("pod spec");
        let exprs = pod
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms[0]
            .match_expressions
            .clone()
            .expect("exprs");
        assert!(exprs.iter().any(|e| e.key == "kubernetes.io/hostname"
            && e.operator == "DoesNotExist"
            && e.values.is_none()));
    }

    #[test]
    fn edge_pods_publish_host_ports_and_cloud_pods_do_not() {
        let mut es = service();
        es.spec.traffic.ports[0].host_port = Some(30080);
        let edge = deployment(&es, EDGE_TARGET, 1, &Pinning::Edge(vec!["edge-1".into()]));
        let ports = edge
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod")
            .containers[0]
            .ports
            .clone()
            .expect("ports");
        assert_eq!(
            (ports[0].container_port, ports[0].host_port),
            (8080, Some(30080))
        );
        let sel = BTreeMap::from([(
            "topology.kubernetes.io/region".to_string(),
            "us-east-1".to_string(),
        )]);
        let cloud = deployment(&es, "aws-us-east-1", 1, &Pinning::Region(sel));
        let container = &cloud
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod")
            .containers[0];
        assert!(container
            .ports
            .iter()
            .flatten()
            .all(|p| p.host_port.is_none()));
    }

    #[test]
    fn three_services_select_all_cloud_and_edge_pods() {
        let svcs = services(&service());
        let names: Vec<_> = svcs
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["shop", "shop-cloud", "shop-edge"]);
        let sel = |i: usize| {
            svcs[i]
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default()
        };
        assert_eq!(sel(0).len(), 1);
        assert_eq!(sel(1).get(LABEL_TIER).map(String::as_str), Some("cloud"));
        assert_eq!(sel(2).get(LABEL_TIER).map(String::as_str), Some("edge"));
        let port = &svcs[0]
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .expect("ports")[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (80, Some(IntOrString::Int(8080)))
        );
    }

    #[test]
    fn the_applied_hash_is_stable_and_changes_with_the_object() {
        let es = service();
        let a = deployment(&es, EDGE_TARGET, 1, &Pinning::Edge(vec!["edge-1".into()]));
        let b = deployment(&es, EDGE_TARGET, 2, &Pinning::Edge(vec!["edge-1".into()]));
        assert_eq!(applied_hash(&a), applied_hash(&a.clone()));
        assert_ne!(applied_hash(&a), applied_hash(&b));
        let (stamped, hash) = with_hash(a);
        assert!(is_current(&stamped, &hash));
    }
}
