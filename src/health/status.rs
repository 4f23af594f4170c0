//! From one probe round to the CloudRegion status, its conditions, its Events, and whether the
//! status is worth writing. Pure: the controller supplies the round, the clock and the other
//! regions' verdicts, and does the writing.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::verdict::{nodes_pass, round_of, Checks, Round, Thresholds, Verdict};
use crate::api::conditions::{self, find_condition, ConditionStatus};
use crate::api::{CloudRegion, CloudRegionSpec, CloudRegionStatus, ProbeStatus, RegionPhase};

/// CloudRegion condition: edgeshift presumes itself cut off, so it judges nothing.
pub const PARTITIONED: &str = "Partitioned";
/// CloudRegion condition: `spec.drain` is set; workloads leave the region, probing goes on.
pub const DRAINING: &str = "Draining";
/// CloudRegion condition: every region of this region's provider is Down.
pub const PROVIDER_DOWN: &str = "ProviderDown";

/// Event reasons.
pub const REASON_REGION_DOWN: &str = "RegionDown";
pub const REASON_REGION_HEALTHY: &str = "RegionHealthy";
pub const REASON_REGION_DEGRADED: &str = "RegionDegraded";
pub const REASON_PARTITIONED: &str = "Partitioned";

/// One probe's result in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub name: String,
    pub ok: bool,
    pub latency: Duration,
    pub message: String,
}

/// Why edgeshift presumes itself partitioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionCause {
    /// Every `--canary` failed.
    CanariesFailing,
    /// Every probed region and every edge node look dead at once.
    EverythingUnreachable,
}

impl PartitionCause {
    pub fn reason(self) -> &'static str {
        match self {
            PartitionCause::CanariesFailing => "CanariesFailing",
            PartitionCause::EverythingUnreachable => "EverythingUnreachable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub cause: PartitionCause,
    pub message: String,
}

/// Whether edgeshift must presume itself partitioned this round.
///
/// - `canaries`: `None` without canaries, else whether every canary failed and what they said.
/// - `regions_dead`: every probed region's latest round failed by its own checks (this one's too).
/// - `edge_nodes`: (ready, total) edge nodes; all of them NotReady, and at least one, counts as
///   dead — with no edge nodes at all there is nothing to compare with, so no presumption.
pub fn presume_partition(
    canaries: Option<(bool, &str)>,
    regions_dead: bool,
    edge_nodes: (u32, u32),
) -> Option<Partition> {
    if let Some((true, message)) = canaries {
        return Some(Partition {
            cause: PartitionCause::CanariesFailing,
            message: message.to_string(),
        });
    }
    let (edge_ready, edge_total) = edge_nodes;
    (regions_dead && edge_total > 0 && edge_ready == 0).then(|| Partition {
        cause: PartitionCause::EverythingUnreachable,
        message: format!(
            "every probed region fails its checks and all {edge_total} edge nodes are NotReady"
        ),
    })
}

/// What one round of a region observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// One per `spec.probes[]`, in spec order.
    pub probes: Vec<ProbeReport>,
    pub ready_nodes: u32,
    pub total_nodes: u32,
    /// Set when edgeshift presumes itself partitioned during this round.
    pub partition: Option<Partition>,
}

impl RoundReport {
    pub fn checks(&self, spec: &CloudRegionSpec) -> Checks {
        Checks {
            probes: self.probes.iter().map(|p| p.ok).collect(),
            nodes: nodes_pass(
                self.ready_nodes,
                self.total_nodes,
                spec.node_readiness.min_ready_fraction,
            ),
        }
    }

    /// How the round counts by the region's own checks, partition aside.
    pub fn observed(&self, spec: &CloudRegionSpec) -> Round {
        round_of(&self.checks(spec), spec.quorum)
    }

    /// How the round counts toward the verdict.
    pub fn round(&self, spec: &CloudRegionSpec) -> Round {
        if self.partition.is_some() {
            Round::Inconclusive
        } else {
            self.observed(spec)
        }
    }

