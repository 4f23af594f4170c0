//! Reconciling one EdgeService: observe (caches) → plan (pure) → apply children → status and
//! Events. Writes happen only when something differs from what the cluster already holds.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType as KubeEventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use super::child_cache::ChildCache;
use super::children::{self, Pinning, FIELD_MANAGER, LABEL_TARGET};
use super::observe::{edge_node_view_for, observed_targets};
use super::{traffic, Context};
use crate::api::conditions::{self, ConditionStatus};
use crate::api::{EdgeService, EdgeServiceStatus, ServicePhase, TargetKind, EDGE_TARGET};
use crate::clock::whole_seconds as seconds;
use crate::planner::{self, EventType, ObservedTarget, Plan, PlanInput, PreviousState, RegionView};
use crate::runtime::metrics::{ErrorLabels, FailoverLabels, TargetLabels};
use crate::{Error, Result};

/// Reason of the condition and Event when the API server refuses what we build from a spec.
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// What the controller watches: an EdgeService, or one it cannot read (stored before a schema
/// change, or through something the schema allows and our types do not). Each object is
/// decoded on its own, so one unreadable object never fails the list or watch for the others.
pub type Guarded = DeserializeGuard<EdgeService>;

/// Reason of the condition and Event on an EdgeService the operator cannot read.
pub const REASON_UNREADABLE: &str = REASON_INVALID_SPEC;

pub async fn reconcile(obj: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.options.leadership.is_leader() {
        // A standby keeps its caches warm; the leader acts. Becoming the leader triggers a
        // reconcile of everything (`reconcile_all_on`).
        return Ok(Action::await_change());
    }
    let metrics = ctx.options.metrics.clone();
    match &obj.0 {
        Ok(es) => {
            ctx.caches_ready().await;
            metrics
                .reconcile("EdgeService", reconcile_leader(Arc::new(es.clone()), ctx))
                .await
        }
        Err(invalid) => {
            metrics
                .reconcile("EdgeService", mark_unreadable(&obj, invalid, &ctx))
                .await
        }
    }
}

/// The message on an EdgeService the operator cannot read, naming the field where the object
/// `raw` as stored fails to decode (`error` is the decoder's reason without it).
pub fn unreadable_message(raw: serde_json::Value, error: &str) -> String {
    let why = serde_path_to_error::deserialize::<_, EdgeService>(raw)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| error.to_string());
    format!(
        "edgeshift cannot read this EdgeService and leaves it and its children as they are until it is fixed: {why}"
    )
}

/// An unreadable EdgeService gets `Ready=False/InvalidSpec` and a Warning Event, once per
/// change of its generation or of the error; its children are left alone (nothing is
/// deleted or scaled because of an object we cannot read).
async fn mark_unreadable(obj: &Guarded, invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
    let meta = &invalid.metadata;
    let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // The conditions are read from the raw object: the typed one is what cannot be decoded.
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &ApiResource::erase::<EdgeService>(&()),
    );
    let raw = api.get_status(name).await?;
    let message = unreadable_message(
        serde_json::to_value(&raw).unwrap_or_default(),
        &invalid.error,
    );
    warn!(edgeservice = %format!("{namespace}/{name}"), %message, "unreadable EdgeService");
    let mut conditions: Vec<Condition> = raw
        .data
        .pointer("/status/conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let changed = conditions::set_condition(
        &mut conditions,
        conditions::READY,
        ConditionStatus::False,
        REASON_UNREADABLE,
        &message,
        raw.metadata.generation,
        seconds(ctx.clock.now()),
    );
    if !changed {
        return Ok(Action::await_change());
    }
    // Only the conditions change, and only on the object read above (its resourceVersion
    // is a precondition: a concurrent fix is not overwritten, it is reconciled next).
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": raw.metadata.resource_version},
        "status": {"conditions": conditions},
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_status(name, &params, &Patch::Merge(patch))
        .await?;
    publish_to(
        ctx,
        obj.object_ref(&()),
        KubeEventType::Warning,
        REASON_UNREADABLE,
        &message,
    );
    Ok(Action::await_change())
}

