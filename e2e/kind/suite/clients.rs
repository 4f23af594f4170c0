//! The two load clients that measure an outage as users see it, each recording every
//! request: one outside the cluster resolving the service's name through the outside DNS
//! chain (ExternalDNS → etcd → CoreDNS, with the record's TTL), one in a pod outside the
//! lost provider calling the in-cluster Service.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as a client saw it.
#[derive(Clone, Debug)]
pub struct Request {
    /// When it was sent, ms since the Unix epoch (the host's and the pods' clocks are one).
    pub at_ms: u64,
    /// The `target` that answered (a region or `edge`), or `None` when it failed.
    pub target: Option<String>,
    pub node: Option<String>,
    /// Why it failed (`None` when it was answered).
    pub error: Option<String>,
    /// How long it took, answered or not (ms).
    pub latency_ms: u64,
}

/// How long a client waits for a connection: room for the kernel's SYN retransmissions 1 s
/// and 3 s after the first SYN, as the in-cluster client (`e2e/workload`) waits. Browsers
/// and curl wait far longer, so a lost SYN delays a user's request rather than failing it;
/// such requests are counted as slow (`Outage::slow`), not hidden.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// An answer that took at least this long is slow (a SYN was retransmitted, or worse).
pub const SLOW_MS: u64 = 1000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Requests per second both clients send.
pub const RATE: u32 = 20;

/// The outside client: resolves `hostname` through the DNS server at `server` (honouring the
/// record's TTL, as a resolver library does), then GETs `http://<address>:<port>/`.
pub struct DnsClient {
    records: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsClient {
    pub fn start(server: SocketAddr, hostname: String, port: u16) -> DnsClient {
        let resolver = resolver(server, 16);
        let records = Arc::new(Mutex::new(Vec::new()));
        let out = records.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: usize = 0;
            loop {
                tick.tick().await;
                n += 1;
                let resolver = resolver.clone();
                let host = hostname.clone();
                let out = out.clone();
                // Each request on its own task, so a hanging one does not slow the rate.
                tokio::spawn(async move {
                    let at_ms = now_ms();
                    let started = std::time::Instant::now();
                    let answer = match resolver.ipv4_lookup(host.as_str()).await {
                        Ok(a) => {
                            let ips: Vec<IpAddr> = a.iter().map(|r| IpAddr::V4(r.0)).collect();
                            // Clients spread over the addresses they are given.
                            match ips.get(n % ips.len().max(1)) {
                                Some(ip) => get(SocketAddr::new(*ip, port)).await,
                                None => Err("no address".to_string()),
                            }
                        }
                        Err(e) => Err(format!("resolve: {e}")),
                    };
                    let (answer, error) = match answer {
                        Ok(a) => (Some(a), None),
                        Err(e) => (None, Some(e)),
                    };
                    let (target, node) = answer.unzip();
                    if let Ok(mut r) = out.lock() {
                        r.push(Request {
                            at_ms,
                            target,
                            node,
                            error,
                            latency_ms: started.elapsed().as_millis() as u64,
                        });
                    }
                });
            }
        });
        DnsClient { records, task }
    }

    pub fn records(&self) -> Vec<Request> {
        let mut r = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        r.sort_by_key(|q| q.at_ms);
        r
    }
}

impl Drop for DnsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A resolver asking only `server`, caching up to `cache_size` answers for their TTL.
fn resolver(server: SocketAddr, cache_size: usize) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    opts.cache_size = cache_size;
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// The IPv4 addresses `server` gives for `name` right now (no cache; none on an error).
pub async fn resolve(server: SocketAddr, name: &str) -> Vec<IpAddr> {
    resolver(server, 0)
        .ipv4_lookup(name)
        .await
        .map(|a| a.iter().map(|r| IpAddr::V4(r.0)).collect())
        .unwrap_or_default()
}

