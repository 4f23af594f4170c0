//! The EdgeNode controller: verify the registration (pure, `crate::trust`) → track the node's
//! reputation → label and taint the Node → status and Events.
//!
//! A verified node's Node gets `edgeshift.io/edge=true`, `edgeshift.io/verified=true` and the
//! taint `edgeshift.io/edge=true:NoSchedule`, by server-side apply with field manager
//! `edgeshift`. A Node whose registration stops checking out loses the `verified` label (only
//! if edgeshift put it there) and keeps the taint, so nothing else lands on it. A registration
//! that never checked out leaves its Node untouched.
//!
//! Everything the status says is recomputed from the cluster on every reconcile; only the
//! flap history lives in memory (availability and quarantine resume from status).
use crate::clock::whole_seconds as seconds;
use crate::runtime::metrics::{ErrorLabels, Metrics};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::events::Recorder;
use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::children::{
    EDGE_LABEL, EDGE_TAINT_KEY, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_SERVICE, VERIFIED_LABEL,
};
use crate::api::conditions::{self, find_condition, ConditionStatus};
use crate::api::{CloudRegion, EdgeNode, EdgeNodeSpec, EdgeNodeStatus};
use crate::clock::{Clock, SystemClock};
use crate::trust::reputation::{probation, round_to, Probation};
use crate::trust::{
    score, verify, Readiness, Reason, Reputation, ReputationSettings, TrustPolicy, Verdict,
};
use crate::{Error, Result};

/// Where the trust policy ConfigMap is unless `--trust-policy` says otherwise.
pub const DEFAULT_TRUST_POLICY: &str = "edgeshift-system/edgeshift-trust-policy";
/// EdgeNode annotation: edgeshift replicas on the node per EdgeService (`{"ns/name": n}`),
/// so each service can tell its own replicas from everyone else's.
pub const ANNOTATION_ALLOCATIONS: &str = "edgeshift.io/allocated-replicas";
/// EdgeNode condition: new or recently failed, at most one replica of any service.
pub const CONDITION_PROBATION: &str = "Probation";
/// EdgeNode condition: flapped too often, no new workloads until `quarantinedUntil`.
pub const CONDITION_QUARANTINED: &str = "Quarantined";
/// EdgeNode status reasons beyond the verdict's.
pub const REASON_QUARANTINED: &str = "Quarantined";
pub const REASON_PROBATION: &str = "Probation";
pub const REASON_NODE_NOT_READY: &str = "NodeNotReady";
/// Event on the policy ConfigMap when it cannot be used.
pub const REASON_POLICY_INVALID: &str = "TrustPolicyInvalid";

/// A steady EdgeNode is looked at again this often (availability moves with time).
const RESYNC: Duration = Duration::from_secs(60);

/// `NAMESPACE/NAME` of the trust policy ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for PolicyRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(PolicyRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "'{s}' is not NAMESPACE/NAME of a ConfigMap (e.g. {DEFAULT_TRUST_POLICY})"
            )),
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Settings of `edgeshift run` that the EdgeNode controller needs.
#[derive(Clone, Debug)]
pub struct EdgeNodeOptions {
    pub trust_policy: PolicyRef,
    /// Only EdgeNodes matching this label selector (all when `None`). With a selector, Nodes
    /// whose EdgeNode is gone are not cleaned up: another operator may own that EdgeNode.
    pub selector: Option<String>,
    pub reputation: ReputationSettings,
    /// EdgeNodes reconciled at once.
    pub concurrency: u16,
    /// Reconcile counts, durations and errors go here.
    pub metrics: Arc<Metrics>,
}

impl Default for EdgeNodeOptions {
    fn default() -> Self {
        EdgeNodeOptions {
            trust_policy: DEFAULT_TRUST_POLICY.parse().unwrap_or_else(|_| PolicyRef {
                namespace: "edgeshift-system".into(),
                name: "edgeshift-trust-policy".into(),
            }),
            selector: None,
            reputation: ReputationSettings::default(),
            concurrency: 8,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions: observed objects in, verdicts, status, patches and Events out.

/// What the registration's Node says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    pub exists: bool,
    pub readiness: Readiness,
    /// The Ready condition's `lastHeartbeatTime`.
    pub last_heartbeat: Option<Timestamp>,
    /// The CloudRegion whose node selector matches the Node, if any.
    pub cloud_region: Option<String>,
}

pub fn node_facts<'a>(
    node: Option<&Node>,
    regions: impl IntoIterator<Item = &'a CloudRegion>,
) -> NodeFacts {
    let Some(node) = node else {
        return NodeFacts {
            exists: false,
            readiness: Readiness::not_ready(),
            last_heartbeat: None,
            cloud_region: None,
        };
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let labels = node.labels();
    let cloud_region = regions
        .into_iter()
        .find(|r| {
            let selector = r.spec.effective_node_selector();
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|r| r.name_any());
    NodeFacts {
        exists: true,
        readiness: Readiness {
            ready: ready.is_some_and(|c| c.status == "True"),
            since: ready
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0),
        },
        last_heartbeat: ready
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| seconds(t.0)),
        cloud_region,
    }
}

/// The registration's verdict: signature and trust policy first, then its Node.
pub fn judge(spec: &EdgeNodeSpec, policy: &TrustPolicy, node: &NodeFacts) -> Verdict {
    let verdict = verify(spec, policy);
    if !verdict.verified {
        return verdict;
    }
    if !node.exists {
        return Verdict::reject(
            Reason::NodeNotFound,
            format!("no Node named '{}' in the cluster", spec.node_name),
        );
    }
    if let Some(region) = &node.cloud_region {
        return Verdict::reject(
            Reason::NodeInCloudRegion,
            format!(
                "Node '{}' belongs to CloudRegion '{region}'; an edge registration cannot claim a cloud node",
                spec.node_name
            ),
        );
    }
    verdict
}

/// edgeshift replicas per EdgeService (`namespace/name`) on the Node `node_name`: pods that
/// are scheduled there, not finished and not being deleted.
pub fn allocations<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    node_name: &str,
) -> BTreeMap<String, u32> {
    let mut by_service = BTreeMap::new();
    for pod in pods {
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name);
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let ours = pod.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(FIELD_MANAGER);
        if on_node && ours && !finished && pod.metadata.deletion_timestamp.is_none() {
            let service = pod.labels().get(LABEL_SERVICE).cloned().unwrap_or_default();
            let key = format!("{}/{service}", pod.namespace().unwrap_or_default());
            *by_service.entry(key).or_insert(0u32) += 1;
        }
    }
    by_service
}