async fn reconcile_leader(es: Arc<EdgeService>, ctx: Arc<Context>) -> Result<Action> {
    let es = ctx.written.newest(es);
    let oref = ObjectRef::from_obj(&*es);
    if es.metadata.deletion_timestamp.is_some() {
        // Children go with it through their owner references.
        return Ok(Action::await_change());
    }
    let Some(namespace) = es.namespace() else {
        return Ok(Action::await_change());
    };
    let now = ctx.clock.now();
    // Walked once: it decides the edge inventory and the condition below.
    let refused = refused_secrets(&es);
    let input = plan_input(&es, &ctx, &refused, now);
    let plan = planner::plan(&input);

    let (traffic_report, first_write) =
        match apply_children(&es, &ctx, &namespace, &plan, &input.observed).await {
            Ok(applied) => applied,
            Err(Error::Kube(kube::Error::Api(status)))
                if status.code == 422 || status.code == 400 =>
            {
                // The spec passed the CRD schema but Kubernetes refuses what it makes (e.g. an
                // invalid container in the template): say so and wait for the spec to change.
                let message = format!(
                    "Kubernetes refused a child built from this spec: {}",
                    status.message
                );
                warn!(edgeservice = %oref, %message, "unusable spec");
                let mut status_now = es.status.clone().unwrap_or_default();
                let changed = conditions::set_condition(
                    &mut status_now.conditions,
                    conditions::READY,
                    ConditionStatus::False,
                    REASON_INVALID_SPEC,
                    &message,
                    es.metadata.generation,
                    seconds(now),
                );
                if changed {
                    write_status(&ctx, &es, &namespace, &status_now).await?;
                    publish(
                        &ctx,
                        &es,
                        KubeEventType::Warning,
                        REASON_INVALID_SPEC,
                        &message,
                    )
                    .await;
                }
                ctx.reset_backoff(&oref);
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        };

    let mut new_status = status_from_plan(&input, &plan, es.status.as_ref());
    traffic::set_condition(
        &traffic_report,
        &mut new_status,
        es.metadata.generation,
        seconds(now),
    );
    let secrets_refused = set_secrets_condition(&es, &refused, &mut new_status, seconds(now));
    if es.status.as_ref() != Some(&new_status) {
        tracing::debug!(
            edgeservice = %oref,
            old = %serde_json::to_string(&es.status).unwrap_or_default(),
            new = %serde_json::to_string(&new_status).unwrap_or_default(),
            "status changed"
        );
        write_status(&ctx, &es, &namespace, &new_status).await?;
        record_metrics(&ctx, &es, es.status.as_ref(), &new_status, first_write);
    }
    if let Some(message) = &secrets_refused {
        publish(
            &ctx,
            &es,
            KubeEventType::Warning,
            EDGE_SECRETS_REFUSED,
            message,
        )
        .await;
    }
    for event in &plan.events {
        let type_ = match event.type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        };
        publish(&ctx, &es, type_, &event.reason, &event.message).await;
    }
    if es.phase() != plan.phase || es.status.is_none() {
        info!(edgeservice = %oref, phase = %plan.phase, "phase");
    }
    ctx.reset_backoff(&oref);
    Ok(Action::requeue(next_check(&plan, &ctx)))
}

/// Replicas per target, and a failover's start and duration, when the status records them;
/// the decision latency from the lost regions' verdict to this reconcile's first child write.
fn record_metrics(
    ctx: &Context,
    es: &EdgeService,
    old: Option<&EdgeServiceStatus>,
    new: &EdgeServiceStatus,
    first_write: Option<Instant>,
) {
    let metrics = &ctx.options.metrics;
    for t in &new.targets {
        metrics
            .replicas
            .get_or_create(&TargetLabels {
                namespace: es.namespace().unwrap_or_default(),
                edgeservice: es.name_any(),
                target: t.name.clone(),
            })
            .set(i64::from(t.desired_replicas));
    }
    let (Some(record), old_record) = (
        new.last_failover.as_ref(),
        old.and_then(|s| s.last_failover.as_ref()),
    ) else {
        return;
    };
    let new_episode = old_record.is_none_or(|o| o.detected_at != record.detected_at);
    if new_episode {
        metrics
            .failovers
            .get_or_create(&FailoverLabels {
                from: record.from.join(","),
            })
            .inc();
        // status.lastFailover.decisionMillis has the API's one-second resolution; this is
        // timed in-process, from when this process saw the verdict change.
        let verdict = metrics.verdict_changed_at(record.from.iter().map(String::as_str));
        if let (Some(verdict), Some(write)) = (verdict, first_write) {
            metrics
                .decision_latency
                .observe(write.saturating_duration_since(verdict).as_secs_f64());
        }
    }
    let newly_ready = record.edge_ready_millis.is_some()
        && (new_episode || old_record.is_some_and(|o| o.edge_ready_millis.is_none()));
    if let (true, Some(ms)) = (newly_ready, record.edge_ready_millis) {
        metrics.failover_duration.observe(ms as f64 / 1000.0);
    }
}

