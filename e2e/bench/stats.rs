//! Pure helpers of the benchmark driver: summaries of runs, quantiles from the operator's
//! Prometheus histograms, API server audit lines, and /proc memory figures. Unit-tested by
//! `cargo test --features e2e --test bench-stats` (part of `make unit`).
#![allow(dead_code)]

/// Median, min and max of a figure's runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// `None` for no runs; the median of an even count is the mean of the middle two.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        runs: n,
    })
}

/// Cumulative histogram buckets `(upper bound, count)` of `name` (e.g.
/// `edgeshift_decision_latency_seconds`) from an OpenMetrics/Prometheus text exposition.
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| {
            let le_at = l.find("le=\"")? + 4;
            let le_end = le_at + l[le_at..].find('"')?;
            let le = match &l[le_at..le_end] {
                "+Inf" => f64::INFINITY,
                s => s.parse().ok()?,
            };
            let count = l.rsplit(' ').next()?.trim().parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Buckets of `after` minus those of `before` (what happened between two scrapes).
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - b)
        })
        .collect()
}

/// The q-quantile (0..1) of cumulative buckets, interpolated linearly within the bucket as
/// Prometheus' histogram_quantile does; `None` without observations. Observations above the
/// last finite bound report that bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = count - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

/// One write as the API server's audit log records it (JSON lines, Metadata level).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditWrite {
    pub user: String,
    pub user_agent: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    /// Unix milliseconds of requestReceivedTimestamp.
    pub received_ms: i64,
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// A completed write (`stage: ResponseComplete`) from one audit line; `None` for anything else.
pub fn parse_audit_line(line: &str) -> Option<AuditWrite> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("stage")?.as_str()? != "ResponseComplete" {
        return None;
    }
    let verb = v.get("verb")?.as_str()?.to_string();
    if !WRITE_VERBS.contains(&verb.as_str()) {
        return None;
    }
    let s = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let received: k8s_openapi::jiff::Timestamp = s("/requestReceivedTimestamp").parse().ok()?;
    Some(AuditWrite {
        user: s("/user/username"),
        user_agent: s("/userAgent"),
        verb,
        resource: s("/objectRef/resource"),
        subresource: s("/objectRef/subresource"),
        namespace: s("/objectRef/namespace"),
        received_ms: received.as_millisecond(),
    })
}

/// A `/proc/<pid>/status` field in kB (e.g. `VmRSS`, `VmHWM`), as MiB.
pub fn proc_status_mib(status: &str, field: &str) -> Option<f64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `/proc/<pid>/task/<tid>/schedstat`: nanoseconds the thread ran on a CPU, and nanoseconds it
/// waited, runnable, for one.
pub fn schedstat_ns(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace();
    let run = fields.next()?.parse().ok()?;
    let wait = fields.next()?.parse().ok()?;
    Some((run, wait))
}

#[cfg(test)]
mod tests {
    #[allow(unused_imports)] // the bench binary (harness = false) compiles these tests too
    use super::*;

    #[test]
    fn summaries_take_the_middle_and_the_extremes() {
        assert_eq!(summarize(&[]), None);
        let s = summarize(&[3.0, 1.0, 2.0]).expect("summary");
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0, f64::NAN]).expect("summary");
        assert_eq!((s.median, s.runs), (2.5, 4));
    }

    const METRICS: &str = "# TYPE edgeshift_decision_latency_seconds histogram
edgeshift_decision_latency_seconds_sum 1.5
edgeshift_decision_latency_seconds_count 10
edgeshift_decision_latency_seconds_bucket{le=\"0.01\"} 0
edgeshift_decision_latency_seconds_bucket{le=\"0.02\"} 5
edgeshift_decision_latency_seconds_bucket{le=\"0.04\"} 9
edgeshift_decision_latency_seconds_bucket{le=\"+Inf\"} 10
edgeshift_reconciles_total{kind=\"EdgeService\"} 3
";

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        let b = histogram_buckets(METRICS, "edgeshift_decision_latency_seconds");
        assert_eq!(b.len(), 4);
        assert_eq!(b[3], (f64::INFINITY, 10.0));
        let p50 = quantile(&b, 0.5).expect("p50");
        assert!((p50 - 0.02).abs() < 1e-9, "{p50}");
        let p80 = quantile(&b, 0.8).expect("p80");
        assert!((p80 - 0.035).abs() < 1e-9, "{p80}");
        // Beyond the last finite bound: that bound.
        assert_eq!(quantile(&b, 0.99), Some(0.04));
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn bucket_deltas_leave_only_the_new_observations() {
        let before = vec![(0.01, 1.0), (f64::INFINITY, 2.0)];
        let after = vec![(0.01, 4.0), (f64::INFINITY, 6.0)];
        assert_eq!(
            bucket_delta(&before, &after),
            vec![(0.01, 3.0), (f64::INFINITY, 4.0)]
        );
    }

    #[test]
    fn audit_lines_yield_completed_writes_only() {
        let patch = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","verb":"patch","user":{"username":"edgeshift","groups":["system:masters"]},"userAgent":"edgeshift/0.1.0","objectRef":{"resource":"deployments","namespace":"bench-mass","name":"a-edge","apiGroup":"apps"},"requestReceivedTimestamp":"2026-11-24T10:00:00.250000Z"}"#;
        let w = parse_audit_line(patch).expect("a write");
        assert_eq!(
            (
                w.user.as_str(),
                w.verb.as_str(),
                w.resource.as_str(),
                w.namespace.as_str()
            ),
            ("edgeshift", "patch", "deployments", "bench-mass")
        );
        assert_eq!(w.user_agent, "edgeshift/0.1.0");
        assert_eq!(w.received_ms % 1000, 250);
        let status = patch.replace(
            "\"name\":\"a-edge\"",
            "\"name\":\"a\",\"subresource\":\"status\"",
        );
        assert_eq!(
            parse_audit_line(&status).expect("write").subresource,
            "status"
        );
        assert!(parse_audit_line(&patch.replace("ResponseComplete", "RequestReceived")).is_none());
        assert!(parse_audit_line(&patch.replace("\"patch\"", "\"get\"")).is_none());
        assert!(parse_audit_line("not json").is_none());
    }

    #[test]
    fn proc_status_fields_read_as_mib() {
        let status = "Name:\tedgeshift\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(proc_status_mib(status, "VmRSS"), Some(40.0));
        assert_eq!(proc_status_mib(status, "VmHWM"), Some(80.0));
        assert_eq!(proc_status_mib(status, "VmSwap"), None);
    }

    #[test]
    fn schedstat_gives_run_and_wait_time() {
        assert_eq!(
            schedstat_ns("1520000000 430000000 812\n"),
            Some((1_520_000_000, 430_000_000))
        );
        assert_eq!(schedstat_ns(""), None);
        assert_eq!(schedstat_ns("12 x 3"), None);
    }
}
