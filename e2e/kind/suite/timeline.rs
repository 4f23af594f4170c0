//! What the cluster did while the clients measured: every change of the scenario's Pods,
//! EndpointSlices, DNSEndpoint and EdgeService, and of every Node's readiness, stamped in
//! ms since the Unix epoch (the clients' clock). A scenario prints the part of it around
//! each lost request, so a failed check says why, not only how many.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use edgeshift::api::EdgeService;
use edgeshift::controller::traffic::DnsEndpoint;

use crate::clients::{now_ms, Request};

/// One change: when, which object (`kind/name`), what it is now.
#[derive(Clone, Debug)]
pub struct Change {
    pub at_ms: u64,
    pub object: String,
    pub now: String,
}

pub struct Timeline {
    changes: Arc<Mutex<Vec<Change>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Timeline {
    /// Starts watching `ns` (and every Node).
    pub fn start(client: &Client, ns: &str) -> Timeline {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            watch(
                Api::<Pod>::namespaced(client.clone(), ns),
                "pod",
                changes.clone(),
                pod,
            ),
            watch(
                Api::<EndpointSlice>::namespaced(client.clone(), ns),
                "slice",
                changes.clone(),
                slice,
            ),
            watch(
                Api::<EdgeService>::namespaced(client.clone(), ns),
                "es",
                changes.clone(),
                edge_service,
            ),
            watch(
                Api::<Node>::all(client.clone()),
                "node",
                changes.clone(),
                node,
            ),
            watch(
                Api::<DnsEndpoint>::namespaced(client.clone(), ns),
                "dns",
                changes.clone(),
                dns_endpoint,
            ),
        ];
        Timeline { changes, tasks }
    }

    fn changes(&self) -> Vec<Change> {
        let mut c = self.changes.lock().map(|c| c.clone()).unwrap_or_default();
        c.sort_by_key(|c| c.at_ms);
        c
    }

    /// The changes from `before_ms` ahead of the first to `after_ms` past the last of the
    /// failed `requests`, and the failures themselves, in time order, times relative to
    /// `origin_ms`. Empty when nothing failed.
    pub fn around_failures(
        &self,
        who: &str,
        requests: &[Request],
        origin_ms: u64,
        (before_ms, after_ms): (u64, u64),
    ) -> String {
        let failed: Vec<&Request> = requests.iter().filter(|r| r.target.is_none()).collect();
        let (Some(first), Some(last)) = (failed.first(), failed.last()) else {
            return String::new();
        };
        let (from, to) = (first.at_ms.saturating_sub(before_ms), last.at_ms + after_ms);
        let mut lines: Vec<(u64, String)> = self
            .changes()
            .into_iter()
            .filter(|c| (from..=to).contains(&c.at_ms))
            .map(|c| (c.at_ms, format!("  {} = {}", c.object, c.now)))
            .collect();
        lines.extend(failed.iter().map(|r| {
            (
                r.at_ms,
                format!("! {who} lost: {}", r.error.as_deref().unwrap_or("?")),
            )
        }));
        // The last request answered before the first failure and the first after the last.
        let served = |r: &&Request| r.target.is_some();
        if let Some(r) = requests
            .iter()
            .filter(served)
            .rfind(|r| r.at_ms < first.at_ms)
        {
            lines.push((r.at_ms, format!("  {who} served by {}", describe(r))));
        }
        if let Some(r) = requests
            .iter()
            .filter(served)
            .find(|r| r.at_ms > last.at_ms)
        {
            lines.push((r.at_ms, format!("  {who} served by {}", describe(r))));
        }
        lines.sort_by_key(|(at, _)| *at);
        lines
            .into_iter()
            .map(|(at, l)| format!("{:>+9.3}s {l}\n", (at as f64 - origin_ms as f64) / 1000.0))
            .collect()
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn describe(r: &Request) -> String {
    format!(
        "{} on {}",
        r.target.as_deref().unwrap_or("?"),
        r.node.as_deref().unwrap_or("?")
    )
}

/// Records `summary(object)` for every object of `api` whenever it differs from the last.
fn watch<K>(
    api: Api<K>,
    kind: &'static str,
    out: Arc<Mutex<Vec<Change>>>,
    summary: fn(&K) -> String,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut last = BTreeMap::<String, String>::new();
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            // The watcher re-lists after an error; the backoff paces it.
            let Ok(event) = event else { continue };
            let (obj, now) = match &event {
                Event::Apply(o) | Event::InitApply(o) => (o.name_any(), summary(o)),
                Event::Delete(o) => (o.name_any(), "deleted".to_string()),
                Event::Init | Event::InitDone => continue,
            };
            if last.get(&obj) != Some(&now) {
                last.insert(obj.clone(), now.clone());
                if let Ok(mut c) = out.lock() {
                    c.push(Change {
                        at_ms: now_ms(),
                        object: format!("{kind}/{obj}"),
                        now,
                    });
                }
            }
        }
    })
}