    /// What fails, in a person's words: `probe api: http://…: connection refused; 0/2 nodes Ready
    /// (minReadyFraction 0.5)`.
    fn failing(&self, spec: &CloudRegionSpec) -> String {
        let mut parts: Vec<String> = self
            .probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("probe {}: {}", p.name, p.message))
            .collect();
        if self.checks(spec).nodes == Some(false) {
            parts.push(format!(
                "{}/{} nodes Ready (minReadyFraction {})",
                self.ready_nodes, self.total_nodes, spec.node_readiness.min_ready_fraction
            ));
        }
        parts.join("; ")
    }

    fn passing(&self) -> String {
        let mut parts = Vec::new();
        if !self.probes.is_empty() {
            let ok = self.probes.iter().filter(|p| p.ok).count();
            parts.push(format!("{ok}/{} probes pass", self.probes.len()));
        }
        if self.total_nodes > 0 {
            parts.push(format!(
                "{}/{} nodes Ready",
                self.ready_nodes, self.total_nodes
            ));
        }
        parts.join("; ")
    }
}

/// Whether every region of a provider is Down, among the regions edgeshift probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderRollup {
    pub provider: String,
    /// The provider's regions (names), this one included.
    pub regions: Vec<String>,
    pub all_down: bool,
}

/// The roll-up for `provider` from `(name, provider, phase)` of every probed region.
pub fn provider_rollup<'a>(
    provider: &str,
    regions: impl IntoIterator<Item = (&'a str, &'a str, RegionPhase)>,
) -> ProviderRollup {
    let mut names = Vec::new();
    let mut all_down = true;
    for (name, p, phase) in regions {
        if p == provider {
            names.push(name.to_string());
            all_down &= phase == RegionPhase::Down;
        }
    }
    names.sort();
    ProviderRollup {
        provider: provider.to_string(),
        all_down: all_down && !names.is_empty(),
        regions: names,
    }
}

pub use crate::clock::whole_seconds as seconds;

/// The status after this round, from the status before it (the verdict's state).
pub fn next_status(
    region: &CloudRegion,
    previous: Option<&CloudRegionStatus>,
    report: &RoundReport,
    provider: &ProviderRollup,
    now: Timestamp,
) -> CloudRegionStatus {
    let spec = &region.spec;
    let thr = Thresholds::of(spec);
    let now = seconds(now);
    let before = Verdict::from_status(previous);
    let round = report.round(spec);
    let verdict = before.next(round, thr);
    let generation = region.metadata.generation;
    let last_transition_time = match previous.and_then(|p| p.last_transition_time.clone()) {
        Some(t) if previous.and_then(|p| p.phase) == Some(verdict.phase) => Some(t),
        _ => Some(Time(now)),
    };
    let mut status = CloudRegionStatus {
        phase: Some(verdict.phase),
        observed_generation: generation,
        probes: report
            .probes
            .iter()
            .map(|p| ProbeStatus {
                name: p.name.clone(),
                ok: p.ok,
                latency_millis: Some(u64::try_from(p.latency.as_millis()).unwrap_or(u64::MAX)),
                message: p.message.clone(),
                last_probe_time: Some(Time(now)),
            })
            .collect(),
        ready_nodes: Some(report.ready_nodes),
        total_nodes: Some(report.total_nodes),
        nodes: Some(format!("{}/{}", report.ready_nodes, report.total_nodes)),
        consecutive_failures: verdict.consecutive_failures,
        consecutive_successes: verdict.consecutive_successes,
        last_transition_time,
        conditions: previous.map(|p| p.conditions.clone()).unwrap_or_default(),
    };

    let (healthy, reason, message) = healthy_condition(spec, report, round, verdict, thr);
    let mut set = |type_: &str, status_: ConditionStatus, reason: &str, message: &str| {
        conditions::set_condition(
            &mut status.conditions,
            type_,
            status_,
            reason,
            message,
            generation,
            now,
        );
    };
    set(conditions::REGION_HEALTHY, healthy, reason, &message);
    match &report.partition {
        Some(p) => set(
            PARTITIONED,
            ConditionStatus::True,
            p.cause.reason(),
            &p.message,
        ),
        None => set(
            PARTITIONED,
            ConditionStatus::False,
            "Reachable",
            "edgeshift reaches its canaries and the cluster",
        ),
    }
    if spec.drain {
        set(
            DRAINING,
            ConditionStatus::True,
            "DrainRequested",
            "spec.drain is true: workloads leave the region as if it were lost; probing goes on",
        );
    } else {
        set(DRAINING, ConditionStatus::False, "NotDraining", "");
    }
    if provider.all_down {
        set(
            PROVIDER_DOWN,
            ConditionStatus::True,
            "AllRegionsDown",
            &format!(
                "every region of provider {} is Down: {}",
                provider.provider,
                provider.regions.join(", ")
            ),
        );
    } else {
        set(
            PROVIDER_DOWN,
            ConditionStatus::False,
            "NotAllRegionsDown",
            &format!("not every region of provider {} is Down", spec.provider),
        );
    }
    status
}

