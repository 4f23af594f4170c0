//! How outside traffic follows the plan: a Gateway API `HTTPRoute` `<name>` whose backends
//! `<name>-cloud` and `<name>-edge` carry the plan's weights, and an ExternalDNS `DNSEndpoint`
//! `<name>` listing the addresses of the targets that serve (regional load balancers from
//! `traffic.dns.cloudTargets`, the nodes of ready edge pods). Both are optional: without their
//! CRDs the EdgeService gets `TrafficIntegrationUnavailable=True` and the object is skipped.
//!
//! The builders are pure (spec, weights, ready replicas, addresses → objects); `apply` writes
//! only when an object differs from what the cluster holds. See `docs/traffic.md`.
use crate::controller::observe::pod_ready;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{debug, info, warn};

use super::children::{
    self, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_SERVICE, LABEL_TARGET, LABEL_TIER, VERIFIED_LABEL,
};
use super::Context;
use crate::api::conditions::{self, ConditionStatus};
use crate::api::{Dns, EdgeService, EdgeServiceStatus, Gateway, EDGE_TARGET};
use crate::planner::ObservedTarget;
use crate::{Error, Result};

/// EdgeService condition: an integration the spec asks for (Gateway API, ExternalDNS) is not
/// installed or refused what edgeshift built, so that route or record is skipped.
pub const TRAFFIC_INTEGRATION_UNAVAILABLE: &str = "TrafficIntegrationUnavailable";
/// The name of edgeshift's rule in the HTTPRoute; other rules belong to whoever added them.
pub const ROUTE_RULE: &str = "edgeshift";
/// EdgeService annotation choosing weighted DNS records: `aws` publishes one record set per
/// target with a Route 53 weight; absent (or anything else), one plain record set.
pub const ANNOTATION_DNS_WEIGHTING: &str = "edgeshift.io/dns-weighting";
/// How often API discovery is asked again whether the Gateway API / DNSEndpoint are served.
pub const DISCOVERY_REFRESH: Duration = Duration::from_secs(60);
/// ExternalDNS AWS provider's per-record weight (`external-dns.alpha.kubernetes.io/aws-weight`).
const AWS_WEIGHT: &str = "aws/weight";
/// Gateway API caps a backend weight at 1,000,000.
const MAX_BACKEND_WEIGHT: u32 = 1_000_000;
/// How long a reconcile waits for the first list of the Pod and Node caches.
const CACHE_WAIT: Duration = Duration::from_secs(5);

const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";
const DNS_API: &str = "externaldns.k8s.io/v1alpha1";

/// A Gateway API `HTTPRoute`, with the fields edgeshift reads or writes; everything else of a
/// rule, parent or backend is kept as it came (`extra`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    root = "HttpRoute",
    plural = "httproutes",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<RouteParentRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
}

/// `spec.parentRefs[]`: the Gateway (listener) the route attaches to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RouteParentRef {
    /// What edgeshift sets on a parent (a `port` someone added is theirs).
    fn core(&self) -> (Option<&str>, Option<&str>, &str, Option<&str>, Option<&str>) {
        (
            self.group.as_deref(),
            self.kind.as_deref(),
            &self.name,
            self.namespace.as_deref(),
            self.section_name.as_deref(),
        )
    }
}

/// `spec.rules[]`: matches, filters and timeouts stay in `extra`, untouched by edgeshift.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `spec.rules[].backendRefs[]`: a Service and its share of the rule's requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BackendRef {
    /// Equal in what edgeshift sets on a backend (per-backend filters others added aside).
    fn same_as(&self, other: &BackendRef) -> bool {
        self.group == other.group
            && self.kind == other.kind
            && self.name == other.name
            && self.namespace == other.namespace
            && self.port == other.port
            && self.weight == other.weight
    }

    fn is_service(&self, name: &str) -> bool {
        self.group.as_deref().unwrap_or_default().is_empty()
            && self.kind.as_deref().is_none_or(|k| k == "Service")
            && self.name == name
    }
}

/// An ExternalDNS `DNSEndpoint`: record sets for ExternalDNS's `crd` source to publish.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "externaldns.k8s.io",
    version = "v1alpha1",
    kind = "DNSEndpoint",
    root = "DnsEndpoint",
    plural = "dnsendpoints",
    namespaced,
    schema = "disabled",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct DnsEndpointSpec {
    #[serde(default)]
    pub endpoints: Vec<DnsRecord>,
}

/// One record set (`spec.endpoints[]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    pub dns_name: String,
    pub record_type: String,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default, rename = "recordTTL", skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_specific: Vec<ProviderSpecific>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A provider-specific property of a record set (e.g. `aws/weight`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderSpecific {
    pub name: String,
    pub value: String,
}

// ---------------------------------------------------------------------------------------------
// Pure: weights, objects, addresses, the condition.

/// Backend weights of the HTTPRoute: the cloud (all regions) and the edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendWeights {
    pub cloud: u32,
    pub edge: u32,
}

/// Cloud = the sum of the regions' weights, edge = the edge's weight. Should the plan give no
/// weight while pods are ready (it never should), the ready side(s) get it: a route with only
/// zero weights answers every request with an error.
pub fn backend_weights(
    weights: &BTreeMap<String, u32>,
    observed: &BTreeMap<String, ObservedTarget>,
) -> BackendWeights {
    let cloud = weights
        .iter()
        .filter(|(target, _)| target.as_str() != EDGE_TARGET)
        .fold(0u32, |sum, (_, w)| sum.saturating_add(*w))
        .min(MAX_BACKEND_WEIGHT);
    let edge = weights
        .get(EDGE_TARGET)
        .copied()
        .unwrap_or(0)
        .min(MAX_BACKEND_WEIGHT);
    if cloud > 0 || edge > 0 {
        return BackendWeights { cloud, edge };
    }
    let cloud_ready = observed
        .iter()
        .any(|(target, o)| target.as_str() != EDGE_TARGET && o.ready > 0);
    let edge_ready = observed.get(EDGE_TARGET).is_some_and(|o| o.ready > 0);
    match (cloud_ready, edge_ready) {
        (true, true) => BackendWeights {
            cloud: 50,
            edge: 50,
        },
        (true, false) => BackendWeights {
            cloud: 100,
            edge: 0,
        },
        (false, true) => BackendWeights {
            cloud: 0,
            edge: 100,
        },
        (false, false) => BackendWeights::default(),
    }
}

/// Why a route or record is not published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A condition reason: `NotInstalled`, `NoPorts` or `Rejected`.
    pub reason: &'static str,
    pub message: String,
}

fn labels(es: &EdgeService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        (LABEL_SERVICE.to_string(), es.name_any()),
    ])
}

