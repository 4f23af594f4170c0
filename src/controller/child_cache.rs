//! The operator's record of its own children (Deployments and Services), kept from their
//! watches: per EdgeService, the few facts a reconcile reads of each child, not the objects.
//!
//! A reflector store keeps every child as a Kubernetes object: an `ObjectMeta` of ~0.4 KB
//! inline, label and annotation B-trees that allocate room for eleven entries each, owner
//! references, and a store key that copies name, namespace, uid and resourceVersion. At
//! 10,000 EdgeServices (20,000 Deployments, 30,000 Services) that was over 100 MB for the
//! facts below, which take ~0.2 KB per child.
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Service;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::children::{ANNOTATION_APPLIED_HASH, LABEL_SERVICE, LABEL_TARGET};
use super::slim::ChildDeployment;

/// What a reconcile reads of one child. Two records are equal exactly when nothing a decision
/// reads has changed, which is what turns a child's watch event into a reconcile or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildRecord {
    pub name: Box<str>,
    /// The uid of the EdgeService in its controller owner reference.
    pub owner_uid: Option<Box<str>>,
    /// The `edgeshift.io/target` label (Deployments: a region name or `edge`).
    pub target: Option<Box<str>>,
    /// Our `edgeshift.io/applied-hash` annotation: what we last wrote.
    pub applied_hash: Option<Box<str>>,
    pub generation: Option<i64>,
    pub deleting: bool,
    /// `spec.replicas` (Deployments).
    pub replicas: Option<i32>,
    /// `status.replicas` and `status.readyReplicas` (Deployments).
    pub status_replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
}

/// The EdgeService a child belongs to: its namespace and its `edgeshift.io/service` label.
pub type ServiceKey = (String, String);

impl ChildRecord {
    fn from_meta(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ChildRecord {
            name: meta.name.as_deref().unwrap_or_default().into(),
            owner_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.as_str().into()),
            target: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_TARGET))
                .map(|t| t.as_str().into()),
            applied_hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_APPLIED_HASH))
                .map(|h| h.as_str().into()),
            generation: meta.generation,
            deleting: meta.deletion_timestamp.is_some(),
            ..Default::default()
        }
    }

    /// A child Deployment's record (also how the CLI reads a listed one).
    pub fn from_deployment(d: &ChildDeployment) -> Self {
        let status = d.status.as_ref();
        ChildRecord {
            replicas: d.spec.as_ref().and_then(|s| s.replicas),
            status_replicas: status.and_then(|s| s.replicas),
            ready_replicas: status.and_then(|s| s.ready_replicas),
            ..ChildRecord::from_meta(&d.metadata)
        }
    }

    /// A child Service's record (metadata is all that is watched).
    pub fn from_service(s: &PartialObjectMeta<Service>) -> Self {
        ChildRecord::from_meta(&s.metadata)
    }

    /// Whether the child's controller is the EdgeService with `uid` (not a deleted namesake).
    pub fn owned_by(&self, uid: Option<&str>) -> bool {
        uid.is_some() && self.owner_uid.as_deref() == uid
    }

    /// Whether the child carries what we would write (by the hash of it).
    pub fn is_current(&self, hash: &str) -> bool {
        self.applied_hash.as_deref() == Some(hash)
    }
}