fn healthy_condition(
    spec: &CloudRegionSpec,
    report: &RoundReport,
    round: Round,
    verdict: Verdict,
    thr: Thresholds,
) -> (ConditionStatus, &'static str, String) {
    let recovering = |phase: &str| {
        format!(
            "{phase}; checks pass again ({}): Healthy after {} passed rounds in a row",
            report.passing(),
            thr.success
        )
    };
    match (verdict.phase, round) {
        (RegionPhase::Healthy, _) => (ConditionStatus::True, "ChecksPassing", report.passing()),
        (RegionPhase::Degraded, Round::Failed) => (
            ConditionStatus::False,
            "ChecksFailing",
            format!(
                "{}; Down after {} failed rounds in a row",
                report.failing(spec),
                thr.failure
            ),
        ),
        (RegionPhase::Degraded, _) => (
            ConditionStatus::False,
            "ChecksFailing",
            recovering("Degraded"),
        ),
        (RegionPhase::Down, Round::Failed) => {
            (ConditionStatus::False, "RegionDown", report.failing(spec))
        }
        (RegionPhase::Down, _) => (ConditionStatus::False, "RegionDown", recovering("Down")),
        (RegionPhase::Unknown, _) => match (&report.partition, round) {
            (Some(p), _) => (
                ConditionStatus::Unknown,
                "Partitioned",
                format!(
                    "no verdict while edgeshift presumes itself partitioned: {}",
                    p.message
                ),
            ),
            (None, Round::Inconclusive) => (
                ConditionStatus::Unknown,
                "NoSignals",
                format!("no probes and no Nodes match {}", selector_text(spec)),
            ),
            (None, _) => (
                ConditionStatus::Unknown,
                "Judging",
                format!(
                    "no verdict yet: Healthy after {} passed rounds in a row, Down after {} failed",
                    thr.success, thr.failure
                ),
            ),
        },
    }
}

fn selector_text(spec: &CloudRegionSpec) -> String {
    spec.effective_node_selector()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What of a status a person cares about: a status write is due when this changes. Latencies,
/// probe times and streaks beyond their threshold are left for the heartbeat.
#[derive(Debug, PartialEq)]
struct Significant<'a> {
    phase: Option<RegionPhase>,
    observed_generation: Option<i64>,
    probes: Vec<(&'a str, bool)>,
    nodes: (Option<u32>, Option<u32>),
    progress: (u32, u32),
    last_transition_time: Option<&'a Time>,
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
}

fn significant(s: &CloudRegionStatus, thr: Thresholds) -> Significant<'_> {
    Significant {
        phase: s.phase,
        observed_generation: s.observed_generation,
        probes: s.probes.iter().map(|p| (p.name.as_str(), p.ok)).collect(),
        nodes: (s.ready_nodes, s.total_nodes),
        progress: Verdict::from_status(Some(s)).progress(thr),
        last_transition_time: s.last_transition_time.as_ref(),
        conditions: &s.conditions,
    }
}

/// Whether `next` must be written, given what was last written (`None`: nothing yet).
pub fn write_needed(
    written: Option<&CloudRegionStatus>,
    next: &CloudRegionStatus,
    thr: Thresholds,
    heartbeat_due: bool,
) -> bool {
    match written {
        None => true,
        Some(old) => heartbeat_due || significant(old, thr) != significant(next, thr),
    }
}

/// When the written status was written, as far as it says: its newest probe time.
pub fn written_at(status: &CloudRegionStatus) -> Option<Timestamp> {
    status
        .probes
        .iter()
        .filter_map(|p| p.last_probe_time.as_ref().map(|t| t.0))
        .max()
}