fn owned_meta(es: &EdgeService) -> ObjectMeta {
    ObjectMeta {
        name: Some(es.name_any()),
        namespace: es.namespace(),
        labels: Some(labels(es)),
        owner_references: es.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn backend(service: String, port: u16, weight: u32) -> BackendRef {
    BackendRef {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name: service,
        namespace: None,
        port: Some(i32::from(port)),
        weight: Some(i32::try_from(weight.min(MAX_BACKEND_WEIGHT)).unwrap_or(0)),
        extra: Map::new(),
    }
}

/// The HTTPRoute `<name>` as edgeshift wants it: the spec's parents and host names, and one rule
/// (`edgeshift`) sending to `<name>-cloud` and `<name>-edge` on the first traffic port. The
/// Gateway API defaults (`group`, `kind`) are spelled out so the stored object compares equal.
pub fn http_route(
    es: &EdgeService,
    gateway: &Gateway,
    weights: BackendWeights,
) -> Result<HttpRoute, Problem> {
    let name = es.name_any();
    let port = es
        .spec
        .traffic
        .ports
        .first()
        .map(|p| p.port)
        .ok_or_else(|| Problem {
            reason: "NoPorts",
            message: format!(
                "spec.traffic.ports is empty: HTTPRoute {name} needs a port for its backends and is skipped"
            ),
        })?;
    let parent_refs = gateway
        .parent_refs
        .iter()
        .map(|p| RouteParentRef {
            group: Some("gateway.networking.k8s.io".into()),
            kind: Some("Gateway".into()),
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            section_name: p.section_name.clone(),
            extra: Map::new(),
        })
        .collect();
    Ok(HttpRoute {
        metadata: owned_meta(es),
        spec: HttpRouteSpec {
            parent_refs,
            hostnames: gateway.hostnames.clone(),
            rules: vec![RouteRule {
                name: Some(ROUTE_RULE.into()),
                backend_refs: vec![
                    backend(format!("{name}-cloud"), port, weights.cloud),
                    backend(format!("{name}-edge"), port, weights.edge),
                ],
                extra: Map::new(),
            }],
        },
    })
}

/// Where edgeshift's rule is among `rules`: the one named `edgeshift`, else (a Gateway API
/// without rule names drops the name) the first that sends to `<service>-cloud` or `-edge`.
fn our_rule(rules: &[RouteRule], service: &str) -> Option<usize> {
    let (cloud, edge) = (format!("{service}-cloud"), format!("{service}-edge"));
    rules
        .iter()
        .position(|r| r.name.as_deref() == Some(ROUTE_RULE))
        .or_else(|| {
            rules.iter().position(|r| {
                r.name.is_none()
                    && r.backend_refs
                        .iter()
                        .any(|b| b.is_service(&cloud) || b.is_service(&edge))
            })
        })
}

/// Our rule as it should be, keeping what others added to it: its matches, filters and
/// timeouts, per-backend filters on our backends, and backends that are not ours.
fn merge_rule(live: &RouteRule, ours: &RouteRule) -> RouteRule {
    let mut merged = live.clone();
    merged.name = ours.name.clone();
    let mut backends: Vec<BackendRef> = ours
        .backend_refs
        .iter()
        .map(|b| {
            let mut b = b.clone();
            if let Some(live_b) = live.backend_refs.iter().find(|l| l.is_service(&b.name)) {
                b.extra = live_b.extra.clone();
            }
            b
        })
        .collect();
    backends.extend(
        live.backend_refs
            .iter()
            .filter(|l| !ours.backend_refs.iter().any(|b| l.is_service(&b.name)))
            .cloned(),
    );
    merged.backend_refs = backends;
    merged
}

/// What to apply: `desired` with the live object's other rules and additions kept, and its
/// resourceVersion as a precondition. `spec.rules` is an atomic list, so server-side apply
/// alone would replace every rule; a changed object in between makes the write fail (409)
/// instead of dropping what was added meanwhile.
pub fn merge_route(live: Option<&HttpRoute>, desired: &HttpRoute) -> HttpRoute {
    let mut merged = desired.clone();
    let Some(live) = live else {
        return merged;
    };
    merged.metadata.resource_version = live.metadata.resource_version.clone();
    let Some(ours) = desired.spec.rules.first() else {
        return merged;
    };
    let mut rules = live.spec.rules.clone();
    match our_rule(&rules, &desired.name_any()) {
        Some(i) => rules[i] = merge_rule(&rules[i], ours),
        None => rules.push(ours.clone()),
    }
    merged.spec.rules = rules;
    merged
}

/// Whether `live` already carries `desired` (stamped with `hash`): the same applied hash, and
/// parents, host names and our backends as we want them (someone may have replaced the rules).
pub fn route_is_current(live: &HttpRoute, desired: &HttpRoute, hash: &str) -> bool {
    let service = desired.name_any();
    let backends_current = match (
        our_rule(&live.spec.rules, &service),
        desired.spec.rules.first(),
    ) {
        (Some(i), Some(ours)) => ours.backend_refs.iter().all(|want| {
            live.spec.rules[i]
                .backend_refs
                .iter()
                .any(|have| have.same_as(want))
        }),
        _ => false,
    };
    children::is_current(live, hash)
        && backends_current
        && live
            .spec
            .parent_refs
            .iter()
            .map(RouteParentRef::core)
            .eq(desired.spec.parent_refs.iter().map(RouteParentRef::core))
        && live.spec.hostnames == desired.spec.hostnames
}

/// How DNS records carry the plan's weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsWeighting {
    /// One record set with every serving address (all providers; no weights).
    #[default]
    Plain,
    /// One record set per target with `setIdentifier` and an `aws/weight` (Route 53).
    Aws,
}

impl DnsWeighting {
    /// From the EdgeService's `edgeshift.io/dns-weighting` annotation.
    pub fn of(es: &EdgeService) -> Self {
        match es
            .annotations()
            .get(ANNOTATION_DNS_WEIGHTING)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("aws") => DnsWeighting::Aws,
            _ => DnsWeighting::Plain,
        }
    }
}

/// The DNSEndpoint edgeshift wants, and anything a person should know about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsBuild {
    /// `None` when no target serves: the record is left as it is (see `dns_endpoint`).
    pub record: Option<DnsEndpoint>,
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Addresses {
    v4: BTreeSet<IpAddr>,
    v6: BTreeSet<IpAddr>,
}

impl Addresses {
    fn add(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(_) => self.v4.insert(ip),
            IpAddr::V6(_) => self.v6.insert(ip),
        };
    }

    fn records(&self, dns: &Dns) -> Vec<DnsRecord> {
        [("A", &self.v4), ("AAAA", &self.v6)]
            .into_iter()
            .filter(|(_, ips)| !ips.is_empty())
            .map(|(record_type, ips)| DnsRecord {
                dns_name: dns.hostname.clone(),
                record_type: record_type.into(),
                targets: ips.iter().map(IpAddr::to_string).collect(),
                record_ttl: Some(i64::from(dns.ttl)),
                ..Default::default()
            })
            .collect()
    }
}