/// Per-object exponential backoff (1 s doubling to 30 s) on errors, readable object or not.
pub fn error_policy(obj: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let oref =
        ObjectRef::<EdgeService>::new(&obj.name_any()).within(&obj.namespace().unwrap_or_default());
    ctx.options
        .metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind: "EdgeService".into(),
            error: error.metric_label().into(),
        })
        .inc();
    let delay = ctx.backoff(&oref);
    warn!(edgeservice = %oref, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn plan_input(es: &EdgeService, ctx: &Context, refused: &[String], now: Timestamp) -> PlanInput {
    // Replicas of other services on an edge node count against its capacity; our own do not.
    let service_key = format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any());
    let regions = es
        .spec
        .regions
        .iter()
        .filter_map(|name| {
            ctx.regions
                .get(&ObjectRef::new(name))
                .map(|cr| RegionView::from_cloud_region(&cr))
        })
        .collect();
    // A template with Secrets gets no edge node unless the spec allows it (untrusted hosts).
    let edge_nodes = if refused.is_empty() {
        ctx.edge_nodes
            .state()
            .iter()
            .map(|n| edge_node_view_for(n, Some(&service_key), now))
            .collect()
    } else {
        Vec::new()
    };
    let deployments = ctx.deployments_of(es);
    PlanInput {
        spec: es.spec.clone(),
        generation: es.metadata.generation,
        previous: es
            .status
            .as_ref()
            .map(PreviousState::from_status)
            .unwrap_or_default(),
        regions,
        edge_nodes,
        observed: observed_targets(es, &deployments),
        now,
    }
}

/// The Deployments the plan asks for. A region whose CloudRegion does not exist gets none
/// (its node selector is unknown); the planner already counts it as Unknown.
fn desired_deployments(es: &EdgeService, ctx: &Context, plan: &Plan) -> Vec<Deployment> {
    plan.targets
        .iter()
        .filter_map(|t| match t.kind {
            TargetKind::Region => ctx.regions.get(&ObjectRef::new(&t.name)).map(|cr| {
                children::deployment(
                    es,
                    &t.name,
                    t.replicas,
                    &Pinning::Region(cr.spec.effective_node_selector()),
                )
            }),
            TargetKind::Edge => es.spec.uses_edge().then(|| {
                children::deployment(
                    es,
                    EDGE_TARGET,
                    t.replicas,
                    &Pinning::Edge(plan.edge_candidates.clone()),
                )
            }),
        })
        .collect()
}

/// Condition set while the template references Secrets the edge may not have.
pub const EDGE_SECRETS_REFUSED: &str = "EdgeSecretsRefused";

/// The template's Secret references, when the edge must not get them (`allowSecrets` unset).
pub fn refused_secrets(es: &EdgeService) -> Vec<String> {
    if es.spec.fallback.edge.allow_secrets {
        Vec::new()
    } else {
        crate::trust::edge_secret_refs(&es.spec.template.spec())
    }
}