/// An Event to publish about the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The Events that writing `next` over `written` tells: a new verdict, and the start of a
/// partition episode (one per region per episode).
pub fn events(
    name: &str,
    written: Option<&CloudRegionStatus>,
    next: &CloudRegionStatus,
) -> Vec<RegionEvent> {
    let mut out = Vec::new();
    let old_phase = written.and_then(|w| w.phase).unwrap_or_default();
    let new_phase = next.phase.unwrap_or_default();
    let why = find_condition(&next.conditions, conditions::REGION_HEALTHY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    if old_phase != new_phase {
        let event = |warning, reason, what: &str| RegionEvent {
            warning,
            reason,
            note: format!("CloudRegion {name} is {what} (was {old_phase}): {why}"),
        };
        match new_phase {
            RegionPhase::Down => out.push(event(true, REASON_REGION_DOWN, "Down")),
            RegionPhase::Healthy => out.push(event(false, REASON_REGION_HEALTHY, "Healthy")),
            RegionPhase::Degraded => out.push(event(true, REASON_REGION_DEGRADED, "Degraded")),
            RegionPhase::Unknown => {}
        }
    }
    let partitioned = |s: Option<&CloudRegionStatus>| {
        s.and_then(|s| find_condition(&s.conditions, PARTITIONED))
            .is_some_and(|c| c.status == "True")
    };
    if partitioned(Some(next)) && !partitioned(written) {
        let message = find_condition(&next.conditions, PARTITIONED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        out.push(RegionEvent {
            warning: true,
            reason: REASON_PARTITIONED,
            note: format!(
                "edgeshift presumes itself partitioned, so CloudRegion {name} is Unknown and nothing fails over: {message}"
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fixtures::at;
    use crate::api::{CloudRegion, HttpProbe, RegionProbe};

    fn region() -> CloudRegion {
        let mut r = CloudRegion::test("aws-us-east-1");
        r.spec.probes = vec![RegionProbe {
            name: "api".into(),
            http: Some(HttpProbe {
                url: "http://10.0.0.1/healthz".into(),
                expected_status: vec![200],
                timeout_millis: 1000,
            }),
            tcp: None,
        }];
        r.metadata.generation = Some(1);
        r
    }

    fn round(ok: bool, ready: u32) -> RoundReport {
        RoundReport {
            probes: vec![ProbeReport {
                name: "api".into(),
                ok,
                latency: Duration::from_millis(if ok { 3 } else { 1 }),
                message: if ok {
                    "http://10.0.0.1/healthz: status 200".into()
                } else {
                    "http://10.0.0.1/healthz: connection refused".into()
                },
            }],
            ready_nodes: ready,
            total_nodes: 2,
            partition: None,
        }
    }

    fn aws() -> ProviderRollup {
        provider_rollup("aws", [("aws-us-east-1", "aws", RegionPhase::Healthy)])
    }

    /// Runs rounds from `start`, one second apart, returning every status.
    fn run(
        r: &CloudRegion,
        start: Option<CloudRegionStatus>,
        rounds: &[RoundReport],
    ) -> Vec<CloudRegionStatus> {
        let mut prev = start;
        let mut out = Vec::new();
        for (i, rep) in rounds.iter().enumerate() {
            let next = next_status(r, prev.as_ref(), rep, &aws(), at(i as i64));
            out.push(next.clone());
            prev = Some(next);
        }
        out
    }

    fn condition<'a>(s: &'a CloudRegionStatus, t: &str) -> (&'a str, &'a str) {
        let c = find_condition(&s.conditions, t).expect("condition");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn a_new_region_reports_probes_nodes_and_becomes_healthy() {
        let r = region();
        let s = run(&r, None, &[round(true, 2), round(true, 2), round(true, 2)]);
        assert_eq!(s[0].phase, Some(RegionPhase::Unknown));
        assert_eq!(condition(&s[0], "Healthy"), ("Unknown", "Judging"));
        let last = &s[2];
        assert_eq!(last.phase, Some(RegionPhase::Healthy));
        assert_eq!(last.nodes.as_deref(), Some("2/2"));
        assert_eq!(last.probes[0].latency_millis, Some(3));
        assert_eq!(
            last.probes[0].message,
            "http://10.0.0.1/healthz: status 200"
        );
        assert_eq!(last.last_transition_time, Some(Time(at(2))));
        assert_eq!(condition(last, "Healthy"), ("True", "ChecksPassing"));
        assert_eq!(condition(last, PARTITIONED), ("False", "Reachable"));
        assert_eq!(condition(last, DRAINING), ("False", "NotDraining"));
        assert_eq!(
            condition(last, PROVIDER_DOWN),
            ("False", "NotAllRegionsDown")
        );
        assert_eq!(last.observed_generation, Some(1));
    }

    #[test]
    fn a_steady_region_is_written_only_on_heartbeats() {
        let r = region();
        let thr = Thresholds::of(&r.spec);
        let s = run(&r, None, &vec![round(true, 2); 10]);
        // Written when it became Healthy; the rounds after change only times and streaks.
        for next in &s[3..] {
            assert!(!write_needed(Some(&s[2]), next, thr, false));
            assert!(write_needed(Some(&s[2]), next, thr, true));
        }
        // Each of the first rounds moved something a person cares about.
        assert!(write_needed(None, &s[0], thr, false));
        assert!(write_needed(Some(&s[0]), &s[1], thr, false));
        assert!(write_needed(Some(&s[1]), &s[2], thr, false));
    }

    #[test]
    fn a_steady_down_region_is_quiet_too_but_a_node_coming_back_is_news() {
        let r = region();
        let thr = Thresholds::of(&r.spec);
        let s = run(&r, None, &vec![round(false, 0); 8]);
        assert_eq!(s[2].phase, Some(RegionPhase::Down));
        assert!(!write_needed(Some(&s[2]), &s[7], thr, false));
        let back = next_status(&r, Some(&s[7]), &round(false, 1), &aws(), at(9));
        assert!(write_needed(Some(&s[7]), &back, thr, false));
    }

    #[test]
    fn a_probe_flip_is_written_even_when_the_phase_holds() {
        let r = region();
        let thr = Thresholds::of(&r.spec);
        let s = run(&r, None, &[round(true, 2), round(true, 2), round(true, 2)]);
        let flip = next_status(&r, Some(&s[2]), &round(false, 2), &aws(), at(5));
        assert_eq!(flip.phase, Some(RegionPhase::Degraded));
        assert!(write_needed(Some(&s[2]), &flip, thr, false));
        // Each further failure moves the count toward Down: written.
        let again = next_status(&r, Some(&flip), &round(false, 2), &aws(), at(6));
        assert!(write_needed(Some(&flip), &again, thr, false));
    }

    #[test]
    fn down_and_back_tell_events_once() {
        let r = region();
        let mut rounds = vec![round(true, 2); 3];
        rounds.extend(vec![round(false, 0); 3]);
        rounds.extend(vec![round(true, 2); 3]);
        let s = run(&r, None, &rounds);
        let reasons = |i: usize| -> Vec<&str> {
            events("aws-us-east-1", Some(&s[i - 1]), &s[i])
                .into_iter()
                .map(|e| e.reason)
                .collect()
        };
        assert_eq!(reasons(2), ["RegionHealthy"]);
        assert_eq!(reasons(3), ["RegionDegraded"]);
        assert!(reasons(4).is_empty());
        assert_eq!(reasons(5), ["RegionDown"]);
        assert!(reasons(6).is_empty());
        assert!(reasons(7).is_empty());
        assert_eq!(reasons(8), ["RegionHealthy"]);
        let down = &events("aws-us-east-1", Some(&s[4]), &s[5])[0];
        assert!(down.warning);
        assert!(
            down.note
                .contains("probe api: http://10.0.0.1/healthz: connection refused")
                && down.note.contains("0/2 nodes Ready"),
            "{}",
            down.note
        );
        assert_eq!(s[5].last_transition_time, Some(Time(at(5))));
        assert_eq!(s[7].last_transition_time, Some(Time(at(5))));
    }

    #[test]
    fn a_partition_makes_the_verdict_unknown_with_one_event_per_episode() {
        let r = region();
        let healthy = run(&r, None, &vec![round(true, 2); 3]);
        let partitioned = |ok| RoundReport {
            partition: Some(Partition {
                cause: PartitionCause::CanariesFailing,
                message: "all 1 canaries fail: http://127.0.0.1:9/: connection refused".into(),
            }),
            ..round(ok, 0)
        };
        let s = run(
            &r,
            Some(healthy[2].clone()),
            &[
                partitioned(false),
                partitioned(false),
                partitioned(false),
                partitioned(false),
            ],
        );
        for st in &s {
            assert_eq!(st.phase, Some(RegionPhase::Unknown));
            assert_eq!((st.consecutive_failures, st.consecutive_successes), (0, 0));
            assert_eq!(condition(st, PARTITIONED), ("True", "CanariesFailing"));
            assert_eq!(condition(st, "Healthy"), ("Unknown", "Partitioned"));
        }
        let first = events("r", Some(&healthy[2]), &s[0]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, REASON_PARTITIONED);
        assert!(events("r", Some(&s[0]), &s[3]).is_empty());
        let thr = Thresholds::of(&r.spec);
        assert!(!write_needed(Some(&s[0]), &s[3], thr, false));
    }

    #[test]
    fn edgeshift_presumes_itself_partitioned_when_canaries_or_everything_fail() {
        let canaries = Some((
            true,
            "all 1 canaries fail: tcp://10.0.0.1:443: timed out after 1s",
        ));
        let p = presume_partition(canaries, false, (6, 6)).expect("partitioned");
        assert_eq!(p.cause, PartitionCause::CanariesFailing);
        assert!(p.message.contains("tcp://10.0.0.1:443"));
        // One canary answering is enough.
        assert_eq!(presume_partition(Some((false, "")), false, (6, 6)), None);
        // Every region and every edge node dead at once.
        let p = presume_partition(None, true, (0, 6)).expect("partitioned");
        assert_eq!(p.cause, PartitionCause::EverythingUnreachable);
        assert_eq!(
            p.message,
            "every probed region fails its checks and all 6 edge nodes are NotReady"
        );
        assert_eq!(
            presume_partition(Some((false, "")), true, (0, 6)).map(|p| p.cause),
            Some(PartitionCause::EverythingUnreachable)
        );
        // A live edge node, a live region, or no edge nodes to compare with: a real outage.
        assert_eq!(presume_partition(None, true, (1, 6)), None);
        assert_eq!(presume_partition(None, false, (0, 6)), None);
        assert_eq!(presume_partition(None, true, (0, 0)), None);
    }

    #[test]
    fn drain_and_provider_rollup_are_conditions() {
        let mut r = region();
        r.spec.drain = true;
        let all_down = provider_rollup(
            "aws",
            [
                ("aws-us-east-1", "aws", RegionPhase::Down),
                ("aws-us-west-2", "aws", RegionPhase::Down),
                ("gcp-europe-west1", "gcp", RegionPhase::Healthy),
            ],
        );
        assert!(all_down.all_down);
        assert_eq!(all_down.regions, ["aws-us-east-1", "aws-us-west-2"]);
        let s = next_status(&r, None, &round(true, 2), &all_down, at(0));
        assert_eq!(condition(&s, DRAINING), ("True", "DrainRequested"));
        assert_eq!(condition(&s, PROVIDER_DOWN), ("True", "AllRegionsDown"));
        let one_up = provider_rollup(
            "aws",
            [
                ("aws-us-east-1", "aws", RegionPhase::Down),
                ("aws-us-west-2", "aws", RegionPhase::Degraded),
            ],
        );
        assert!(!one_up.all_down);
        assert!(!provider_rollup("aws", []).all_down);
    }

    #[test]
    fn a_region_without_probes_or_nodes_is_unknown() {
        let mut r = region();
        r.spec.probes.clear();
        let nothing = RoundReport::default();
        let s = next_status(&r, None, &nothing, &aws(), at(0));
        assert_eq!(s.phase, Some(RegionPhase::Unknown));
        let c = find_condition(&s.conditions, "Healthy").expect("Healthy");
        assert_eq!(c.reason, "NoSignals");
        assert!(
            c.message
                .contains("topology.kubernetes.io/region=us-east-1"),
            "{}",
            c.message
        );
    }

    #[test]
    fn written_at_is_the_newest_probe_time() {
        let r = region();
        let s = run(&r, None, &[round(true, 2), round(true, 2)]);
        assert_eq!(written_at(&s[1]), Some(at(1)));
        assert_eq!(written_at(&CloudRegionStatus::default()), None);
    }
}
