//! Prometheus metrics (prometheus-client), served at `/metrics`.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `EdgeService`, `CloudRegion` or `EdgeNode`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    /// `Error::metric_label()`.
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub region: String,
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub region: String,
    pub probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub namespace: String,
    pub edgeservice: String,
    /// A region name or `edge`.
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    /// Regions the workload left, comma-separated.
    pub from: String,
}

/// Every metric edgeshift exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciles: Family<KindLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// 0 Healthy, 1 Degraded, 2 Down, 3 Unknown.
    pub region_verdict: Family<RegionLabels, Gauge>,
    pub probe_latency: Family<ProbeLabels, Histogram>,
    pub failovers: Family<FailoverLabels, Counter>,
    /// Seconds from detection until the substitutes were ready.
    pub failover_duration: Histogram,
    /// Seconds from a region verdict change (as this process first saw it) to the first child
    /// write it caused.
    pub decision_latency: Histogram,
    pub replicas: Family<TargetLabels, Gauge>,
    pub is_leader: Gauge,
    /// When this process first saw each region's current verdict (prober or watch).
    verdicts: Mutex<HashMap<String, VerdictSeen>>,
}

/// A region's verdict and when this process first saw it.
#[derive(Clone, Copy, Debug)]
struct VerdictSeen {
    verdict: i64,
    at: Instant,
    /// Seen as it already was (start-up, a new leader): no change to time from.
    initial: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("edgeshift");
        let reconciles = Family::<KindLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let region_verdict = Family::<RegionLabels, Gauge>::default();
        let probe_latency = Family::<ProbeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 12))
        });
        let failovers = Family::<FailoverLabels, Counter>::default();
        let failover_duration = Histogram::new(exponential_buckets(0.5, 2.0, 10));
        // 1 ms .. 3.5 min in steps of 25 %: a mass failover's last services wait tens of
        // seconds, and doubling buckets made its p99 read as the next power of two.
        let decision_latency = Histogram::new(exponential_buckets(0.001, 1.25, 56));
        let replicas = Family::<TargetLabels, Gauge>::default();
        let is_leader = Gauge::default();
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            reconcile_duration.clone(),
        );
        registry.register(
            "region_verdict",
            "Region verdict: 0 Healthy, 1 Degraded, 2 Down, 3 Unknown",
            region_verdict.clone(),
        );
        registry.register(
            "probe_latency_seconds",
            "Region probe latency",
            probe_latency.clone(),
        );
        registry.register(
            "failovers",
            "Failovers started, by lost regions",
            failovers.clone(),
        );
        registry.register(
            "failover_duration_seconds",
            "Seconds from a region's loss to ready substitutes",
            failover_duration.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Seconds from a region verdict change to the first child write it caused",
            decision_latency.clone(),
        );
        registry.register(
            "replicas",
            "Desired replicas per EdgeService target",
            replicas.clone(),
        );
        registry.register(
            "leader",
            "1 while this process is the leader",
            is_leader.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            reconciles,
            reconcile_errors,
            reconcile_duration,
            region_verdict,
            probe_latency,
            failovers,
            failover_duration,
            decision_latency,
            replicas,
            is_leader,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Notes a region's verdict (0 Healthy .. 3 Unknown, as `region_verdict`), from the prober
    /// as it decides or from the CloudRegion watch, whichever comes first.
    pub fn note_verdict(&self, region: &str, verdict: i64) {
        self.note_verdict_at(region, verdict, Instant::now());
    }

    fn note_verdict_at(&self, region: &str, verdict: i64, at: Instant) {
        let mut seen = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(region) {
            Some(v) if v.verdict == verdict => {}
            Some(v) => {
                *v = VerdictSeen {
                    verdict,
                    at,
                    initial: false,
                }
            }
            None => {
                seen.insert(
                    region.to_string(),
                    VerdictSeen {
                        verdict,
                        at,
                        initial: true,
                    },
                );
            }
        }
    }

    /// When the earliest of `regions`' current verdicts changed, unless none was seen changing.
    pub fn verdict_changed_at<'a>(
        &self,
        regions: impl IntoIterator<Item = &'a str>,
    ) -> Option<Instant> {
        let seen = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        regions
            .into_iter()
            .filter_map(|r| seen.get(r))
            .filter(|v| !v.initial)
            .map(|v| v.at)
            .min()
    }

    /// Runs one reconcile of `kind`, counting it and timing it.
    pub async fn reconcile<T>(
        &self,
        kind: &str,
        reconcile: impl std::future::Future<Output = T>,
    ) -> T {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        let started = std::time::Instant::now();
        let result = reconcile.await;
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_registered_families() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&KindLabels {
                kind: "EdgeService".into(),
            })
            .inc();
        m.failover_duration.observe(3.5);
        m.decision_latency.observe(0.004);
        let text = m.encode();
        assert!(
            text.contains("edgeshift_reconciles_total{kind=\"EdgeService\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edgeshift_failover_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("edgeshift_decision_latency_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn a_verdict_change_is_timed_from_when_it_was_first_seen_never_from_start_up() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let later = |ms| t0 + std::time::Duration::from_millis(ms);
        m.note_verdict_at("east", 0, t0);
        assert_eq!(
            m.verdict_changed_at(["east"]),
            None,
            "start-up is no change"
        );
        m.note_verdict_at("east", 2, later(100));
        m.note_verdict_at("east", 2, later(300));
        assert_eq!(m.verdict_changed_at(["east"]), Some(later(100)));
        m.note_verdict_at("west", 1, later(50));
        m.note_verdict_at("west", 2, later(200));
        assert_eq!(
            m.verdict_changed_at(["east", "west", "gone"]),
            Some(later(100))
        );
    }
}