/// Records on `status` whether the edge is refused because of Secrets; returns the refusal
/// message when it is newly refused (for an Event).
pub fn set_secrets_condition(
    es: &EdgeService,
    refs: &[String],
    status: &mut EdgeServiceStatus,
    now: Timestamp,
) -> Option<String> {
    if !es.spec.uses_edge() && refs.is_empty() {
        return None;
    }
    let was = status
        .conditions
        .iter()
        .any(|c| c.type_ == EDGE_SECRETS_REFUSED && c.status == "True");
    let (state, reason, message) = if !refs.is_empty() {
        (
            ConditionStatus::True,
            "TemplateReferencesSecrets",
            format!(
                "the template references Secrets, which community edge nodes may not get ({}); \
                 the edge is not used (set spec.fallback.edge.allowSecrets: true to allow it)",
                refs.join("; ")
            ),
        )
    } else if es.spec.fallback.edge.allow_secrets {
        (
            ConditionStatus::False,
            "SecretsAllowed",
            "spec.fallback.edge.allowSecrets is true".to_string(),
        )
    } else {
        (
            ConditionStatus::False,
            "NoSecrets",
            "the template references no Secrets".to_string(),
        )
    };
    conditions::set_condition(
        &mut status.conditions,
        EDGE_SECRETS_REFUSED,
        state,
        reason,
        &message,
        es.metadata.generation,
        now,
    );
    (state == ConditionStatus::True && !was).then_some(message)
}

/// An edge Deployment that runs nothing and should run nothing is left as it is: where zero
/// pods may go does not matter, and rewriting it on every edge inventory change would mean
/// one write per EdgeService whenever any edge node comes or goes.
fn idle_edge(deployment: &Deployment, observed: &BTreeMap<String, ObservedTarget>) -> bool {
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas) == Some(0);
    let is_edge = deployment.labels().get(LABEL_TARGET).map(String::as_str) == Some(EDGE_TARGET);
    is_edge
        && wanted
        && observed
            .get(EDGE_TARGET)
            .is_some_and(|o| o.replicas == 0 && o.ready == 0)
}