/// The next source port of this process's clients: each used once per pass through
/// 20000–59999 (over half an hour at 20 requests a second), where the kernel would come
/// back to the same ephemeral port within a minute at this rate. A reused port whose last
/// SYN went unanswered (a lost node) still has that connection's conntrack entry
/// (SYN_SENT, kept 120 s), which sends the new SYN to the old, dead endpoint whatever DNS
/// and the EndpointSlices now say; many independent clients do not reuse one address and
/// port that fast. The in-cluster client (`e2e/workload`) does the same.
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A socket bound to the next free source port (`NEXT_PORT`).
fn bound_socket() -> Result<tokio::net::TcpSocket, String> {
    let mut last = String::from("no free source port");
    for _ in 0..64 {
        let n = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (20_000 + n % 40_000) as u16;
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        match socket.bind(SocketAddr::from(([0, 0, 0, 0], port))) {
            Ok(()) => return Ok(socket),
            Err(e) => last = format!("bind :{port}: {e}"),
        }
    }
    Err(last)
}

/// One GET with `CONNECT_TIMEOUT` to connect and 5 s in all: `(target, node)` on a 200,
/// else what went wrong.
pub async fn get(addr: SocketAddr) -> Result<(String, String), String> {
    let fut = async {
        let socket = bound_socket()?;
        let mut s = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let (head, body) = out
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("{addr}: no HTTP answer ({} bytes)", out.len()))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{addr}: {}", head.lines().next().unwrap_or("")));
        }
        parse_body(body).ok_or_else(|| format!("{addr}: unexpected body {body:?}"))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no answer in 5s")))
}

/// `{"target":"..","node":"..","pod":".."}` → `(target, node)`.
fn parse_body(body: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    Some((
        v["target"].as_str()?.to_string(),
        v["node"].as_str()?.to_string(),
    ))
}

/// The in-cluster client: a pod of the workload image in `client` mode on `node`, calling
/// the Service's ClusterIP (the static image has no resolver) for `seconds`.
pub struct ServiceClient {
    pods: Api<Pod>,
    name: String,
}

impl ServiceClient {
    pub async fn start(
        client: &Client,
        ns: &str,
        name: &str,
        node: &str,
        cluster_ip: &str,
        seconds: u64,
    ) -> ServiceClient {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "edgeshift-e2e-client"}},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "client",
                    "image": crate::WORKLOAD_IMAGE,
                    "imagePullPolicy": "Never",
                    "args": ["client", format!("{cluster_ip}:80"), RATE.to_string(), seconds.to_string()],
                }],
            }
        }))
        .expect("client pod");
        let _ = pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
        crate::wait_gone(&pods, name).await;
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create client pod");
        crate::wait_for(
            &format!("client pod {name} running"),
            Duration::from_secs(60),
            || async {
                pods.get(name)
                    .await
                    .ok()
                    .and_then(|p| p.status?.phase)
                    .is_some_and(|p| p == "Running")
            },
        )
        .await;
        ServiceClient {
            pods,
            name: name.to_string(),
        }
    }

    /// Every request so far, from the pod's log.
    pub async fn records(&self) -> Vec<Request> {
        let log = self
            .pods
            .logs(&self.name, &LogParams::default())
            .await
            .unwrap_or_default();
        parse_client_log(&log)
    }

    pub async fn stop(self) {
        let _ = self
            .pods
            .delete(&self.name, &DeleteParams::default().grace_period(0))
            .await;
    }
}

/// The workload client's lines, `<ms> ok <latency> {json}` or `<ms> err <latency> <why>`,
/// in the order the requests were sent (they finish, and are logged, in any order).
pub fn parse_client_log(log: &str) -> Vec<Request> {
    let mut r: Vec<Request> = log
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let at_ms = f.next()?.parse().ok()?;
            let ok = f.next()? == "ok";
            let latency_ms = f.next()?.parse().ok()?;
            let rest = f.next().unwrap_or("");
            let (target, node, error) = if ok {
                let (t, n) = parse_body(rest).unzip();
                (t, n, None)
            } else {
                (None, None, Some(rest.to_string()))
            };
            Some(Request {
                at_ms,
                target,
                node,
                error,
                latency_ms,
            })
        })
        .collect();
    r.sort_by_key(|q| q.at_ms);
    r
}