/// The DNSEndpoint `<name>`: `dns.hostname` resolves to the targets that serve — a target with
/// ready replicas and traffic weight in the plan (zero weight means no traffic: warm edge
/// replicas, a lost region still draining). A region contributes its `cloudTargets`, the edge
/// the addresses of the nodes running its ready pods (`edge`). IPv4 goes to an A record set,
/// IPv6 to AAAA; host names cannot be A targets and are left out with a note.
///
/// When nothing serves, no record is built and the published one stays: an empty record set
/// would have resolvers cache the name's absence for the zone's negative TTL and delay
/// recovery, while a stale address costs nothing more than the outage already does.
pub fn dns_endpoint(
    es: &EdgeService,
    dns: &Dns,
    weights: &BTreeMap<String, u32>,
    observed: &BTreeMap<String, ObservedTarget>,
    edge: &[String],
    weighting: DnsWeighting,
) -> DnsBuild {
    let mut notes = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for t in es
        .spec
        .regions
        .iter()
        .map(String::as_str)
        .chain([EDGE_TARGET])
    {
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    let ready = |t: &str| observed.get(t).is_some_and(|o| o.ready > 0);
    let weight = |t: &str| weights.get(t).copied().unwrap_or(0);
    let mut serving: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| ready(t) && weight(t) > 0)
        .collect();
    if serving.is_empty() {
        // The plan gives weight only to ready targets; should it give none, ready ones serve.
        serving = targets.iter().copied().filter(|t| ready(t)).collect();
    }

    let mut all = Addresses::default();
    let mut records = Vec::new();
    for target in serving {
        let mut addresses = Addresses::default();
        let listed: &[String] = if target == EDGE_TARGET {
            if edge.is_empty() {
                notes.push("no address is known for the nodes of the ready edge pods".into());
            }
            edge
        } else {
            match dns.cloud_targets.get(target) {
                Some(listed) if !listed.is_empty() => listed,
                _ => {
                    notes.push(format!("region {target} serves but has no cloudTargets"));
                    &[]
                }
            }
        };
        for address in listed {
            match address.trim().parse::<IpAddr>() {
                Ok(ip) => addresses.add(ip),
                Err(_) => notes.push(format!(
                    "{target} target {address:?} is not an IP address and is not published (A/AAAA records hold addresses)"
                )),
            }
        }
        match weighting {
            DnsWeighting::Plain => {
                all.v4.extend(addresses.v4);
                all.v6.extend(addresses.v6);
            }
            DnsWeighting::Aws => {
                for mut record in addresses.records(dns) {
                    record.set_identifier = Some(target.to_string());
                    record.provider_specific = vec![ProviderSpecific {
                        name: AWS_WEIGHT.into(),
                        value: weight(target).to_string(),
                    }];
                    records.push(record);
                }
            }
        }
    }
    if weighting == DnsWeighting::Plain {
        records = all.records(dns);
    }
    if records.is_empty() {
        notes.push(format!(
            "no target serves {}: the published record is left as it is",
            dns.hostname
        ));
        return DnsBuild {
            record: None,
            notes,
        };
    }
    DnsBuild {
        record: Some(DnsEndpoint {
            metadata: owned_meta(es),
            spec: DnsEndpointSpec { endpoints: records },
        }),
        notes,
    }
}

/// Whether `live` already carries `desired` (stamped with `hash`).
pub fn record_is_current(live: &DnsEndpoint, desired: &DnsEndpoint, hash: &str) -> bool {
    children::is_current(live, hash) && live.spec.endpoints == desired.spec.endpoints
}

/// A node's public addresses: its `ExternalIP`s, else its `InternalIP`s.
pub fn node_addresses(node: &Node) -> Vec<String> {
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let of = |type_: &str| -> Vec<String> {
        addresses
            .iter()
            .filter(|a| a.type_ == type_ && !a.address.is_empty())
            .map(|a| a.address.clone())
            .collect()
    };
    let external = of("ExternalIP");
    if external.is_empty() {
        of("InternalIP")
    } else {
        external
    }
}

/// Addresses of the nodes that run a ready edge pod of `es` (sorted, unique). Nodes `node`
/// does not know (not a verified edge node) contribute nothing.
pub fn edge_addresses<'a>(
    es: &EdgeService,
    pods: impl IntoIterator<Item = &'a Pod>,
    node: impl Fn(&str) -> Option<Arc<Node>>,
) -> Vec<String> {
    let name = es.name_any();
    let namespace = es.namespace();
    let nodes: BTreeSet<String> = pods
        .into_iter()
        .filter(|p| p.namespace() == namespace)
        .filter(|p| p.labels().get(LABEL_SERVICE) == Some(&name))
        .filter(|p| p.labels().get(LABEL_TARGET).map(String::as_str) == Some(EDGE_TARGET))
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    let addresses: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| node(n))
        .flat_map(|n| node_addresses(&n))
        .collect();
    addresses.into_iter().collect()
}

/// What the traffic step did, for the EdgeService's condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The spec asks for a route or a record.
    pub requested: bool,
    /// What is published and kept up to date, e.g. `HTTPRoute shop`.
    pub published: Vec<String>,
    /// What is skipped, and why.
    pub problems: Vec<Problem>,
    /// Details worth knowing about what is published.
    pub notes: Vec<String>,
}

impl Report {
    /// The condition this report sets: status, reason, message.
    pub fn condition(&self) -> (ConditionStatus, &'static str, String) {
        if !self.requested {
            return (
                ConditionStatus::False,
                "NotRequested",
                "spec.traffic asks for neither a gateway route nor DNS".into(),
            );
        }
        let with_notes = |mut message: String| {
            if !self.notes.is_empty() {
                message.push_str("; ");
                message.push_str(&self.notes.join("; "));
            }
            message
        };
        if self.problems.is_empty() {
            let published = format!("published: {}", self.published.join(", "));
            return (ConditionStatus::False, "Published", with_notes(published));
        }
        let reason = if self.problems.iter().any(|p| p.reason == "NotInstalled") {
            "NotInstalled"
        } else {
            self.problems[0].reason
        };
        let problems: Vec<&str> = self.problems.iter().map(|p| p.message.as_str()).collect();
        (
            ConditionStatus::True,
            reason,
            with_notes(problems.join("; ")),
        )
    }
}

/// Sets `TrafficIntegrationUnavailable` from `report`. A service that never asked for a route
/// or record gets no such condition; one that stopped asking gets it `False`.
pub fn set_condition(
    report: &Report,
    status: &mut EdgeServiceStatus,
    generation: Option<i64>,
    now: Timestamp,
) {
    let present =
        conditions::find_condition(&status.conditions, TRAFFIC_INTEGRATION_UNAVAILABLE).is_some();
    if !report.requested && !present {
        return;
    }
    let (state, reason, message) = report.condition();
    // Kubernetes caps a condition message at 32768 bytes; a few lines are plenty.
    let message: String = message.chars().take(4000).collect();
    conditions::set_condition(
        &mut status.conditions,
        TRAFFIC_INTEGRATION_UNAVAILABLE,
        state,
        reason,
        &message,
        generation,
        now,
    );
}

// ---------------------------------------------------------------------------------------------
// I/O: discovery, caches, apply.

/// Which optional APIs the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1).
    pub gateway: bool,
    /// ExternalDNS `DNSEndpoint` (externaldns.k8s.io/v1alpha1).
    pub dns: bool,
}

/// API discovery for the optional integrations, asked at most every `DISCOVERY_REFRESH`
/// (not per reconcile), shared by reconciles and the watches that wait for the APIs.
pub struct Integrations {
    client: Client,
    refresh: Duration,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Installed)>>,
}

