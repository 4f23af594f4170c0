//! Probes: one HTTP(S) GET or TCP connect with a deadline, and a message a person can act on
//! (`http://10.0.0.1/healthz: connection refused`, `timed out after 1s`,
//! `status 503, expected [200]`). The only I/O of the health module.

use std::time::{Duration, Instant};

use crate::api::RegionProbe;

/// How long a canary may take to answer.
pub const CANARY_TIMEOUT: Duration = Duration::from_secs(1);

/// Something to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// GET `url`; the response status must be one of `expected_status` (any status when empty:
    /// an answer is all a canary needs).
    Http {
        url: String,
        expected_status: Vec<u16>,
        timeout: Duration,
    },
    /// Connect to `host:port`.
    Tcp {
        host: String,
        port: u16,
        timeout: Duration,
    },
}

impl Target {
    /// The target of a `spec.probes[]` entry; `None` when it sets neither `http` nor `tcp` (the
    /// schema forbids that).
    pub fn of(probe: &RegionProbe) -> Option<Target> {
        if let Some(http) = &probe.http {
            return Some(Target::Http {
                url: http.url.clone(),
                expected_status: http.expected_status.clone(),
                timeout: Duration::from_millis(u64::from(http.timeout_millis)),
            });
        }
        probe.tcp.as_ref().map(|tcp| Target::Tcp {
            host: tcp.host.clone(),
            port: tcp.port,
            timeout: Duration::from_millis(u64::from(tcp.timeout_millis)),
        })
    }

    /// A canary from `edgeshift run --canary`: `http://...`, `https://...` or `tcp://host:port`.
    pub fn canary(spec: &str) -> Result<Target, String> {
        let url = reqwest::Url::parse(spec).map_err(|e| format!("canary {spec:?}: {e}"))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("canary {spec:?}: no host"))?;
        match url.scheme() {
            "http" | "https" => Ok(Target::Http {
                url: spec.to_string(),
                expected_status: Vec::new(),
                timeout: CANARY_TIMEOUT,
            }),
            "tcp" => {
                let port = url
                    .port()
                    .ok_or_else(|| format!("canary {spec:?}: tcp:// needs a port (tcp://host:port)"))?;
                Ok(Target::Tcp {
                    host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
                    port,
                    timeout: CANARY_TIMEOUT,
                })
            }
            other => Err(format!(
                "canary {spec:?}: scheme {other}:// is not supported (use http://, https:// or tcp://host:port)"
            )),
        }
    }

    /// The target as a person would write it: the URL, or `tcp://host:port`.
    pub fn address(&self) -> String {
        match self {
            Target::Http { url, .. } => url.clone(),
            Target::Tcp { host, port, .. } if host.contains(':') => {
                format!("tcp://[{host}]:{port}")
            }
            Target::Tcp { host, port, .. } => format!("tcp://{host}:{port}"),
        }
    }

    pub fn timeout(&self) -> Duration {
        match self {
            Target::Http { timeout, .. } | Target::Tcp { timeout, .. } => *timeout,
        }
    }
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub latency: Duration,
    /// `<address>: <what happened>`.
    pub message: String,
}

/// Runs probes. Cheap to clone; one per operator.
#[derive(Clone, Debug)]
pub struct Prober {
    http: reqwest::Client,
}

impl Prober {
    pub fn new() -> Result<Prober, String> {
        let http = reqwest::Client::builder()
            // A probe asks whether *we* reach the region, not whether a proxy does.
            .no_proxy()
            // A fresh connection each time, as the kubelet's probes do: a pooled connection
            // would hide a dead listener or load balancer until it is reused.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("edgeshift-prober/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client for probes: {}", error_chain(&e)))?;
        Ok(Prober { http })
    }

    pub async fn probe(&self, target: &Target) -> Outcome {
        let start = Instant::now();
        let timeout = target.timeout();
        let result = match target {
            Target::Http {
                url,
                expected_status,
                ..
            } => {
                let request = self.http.get(url).timeout(timeout).send();
                match tokio::time::timeout(timeout, request).await {
                    Err(_) => Err(format!("timed out after {}", human(timeout))),
                    Ok(Err(e)) => Err(describe_http_error(&e, timeout)),
                    Ok(Ok(response)) => {
                        let status = response.status().as_u16();
                        if expected_status.is_empty() || expected_status.contains(&status) {
                            Ok(format!("status {status}"))
                        } else {
                            Err(format!("status {status}, expected {expected_status:?}"))
                        }
                    }
                }
            }
            Target::Tcp { host, port, .. } => {
                let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
                match tokio::time::timeout(timeout, connect).await {
                    Err(_) => Err(format!("timed out after {}", human(timeout))),
                    Ok(Err(e)) => Err(describe_io_error(&e)),
                    Ok(Ok(_stream)) => Ok("connected".to_string()),
                }
            }
        };
        let latency = start.elapsed();
        let (ok, what) = match result {
            Ok(what) => (true, what),
            Err(what) => (false, what),
        };
        Outcome {
            ok,
            latency,
            message: format!("{}: {what}", target.address()),
        }
    }
}