/// Replicas on the EdgeNode's Node of every EdgeService but `service` (`namespace/name`),
/// from the allocation annotation.
pub fn allocated_by_others(en: &EdgeNode, service: &str) -> u32 {
    en.annotations()
        .get(ANNOTATION_ALLOCATIONS)
        .and_then(|text| serde_json::from_str::<BTreeMap<String, u32>>(text).ok())
        .map_or(0, |by_service| {
            by_service
                .iter()
                .filter(|(key, _)| key.as_str() != service)
                .fold(0u32, |sum, (_, n)| sum.saturating_add(*n))
        })
}

/// Everything `next_status` decides from.
#[derive(Clone, Debug)]
pub struct StatusInput<'a> {
    pub edge_node: &'a EdgeNode,
    pub verdict: &'a Verdict,
    pub node: &'a NodeFacts,
    pub availability: Option<f64>,
    pub quarantined_until: Option<Timestamp>,
    pub allocated: u32,
    pub settings: &'a ReputationSettings,
    pub now: Timestamp,
}

/// Whether `new` is worth a status write over `old`: something other than the Node's
/// heart-beat changed (the write then records the latest heart-beat too). A heart-beat alone
/// is not written, so a steady edge node costs no API writes; a node that stops is recorded
/// with the last heart-beat it sent, since going NotReady changes the status.
pub fn status_worth_writing(old: Option<&EdgeNodeStatus>, new: &EdgeNodeStatus) -> bool {
    let Some(old) = old else { return true };
    if old.last_heartbeat.is_none() || old.last_heartbeat == new.last_heartbeat {
        return old != new;
    }
    let mut same_beat = new.clone();
    same_beat.last_heartbeat.clone_from(&old.last_heartbeat);
    &same_beat != old
}

/// The status to hold, with conditions moved only where they really changed, and the
/// node's probation.
pub fn next_status(input: &StatusInput<'_>) -> (EdgeNodeStatus, Probation) {
    let en = input.edge_node;
    let now = seconds(input.now);
    let generation = en.metadata.generation;
    let old = en.status.clone().unwrap_or_default();
    let verdict = input.verdict;
    let availability = input.availability.map(|a| round_to(a, 2));
    let mut status = EdgeNodeStatus {
        verified: verdict.verified,
        ready: input.node.readiness.ready,
        last_heartbeat: input.node.last_heartbeat.map(|t| Time(seconds(t))),
        availability,
        score: verdict
            .verified
            .then(|| score(availability, en.spec.price_per_hour)),
        allocated_replicas: input.allocated,
        reason: None,
        message: None,
        quarantined_until: input.quarantined_until.map(|t| Time(seconds(t))),
        observed_generation: generation,
        conditions: old.conditions,
    };

    conditions::set_condition(
        &mut status.conditions,
        conditions::NODE_VERIFIED,
        verdict.verified.into(),
        verdict.reason.as_str(),
        &verdict.message,
        generation,
        now,
    );
    let (ready_status, ready_reason, ready_message) = if !input.node.exists {
        (
            ConditionStatus::Unknown,
            Reason::NodeNotFound.as_str(),
            format!("no Node named '{}'", en.spec.node_name),
        )
    } else if input.node.readiness.ready {
        (
            ConditionStatus::True,
            "NodeReady",
            format!("Node '{}' is Ready", en.spec.node_name),
        )
    } else {
        (
            ConditionStatus::False,
            REASON_NODE_NOT_READY,
            format!("Node '{}' is not Ready", en.spec.node_name),
        )
    };
    conditions::set_condition(
        &mut status.conditions,
        conditions::NODE_READY,
        ready_status,
        ready_reason,
        &ready_message,
        generation,
        now,
    );

    let quarantined = input.quarantined_until.is_some_and(|t| t > input.now);
    let settings = input.settings;
    let quarantine_message = input.quarantined_until.map(|until| {
        format!(
            "the node went from Ready to NotReady {} times within {}; it gets no new workloads until {}",
            settings.quarantine_flaps,
            human(settings.flap_window),
            seconds(until)
        )
    });
    let (q_status, q_reason, q_message) = match (&quarantine_message, quarantined) {
        (Some(m), true) => (ConditionStatus::True, REASON_QUARANTINED, m.clone()),
        (Some(_), false) => (
            ConditionStatus::False,
            "QuarantineOver",
            format!(
                "the last quarantine ended at {}",
                input.quarantined_until.map(seconds).unwrap_or(now)
            ),
        ),
        (None, _) => (
            ConditionStatus::False,
            "Steady",
            "no quarantine so far".to_string(),
        ),
    };
    conditions::set_condition(
        &mut status.conditions,
        CONDITION_QUARANTINED,
        q_status,
        q_reason,
        &q_message,
        generation,
        now,
    );

    let verified_since = find_condition(&status.conditions, conditions::NODE_VERIFIED)
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0);
    let registered = en.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let probation_now = probation(
        registered,
        verified_since,
        input.node.readiness,
        input.quarantined_until,
        input.now,
        settings,
    );
    let (p_status, p_reason, p_message) = if !verdict.verified {
        (
            ConditionStatus::Unknown,
            "NotVerified",
            "probation starts once the registration is verified".to_string(),
        )
    } else if probation_now.on {
        let until = probation_now
            .until
            .map_or("it has been Ready for a while".to_string(), |u| {
                seconds(u).to_string()
            });
        (
            ConditionStatus::True,
            REASON_PROBATION,
            format!(
                "new or recently failed: at most one replica of any service until {until} ({} verified, Ready and out of quarantine)",
                human(settings.probation)
            ),
        )
    } else {
        (
            ConditionStatus::False,
            "Proven",
            format!(
                "verified, Ready and out of quarantine for {}",
                human(settings.probation)
            ),
        )
    };
    conditions::set_condition(
        &mut status.conditions,
        CONDITION_PROBATION,
        p_status,
        p_reason,
        &p_message,
        generation,
        now,
    );

    let (reason, message) = if !verdict.verified {
        (verdict.reason.as_str().to_string(), verdict.message.clone())
    } else if quarantined {
        (
            REASON_QUARANTINED.to_string(),
            quarantine_message.unwrap_or_default(),
        )
    } else if !input.node.readiness.ready {
        (REASON_NODE_NOT_READY.to_string(), ready_message)
    } else if probation_now.on {
        (REASON_PROBATION.to_string(), p_message)
    } else {
        (verdict.reason.as_str().to_string(), verdict.message.clone())
    };
    status.reason = Some(reason);
    status.message = Some(message);
    (status, probation_now)
}

