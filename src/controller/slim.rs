//! What the watches keep of the objects they bring. At 10,000 EdgeServices the operator watches
//! tens of thousands of Deployments, Services and Pods; most of each object (pod templates,
//! container specs, condition messages, managed fields, other controllers' annotations) is of
//! no use to a decision here, and dropping it as it arrives keeps the operator's memory
//! proportional to what it reads. (Child Deployments and Services are then kept as records,
//! see `child_cache`.) Each function keeps exactly the fields its readers use
//! (listed on it); anything else added to a reader must be added here too.
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::children::ANNOTATION_APPLIED_HASH;

/// Metadata without managed fields, and with only our own applied-hash annotation (children
/// are compared with what we would write by that hash alone).
fn child_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k == ANNOTATION_APPLIED_HASH);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A child Deployment as its watch (and the CLI) reads it, to make its record
/// (`child_cache::ChildRecord`) and to map it to its owner: name, namespace, uid, generation,
/// deletion, labels, owners, the applied hash, `spec.replicas` and the replica counts of the
/// status. A full `Deployment` is 2.4 KB before any of its strings; this is a sixth of that,
/// and the template, strategy and conditions are never even deserialized.
#[derive(kube::Resource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[resource(inherit = Deployment)]
pub struct ChildDeployment {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ChildDeploymentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ChildDeploymentStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChildDeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChildDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Drops what the watch brings beyond `ChildDeployment`'s fields: managed fields and other
/// controllers' annotations.
pub fn deployment(d: &mut ChildDeployment) {
    child_meta(&mut d.metadata);
}

/// A child Service's metadata as its record (`child_cache`) and the owner mapping read it:
/// labels, owners, the applied hash.
pub fn service_meta(meta: &mut ObjectMeta) {
    child_meta(meta);
}

/// An edge Pod as the traffic controller (DNS targets) and the EdgeNode controller
/// (allocations) read it: name, namespace, labels, deletion, `spec.nodeName`, `status.phase`
/// and the `Ready` condition's status.
pub fn pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
    p.metadata.owner_references = None;
    if let Some(spec) = p.spec.take() {
        p.spec = Some(PodSpec {
            node_name: spec.node_name,
            containers: Vec::new(),
            ..Default::default()
        });
    }
    if let Some(status) = p.status.take() {
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "Ready")
            .map(|c| PodCondition {
                type_: c.type_,
                status: c.status,
                ..Default::default()
            })
            .collect::<Vec<_>>();
        p.status = Some(PodStatus {
            phase: status.phase,
            conditions: (!ready.is_empty()).then_some(ready),
            ..Default::default()
        });
    }
}