async fn apply_children(
    es: &EdgeService,
    ctx: &Context,
    namespace: &str,
    plan: &Plan,
    observed: &BTreeMap<String, ObservedTarget>,
) -> Result<(traffic::Report, Option<Instant>)> {
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let desired = desired_deployments(es, ctx, plan);
    let wanted: BTreeSet<String> = desired
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    // Deployments that grow go first, with the Services, all at once: in a failover they
    // are what moves the workload, and the API server answers slowly while the cluster starts
    // the pods of the services already moved. The rest (scale-downs, unchanged ones) follow.
    // An idle edge Deployment is left as it is (see `idle_edge`).
    let desired = desired
        .into_iter()
        .filter(|d| !idle_edge(d, observed))
        .collect();
    let (grow, rest) = growing_first(desired, observed);
    let service = es.name_any();
    let apply = |d| apply_if_changed(&deployments, &ctx.deployments, namespace, &service, d);
    let (grown, services_written) = futures::try_join!(
        futures::future::try_join_all(grow.into_iter().map(apply)),
        futures::future::try_join_all(
            children::services(es).into_iter().map(|s| apply_if_changed(
                &services,
                &ctx.services,
                namespace,
                &service,
                s
            )),
        ),
    )?;
    let shrunk = futures::future::try_join_all(rest.into_iter().map(apply)).await?;
    // When the first child write of this reconcile completed (the decision latency's end).
    let first_write = grown
        .into_iter()
        .chain(services_written)
        .chain(shrunk)
        .flatten()
        .min();
    // Targets that left the spec (a region removed, the edge disabled): their Deployments go.
    // Only those: a region still in the spec keeps its Deployment even when nothing was built
    // for it (its CloudRegion is missing, e.g. pruned by GitOps), see `deletable`.
    let uid = es.uid();
    for d in ctx.deployments_of(es) {
        // Labelled as ours (the cache keeps only those, by service), owned by this
        // EdgeService (not a namesake's), and a target's.
        if d.owned_by(uid.as_deref()) && deletable(es, d.target.as_deref(), &d.name, &wanted) {
            info!(deployment = %d.name, "deleting the Deployment of a target no longer in the spec");
            match deployments
                .delete(&d.name, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // The HTTPRoute and DNSEndpoint follow the Deployments and Services they point at.
    let report = traffic::apply(es, ctx, namespace, &plan.weights, observed).await?;
    Ok((report, first_write))
}

/// Whether the Deployment `name` of target `target` goes: it is a target's, nothing was built
/// for it, and its target has left the spec (a region no longer listed; the edge when the
/// service no longer uses it).
fn deletable(
    es: &EdgeService,
    target: Option<&str>,
    name: &str,
    wanted: &BTreeSet<String>,
) -> bool {
    let Some(target) = target else { return false };
    let in_spec = if target == EDGE_TARGET {
        es.spec.uses_edge()
    } else {
        es.spec.regions.iter().any(|r| r == target)
    };
    !wanted.contains(name) && !in_spec
}

/// The desired Deployments split into those that grow (more replicas than the cluster holds,
/// or not there yet) and the rest, each in the plan's order.
fn growing_first(
    desired: Vec<Deployment>,
    observed: &BTreeMap<String, ObservedTarget>,
) -> (Vec<Deployment>, Vec<Deployment>) {
    desired.into_iter().partition(|d| {
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let target = d.labels().get(LABEL_TARGET);
        target
            .and_then(|t| observed.get(t))
            .is_none_or(|o| i64::from(wanted) > i64::from(o.replicas))
    })
}

/// Server-side applies `obj`, a child of `namespace/service`, unless the recorded child
/// already carries its hash; when it wrote, the moment the write completed.
async fn apply_if_changed<K>(
    api: &Api<K>,
    cache: &ChildCache,
    namespace: &str,
    service: &str,
    obj: K,
) -> Result<Option<Instant>>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let (obj, hash) = children::with_hash(obj);
    let current = cache
        .get(namespace, service, &name)
        .is_some_and(|o| o.is_current(&hash));
    if current {
        return Ok(None);
    }
    let mut body = serde_json::to_value(&obj).map_err(|source| Error::Serialize {
        what: format!("{} {namespace}/{name}", K::kind(&())),
        source,
    })?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(Some(Instant::now()))
}

async fn write_status(
    ctx: &Context,
    es: &EdgeService,
    namespace: &str,
    status: &EdgeServiceStatus,
) -> Result<()> {
    let api: Api<EdgeService> = Api::namespaced(ctx.client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": EdgeService::api_version(&()),
        "kind": EdgeService::kind(&()),
        "status": status,
    });
    let written = api
        .patch_status(
            &es.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    ctx.written.record(es, written);
    Ok(())
}

/// Records an Event off the reconcile's path: the children and status writes that move the
/// workload do not wait behind it (in a mass failover there are thousands).
async fn publish(ctx: &Context, es: &EdgeService, type_: KubeEventType, reason: &str, note: &str) {
    publish_to(ctx, es.object_ref(&()), type_, reason, note);
}

fn publish_to(
    ctx: &Context,
    reference: ObjectReference,
    type_: KubeEventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let recorder = ctx.recorder.clone();
    tokio::spawn(async move {
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, reason = %event.reason, "could not record an Event");
        }
    });
}

fn time_s(t: &Time) -> Time {
    Time(seconds(t.0))
}

/// The status the plan implies (conditions move only where they really changed), with
/// times at Kubernetes' one-second precision.
pub fn status_from_plan(
    input: &PlanInput,
    plan: &Plan,
    previous: Option<&EdgeServiceStatus>,
) -> EdgeServiceStatus {
    let mut status = plan.status(input, previous);
    for c in &mut status.conditions {
        c.last_transition_time = time_s(&c.last_transition_time);
    }
    status.failback_step_since = status.failback_step_since.as_ref().map(time_s);
    if let Some(f) = status.last_failover.as_mut() {
        f.detected_at = time_s(&f.detected_at);
        f.decided_at = time_s(&f.decided_at);
        f.edge_ready_at = f.edge_ready_at.as_ref().map(time_s);
        f.traffic_shifted_at = f.traffic_shifted_at.as_ref().map(time_s);
        f.failed_back_at = f.failed_back_at.as_ref().map(time_s);
    }
    // Candidates are listed only while the edge runs or should run something: otherwise
    // every edge inventory change would rewrite the status of every EdgeService.
    let edge_idle = plan.replicas(EDGE_TARGET) == 0
        && input
            .observed
            .get(EDGE_TARGET)
            .is_none_or(|o| o.replicas == 0);
    if edge_idle {
        status.edge_candidates.clear();
    }
    status
}