/// The DNSEndpoint's records: `name A [targets]`.
fn dns_endpoint(o: &DnsEndpoint) -> String {
    if o.spec.endpoints.is_empty() {
        return "no endpoints".into();
    }
    o.spec
        .endpoints
        .iter()
        .map(|e| format!("{} {} [{}]", e.dns_name, e.record_type, e.targets.join(",")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn pod(p: &Pod) -> String {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
        .unwrap_or("-");
    format!(
        "{} node={} ip={} ready={}{}",
        status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
        spec.and_then(|s| s.node_name.as_deref()).unwrap_or("-"),
        status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
        ready,
        if p.metadata.deletion_timestamp.is_some() {
            " terminating"
        } else {
            ""
        }
    )
}

fn slice(s: &EndpointSlice) -> String {
    s.endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.as_ref();
            let flag = |v: Option<bool>, f: &str| match v {
                Some(true) => f.to_string(),
                _ => format!("!{f}"),
            };
            format!(
                "{}({},{},{})",
                e.addresses.join("/"),
                flag(c.and_then(|c| c.ready), "ready"),
                flag(c.and_then(|c| c.serving), "serving"),
                flag(c.and_then(|c| c.terminating), "term"),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn edge_service(e: &EdgeService) -> String {
    let Some(s) = e.status.as_ref() else {
        return "no status".into();
    };
    let targets: Vec<String> = s
        .targets
        .iter()
        .map(|t| {
            format!(
                "{}:{}/{}w{}",
                t.name, t.ready_replicas, t.desired_replicas, t.traffic_weight
            )
        })
        .collect();
    format!(
        "{:?} step={:?} {}",
        s.phase,
        s.failback_step,
        targets.join(" ")
    )
}

fn node(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("Ready={}", c.status))
        .unwrap_or_else(|| "Ready=-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::tests::req;

    #[test]
    fn a_loss_is_shown_with_the_changes_around_it_and_the_requests_either_side() {
        let change = |at_ms, now: &str| Change {
            at_ms,
            object: "pod/a".into(),
            now: now.into(),
        };
        let t = Timeline {
            changes: Arc::new(Mutex::new(vec![
                change(1_000, "too early"),
                change(9_000, "Running ready=True terminating"),
                change(20_000, "too late"),
            ])),
            tasks: Vec::new(),
        };
        let requests = [
            req(8_000, Some("edge")),
            Request {
                error: Some("connect: timed out".into()),
                ..req(10_000, None)
            },
            req(10_050, Some("aws")),
        ];
        let out = t.around_failures("dns", &requests, 5_000, (2_000, 1_000));
        assert_eq!(
            out,
            "   +3.000s   dns served by edge on n1\n   \
             +4.000s   pod/a = Running ready=True terminating\n   \
             +5.000s ! dns lost: connect: timed out\n   \
             +5.050s   dns served by aws on n1\n"
        );
        assert_eq!(
            t.around_failures("dns", &requests[..1], 0, (1, 1)),
            "",
            "nothing lost, nothing shown"
        );
    }
}