/// The records of one kind of child, by EdgeService, with the watch's re-list handled as a
/// reflector store handles it: a re-list builds a new map and replaces the old one when done,
/// so children deleted while the watch was down do not linger, and their services are named
/// to whoever listens ([`ChildCache::vanished`]): nothing else would reconcile them.
pub struct ChildCache {
    state: Mutex<Records>,
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct Records {
    live: HashMap<ServiceKey, Vec<ChildRecord>>,
    /// While a re-list runs: what it has brought so far.
    relist: Option<HashMap<ServiceKey, Vec<ChildRecord>>>,
    /// Where the services of children a re-list no longer brings are sent.
    vanished: Option<futures::channel::mpsc::UnboundedSender<ServiceKey>>,
}

/// The services with a child in `before` that `after` no longer has, in key order.
fn vanished(
    before: &HashMap<ServiceKey, Vec<ChildRecord>>,
    after: &HashMap<ServiceKey, Vec<ChildRecord>>,
) -> Vec<ServiceKey> {
    let mut gone: Vec<ServiceKey> = before
        .iter()
        .filter(|(key, records)| {
            let now = after.get(*key);
            records
                .iter()
                .any(|r| !now.is_some_and(|now| now.iter().any(|n| n.name == r.name)))
        })
        .map(|(key, _)| key.clone())
        .collect();
    gone.sort();
    gone
}

impl Default for ChildCache {
    fn default() -> Self {
        ChildCache {
            state: Mutex::new(Records::default()),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }
}

fn key<K: Resource>(obj: &K) -> Option<ServiceKey> {
    Some((obj.namespace()?, obj.labels().get(LABEL_SERVICE)?.clone()))
}

fn upsert(map: &mut HashMap<ServiceKey, Vec<ChildRecord>>, key: ServiceKey, record: ChildRecord) {
    let records = map.entry(key).or_default();
    match records.iter_mut().find(|r| r.name == record.name) {
        Some(r) => *r = record,
        None => {
            records.push(record);
            // Two or three children per service: no room for a fourth (0.1 KB a record).
            records.shrink_to_fit();
        }
    }
}

/// Whether `record` is new or differs from what `map` holds for it.
fn differs(
    map: &HashMap<ServiceKey, Vec<ChildRecord>>,
    key: &ServiceKey,
    record: &ChildRecord,
) -> bool {
    let before = map
        .get(key)
        .and_then(|rs| rs.iter().find(|r| r.name == record.name));
    before != Some(record)
}

fn remove(map: &mut HashMap<ServiceKey, Vec<ChildRecord>>, key: &ServiceKey, name: &str) {
    if let Some(records) = map.get_mut(key) {
        records.retain(|r| &*r.name != name);
        if records.is_empty() {
            map.remove(key);
        }
    }
}

impl ChildCache {
    /// Takes in one watch event; returns whether it changed what a reconcile reads (a new,
    /// changed or deleted child), i.e. whether the owning EdgeService should be reconciled.
    /// Children without an `edgeshift.io/service` label are not ours to read and are skipped.
    pub fn observe<K: Resource>(
        &self,
        event: &watcher::Event<K>,
        record: impl Fn(&K) -> ChildRecord,
    ) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        match event {
            watcher::Event::Init => {
                state.relist = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(obj) => {
                let Some(key) = key(obj) else { return false };
                let record = record(obj);
                let changed = differs(&state.live, &key, &record);
                upsert(state.relist.get_or_insert_with(HashMap::new), key, record);
                changed
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relist.take() {
                    let gone = vanished(&state.live, &relisted);
                    state.live = relisted;
                    if let Some(tx) = &state.vanished {
                        for key in gone {
                            // A closed receiver means the controller has stopped.
                            let _ = tx.unbounded_send(key);
                        }
                    }
                }
                self.ready.send_replace(true);
                false
            }
            watcher::Event::Apply(obj) => {
                let Some(key) = key(obj) else { return false };
                let record = record(obj);
                let changed = differs(&state.live, &key, &record);
                upsert(&mut state.live, key, record);
                changed
            }
            watcher::Event::Delete(obj) => {
                let Some(key) = key(obj) else { return false };
                remove(&mut state.live, &key, &obj.name_any());
                true
            }
        }
    }

    /// The `(namespace, service)` of every child that a re-list found gone (deleted while the
    /// watch was down, so no Delete event came). One listener: a second call replaces the first.
    pub fn vanished(&self) -> futures::channel::mpsc::UnboundedReceiver<ServiceKey> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .vanished = Some(tx);
        rx
    }

    /// The records of the children of `namespace/service`.
    pub fn of(&self, namespace: &str, service: &str) -> Vec<ChildRecord> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .live
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The record of the child `name` of `namespace/service`.
    pub fn get(&self, namespace: &str, service: &str, name: &str) -> Option<ChildRecord> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .live
            .get(&(namespace.to_string(), service.to_string()))?
            .iter()
            .find(|r| &*r.name == name)
            .cloned()
    }