/// An EdgeService without managed fields and without `kubectl apply`'s copy of itself.
pub fn edge_service_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::child_cache::ChildRecord;
    use crate::controller::edge_node;
    use crate::controller::observe::{observed_targets, pod_ready};

    /// The full object as a reader of `ChildDeployment` sees it.
    impl From<&Deployment> for ChildDeployment {
        fn from(d: &Deployment) -> Self {
            ChildDeployment {
                metadata: d.metadata.clone(),
                spec: d.spec.as_ref().map(|s| ChildDeploymentSpec {
                    replicas: s.replicas,
                }),
                status: d.status.as_ref().map(|s| ChildDeploymentStatus {
                    replicas: s.replicas,
                    ready_replicas: s.ready_replicas,
                    observed_generation: s.observed_generation,
                }),
            }
        }
    }

    fn full_deployment() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "shop-edge", "namespace": "prod", "uid": "d-1", "generation": 4,
                "labels": {"edgeshift.io/service": "shop", "edgeshift.io/target": "edge",
                           "app.kubernetes.io/managed-by": "edgeshift"},
                "annotations": {"edgeshift.io/applied-hash": "abc",
                                "deployment.kubernetes.io/revision": "3"},
                "ownerReferences": [{"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                                     "name": "shop", "uid": "es-1", "controller": true}],
                "managedFields": [{"manager": "edgeshift", "operation": "Apply"}]
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"edgeshift.io/service": "shop"}},
                "template": {"spec": {"containers": [{"name": "app", "image": "shop:1"}]}}
            },
            "status": {
                "replicas": 3, "readyReplicas": 2, "observedGeneration": 4,
                "conditions": [{"type": "Available", "status": "True",
                                "message": "Deployment has minimum availability."}]
            }
        }))
        .expect("Deployment")
    }

    fn edge_service() -> crate::api::EdgeService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
            "metadata": {"name": "shop", "namespace": "prod", "uid": "es-1"},
            "spec": {"regions": ["aws-us-east-1"],
                     "template": {"spec": {"containers": [{"name": "app", "image": "shop:1"}]}}}
        }))
        .expect("EdgeService")
    }

    #[test]
    fn a_child_deployment_reads_the_same_to_every_reader() {
        let full = full_deployment();
        // As the watch delivers it: deserialized from the API's JSON, then trimmed.
        let mut slim: ChildDeployment =
            serde_json::from_value(serde_json::to_value(&full).expect("json")).expect("child");
        deployment(&mut slim);
        assert_eq!(
            slim,
            ChildDeployment::from(&{
                let mut d = full.clone();
                child_meta(&mut d.metadata);
                d
            })
        );
        let es = edge_service();
        let record = |d: &ChildDeployment| [ChildRecord::from_deployment(d)];
        assert_eq!(
            observed_targets(&es, &record(&ChildDeployment::from(&full))),
            observed_targets(&es, &record(&slim))
        );
        assert_eq!(
            observed_targets(&es, &record(&slim))
                .get("edge")
                .map(|t| (t.replicas, t.ready)),
            Some((3, 2))
        );
        assert!(record(&slim)[0].is_current("abc"));
        assert_eq!(
            slim.metadata.owner_references,
            full.metadata.owner_references
        );
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        // What is gone: other annotations and managed fields.
        assert_eq!(slim.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        assert!(slim.metadata.managed_fields.is_none());
        assert!(std::mem::size_of::<ChildDeployment>() * 4 < std::mem::size_of::<Deployment>());
    }

    #[test]
    fn a_slim_pod_reads_the_same_to_every_reader() {
        let mut full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "shop-edge-1", "namespace": "prod",
                "labels": {"edgeshift.io/service": "shop", "edgeshift.io/target": "edge",
                           "app.kubernetes.io/managed-by": "edgeshift"},
                "annotations": {"a": "b"}
            },
            "spec": {"nodeName": "edge-1", "containers": [{"name": "app", "image": "shop:1"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "message": "ok"}
            ]}
        }))
        .expect("Pod");
        for ready in [true, false] {
            if let Some(c) = full
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
            {
                c.status = if ready { "True" } else { "False" }.into();
            }
            let mut slim = full.clone();
            pod(&mut slim);
            assert_eq!(pod_ready(&slim), ready);
            assert_eq!(
                edge_node::allocations([&full], "edge-1"),
                edge_node::allocations([&slim], "edge-1")
            );
            assert_eq!(slim.metadata.labels, full.metadata.labels);
            assert!(slim.spec.as_ref().is_some_and(|s| s.containers.is_empty()));
        }
    }

    #[test]
    fn a_slim_service_keeps_the_hash_labels_and_owners() {
        let mut meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "shop", "namespace": "prod",
            "labels": {"edgeshift.io/service": "shop"},
            "annotations": {"edgeshift.io/applied-hash": "abc", "other": "x"},
            "ownerReferences": [{"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                                 "name": "shop", "uid": "es-1", "controller": true}]
        }))
        .expect("meta");
        service_meta(&mut meta);
        assert_eq!(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_APPLIED_HASH))
                .map(String::as_str),
            Some("abc")
        );
        assert_eq!(meta.annotations.as_ref().map(|a| a.len()), Some(1));
        assert_eq!(meta.labels.as_ref().map(|l| l.len()), Some(1));
        assert_eq!(meta.owner_references.as_ref().map(|o| o.len()), Some(1));
    }

    #[test]
    fn an_edge_service_loses_kubectls_copy_of_itself() {
        let mut meta = ObjectMeta {
            annotations: Some(
                [
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        "{}".to_string(),
                    ),
                    ("team".to_string(), "shop".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        edge_service_meta(&mut meta);
        assert_eq!(
            meta.annotations.map(|a| a.into_keys().collect::<Vec<_>>()),
            Some(vec!["team".to_string()])
        );
    }
}