/// An Event to record on the EdgeNode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events worth telling a person: a new verdict, a quarantine, the end of probation.
pub fn events(
    old: Option<&EdgeNodeStatus>,
    new: &EdgeNodeStatus,
    now: Timestamp,
) -> Vec<NodeEvent> {
    let mut out = Vec::new();
    let condition = |s: Option<&EdgeNodeStatus>, type_: &str| {
        s.and_then(|s| find_condition(&s.conditions, type_))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let verdict_new = condition(Some(new), conditions::NODE_VERIFIED);
    if condition(old, conditions::NODE_VERIFIED) != verdict_new {
        if let Some(c) = find_condition(&new.conditions, conditions::NODE_VERIFIED) {
            out.push(NodeEvent {
                warning: c.status != "True",
                reason: c.reason.clone(),
                note: c.message.clone(),
            });
        }
    }
    let quarantined_now = new.quarantined_until.as_ref().is_some_and(|t| t.0 > now);
    let newly_quarantined = quarantined_now
        && old.and_then(|s| s.quarantined_until.as_ref()) != new.quarantined_until.as_ref();
    if newly_quarantined {
        out.push(NodeEvent {
            warning: true,
            reason: REASON_QUARANTINED.to_string(),
            note: new.message.clone().unwrap_or_default(),
        });
    }
    let proven = |s: Option<&EdgeNodeStatus>| {
        condition(s, CONDITION_PROBATION).is_some_and(|(status, _)| status == "False")
    };
    if new.verified && proven(Some(new)) && !proven(old) && old.is_some() {
        out.push(NodeEvent {
            warning: false,
            reason: "ProbationPassed".to_string(),
            note: "the node may now take more than one replica of a service".to_string(),
        });
    }
    out
}

fn has_edge_taint(taints: &[Taint]) -> bool {
    taints.iter().any(|t| {
        t.key == EDGE_TAINT_KEY && t.value.as_deref() == Some("true") && t.effect == "NoSchedule"
    })
}

/// Whether edgeshift's server-side apply owns Node label `key`.
pub fn owns_label(node: &Node, key: &str) -> bool {
    node.metadata.managed_fields.iter().flatten().any(|mf| {
        mf.manager.as_deref() == Some(FIELD_MANAGER)
            && mf.operation.as_deref() == Some("Apply")
            && mf
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:metadata"))
                .and_then(|m| m.get("f:labels"))
                .and_then(|l| l.get(format!("f:{key}")))
                .is_some()
    })
}

/// The server-side apply body that brings the Node where it should be, or `None` when it is
/// there already (or is none of edgeshift's business).
///
/// `spec.taints` is an atomic list: the body carries the whole current list (plus ours) and
/// the Node's `resourceVersion`, so a list someone changed since we read it is never written
/// back (the API server answers 409 and we look again).
pub fn node_patch(node: &Node, verified: bool) -> Option<serde_json::Value> {
    let labels = node.labels();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted = BTreeMap::from([(EDGE_LABEL.to_string(), "true".to_string())]);
    if verified {
        let labelled = labels.get(EDGE_LABEL).map(String::as_str) == Some("true")
            && labels.get(VERIFIED_LABEL).map(String::as_str) == Some("true");
        if labelled && has_edge_taint(&taints) {
            return None;
        }
        wanted.insert(VERIFIED_LABEL.to_string(), "true".to_string());
    } else if !(labels.contains_key(VERIFIED_LABEL) && owns_label(node, VERIFIED_LABEL)) {
        return None;
    }
    let mut taints = taints;
    if verified && !has_edge_taint(&taints) {
        taints.push(Taint {
            key: EDGE_TAINT_KEY.to_string(),
            value: Some("true".to_string()),
            effect: "NoSchedule".to_string(),
            time_added: None,
        });
    }
    Some(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name_any(),
            "resourceVersion": node.resource_version(),
            "labels": wanted,
        },
        "spec": { "taints": taints },
    }))
}

/// Nodes carrying edgeshift's `verified` label that no EdgeNode names any more.
pub fn orphaned_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    edge_nodes: &[Arc<EdgeNode>],
) -> Vec<String> {
    nodes
        .into_iter()
        .filter(|n| n.labels().contains_key(VERIFIED_LABEL) && owns_label(n, VERIFIED_LABEL))
        .filter(|n| {
            let name = n.name_any();
            !edge_nodes.iter().any(|e| e.spec.node_name == name)
        })
        .map(|n| n.name_any())
        .collect()
}