/// What a client saw of one outage.
#[derive(Debug, Default)]
pub struct Outage {
    /// First failed request → first of 20 consecutive successes after it (ms), if any failed.
    pub window_ms: Option<u64>,
    /// Failed requests in the whole recording.
    pub lost: usize,
    /// Answered requests that took `SLOW_MS` or more (a SYN retransmitted, or worse).
    pub slow: usize,
    pub total: usize,
    /// Targets that answered before the first failure, during the window, and after it.
    pub before: BTreeMap<String, usize>,
    pub during: BTreeMap<String, usize>,
    pub after: BTreeMap<String, usize>,
    /// The first few failures: when (ms since the Unix epoch) and why.
    pub first_errors: Vec<String>,
}

pub fn outage(records: &[Request]) -> Outage {
    let mut o = Outage {
        total: records.len(),
        lost: records.iter().filter(|r| r.target.is_none()).count(),
        slow: records
            .iter()
            .filter(|r| r.target.is_some() && r.latency_ms >= SLOW_MS)
            .count(),
        ..Outage::default()
    };
    o.first_errors = records
        .iter()
        .filter(|r| r.target.is_none())
        .take(5)
        .map(|r| format!("{} {}", r.at_ms, r.error.as_deref().unwrap_or("?")))
        .collect();
    let first_fail = records.iter().position(|r| r.target.is_none());
    let end = first_fail.and_then(|f| {
        let mut run = 0;
        for (i, r) in records.iter().enumerate().skip(f) {
            if r.target.is_some() {
                run += 1;
                if run == 20 {
                    return Some(i + 1 - 20);
                }
            } else {
                run = 0;
            }
        }
        None
    });
    if let (Some(f), Some(e)) = (first_fail, end) {
        o.window_ms = Some(records[e].at_ms.saturating_sub(records[f].at_ms));
    }
    for (i, r) in records.iter().enumerate() {
        let Some(t) = &r.target else { continue };
        let bucket = match (first_fail, end) {
            (Some(f), _) if i < f => &mut o.before,
            (Some(_), Some(e)) if i < e => &mut o.during,
            (Some(_), None) => &mut o.during,
            (None, _) => &mut o.before,
            _ => &mut o.after,
        };
        *bucket.entry(t.clone()).or_default() += 1;
    }
    o
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A request at `at_ms` answered by `target` on node `n1`, or refused when `None`.
    pub fn req(at_ms: u64, target: Option<&str>) -> Request {
        Request {
            at_ms,
            target: target.map(String::from),
            node: target.map(|_| "n1".to_string()),
            error: target.is_none().then(|| "refused".to_string()),
            latency_ms: 2,
        }
    }

    #[test]
    fn the_window_runs_from_the_first_failure_to_twenty_successes_in_a_row() {
        let mut r: Vec<Request> = (0..5).map(|i| req(i * 50, Some("aws-us-east-1"))).collect();
        r.extend((5..10).map(|i| req(i * 50, None)));
        r.push(req(500, Some("edge")));
        r.push(req(550, None));
        r.extend((12..40).map(|i| req(i * 50, Some("edge"))));
        let o = outage(&r);
        // failures from 250 ms; the run of 20 starts at 600 ms.
        assert_eq!(o.window_ms, Some(350));
        assert_eq!(o.lost, 6);
        assert_eq!(o.before.get("aws-us-east-1"), Some(&5));
        assert_eq!(o.during.get("edge"), Some(&1));
        assert_eq!(o.after.get("edge"), Some(&28));
    }

    #[test]
    fn no_failure_means_no_window() {
        let r: Vec<Request> = (0..30).map(|i| req(i, Some("edge"))).collect();
        let o = outage(&r);
        assert_eq!((o.window_ms, o.lost), (None, 0));
    }

    #[test]
    fn the_workload_client_log_parses() {
        // Logged as they finish: the slow first request after the second.
        let log = "1050 err 3100 connect: timed out\n1000 ok 1003 {\"target\":\"edge\",\"node\":\"n1\",\"pod\":\"p\"}\n";
        let r = parse_client_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].at_ms, 1000);
        assert_eq!(r[0].target.as_deref(), Some("edge"));
        assert_eq!(r[0].node.as_deref(), Some("n1"));
        assert_eq!(r[0].latency_ms, 1003);
        assert_eq!(r[1].target, None);
        assert_eq!(r[1].error.as_deref(), Some("connect: timed out"));
        let o = outage(&r);
        assert_eq!((o.lost, o.slow), (1, 1));
    }
}