impl Integrations {
    pub fn new(client: Client, refresh: Duration) -> Self {
        Integrations {
            client,
            refresh,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// What is installed, from the cache while it is fresh.
    pub async fn installed(&self) -> Installed {
        let mut last = self.last.lock().await;
        if let Some((at, installed)) = *last {
            if at.elapsed() < self.refresh {
                return installed;
            }
        }
        let previous = last.map(|(_, i)| i);
        let gateway = served(&self.client, GATEWAY_API, "httproutes").await;
        let dns = served(&self.client, DNS_API, "dnsendpoints").await;
        // A failed look keeps what was known and is not cached, so the next reconcile asks again.
        let installed = Installed {
            gateway: gateway.unwrap_or(previous.is_some_and(|p| p.gateway)),
            dns: dns.unwrap_or(previous.is_some_and(|p| p.dns)),
        };
        if gateway.is_some() && dns.is_some() {
            *last = Some((tokio::time::Instant::now(), installed));
        }
        if previous != Some(installed) {
            info!(
                gateway_api = installed.gateway,
                dns_endpoint = installed.dns,
                "traffic integrations"
            );
        }
        installed
    }

    /// Resolves once `which` is installed, asking every `refresh`.
    async fn wait_for(self: Arc<Self>, which: fn(Installed) -> bool) {
        while !which(self.installed().await) {
            tokio::time::sleep(self.refresh).await;
        }
    }
}

/// Whether the API server serves `plural` in `api_version` (API discovery): `None` when
/// discovery itself failed, `Some(false)` when the group/version or resource is unknown.
pub async fn served(client: &Client, api_version: &str, plural: &str) -> Option<bool> {
    match client.list_api_group_resources(api_version).await {
        Ok(list) => Some(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(s)) if s.code == 404 => Some(false),
        Err(e) => {
            warn!(api = api_version, error = %e, "API discovery failed");
            None
        }
    }
}

/// The caches the traffic step reads. The route and record caches start once their API is
/// served; the Pod and Node caches hold only edge pods and verified edge nodes.
pub struct TrafficCaches {
    pub integrations: Arc<Integrations>,
    pub routes: Store<HttpRoute>,
    pub records: Store<DnsEndpoint>,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
}

type Trigger<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The watch streams behind `TrafficCaches`; `attach` makes them trigger reconciles.
pub struct TrafficStreams {
    routes: Trigger<HttpRoute>,
    records: Trigger<DnsEndpoint>,
    pods: Trigger<Pod>,
    nodes: Trigger<Node>,
    pod_cache: Store<Pod>,
}

fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"))
}

/// A watch that starts once `ready` resolves (the API is served), so a cluster without the
/// CRD sees no failing watch.
fn watch_after<K>(
    ready: impl Future<Output = ()> + Send + 'static,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
) -> Trigger<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    stream::once(ready.map(move |()| {
        watcher(api, managed())
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .default_backoff()
            .reflect(writer)
            .touched_objects()
    }))
    .flatten()
    .boxed()
}

/// Whether an edge pod's change matters to DNS: its node, readiness or deletion.
fn pod_signal(pod: &Pod) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .hash(&mut h);
    pod_ready(pod).hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Whether a node's change matters to DNS: its addresses.
fn node_signal(node: &Node) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node_addresses(node).hash(&mut h);
    Some(h.finish())
}

/// The caches and their streams, for the EdgeServices of `namespace` (all when `None`).
pub fn observe(client: &Client, namespace: &Option<String>) -> (TrafficCaches, TrafficStreams) {
    let integrations = Arc::new(Integrations::new(client.clone(), DISCOVERY_REFRESH));
    let (routes, routes_writer) = reflector::store::<HttpRoute>();
    let (records, records_writer) = reflector::store::<DnsEndpoint>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (nodes, nodes_writer) = reflector::store::<Node>();

    let route_stream = watch_after(
        integrations.clone().wait_for(|i| i.gateway),
        super::namespaced::<HttpRoute>(client, namespace),
        routes_writer,
    );
    let record_stream = watch_after(
        integrations.clone().wait_for(|i| i.dns),
        super::namespaced::<DnsEndpoint>(client, namespace),
        records_writer,
    );
    let edge_pods = managed().labels(&format!("{LABEL_TIER}=edge"));
    let pod_stream = watcher(super::namespaced::<Pod>(client, namespace), edge_pods)
        .modify(super::slim::pod)
        .default_backoff()
        .reflect(pods_writer)
        .touched_objects()
        .predicate_filter(pod_signal, Default::default())
        .boxed();
    let verified = watcher::Config::default().labels(&format!("{VERIFIED_LABEL}=true"));
    let node_stream = watcher(Api::<Node>::all(client.clone()), verified)
        .modify(|n: &mut Node| {
            n.metadata.managed_fields = None;
            // Image lists are the bulk of a Node and of no use here.
            if let Some(status) = n.status.as_mut() {
                status.images = None;
            }
        })
        .default_backoff()
        .reflect(nodes_writer)
        .touched_objects()
        .predicate_filter(node_signal, Default::default())
        .boxed();

    (
        TrafficCaches {
            integrations,
            routes,
            records,
            pods: pods.clone(),
            nodes,
        },
        TrafficStreams {
            routes: route_stream,
            records: record_stream,
            pods: pod_stream,
            nodes: node_stream,
            pod_cache: pods,
        },
    )
}

impl TrafficStreams {
    /// Reconcile an EdgeService when its route or record changes (or goes), when one of its
    /// edge pods changes node or readiness, and when a node running its edge pods changes address.
    pub fn attach(
        self,
        controller: Controller<super::edge_service::Guarded>,
    ) -> Controller<super::edge_service::Guarded> {
        let pods = self.pod_cache;
        controller
            .owns_stream(self.routes)
            .owns_stream(self.records)
            .watches_stream(self.pods, |pod: Pod| {
                let service = pod.labels().get(LABEL_SERVICE).cloned();
                service.map(|s| ObjectRef::new(&s).within(&pod.namespace().unwrap_or_default()))
            })
            .watches_stream(self.nodes, move |node: Node| {
                let name = node.name_any();
                pods.state()
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&name))
                    .filter_map(|p| {
                        let service = p.labels().get(LABEL_SERVICE)?;
                        Some(ObjectRef::new(service).within(&p.namespace()?))
                    })
                    .collect::<std::collections::HashSet<ObjectRef<super::edge_service::Guarded>>>()
            })
    }
}

/// Whether a reflector store has had its first full list.
fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