    /// Children recorded, of all services.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.live.values().map(Vec::len).sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first full list has been taken in.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::slim::{ChildDeploymentSpec, ChildDeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn deployment(ns: &str, name: &str, service: &str, ready: i32) -> ChildDeployment {
        let mut d = ChildDeployment::default();
        d.metadata.namespace = Some(ns.into());
        d.metadata.name = Some(name.into());
        d.metadata.generation = Some(1);
        d.metadata.labels = Some(
            [
                (LABEL_SERVICE.to_string(), service.to_string()),
                (LABEL_TARGET.to_string(), "edge".to_string()),
            ]
            .into(),
        );
        d.metadata.annotations =
            Some([(ANNOTATION_APPLIED_HASH.to_string(), "h1".to_string())].into());
        d.metadata.owner_references = Some(vec![
            OwnerReference {
                uid: "not-the-controller".into(),
                ..Default::default()
            },
            OwnerReference {
                uid: "es-1".into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        d.spec = Some(ChildDeploymentSpec { replicas: Some(2) });
        d.status = Some(ChildDeploymentStatus {
            replicas: Some(2),
            ready_replicas: Some(ready),
            observed_generation: Some(1),
        });
        d
    }

    fn observe(cache: &ChildCache, event: watcher::Event<ChildDeployment>) -> bool {
        cache.observe(&event, ChildRecord::from_deployment)
    }

    #[test]
    fn a_record_keeps_what_a_reconcile_reads() {
        let r = ChildRecord::from_deployment(&deployment("a", "shop-edge", "shop", 1));
        assert_eq!(&*r.name, "shop-edge");
        assert_eq!(r.owner_uid.as_deref(), Some("es-1"), "the controller owner");
        assert_eq!(r.target.as_deref(), Some("edge"));
        assert!(r.is_current("h1") && !r.is_current("h2"));
        assert_eq!(
            (r.replicas, r.status_replicas, r.ready_replicas),
            (Some(2), Some(2), Some(1))
        );
        assert!(!r.deleting);
    }

    #[test]
    fn children_are_kept_by_service_and_trigger_only_on_what_is_read() {
        let cache = ChildCache::default();
        assert!(!observe(&cache, watcher::Event::Init));
        assert!(observe(
            &cache,
            watcher::Event::InitApply(deployment("a", "shop-edge", "shop", 0))
        ));
        assert!(cache.is_empty(), "a list in progress is not read from");
        assert!(!observe(&cache, watcher::Event::InitDone));
        assert!(observe(
            &cache,
            watcher::Event::Apply(deployment("a", "shop-east", "shop", 0))
        ));
        assert!(observe(
            &cache,
            watcher::Event::Apply(deployment("b", "shop-east", "shop", 0))
        ));
        assert_eq!(cache.len(), 3);
        let names = |ns, s| {
            let mut n: Vec<String> = cache.of(ns, s).iter().map(|r| r.name.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names("a", "shop"), vec!["shop-east", "shop-edge"]);
        assert_eq!(names("b", "shop"), vec!["shop-east"]);
        // The controller-manager's bookkeeping alone (observed generation): nothing to decide.
        let mut bookkeeping = deployment("a", "shop-edge", "shop", 0);
        if let Some(s) = bookkeeping.status.as_mut() {
            s.observed_generation = Some(7);
        }
        assert!(!observe(&cache, watcher::Event::Apply(bookkeeping)));
        // A pod became Ready: read by the plan.
        assert!(observe(
            &cache,
            watcher::Event::Apply(deployment("a", "shop-edge", "shop", 1))
        ));
        assert_eq!(
            cache
                .get("a", "shop", "shop-edge")
                .and_then(|r| r.ready_replicas),
            Some(1)
        );
        // Not labelled with a service: not ours to read.
        assert!(!observe(
            &cache,
            watcher::Event::Apply(ChildDeployment::default())
        ));
        assert!(observe(
            &cache,
            watcher::Event::Delete(deployment("a", "shop-east", "shop", 0))
        ));
        assert_eq!(names("a", "shop"), vec!["shop-edge"]);
        assert!(observe(
            &cache,
            watcher::Event::Delete(deployment("a", "shop-edge", "shop", 1))
        ));
        assert!(cache.of("a", "shop").is_empty());
        // Re-created with the same content: seen as new.
        assert!(observe(
            &cache,
            watcher::Event::Apply(deployment("a", "shop-edge", "shop", 1))
        ));
    }

    #[test]
    fn a_relist_replaces_the_records_and_drops_children_deleted_meanwhile() {
        let cache = ChildCache::default();
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(deployment("a", "shop-edge", "shop", 1)),
            watcher::Event::InitApply(deployment("a", "shop-east", "shop", 1)),
            watcher::Event::InitDone,
        ] {
            observe(&cache, e);
        }
        assert_eq!(cache.len(), 2);
        // The watch was down while shop-east went; the re-list does not bring it back.
        assert!(!observe(&cache, watcher::Event::Init));
        assert!(
            !observe(
                &cache,
                watcher::Event::InitApply(deployment("a", "shop-edge", "shop", 1))
            ),
            "unchanged: no reconcile"
        );
        assert_eq!(
            cache.len(),
            2,
            "read from the old records until the list is done"
        );
        observe(&cache, watcher::Event::InitDone);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("a", "shop", "shop-east").is_none());
    }

    #[test]
    fn a_relist_names_the_services_whose_children_went_while_the_watch_was_down() {
        let cache = ChildCache::default();
        let mut gone = cache.vanished();
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(deployment("a", "shop-edge", "shop", 1)),
            watcher::Event::InitApply(deployment("a", "shop-east", "shop", 1)),
            watcher::Event::InitApply(deployment("b", "cart-east", "cart", 1)),
            watcher::Event::InitApply(deployment("c", "web-east", "web", 1)),
            watcher::Event::InitDone,
        ] {
            observe(&cache, e);
        }
        assert!(gone.try_recv().is_err(), "the first list loses nothing");
        // While the watch was down: shop-east and all of cart went; web is as it was.
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(deployment("a", "shop-edge", "shop", 1)),
            watcher::Event::InitApply(deployment("c", "web-east", "web", 1)),
            watcher::Event::InitDone,
        ] {
            observe(&cache, e);
        }
        let mut named = vec![];
        while let Ok(key) = gone.try_recv() {
            named.push(key);
        }
        assert_eq!(
            named,
            [
                ("a".to_string(), "shop".to_string()),
                ("b".into(), "cart".into())
            ]
        );
    }

    #[tokio::test]
    async fn ready_after_the_first_full_list() {
        let cache = std::sync::Arc::new(ChildCache::default());
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_until_ready().await }
        });
        observe(&cache, watcher::Event::Init);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        observe(&cache, watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("ready")
            .expect("join");
    }
}