/// `1s`, `1.5s`, `250ms`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

fn describe_http_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", human(timeout));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return describe_io_error(io);
        }
        source = err.source();
    }
    error_chain(e)
}

fn describe_io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_string(),
        ConnectionReset => "connection reset".to_string(),
        ConnectionAborted => "connection aborted".to_string(),
        TimedOut => "timed out".to_string(),
        HostUnreachable => "host unreachable".to_string(),
        NetworkUnreachable => "network unreachable".to_string(),
        AddrNotAvailable => "address not available".to_string(),
        _ => strip_os_error(&e.to_string()),
    }
}

/// `failed to lookup address information: Name or service not known`, without `(os error 2)`.
fn strip_os_error(text: &str) -> String {
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// The error and its causes, `outer: inner: innermost`, skipping repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let text = strip_os_error(&err.to_string());
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HttpProbe, TcpProbe};

    #[test]
    fn canaries_parse() {
        assert_eq!(
            Target::canary("tcp://10.0.0.1:443"),
            Ok(Target::Tcp {
                host: "10.0.0.1".into(),
                port: 443,
                timeout: CANARY_TIMEOUT
            })
        );
        assert_eq!(
            Target::canary("tcp://[::1]:53").map(|t| t.address()),
            Ok("tcp://[::1]:53".to_string())
        );
        assert_eq!(
            Target::canary("https://example.com/").map(|t| t.address()),
            Ok("https://example.com/".to_string())
        );
        for bad in ["tcp://host", "udp://h:1", "example.com", "http://"] {
            assert!(Target::canary(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn probe_targets_come_from_the_spec() {
        let probe = RegionProbe {
            name: "api".into(),
            http: Some(HttpProbe {
                url: "http://10.0.0.1/healthz".into(),
                expected_status: vec![200, 204],
                timeout_millis: 1500,
            }),
            tcp: None,
        };
        assert_eq!(
            Target::of(&probe),
            Some(Target::Http {
                url: "http://10.0.0.1/healthz".into(),
                expected_status: vec![200, 204],
                timeout: Duration::from_millis(1500)
            })
        );
        let probe = RegionProbe {
            name: "db".into(),
            http: None,
            tcp: Some(TcpProbe {
                host: "db".into(),
                port: 5432,
                timeout_millis: 100,
            }),
        };
        assert_eq!(
            Target::of(&probe).map(|t| t.address()),
            Some("tcp://db:5432".into())
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_secs(1)), "1s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    /// A listener that answers every request with `status`, on a free local port.
    async fn http_server(status: u16) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (format!("http://{addr}/healthz"), task)
    }

    fn http(url: &str, expected: &[u16], timeout_ms: u64) -> Target {
        Target::Http {
            url: url.into(),
            expected_status: expected.to_vec(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// A local port nothing listens on.
    async fn closed_port() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn http_probes_say_what_happened() {
        let prober = Prober::new().expect("prober");
        let (url, server) = http_server(200).await;
        let ok = prober.probe(&http(&url, &[200], 1000)).await;
        assert!(ok.ok, "{ok:?}");
        assert_eq!(ok.message, format!("{url}: status 200"));

        let bad = prober.probe(&http(&url, &[204], 1000)).await;
        assert!(!bad.ok);
        assert_eq!(bad.message, format!("{url}: status 200, expected [204]"));
        server.abort();

        let (url, server) = http_server(503).await;
        let canary = prober.probe(&http(&url, &[], 1000)).await;
        assert!(canary.ok, "any answer will do for a canary: {canary:?}");
        server.abort();

        let port = closed_port().await;
        let refused_url = format!("http://127.0.0.1:{port}/healthz");
        let refused = prober.probe(&http(&refused_url, &[200], 1000)).await;
        assert!(!refused.ok);
        assert_eq!(
            refused.message,
            format!("{refused_url}: connection refused")
        );
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out() {
        // Accepts connections but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let prober = Prober::new().expect("prober");
        let out = prober.probe(&http(&url, &[200], 200)).await;
        assert!(!out.ok);
        assert_eq!(out.message, format!("{url}: timed out after 200ms"));
        assert!(
            out.latency < Duration::from_millis(600),
            "{:?}",
            out.latency
        );
        drop(listener);
    }

    #[tokio::test]
    async fn tcp_probes_connect() {
        let prober = Prober::new().expect("prober");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_secs(1),
        };
        let out = prober.probe(&target).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.message, format!("tcp://127.0.0.1:{port}: connected"));
        drop(listener);
        let port = closed_port().await;
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_secs(1),
        };
        let out = prober.probe(&target).await;
        assert!(!out.ok);
        assert_eq!(
            out.message,
            format!("tcp://127.0.0.1:{port}: connection refused")
        );
    }
}