fn owned_by(es: &EdgeService, obj: &impl Resource) -> bool {
    let uid = es.uid();
    obj.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

/// A refusal of what we built (the spec passed our schema but not the route's or record's):
/// reported in the condition rather than retried.
fn rejected(e: &Error) -> Option<String> {
    match e {
        Error::Kube(kube::Error::Api(s)) if s.code == 400 || s.code == 422 => {
            Some(s.message.clone())
        }
        _ => None,
    }
}

fn to_body<K: Resource<DynamicType = ()> + Serialize>(obj: &K, what: &str) -> Result<Value> {
    let mut body = serde_json::to_value(obj).map_err(|source| Error::Serialize {
        what: what.to_string(),
        source,
    })?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    Ok(body)
}

/// Publishes (or removes) the EdgeService's HTTPRoute and DNSEndpoint for `weights` (the plan's)
/// and `observed` (ready replicas per target). Writes nothing when both are current.
pub async fn apply(
    es: &EdgeService,
    ctx: &Context,
    namespace: &str,
    weights: &BTreeMap<String, u32>,
    observed: &BTreeMap<String, ObservedTarget>,
) -> Result<Report> {
    let caches = &ctx.traffic;
    let traffic = &es.spec.traffic;
    let name = es.name_any();
    let route_key = ObjectRef::<HttpRoute>::new(&name).within(namespace);
    let record_key = ObjectRef::<DnsEndpoint>::new(&name).within(namespace);
    let mut report = Report {
        requested: traffic.gateway.is_some() || traffic.dns.is_some(),
        ..Default::default()
    };
    let installed = if report.requested {
        caches.integrations.installed().await
    } else {
        Installed::default()
    };

    let routes: Api<HttpRoute> = Api::namespaced(ctx.client.clone(), namespace);
    match &traffic.gateway {
        Some(_) if !installed.gateway => report.problems.push(Problem {
            reason: "NotInstalled",
            message: format!(
                "the Gateway API (HTTPRoute, {GATEWAY_API}) is not installed: HTTPRoute {name} is skipped"
            ),
        }),
        Some(gateway) => {
            match http_route(es, gateway, backend_weights(weights, observed)) {
                Ok(route) => match apply_route(&routes, caches, &route_key, route).await {
                    Ok(()) => report.published.push(format!("HTTPRoute {name}")),
                    Err(e) => match rejected(&e) {
                        Some(message) => report.problems.push(Problem {
                            reason: "Rejected",
                            message: format!("the API server refused HTTPRoute {name}: {message}"),
                        }),
                        None => return Err(e),
                    },
                },
                Err(problem) => report.problems.push(problem),
            }
        }
        None => delete_if_owned(es, &routes, &caches.routes, &route_key).await?,
    }

    let records: Api<DnsEndpoint> = Api::namespaced(ctx.client.clone(), namespace);
    match &traffic.dns {
        Some(dns) if !installed.dns => report.problems.push(Problem {
            reason: "NotInstalled",
            message: format!(
                "ExternalDNS's DNSEndpoint ({DNS_API}) is not installed: the DNS record for {} is skipped",
                dns.hostname
            ),
        }),
        Some(dns) => {
            let Some(edge) = edge_node_addresses(es, caches).await else {
                warn!(edgeservice = %route_key, "edge Pod and Node caches not filled yet; DNSEndpoint left as it is");
                report.notes.push(format!(
                    "DNSEndpoint {name} waits for the edge Pod and Node caches (can edgeshift list pods and nodes?)"
                ));
                return Ok(report);
            };
            let build = dns_endpoint(es, dns, weights, observed, &edge, DnsWeighting::of(es));
            report.notes.extend(build.notes);
            let outcome = match build.record {
                Some(record) => apply_record(&records, caches, &record_key, record).await,
                None => Ok(()),
            };
            match outcome {
                Ok(()) => report.published.push(format!("DNSEndpoint {name}")),
                Err(e) => match rejected(&e) {
                    Some(message) => report.problems.push(Problem {
                        reason: "Rejected",
                        message: format!("the API server refused DNSEndpoint {name}: {message}"),
                    }),
                    None => return Err(e),
                },
            }
        }
        None => delete_if_owned(es, &records, &caches.records, &record_key).await?,
    }
    Ok(report)
}

/// Addresses of the nodes running ready edge pods; `None` while the Pod and Node caches have
/// not had their first list (a record built then would drop the edge). Their first list
/// triggers a reconcile of every EdgeService with edge pods, so nothing waits for a resync.
async fn edge_node_addresses(es: &EdgeService, caches: &TrafficCaches) -> Option<Vec<String>> {
    let filled = async {
        caches.pods.wait_until_ready().await.is_ok()
            && caches.nodes.wait_until_ready().await.is_ok()
    };
    if !tokio::time::timeout(CACHE_WAIT, filled)
        .await
        .unwrap_or(false)
    {
        return None;
    }
    let pods = caches.pods.state();
    Some(edge_addresses(
        es,
        pods.iter().map(|p| p.as_ref()),
        |node| caches.nodes.get(&ObjectRef::new(node)),
    ))
}

async fn apply_route(
    api: &Api<HttpRoute>,
    caches: &TrafficCaches,
    key: &ObjectRef<HttpRoute>,
    route: HttpRoute,
) -> Result<()> {
    let (desired, hash) = children::with_hash(route);
    if synced(&caches.routes)
        && caches
            .routes
            .get(key)
            .is_some_and(|live| route_is_current(&live, &desired, &hash))
    {
        return Ok(());
    }
    // Read-modify-write on the live object: the cache may lag, and the rules are shared.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let live = api.get_opt(&key.name).await?;
        if live
            .as_ref()
            .is_some_and(|l| route_is_current(l, &desired, &hash))
        {
            return Ok(());
        }
        let merged = merge_route(live.as_ref(), &desired);
        let body = to_body(&merged, &format!("HTTPRoute {key}"))?;
        match api
            .patch(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => {
                let weights: Vec<(String, Option<i32>)> = desired
                    .spec
                    .rules
                    .iter()
                    .flat_map(|r| r.backend_refs.iter().map(|b| (b.name.clone(), b.weight)))
                    .collect();
                info!(httproute = %key, ?weights, "applied HTTPRoute");
                return Ok(());
            }
            // Changed since we read it: read again rather than drop what was added.
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 3 => {
                debug!(httproute = %key, "HTTPRoute changed while writing; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn apply_record(
    api: &Api<DnsEndpoint>,
    caches: &TrafficCaches,
    key: &ObjectRef<DnsEndpoint>,
    record: DnsEndpoint,
) -> Result<()> {
    let (desired, hash) = children::with_hash(record);
    let current = |live: &DnsEndpoint| record_is_current(live, &desired, &hash);
    if synced(&caches.records) && caches.records.get(key).is_some_and(|l| current(&l)) {
        return Ok(());
    }
    if api.get_opt(&key.name).await?.is_some_and(|l| current(&l)) {
        return Ok(());
    }
    let body = to_body(&desired, &format!("DNSEndpoint {key}"))?;
    api.patch(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    let targets: Vec<&str> = desired
        .spec
        .endpoints
        .iter()
        .flat_map(|e| e.targets.iter().map(String::as_str))
        .collect();
    info!(dnsendpoint = %key, ?targets, "applied DNSEndpoint");
    Ok(())
}

/// Removes the route or record the spec no longer asks for (only one this EdgeService owns).
/// Looks in the cache only: before it fills there is nothing to go on, and filling it triggers
/// a reconcile for every object it holds.
async fn delete_if_owned<K>(
    es: &EdgeService,
    api: &Api<K>,
    cache: &Store<K>,
    key: &ObjectRef<K>,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let Some(live) = cache.get(key) else {
        return Ok(());
    };
    if !owned_by(es, &*live) || live.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    info!(object = %key, kind = K::kind(&()).as_ref(), "deleting a traffic object the spec no longer asks for");
    match api.delete(&key.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeAddress;
    use serde_json::json;

    fn service(traffic: Value) -> EdgeService {
        let mut es: EdgeService = serde_json::from_value(json!({
            "apiVersion": "edgeshift.io/v1alpha1",
            "kind": "EdgeService",
            "metadata": {"name": "shop", "namespace": "prod"},
            "spec": {
                "replicas": 2,
                "regions": ["aws-east", "gcp-west"],
                "template": {"spec": {"containers": [{"name": "app", "image": "shop:1"}]}},
                "traffic": traffic
            }
        }))
        .expect("valid EdgeService");
        es.metadata.uid = Some("u-1".into());
        es
    }

    fn full() -> EdgeService {
        service(json!({
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "hostPort": 8080},
                      {"name": "admin", "port": 9090}],
            "gateway": {"parentRefs": [{"name": "public", "namespace": "gateways"}],
                        "hostnames": ["shop.example.com"]},
            "dns": {"hostname": "shop.example.com", "ttl": 30,
                    "cloudTargets": {"aws-east": ["198.51.100.10", "2001:db8::10"],
                                     "gcp-west": ["198.51.100.20", "lb.gcp.example.com"]}}
        }))
    }

    fn weights(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(t, w)| (t.to_string(), *w)).collect()
    }

    fn ready(pairs: &[(&str, u32)]) -> BTreeMap<String, ObservedTarget> {
        pairs
            .iter()
            .map(|(t, r)| {
                (
                    t.to_string(),
                    ObservedTarget {
                        replicas: *r,
                        ready: *r,
                    },
                )
            })
            .collect()
    }

    fn route_of(es: &EdgeService, w: BackendWeights) -> HttpRoute {
        let gateway = es.spec.traffic.gateway.clone().expect("gateway");
        http_route(es, &gateway, w).expect("route")
    }

    fn backend_weights_of(route: &HttpRoute) -> Vec<(String, Option<i32>)> {
        let i = our_rule(&route.spec.rules, "shop").expect("our rule");
        route.spec.rules[i]
            .backend_refs
            .iter()
            .map(|b| (b.name.clone(), b.weight))
            .collect()
    }

    #[test]
    fn cloud_weight_is_the_sum_of_the_regions_and_edge_its_own() {
        let w = weights(&[("aws-east", 30), ("gcp-west", 45), ("edge", 25)]);
        assert_eq!(
            backend_weights(&w, &BTreeMap::new()),
            BackendWeights {
                cloud: 75,
                edge: 25
            }
        );
        let all_edge = weights(&[("aws-east", 0), ("edge", 100)]);
        assert_eq!(
            backend_weights(&all_edge, &BTreeMap::new()),
            BackendWeights {
                cloud: 0,
                edge: 100
            }
        );
    }

    #[test]
    fn weights_are_never_both_zero_while_something_is_ready() {
        let none = weights(&[("aws-east", 0), ("edge", 0)]);
        assert_eq!(
            backend_weights(&none, &ready(&[("aws-east", 1)])),
            BackendWeights {
                cloud: 100,
                edge: 0
            }
        );
        assert_eq!(
            backend_weights(&none, &ready(&[("edge", 2)])),
            BackendWeights {
                cloud: 0,
                edge: 100
            }
        );
        assert_eq!(
            backend_weights(&none, &ready(&[("aws-east", 1), ("edge", 1)])),
            BackendWeights {
                cloud: 50,
                edge: 50
            }
        );
        // Nothing ready: nothing can serve, and zero weights say so.
        assert_eq!(
            backend_weights(&BTreeMap::new(), &ready(&[("aws-east", 0)])),
            BackendWeights::default()
        );
    }

    #[test]
    fn absurd_weights_are_capped_not_overflowed() {
        let w = weights(&[("a", u32::MAX), ("b", u32::MAX), ("edge", u32::MAX)]);
        let b = backend_weights(&w, &BTreeMap::new());
        assert_eq!(b.cloud, MAX_BACKEND_WEIGHT);
        assert_eq!(b.edge, MAX_BACKEND_WEIGHT);
        let route = route_of(&full(), b);
        assert!(backend_weights_of(&route)
            .iter()
            .all(|(_, w)| *w == Some(1_000_000)));
    }

    #[test]
    fn the_route_sends_to_cloud_and_edge_services_on_the_first_port() {
        let es = full();
        let route = route_of(
            &es,
            BackendWeights {
                cloud: 100,
                edge: 0,
            },
        );
        assert_eq!(
            serde_json::to_value(&route).expect("json"),
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {
                    "name": "shop", "namespace": "prod",
                    "labels": {"app.kubernetes.io/managed-by": "edgeshift", "edgeshift.io/service": "shop"},
                    "ownerReferences": [{"apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                                         "name": "shop", "uid": "u-1", "controller": true}]
                },
                "spec": {
                    "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                    "name": "public", "namespace": "gateways"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [{"name": "edgeshift", "backendRefs": [
                        {"group": "", "kind": "Service", "name": "shop-cloud", "port": 80, "weight": 100},
                        {"group": "", "kind": "Service", "name": "shop-edge", "port": 80, "weight": 0}
                    ]}]
                }
            })
        );
    }

    #[test]
    fn a_route_without_ports_is_skipped_with_a_reason() {
        let es = service(json!({"gateway": {"parentRefs": [{"name": "public"}]}}));
        let gateway = es.spec.traffic.gateway.clone().expect("gateway");
        let problem = http_route(&es, &gateway, BackendWeights::default()).expect_err("no port");
        assert_eq!(problem.reason, "NoPorts");
        assert!(
            problem.message.contains("HTTPRoute shop"),
            "{}",
            problem.message
        );
    }

    /// What the API server returns for a route edgeshift applied, after another manager added a
    /// filter to edgeshift's rule and a rule of its own.
    fn live_route(weights: (i32, i32), hash: &str) -> HttpRoute {
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "prod", "resourceVersion": "42",
                         "annotations": {"edgeshift.io/applied-hash": hash},
                         "labels": {"app.kubernetes.io/managed-by": "edgeshift", "edgeshift.io/service": "shop"}},
            "spec": {
                "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                "name": "public", "namespace": "gateways"}],
                "hostnames": ["shop.example.com"],
                "rules": [
                    {"name": "edgeshift",
                     "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "filters": [{"type": "RequestHeaderModifier",
                                  "requestHeaderModifier": {"add": [{"name": "x-team", "value": "platform"}]}}],
                     "backendRefs": [
                        {"group": "", "kind": "Service", "name": "shop-cloud", "port": 80, "weight": weights.0,
                         "filters": [{"type": "ResponseHeaderModifier",
                                      "responseHeaderModifier": {"add": [{"name": "x-tier", "value": "cloud"}]}}]},
                        {"group": "", "kind": "Service", "name": "shop-edge", "port": 80, "weight": weights.1}]},
                    {"name": "admin",
                     "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                     "backendRefs": [{"group": "", "kind": "Service", "name": "admin", "port": 8080, "weight": 1}]}
                ]
            },
            "status": {"parents": []}
        }))
        .expect("live route")
    }

    #[test]
    fn a_weight_change_keeps_what_other_managers_added() {
        let es = full();
        let desired = route_of(
            &es,
            BackendWeights {
                cloud: 0,
                edge: 100,
            },
        );
        let live = live_route((100, 0), "old");
        let merged = merge_route(Some(&live), &desired);
        assert_eq!(merged.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(merged.spec.rules.len(), 2, "the other rule stays");
        assert_eq!(merged.spec.rules[1], live.spec.rules[1]);
        let ours = &merged.spec.rules[0];
        assert_eq!(
            ours.extra.get("filters"),
            live.spec.rules[0].extra.get("filters")
        );
        assert_eq!(
            ours.extra.get("matches"),
            live.spec.rules[0].extra.get("matches")
        );
        assert_eq!(
            backend_weights_of(&merged),
            vec![
                ("shop-cloud".to_string(), Some(0)),
                ("shop-edge".to_string(), Some(100))
            ]
        );
        assert!(
            ours.backend_refs[0].extra.contains_key("filters"),
            "per-backend filters stay"
        );
    }

    #[test]
    fn a_route_without_our_rule_gets_it_appended() {
        let es = full();
        let desired = route_of(&es, BackendWeights { cloud: 1, edge: 0 });
        let mut live = live_route((100, 0), "old");
        live.spec.rules.remove(0);
        let merged = merge_route(Some(&live), &desired);
        assert_eq!(merged.spec.rules.len(), 2);
        assert_eq!(merged.spec.rules[0].name.as_deref(), Some("admin"));
        assert_eq!(merged.spec.rules[1], desired.spec.rules[0]);
        assert_eq!(merge_route(None, &desired), desired);
    }

    #[test]
    fn a_rule_without_names_is_found_by_its_backends() {
        let mut live = live_route((100, 0), "old");
        live.spec.rules[0].name = None;
        live.spec.rules[1].name = None;
        assert_eq!(our_rule(&live.spec.rules, "shop"), Some(0));
        assert_eq!(our_rule(&live.spec.rules, "other"), None);
    }

    #[test]
    fn a_route_is_current_only_with_our_hash_and_our_backends() {
        let es = full();
        let (desired, hash) = children::with_hash(route_of(
            &es,
            BackendWeights {
                cloud: 100,
                edge: 0,
            },
        ));
        assert!(route_is_current(
            &live_route((100, 0), &hash),
            &desired,
            &hash
        ));
        assert!(!route_is_current(
            &live_route((100, 0), "other"),
            &desired,
            &hash
        ));
        assert!(
            !route_is_current(&live_route((50, 50), &hash), &desired, &hash),
            "someone changed our weights"
        );
        let mut replaced = live_route((100, 0), &hash);
        replaced.spec.rules.remove(0);
        assert!(
            !route_is_current(&replaced, &desired, &hash),
            "someone replaced the rules"
        );
        let mut moved = live_route((100, 0), &hash);
        moved.spec.hostnames = vec!["other.example.com".into()];
        assert!(!route_is_current(&moved, &desired, &hash));
    }

    #[test]
    fn unknown_fields_of_a_route_survive_a_round_trip() {
        let live = live_route((100, 0), "h");
        let back: HttpRoute =
            serde_json::from_value(serde_json::to_value(&live).expect("json")).expect("route");
        assert_eq!(back, live);
        let json = serde_json::to_value(&live).expect("json");
        assert_eq!(
            json["spec"]["rules"][0]["filters"][0]["type"],
            "RequestHeaderModifier"
        );
    }

    fn records(build: &DnsBuild) -> Vec<(String, Vec<String>)> {
        build
            .record
            .as_ref()
            .map(|r| {
                r.spec
                    .endpoints
                    .iter()
                    .map(|e| (e.record_type.clone(), e.targets.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn dns_of(es: &EdgeService) -> Dns {
        es.spec.traffic.dns.clone().expect("dns")
    }

    #[test]
    fn dns_lists_the_cloud_targets_of_serving_regions() {
        let es = full();
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 50), ("gcp-west", 50), ("edge", 0)]),
            &ready(&[("aws-east", 1), ("gcp-west", 1), ("edge", 1)]),
            &["203.0.113.1".into()],
            DnsWeighting::Plain,
        );
        assert_eq!(
            records(&build),
            vec![
                (
                    "A".to_string(),
                    vec!["198.51.100.10".to_string(), "198.51.100.20".to_string()]
                ),
                ("AAAA".to_string(), vec!["2001:db8::10".to_string()]),
            ],
            "warm edge replicas without weight get no DNS traffic"
        );
        let record = build.record.expect("record");
        let a = &record.spec.endpoints[0];
        assert_eq!(
            (a.dns_name.as_str(), a.record_ttl),
            ("shop.example.com", Some(30))
        );
        assert!(
            build.notes.iter().any(|n| n.contains("lb.gcp.example.com")),
            "{:?}",
            build.notes
        );
        assert_eq!(
            serde_json::to_value(&record.spec.endpoints[0]).expect("json"),
            json!({"dnsName": "shop.example.com", "recordType": "A",
                   "targets": ["198.51.100.10", "198.51.100.20"], "recordTTL": 30})
        );
    }

    #[test]
    fn dns_follows_the_workload_to_the_edge_nodes() {
        let es = full();
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 0), ("gcp-west", 0), ("edge", 100)]),
            // The lost regions' pods are still ready while they drain: no traffic for them.
            &ready(&[("aws-east", 1), ("gcp-west", 0), ("edge", 3)]),
            &["203.0.113.2".into(), "203.0.113.1".into()],
            DnsWeighting::Plain,
        );
        assert_eq!(
            records(&build),
            vec![(
                "A".to_string(),
                vec!["203.0.113.1".to_string(), "203.0.113.2".to_string()]
            )]
        );
    }

    #[test]
    fn nothing_serving_leaves_the_record_as_it_is() {
        let es = full();
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &[],
            DnsWeighting::Plain,
        );
        assert_eq!(build.record, None);
        assert!(!build.notes.is_empty());
        // The edge serves but no address is known yet: no record either, and a note.
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("edge", 100)]),
            &ready(&[("edge", 1)]),
            &[],
            DnsWeighting::Plain,
        );
        assert_eq!(build.record, None);
        assert!(build.notes.iter().any(|n| n.contains("edge pods")));
    }

    #[test]
    fn ready_targets_serve_when_the_plan_gives_no_weight() {
        let es = full();
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 0)]),
            &ready(&[("aws-east", 2)]),
            &[],
            DnsWeighting::Plain,
        );
        assert_eq!(
            records(&build)[0],
            ("A".to_string(), vec!["198.51.100.10".to_string()])
        );
    }

    #[test]
    fn odd_dns_input_does_not_panic() {
        let es = service(json!({
            "dns": {"hostname": "shop.example.com",
                    "cloudTargets": {"aws-east": [], "unknown": ["10.0.0.1"],
                                     "gcp-west": [" 198.51.100.7 ", "", "not an ip", "198.51.100.7"]}}
        }));
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 60), ("gcp-west", 40), ("nowhere", 10)]),
            &ready(&[("aws-east", 1), ("gcp-west", 1), ("nowhere", 1)]),
            &["not-an-ip".into()],
            DnsWeighting::Aws,
        );
        assert_eq!(
            records(&build),
            vec![("A".to_string(), vec!["198.51.100.7".to_string()])]
        );
        assert!(build
            .notes
            .iter()
            .any(|n| n.contains("aws-east serves but has no cloudTargets")));
        let record = &build.record.expect("record").spec.endpoints[0];
        assert_eq!(record.record_ttl, Some(60), "default TTL");
        assert_eq!(record.set_identifier.as_deref(), Some("gcp-west"));
    }

    #[test]
    fn aws_weighting_publishes_one_weighted_set_per_target() {
        let mut es = full();
        es.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_DNS_WEIGHTING.to_string(),
            "AWS".to_string(),
        )]));
        assert_eq!(DnsWeighting::of(&es), DnsWeighting::Aws);
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 75), ("gcp-west", 0), ("edge", 25)]),
            &ready(&[("aws-east", 1), ("gcp-west", 1), ("edge", 1)]),
            &["203.0.113.1".into()],
            DnsWeighting::of(&es),
        );
        let sets: Vec<(String, String, Option<String>, Vec<ProviderSpecific>)> = build
            .record
            .expect("record")
            .spec
            .endpoints
            .into_iter()
            .map(|e| {
                (
                    e.record_type,
                    e.targets.join(","),
                    e.set_identifier,
                    e.provider_specific,
                )
            })
            .collect();
        let weight = |w: &str| {
            vec![ProviderSpecific {
                name: "aws/weight".into(),
                value: w.into(),
            }]
        };
        assert_eq!(
            sets,
            vec![
                (
                    "A".into(),
                    "198.51.100.10".into(),
                    Some("aws-east".into()),
                    weight("75")
                ),
                (
                    "AAAA".into(),
                    "2001:db8::10".into(),
                    Some("aws-east".into()),
                    weight("75")
                ),
                (
                    "A".into(),
                    "203.0.113.1".into(),
                    Some("edge".into()),
                    weight("25")
                ),
            ]
        );
        assert_eq!(DnsWeighting::of(&full()), DnsWeighting::Plain);
    }

    #[test]
    fn a_record_is_current_only_with_the_same_endpoints() {
        let es = full();
        let build = dns_endpoint(
            &es,
            &dns_of(&es),
            &weights(&[("aws-east", 100)]),
            &ready(&[("aws-east", 1)]),
            &[],
            DnsWeighting::Plain,
        );
        let (desired, hash) = children::with_hash(build.record.expect("record"));
        let live: DnsEndpoint =
            serde_json::from_value(serde_json::to_value(&desired).expect("json")).expect("record");
        assert!(record_is_current(&live, &desired, &hash));
        let mut edited = live.clone();
        edited.spec.endpoints[0].targets.push("192.0.2.1".into());
        assert!(!record_is_current(&edited, &desired, &hash));
        assert!(!record_is_current(&live, &desired, "other"));
    }

    fn node(name: &str, addresses: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            spec: None,
        })
    }

    fn pod(name: &str, service: &str, target: &str, node: &str, is_ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "prod",
                         "labels": {"edgeshift.io/service": service, "edgeshift.io/target": target}},
            "spec": {"nodeName": node, "containers": [{"name": "app"}]},
            "status": {"conditions": [{"type": "Ready", "status": if is_ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    #[test]
    fn edge_addresses_are_those_of_nodes_with_ready_edge_pods() {
        let nodes = BTreeMap::from([
            (
                "edge-1",
                node(
                    "edge-1",
                    &[("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.1")],
                ),
            ),
            ("edge-2", node("edge-2", &[("InternalIP", "10.0.0.2")])),
            ("edge-3", node("edge-3", &[("ExternalIP", "203.0.113.3")])),
            ("edge-4", node("edge-4", &[])),
        ]);
        let mut terminating = pod("e", "shop", "edge", "edge-3", true);
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        let mut elsewhere = pod("f", "shop", "edge", "edge-3", true);
        elsewhere.metadata.namespace = Some("staging".into());
        let pods = [
            pod("a", "shop", "edge", "edge-1", true),
            pod("b", "shop", "edge", "edge-1", true),
            pod("c", "shop", "edge", "edge-2", true),
            pod("d", "shop", "edge", "edge-3", false),
            terminating,
            elsewhere,
            pod("g", "other", "edge", "edge-3", true),
            pod("h", "shop", "aws-east", "edge-3", true),
            pod("i", "shop", "edge", "edge-4", true),
            pod("j", "shop", "edge", "unverified", true),
        ];
        let es = full();
        let addresses = edge_addresses(&es, pods.iter(), |n| nodes.get(n).cloned());
        assert_eq!(addresses, vec!["10.0.0.2", "203.0.113.1"]);
        assert!(edge_addresses(&es, [], |_| None).is_empty());
    }

    #[test]
    fn the_condition_names_what_is_missing_and_what_is_skipped() {
        let report = Report {
            requested: true,
            published: vec![],
            problems: vec![
                Problem {
                    reason: "NoPorts",
                    message: "no ports".into(),
                },
                Problem {
                    reason: "NotInstalled",
                    message: "the Gateway API is not installed: HTTPRoute shop is skipped".into(),
                },
            ],
            notes: vec![],
        };
        let (status, reason, message) = report.condition();
        assert_eq!((status, reason), (ConditionStatus::True, "NotInstalled"));
        assert!(message.contains("HTTPRoute shop is skipped"), "{message}");

        let ok = Report {
            requested: true,
            published: vec!["HTTPRoute shop".into(), "DNSEndpoint shop".into()],
            ..Default::default()
        };
        let (status, reason, message) = ok.condition();
        assert_eq!((status, reason), (ConditionStatus::False, "Published"));
        assert_eq!(message, "published: HTTPRoute shop, DNSEndpoint shop");
    }

    #[test]
    fn the_condition_appears_only_when_traffic_integration_is_asked_for() {
        let now = Timestamp::UNIX_EPOCH;
        let mut status = EdgeServiceStatus::default();
        set_condition(&Report::default(), &mut status, Some(1), now);
        assert!(status.conditions.is_empty());
        let missing = Report {
            requested: true,
            problems: vec![Problem {
                reason: "NotInstalled",
                message: "x".into(),
            }],
            ..Default::default()
        };
        set_condition(&missing, &mut status, Some(1), now);
        assert_eq!(status.conditions[0].status, "True");
        // Asking no more turns it False rather than leaving a stale True.
        set_condition(&Report::default(), &mut status, Some(2), now);
        assert_eq!(
            (
                status.conditions[0].status.as_str(),
                status.conditions[0].reason.as_str()
            ),
            ("False", "NotRequested")
        );
    }
}