fn human(d: SignedDuration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 && s >= 3600 {
        format!("{} h", s / 3600)
    } else if s % 60 == 0 && s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

// ---------------------------------------------------------------------------------------------
// I/O: caches, reconcile, writes.

struct Context {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    policies: Store<ConfigMap>,
    regions: Store<CloudRegion>,
    edge_nodes: Store<EdgeNode>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    options: EdgeNodeOptions,
    reputations: Mutex<HashMap<String, Reputation>>,
    /// Becomes true once every cache above has its first full list.
    caches: tokio::sync::watch::Receiver<bool>,
    /// The policy problem last logged, so it is reported once, not on every reconcile.
    policy_reported: Mutex<Option<String>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Waits until the caches are filled: judging from an empty Node cache would reject
    /// every registration as NodeNotFound.
    async fn caches_ready(&self) {
        let mut caches = self.caches.clone();
        let _ = caches.wait_for(|ready| *ready).await;
    }

    /// The policy in effect, and a problem to report when it is unusable or missing.
    fn policy(&self) -> (TrustPolicy, Option<String>) {
        let policy_ref = &self.options.trust_policy;
        let cm = self
            .policies
            .get(&ObjectRef::new(&policy_ref.name).within(&policy_ref.namespace));
        match cm {
            None => (
                TrustPolicy::strict_empty(),
                Some(format!(
                    "no trust policy ConfigMap {policy_ref}: strict mode with no allowed operator, every registration is rejected"
                )),
            ),
            Some(cm) => match TrustPolicy::from_data(&cm.data.clone().unwrap_or_default()) {
                Ok(policy) => (policy, None),
                Err(e) => {
                    let problem = format!("trust policy ConfigMap {policy_ref}: {e}");
                    (TrustPolicy::reject_all(problem.clone()), Some(problem))
                }
            },
        }
    }

    async fn report_policy(&self, problem: Option<String>) {
        {
            let mut reported = self
                .policy_reported
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if *reported == problem {
                return;
            }
            reported.clone_from(&problem);
        }
        let policy_ref = &self.options.trust_policy;
        let Some(problem) = problem else {
            info!(policy = %policy_ref, "trust policy loaded");
            return;
        };
        let cm = self
            .policies
            .get(&ObjectRef::new(&policy_ref.name).within(&policy_ref.namespace));
        match cm {
            None => warn!(policy = %policy_ref, "{problem}"),
            Some(cm) => {
                warn!(policy = %policy_ref, "{problem}; every registration is rejected until it is fixed");
                let event = Event {
                    type_: EventType::Warning,
                    reason: REASON_POLICY_INVALID.into(),
                    note: Some(problem.chars().take(1000).collect()),
                    action: "LoadTrustPolicy".into(),
                    secondary: None,
                };
                if let Err(e) = self.recorder.publish(&event, &cm.object_ref(&())).await {
                    warn!(error = %e, "could not record an Event on the trust policy");
                }
            }
        }
    }

    fn backoff(&self, name: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(name.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        super::backoff_after(*n)
    }

    fn reset_backoff(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

async fn reconcile(en: Arc<EdgeNode>, ctx: Arc<Context>) -> Result<Action> {
    let metrics = ctx.options.metrics.clone();
    metrics.reconcile("EdgeNode", reconcile_node(en, ctx)).await
}

async fn reconcile_node(en: Arc<EdgeNode>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches_ready().await;
    let name = en.name_any();
    if en.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let (policy, problem) = ctx.policy();
    ctx.report_policy(problem.clone()).await;
    let regions = ctx.regions.state();
    let node = ctx.nodes.get(&ObjectRef::new(&en.spec.node_name));
    let facts = node_facts(node.as_deref(), regions.iter().map(|r| r.as_ref()));
    let mut verdict = judge(&en.spec, &policy, &facts);
    if let (Reason::UnknownOperator, Some(problem)) = (verdict.reason, &problem) {
        verdict.message = format!("{}; {problem}", verdict.message);
    }

    let settings = ctx.options.reputation;
    let (availability, quarantined_until) = {
        let mut reputations = ctx.reputations.lock().unwrap_or_else(|e| e.into_inner());
        let reputation = reputations.entry(name.clone()).or_insert_with(|| {
            let status = en.status.as_ref();
            Reputation::resume(
                status.and_then(|s| s.availability),
                status
                    .and_then(|s| s.quarantined_until.as_ref())
                    .map(|t| t.0),
            )
        });
        let observed = reputation.observe(facts.readiness, now, &settings);
        if observed.flapped {
            info!(edgenode = %name, node = %en.spec.node_name, "edge node flapped (Ready to NotReady)");
        }
        (reputation.availability(), reputation.quarantined_until())
    };

    let pods = ctx.pods.state();
    let by_service = allocations(pods.iter().map(|p| p.as_ref()), &en.spec.node_name);
    let (status, probation_now) = next_status(&StatusInput {
        edge_node: &en,
        verdict: &verdict,
        node: &facts,
        availability,
        quarantined_until,
        allocated: by_service.values().sum(),
        settings: &settings,
        now,
    });

    if let Some(node) = &node {
        // Every registration of the Node must check out, as the planner also requires.
        let all_verified = ctx
            .edge_nodes
            .state()
            .iter()
            .filter(|other| other.spec.node_name == en.spec.node_name && other.name_any() != name)
            .all(|other| judge(&other.spec, &policy, &facts).verified);
        if let Some(body) = node_patch(node, verdict.verified && all_verified) {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let verified = verdict.verified && all_verified;
            match nodes
                .patch(
                    &node.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => {
                    info!(edgenode = %name, node = %node.name_any(), verified, "Node labels and taint applied");
                    let (reason, note) = if verified {
                        ("NodeLabelled", format!("Node '{}' labelled {VERIFIED_LABEL}=true and tainted {EDGE_TAINT_KEY}=true:NoSchedule", node.name_any()))
                    } else {
                        ("NodeUnlabelled", format!("{VERIFIED_LABEL} removed from Node '{}' (the taint stays, so nothing else lands there)", node.name_any()))
                    };
                    publish(
                        &ctx,
                        &en,
                        NodeEvent {
                            warning: false,
                            reason: reason.into(),
                            note,
                        },
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    debug!(edgenode = %name, "the Node changed while we wrote it; looking again");
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    let allocations_text = serde_json::to_string(&by_service).unwrap_or_default();
    let current = en.annotations().get(ANNOTATION_ALLOCATIONS);
    let wanted = (!by_service.is_empty()).then_some(&allocations_text);
    if current != wanted {
        let api: Api<EdgeNode> = Api::all(ctx.client.clone());
        let annotations = match wanted {
            Some(text) => serde_json::json!({ ANNOTATION_ALLOCATIONS: text }),
            None => serde_json::json!({}),
        };
        let body = serde_json::json!({
            "apiVersion": EdgeNode::api_version(&()),
            "kind": EdgeNode::kind(&()),
            "metadata": { "name": name, "annotations": annotations },
        });
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    }

    if status_worth_writing(en.status.as_ref(), &status) {
        debug!(
            edgenode = %name,
            old = %serde_json::to_string(&en.status).unwrap_or_default(),
            new = %serde_json::to_string(&status).unwrap_or_default(),
            "status changed"
        );
        let api: Api<EdgeNode> = Api::all(ctx.client.clone());
        let body = serde_json::json!({
            "apiVersion": EdgeNode::api_version(&()),
            "kind": EdgeNode::kind(&()),
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        if status.verified != en.status.as_ref().is_some_and(|s| s.verified) || en.status.is_none()
        {
            info!(edgenode = %name, verified = status.verified, reason = ?status.reason, "verdict");
        }
        for event in events(en.status.as_ref(), &status, now) {
            publish(&ctx, &en, event).await;
        }
    }
    ctx.reset_backoff(&name);

    let mut next = RESYNC;
    let until = |t: Timestamp| {
        Duration::try_from(t.duration_since(now))
            .ok()
            .filter(|d| !d.is_zero())
    };
    if let Some(d) = probation_now
        .on
        .then_some(probation_now.until)
        .flatten()
        .and_then(until)
    {
        next = next.min(d + Duration::from_secs(1));
    }
    if let Some(d) = quarantined_until.and_then(until) {
        next = next.min(d + Duration::from_secs(1));
    }
    Ok(Action::requeue(next))
}

fn error_policy(en: Arc<EdgeNode>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = en.name_any();
    ctx.options
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind: "EdgeNode".into(),
            error: error.metric_label().into(),
        })
        .inc();
    let delay = ctx.backoff(&name);
    warn!(edgenode = %name, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn publish(ctx: &Context, en: &EdgeNode, event: NodeEvent) {
    let kube_event = Event {
        type_: if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: event.reason.clone(),
        note: Some(event.note.chars().take(1000).collect()),
        action: "Verify".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&kube_event, &en.object_ref(&())).await {
        warn!(error = %e, reason = %event.reason, "could not record an Event");
    }
}

/// Removes edgeshift's `verified` label from Nodes whose EdgeNode is gone (only when this
/// operator sees every EdgeNode, i.e. without `--edge-node-selector`). Lists EdgeNodes from
/// the API rather than the controller's cache, which may not be filled yet.
async fn sweep_orphans(ctx: &Context) {
    if ctx.options.selector.is_some() {
        return;
    }
    ctx.caches_ready().await;
    let edge_nodes = match Api::<EdgeNode>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => list.items.into_iter().map(Arc::new).collect::<Vec<_>>(),
        Err(e) => {
            debug!(error = %e, "listing EdgeNodes for the orphan sweep");
            return;
        }
    };
    let nodes = ctx.nodes.state();
    for name in orphaned_nodes(nodes.iter().map(|n| n.as_ref()), &edge_nodes) {
        let Some(node) = ctx.nodes.get(&ObjectRef::new(&name)) else {
            continue;
        };
        let Some(body) = node_patch(&node, false) else {
            continue;
        };
        let api: Api<Node> = Api::all(ctx.client.clone());
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => {
                info!(node = %name, "removed {VERIFIED_LABEL} from a Node no EdgeNode names any more")
            }
            Err(e) => debug!(node = %name, error = %e, "orphaned Node not cleaned up yet"),
        }
    }
}

/// Checks what the API server must accept before the controller starts: the selector.
pub async fn check_options(client: &Client, options: &EdgeNodeOptions) -> Result<(), String> {
    let Some(selector) = &options.selector else {
        return Ok(());
    };
    let api: Api<EdgeNode> = Api::all(client.clone());
    match api
        .list_metadata(&ListParams::default().labels(selector).limit(1))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 400 => Err(format!(
            "--edge-node-selector {selector:?} is not a valid label selector: {}",
            status.message
        )),
        _ => Ok(()),
    }
}

/// What of a Node matters to its EdgeNodes: not its heart-beats, which a status write only
/// carries along (`status_worth_writing`), so a heart-beat alone costs no reconcile either.
fn node_fingerprint(node: &Node) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.labels().hash(&mut h);
    if let Some(taints) = node.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        for t in taints {
            (&t.key, &t.value, &t.effect).hash(&mut h);
        }
    }
    if let Some(ready) = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
    {
        ready.status.hash(&mut h);
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0.as_second())
            .hash(&mut h);
    }
    node.managed_fields().len().hash(&mut h);
    Some(h.finish())
}

fn pod_fingerprint(pod: &Pod) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .hash(&mut h);
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_ref())
        .hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Runs the EdgeNode controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: EdgeNodeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (policies, policies_writer) = reflector::store::<ConfigMap>();
    let (regions, regions_writer) = reflector::store::<CloudRegion>();

    let node_stream = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(nodes_writer)
        .touched_objects()
        .predicate_filter(node_fingerprint, Default::default());
    // Only edge pods can be on an edge node (cloud targets are pinned to their regions), and
    // only their node, phase and labels are read.
    let pod_stream = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{LABEL_MANAGED_BY}={FIELD_MANAGER},{}=edge",
            super::children::LABEL_TIER
        )),
    )
    .modify(super::slim::pod)
    .default_backoff()
    .reflect(pods_writer)
    .touched_objects()
    .predicate_filter(pod_fingerprint, Default::default());
    let policy_ref = options.trust_policy.clone();
    let policy_stream = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &policy_ref.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", policy_ref.name)),
    )
    .default_backoff()
    .reflect(policies_writer)
    .touched_objects();
    let region_stream = watcher(
        Api::<CloudRegion>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(regions_writer)
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());

    let mut edge_config = watcher::Config::default();
    if let Some(selector) = &options.selector {
        edge_config = edge_config.labels(selector);
    }
    let controller = Controller::new(Api::<EdgeNode>::all(client.clone()), edge_config)
        .with_config(kube::runtime::controller::Config::default().concurrency(options.concurrency));
    let edge_nodes = controller.store();
    // One waiter per store: a store's readiness wakes only the last of several waiters.
    let (caches_tx, caches_rx) = tokio::sync::watch::channel(false);
    let (n, p, c, r) = (
        nodes.clone(),
        pods.clone(),
        policies.clone(),
        regions.clone(),
    );
    let readiness = tokio::spawn(async move {
        let ready = n.wait_until_ready().await.is_ok()
            && p.wait_until_ready().await.is_ok()
            && c.wait_until_ready().await.is_ok()
            && r.wait_until_ready().await.is_ok();
        let _ = caches_tx.send(ready);
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        nodes,
        pods,
        policies,
        regions,
        edge_nodes: edge_nodes.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "edgeshift".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        clock: Arc::new(SystemClock),
        options: options.clone(),
        reputations: Mutex::new(HashMap::new()),
        caches: caches_rx,
        policy_reported: Mutex::new(None),
        failures: Mutex::new(HashMap::new()),
    });

    let (by_node, by_pod, all_for_policy, all_for_region) = (
        edge_nodes.clone(),
        edge_nodes.clone(),
        edge_nodes.clone(),
        edge_nodes,
    );
    let naming = |store: &Store<EdgeNode>, node: &str| {
        store
            .state()
            .into_iter()
            .filter(|e| e.spec.node_name == node)
            .map(|e| ObjectRef::from_obj(&*e))
            .collect::<Vec<_>>()
    };
    let everyone = |store: &Store<EdgeNode>| {
        store
            .state()
            .into_iter()
            .map(|e| ObjectRef::from_obj(&*e))
            .collect::<Vec<_>>()
    };
    let controller = controller
        .watches_stream(node_stream, move |node: Node| {
            naming(&by_node, &node.name_any())
        })
        .watches_stream(pod_stream, move |pod: Pod| {
            match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                Some(node) => naming(&by_pod, node),
                None => Vec::new(),
            }
        })
        .watches_stream(policy_stream, move |_: ConfigMap| everyone(&all_for_policy))
        .watches_stream(region_stream, move |_: CloudRegion| {
            everyone(&all_for_region)
        })
        .graceful_shutdown_on(shutdown);

    let sweeper_ctx = ctx.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweep_orphans(&sweeper_ctx).await;
        }
    });

    info!(selector = ?options.selector, policy = %options.trust_policy, "EdgeNode controller starting");
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(err, obj)) => {
                    warn!(object = %obj, error = %err, "reconcile failed")
                }
                Err(err) => warn!(error = %err, "EdgeNode controller"),
            }
            future::ready(())
        })
        .await;
    sweeper.abort();
    readiness.abort();
    info!("EdgeNode controller stopped");
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;
    use crate::api::fixtures::at;
    use crate::trust::NodeKey;

    fn key() -> NodeKey {
        NodeKey::from_seed([42; 32])
    }

    /// `EdgeNode::test(name)` signed with `key()`, registered at `at(0)`, no status yet.
    fn registration(name: &str) -> EdgeNode {
        let mut en = EdgeNode::test(name).price(0.05);
        key().sign(&mut en.spec).expect("signs");
        en.metadata.creation_timestamp = Some(Time(at(0)));
        en.status = None;
        en
    }

    fn node(name: &str, ready_since: Option<i64>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([(
                    "kubernetes.io/hostname".into(),
                    name.into(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready_since.is_some() {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    last_transition_time: Some(Time(at(ready_since.unwrap_or(0)))),
                    last_heartbeat_time: Some(Time(at(5))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn with_our_labels(mut n: Node, verified: bool) -> Node {
        let labels = n.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(EDGE_LABEL.into(), "true".into());
        let mut fields =
            serde_json::json!({"f:metadata": {"f:labels": {"f:edgeshift.io/edge": {}}}});
        if verified {
            labels.insert(VERIFIED_LABEL.into(), "true".into());
            fields["f:metadata"]["f:labels"]["f:edgeshift.io/verified"] = serde_json::json!({});
        }
        n.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }]);
        n.spec.get_or_insert_with(NodeSpec::default).taints = Some(vec![Taint {
            key: EDGE_TAINT_KEY.into(),
            value: Some("true".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        n
    }

    fn facts(ready_since: Option<i64>) -> NodeFacts {
        node_facts(Some(&node("edge-1", ready_since)), [])
    }

    fn status_at(
        en: &EdgeNode,
        verdict: &Verdict,
        node: &NodeFacts,
        quarantine: Option<i64>,
        now: i64,
    ) -> (EdgeNodeStatus, Probation) {
        next_status(&StatusInput {
            edge_node: en,
            verdict,
            node,
            availability: Some(0.997),
            quarantined_until: quarantine.map(at),
            allocated: 2,
            settings: &ReputationSettings::default(),
            now: at(now),
        })
    }

    fn condition(status: &EdgeNodeStatus, type_: &str) -> (String, String) {
        let c = find_condition(&status.conditions, type_).expect("condition");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn node_facts_read_readiness_heartbeat_and_region_membership() {
        let f = facts(Some(3));
        assert!(f.exists && f.readiness.ready);
        assert_eq!(f.readiness.since, Some(at(3)));
        assert_eq!(f.last_heartbeat, Some(at(5)));
        assert_eq!(f.cloud_region, None);
        assert!(!node_facts(None, []).exists);
        let mut cloud = node("aws-1", Some(0));
        cloud
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("topology.kubernetes.io/region".into(), "us-east-1".into());
        let region = CloudRegion::test("aws-us-east-1");
        let region_label = region.spec.effective_node_selector();
        let mut cloud_labels = cloud.metadata.labels.clone().unwrap_or_default();
        cloud_labels.extend(region_label);
        cloud.metadata.labels = Some(cloud_labels);
        assert_eq!(
            node_facts(Some(&cloud), [&region]).cloud_region,
            Some("aws-us-east-1".into())
        );
    }

    #[test]
    fn judge_checks_the_signature_first_then_the_node() {
        let en = registration("edge-1");
        let open = TrustPolicy::open();
        assert!(judge(&en.spec, &open, &facts(Some(0))).verified);
        assert_eq!(
            judge(&en.spec, &open, &node_facts(None, [])).reason,
            Reason::NodeNotFound
        );
        let in_region = NodeFacts {
            cloud_region: Some("aws-us-east-1".into()),
            ..facts(Some(0))
        };
        assert_eq!(
            judge(&en.spec, &open, &in_region).reason,
            Reason::NodeInCloudRegion
        );
        let mut tampered = en.spec.clone();
        tampered.price_per_hour = Some(0.01);
        assert_eq!(
            judge(&tampered, &open, &node_facts(None, [])).reason,
            Reason::InvalidSignature
        );
    }

    fn pod(ns: &str, service: &str, node: &str, phase: &str, managed: bool) -> Pod {
        let mut labels = BTreeMap::from([(LABEL_SERVICE.to_string(), service.to_string())]);
        if managed {
            labels.insert(LABEL_MANAGED_BY.into(), FIELD_MANAGER.into());
        }
        Pod {
            metadata: kube::api::ObjectMeta {
                namespace: Some(ns.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn allocations_count_live_edgeshift_pods_on_the_node_per_service() {
        let mut deleting = pod("a", "web", "edge-1", "Running", true);
        deleting.metadata.deletion_timestamp = Some(Time(at(0)));
        let pods = [
            pod("a", "web", "edge-1", "Running", true),
            pod("a", "web", "edge-1", "Pending", true),
            pod("b", "api", "edge-1", "Running", true),
            pod("a", "web", "edge-2", "Running", true),
            pod("a", "web", "edge-1", "Succeeded", true),
            pod("a", "other", "edge-1", "Running", false),
            deleting,
        ];
        assert_eq!(
            allocations(pods.iter(), "edge-1"),
            BTreeMap::from([("a/web".to_string(), 2), ("b/api".to_string(), 1)])
        );
    }

    #[test]
    fn the_planner_sees_probation_quarantine_and_other_services_replicas() {
        use crate::controller::observe::edge_node_view_for;
        let mut en = registration("edge-1");
        let verdict = judge(&en.spec, &TrustPolicy::open(), &facts(Some(0)));
        let (status, _) = status_at(&en, &verdict, &facts(Some(0)), Some(100), 60);
        en.status = Some(status);
        en.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_ALLOCATIONS.to_string(),
            r#"{"a/web":2,"b/api":1}"#.to_string(),
        )]));
        let view = edge_node_view_for(&en, Some("a/web"), at(60));
        assert!(view.verified && view.on_probation && view.quarantined);
        assert_eq!(view.allocated_by_others, 1);
        assert_eq!(
            edge_node_view_for(&en, Some("c/new"), at(60)).allocated_by_others,
            3
        );
        assert_eq!(edge_node_view_for(&en, None, at(60)).allocated_by_others, 0);
        assert!(!edge_node_view_for(&en, None, at(101)).quarantined);
        en.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_ALLOCATIONS.to_string(),
            "garbage".to_string(),
        )]));
        assert_eq!(allocated_by_others(&en, "a/web"), 0);
        // A status someone wrote by hand, without our conditions: not on probation.
        assert!(!edge_node_view_for(&EdgeNode::test("edge-9"), None, at(0)).on_probation);
    }

    #[test]
    fn a_new_verified_node_is_on_probation_and_a_second_look_changes_nothing() {
        let mut en = registration("edge-1");
        let verdict = judge(&en.spec, &TrustPolicy::open(), &facts(Some(0)));
        let (status, p) = status_at(&en, &verdict, &facts(Some(0)), None, 60);
        assert!(status.verified && status.ready);
        assert_eq!(status.availability, Some(1.0), "rounded to 2 decimals");
        assert_eq!(status.score, Some(score(Some(1.0), Some(0.05))));
        assert_eq!(status.allocated_replicas, 2);
        assert_eq!(status.last_heartbeat, Some(Time(at(5))));
        assert_eq!(status.reason.as_deref(), Some(REASON_PROBATION));
        assert_eq!(
            condition(&status, conditions::NODE_VERIFIED),
            ("True".into(), "Verified".into())
        );
        assert_eq!(
            condition(&status, CONDITION_PROBATION),
            ("True".into(), REASON_PROBATION.into())
        );
        assert_eq!(condition(&status, CONDITION_QUARANTINED).0, "False");
        assert_eq!(
            p,
            Probation {
                on: true,
                until: Some(at(660))
            },
            "600 s from verification at 60 s"
        );

        en.status = Some(status.clone());
        let (again, _) = status_at(&en, &verdict, &facts(Some(0)), None, 120);
        assert_eq!(again, status, "steady: nothing to write");
        assert!(events(Some(&status), &again, at(120)).is_empty());

        let (proven, p) = status_at(&en, &verdict, &facts(Some(0)), None, 700);
        assert!(!p.on);
        assert_eq!(proven.reason.as_deref(), Some("Verified"));
        assert_eq!(
            condition(&proven, CONDITION_PROBATION),
            ("False".into(), "Proven".into())
        );
        assert_eq!(
            events(Some(&status), &proven, at(700)),
            vec![NodeEvent {
                warning: false,
                reason: "ProbationPassed".into(),
                note: "the node may now take more than one replica of a service".into()
            }]
        );
    }

    #[test]
    fn a_heart_beat_alone_is_not_written_but_rides_along_with_any_other_change() {
        let en = registration("edge-1");
        let verdict = judge(&en.spec, &TrustPolicy::open(), &facts(Some(0)));
        let (status, _) = status_at(&en, &verdict, &facts(Some(0)), None, 60);
        let beat = |s: &EdgeNodeStatus, secs: i64| EdgeNodeStatus {
            last_heartbeat: Some(Time(at(secs))),
            ..s.clone()
        };
        assert!(status_worth_writing(None, &status), "the first status");
        assert!(
            !status_worth_writing(Some(&status), &status),
            "nothing changed"
        );
        assert!(
            !status_worth_writing(Some(&status), &beat(&status, 3600)),
            "a newer heart-beat alone, however much newer"
        );
        let mut not_ready = beat(&status, 3600);
        not_ready.ready = false;
        assert!(
            status_worth_writing(Some(&status), &not_ready),
            "going NotReady records the last heart-beat with it"
        );
        let mut never_beat = status.clone();
        never_beat.last_heartbeat = None;
        assert!(
            status_worth_writing(Some(&never_beat), &status),
            "the first heart-beat seen"
        );
    }

    #[test]
    fn a_rejected_registration_says_why_in_status_conditions_and_an_event() {
        let mut en = registration("edge-1");
        en.spec.price_per_hour = Some(0.01);
        let verdict = judge(&en.spec, &TrustPolicy::open(), &facts(Some(0)));
        let (status, _) = status_at(&en, &verdict, &facts(Some(0)), None, 60);
        assert!(!status.verified);
        assert_eq!(status.reason.as_deref(), Some("InvalidSignature"));
        assert!(status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("signature does not match")));
        assert_eq!(status.score, None);
        assert_eq!(
            condition(&status, conditions::NODE_VERIFIED),
            ("False".into(), "InvalidSignature".into())
        );
        assert_eq!(condition(&status, CONDITION_PROBATION).0, "Unknown");
        let evs = events(None, &status, at(60));
        assert_eq!(evs.len(), 1);
        assert!(evs[0].warning);
        assert_eq!(evs[0].reason, "InvalidSignature");
    }

    #[test]
    fn a_quarantined_node_says_until_when() {
        let en = registration("edge-1");
        let verdict = judge(&en.spec, &TrustPolicy::open(), &facts(Some(0)));
        let (status, p) = status_at(&en, &verdict, &facts(Some(900)), Some(1000), 950);
        assert_eq!(status.reason.as_deref(), Some(REASON_QUARANTINED));
        assert_eq!(status.quarantined_until, Some(Time(at(1000))));
        assert_eq!(
            condition(&status, CONDITION_QUARANTINED),
            ("True".into(), REASON_QUARANTINED.into())
        );
        assert_eq!(p.until, Some(at(1600)), "probation follows the quarantine");
        let evs = events(None, &status, at(950));
        assert!(
            evs.iter()
                .any(|e| e.warning && e.reason == REASON_QUARANTINED),
            "{evs:?}"
        );
        let mut en2 = en.clone();
        en2.status = Some(status.clone());
        let (later, _) = status_at(&en2, &verdict, &facts(Some(900)), Some(1000), 1100);
        assert_eq!(
            condition(&later, CONDITION_QUARANTINED),
            ("False".into(), "QuarantineOver".into())
        );
        assert_eq!(later.reason.as_deref(), Some(REASON_PROBATION));
    }

    #[test]
    fn a_verified_node_gets_exactly_our_labels_and_taint_with_its_other_taints_kept() {
        let mut n = node("edge-1", Some(0));
        n.spec.get_or_insert_with(NodeSpec::default).taints = Some(vec![Taint {
            key: "node.kubernetes.io/unreachable".into(),
            value: None,
            effect: "NoExecute".into(),
            time_added: None,
        }]);
        assert_eq!(
            node_patch(&n, true),
            Some(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": "edge-1",
                    "resourceVersion": "7",
                    "labels": {"edgeshift.io/edge": "true", "edgeshift.io/verified": "true"},
                },
                "spec": {"taints": [
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                    {"key": "edgeshift.io/edge", "value": "true", "effect": "NoSchedule"},
                ]},
            }))
        );
        assert_eq!(
            node_patch(&with_our_labels(node("edge-1", Some(0)), true), true),
            None,
            "already there"
        );
    }

    #[test]
    fn an_unverified_node_is_untouched_unless_we_verified_it_before() {
        assert_eq!(node_patch(&node("edge-1", Some(0)), false), None);
        // Someone else's label is not ours to remove.
        let mut foreign = node("edge-1", Some(0));
        foreign
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(VERIFIED_LABEL.into(), "true".into());
        assert_eq!(node_patch(&foreign, false), None);
        let ours = with_our_labels(node("edge-1", Some(0)), true);
        assert_eq!(
            node_patch(&ours, false),
            Some(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "edge-1", "resourceVersion": "7", "labels": {"edgeshift.io/edge": "true"}},
                "spec": {"taints": [{"key": "edgeshift.io/edge", "value": "true", "effect": "NoSchedule"}]},
            }))
        );
        assert_eq!(
            node_patch(&with_our_labels(node("edge-1", Some(0)), false), false),
            None
        );
    }

    #[test]
    fn orphans_are_nodes_we_verified_whose_edge_node_is_gone() {
        let nodes = [
            with_our_labels(node("edge-1", Some(0)), true),
            with_our_labels(node("edge-2", Some(0)), true),
            node("edge-3", Some(0)),
        ];
        let edge_nodes = vec![Arc::new(registration("edge-1"))];
        assert_eq!(
            orphaned_nodes(nodes.iter(), &edge_nodes),
            vec!["edge-2".to_string()]
        );
    }

    #[test]
    fn the_policy_reference_is_namespace_slash_name() {
        assert_eq!(
            "ns/policy".parse::<PolicyRef>(),
            Ok(PolicyRef {
                namespace: "ns".into(),
                name: "policy".into()
            })
        );
        for bad in ["policy", "/policy", "ns/", "a/b/c", ""] {
            assert!(bad.parse::<PolicyRef>().is_err(), "{bad}");
        }
        assert_eq!(
            EdgeNodeOptions::default().trust_policy.to_string(),
            DEFAULT_TRUST_POLICY
        );
    }
}