/// When to look again without being told. Away from `Normal`, time itself moves the plan
/// (stabilization windows, failback steps), so look every second; a look reads only the caches
/// and writes nothing unless the plan changed. In `Normal`, a slow resync.
fn next_check(plan: &Plan, ctx: &Context) -> Duration {
    let episode = plan.last_failover.as_ref().filter(|f| f.is_active());
    // Failback waits on clocks (stabilization, traffic steps): look every second. While the
    // lost regions stay down nothing waits on a clock, and the children's, pods' and regions'
    // watches bring every change; requeueing each service every second there made thousands
    // of services on the edge crowd out the ones still to fail over.
    let recovering = episode.is_some_and(|f| {
        f.from.iter().any(|name| {
            ctx.regions
                .get(&ObjectRef::new(name))
                .and_then(|r| r.status.as_ref().and_then(|s| s.phase))
                != Some(crate::api::RegionPhase::Down)
        })
    });
    if plan.phase == ServicePhase::FailingBack || plan.failback_step.is_some() || recovering {
        Duration::from_secs(1).min(ctx.options.resync)
    } else if episode.is_some() || plan.phase != ServicePhase::Normal {
        EPISODE_RECHECK.min(ctx.options.resync)
    } else {
        ctx.options.resync
    }
}

/// How often a service in a failover episode is re-checked while its lost regions stay down.
const EPISODE_RECHECK: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deployments_of_targets_that_left_the_spec_are_deleted() {
        let es = |fallback: serde_json::Value| -> EdgeService {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                "metadata": {"name": "shop", "namespace": "prod"},
                "spec": {"regions": ["east", "west"], "fallback": fallback,
                         "template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}
            }))
            .expect("EdgeService")
        };
        let on_edge = es(serde_json::json!({"mode": "Failover"}));
        let no_edge = es(serde_json::json!({"mode": "Disabled"}));
        assert!(on_edge.spec.uses_edge() && !no_edge.spec.uses_edge());
        // What was built this time. West's CloudRegion is missing, so nothing was built for
        // it; it is still listed, so its Deployment stays.
        let built: BTreeSet<String> = ["shop-east".into(), "shop-edge".into()].into();
        let built_no_edge: BTreeSet<String> = ["shop-east".into()].into();
        let cases = [
            (&on_edge, &built, Some("east"), "shop-east", false),
            (&on_edge, &built, Some("west"), "shop-west", false),
            (&on_edge, &built, Some("north"), "shop-north", true),
            (&on_edge, &built, Some(EDGE_TARGET), "shop-edge", false),
            (
                &no_edge,
                &built_no_edge,
                Some(EDGE_TARGET),
                "shop-edge",
                true,
            ),
            (&no_edge, &built_no_edge, Some("west"), "shop-west", false),
            (&on_edge, &built, None, "shop-unlabelled", false),
        ];
        for (es, wanted, target, name, expected) in cases {
            assert_eq!(
                deletable(es, target, name, wanted),
                expected,
                "{name} (target {target:?})"
            );
        }
    }

    #[test]
    fn an_object_our_types_cannot_read_is_kept_with_its_metadata_and_the_reason() {
        let list = serde_json::json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeServiceList",
            "metadata": {"resourceVersion": "7"},
            "items": [
                {"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                 "metadata": {"name": "broken", "namespace": "tenant-a", "uid": "u-1", "generation": 2},
                 "spec": {"regions": ["aws-us-east-1"],
                          "template": {"spec": {"containers": [{"name": "app", "image": "a:1",
                              "ports": [{"containerPort": "8080"}]}]}}}},
                {"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                 "metadata": {"name": "shop", "namespace": "tenant-b"},
                 "spec": {"regions": ["aws-us-east-1"],
                          "template": {"spec": {"containers": [{"name": "app", "image": "a:1"}]}}}}
            ]
        });
        let stored = list["items"][0].clone();
        // The list as the watcher decodes it: one bad item does not fail the others.
        let list: kube::core::ObjectList<Guarded> =
            serde_json::from_value(list).expect("the list decodes");
        let [broken, shop] = &list.items[..] else {
            panic!("two items")
        };
        let invalid = broken.0.as_ref().expect_err("unreadable");
        assert_eq!(invalid.metadata.name.as_deref(), Some("broken"));
        assert_eq!(invalid.metadata.namespace.as_deref(), Some("tenant-a"));
        assert_eq!(invalid.metadata.generation, Some(2));
        // The message names the field, from the object as stored.
        let message = unreadable_message(stored, &invalid.error);
        assert!(
            message.ends_with(
                ": spec.template.spec.containers[0].ports[0].containerPort: \
                 invalid type: string \"8080\", expected i32"
            ),
            "{message}"
        );
        assert!(message.starts_with("edgeshift cannot read this EdgeService"));
        assert_eq!(shop.0.as_ref().expect("readable").name_any(), "shop");
    }

    fn with_secret_volume(allow: bool) -> EdgeService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
            "metadata": {"name": "shop", "namespace": "prod", "generation": 3},
            "spec": {
                "regions": ["aws-us-east-1"],
                "fallback": {"edge": {"allowSecrets": allow}},
                "template": {"spec": {
                    "containers": [{"name": "app", "image": "shop:1"}],
                    "volumes": [{"name": "creds", "secret": {"secretName": "db"}}]
                }}
            }
        }))
        .expect("EdgeService")
    }

    fn child(target: &str, replicas: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("shop-{target}"), "labels": {LABEL_TARGET: target}},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}
        }))
        .expect("Deployment")
    }

    #[test]
    fn growing_deployments_are_written_first_in_plan_order() {
        let observed: BTreeMap<String, ObservedTarget> = [
            ("aws-us-east-1", (2, 2)),
            ("gcp-europe-west1", (1, 1)),
            (EDGE_TARGET, (0, 0)),
        ]
        .into_iter()
        .map(|(t, (replicas, ready))| (t.to_string(), ObservedTarget { replicas, ready }))
        .collect();
        // A failover: the lost region scales down, the edge and a surviving region grow, a new
        // region appears, and one stays as it is.
        let desired = vec![
            child("aws-us-east-1", 0),
            child("gcp-europe-west1", 2),
            child("azure-westeurope", 1),
            child(EDGE_TARGET, 2),
            child("aws-us-west-2", 0),
        ];
        let mut observed_same = observed.clone();
        observed_same.insert(
            "aws-us-west-2".into(),
            ObservedTarget {
                replicas: 0,
                ready: 0,
            },
        );
        let names = |ds: &[Deployment]| ds.iter().map(|d| d.name_any()).collect::<Vec<_>>();
        let (grow, rest) = growing_first(desired, &observed_same);
        assert_eq!(
            names(&grow),
            [
                "shop-gcp-europe-west1",
                "shop-azure-westeurope",
                "shop-edge"
            ]
        );
        assert_eq!(names(&rest), ["shop-aws-us-east-1", "shop-aws-us-west-2"]);
    }

    #[test]
    fn a_template_with_secrets_is_refused_for_the_edge_with_a_condition_and_one_event() {
        let es = with_secret_volume(false);
        assert_eq!(refused_secrets(&es).len(), 1);
        let mut status = EdgeServiceStatus::default();
        let now = Timestamp::from_second(1_000).expect("time");
        let refs = refused_secrets(&es);
        let first = set_secrets_condition(&es, &refs, &mut status, now);
        let message = first.expect("an Event the first time");
        assert!(
            message.contains("allowSecrets") && message.contains("db"),
            "{message}"
        );
        let c = conditions::find_condition(&status.conditions, EDGE_SECRETS_REFUSED)
            .expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "TemplateReferencesSecrets")
        );
        assert_eq!(c.observed_generation, Some(3));
        assert!(
            set_secrets_condition(&es, &refs, &mut status, now).is_none(),
            "no second Event"
        );
    }

    #[test]
    fn allow_secrets_lets_the_template_onto_the_edge() {
        let es = with_secret_volume(true);
        assert!(refused_secrets(&es).is_empty());
        let mut status = EdgeServiceStatus::default();
        let now = Timestamp::from_second(1_000).expect("time");
        assert!(set_secrets_condition(&es, &[], &mut status, now).is_none());
        let c = conditions::find_condition(&status.conditions, EDGE_SECRETS_REFUSED)
            .expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretsAllowed")
        );
    }
}
