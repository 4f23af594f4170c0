//! The verdict of a region, as a pure function of its probe rounds: which checks fail a round
//! (quorum), and how many rounds in a row move the phase (hysteresis). No I/O, no clock.
//!
//! The state a verdict needs is exactly what CloudRegion status holds (`phase`,
//! `consecutiveFailures`, `consecutiveSuccesses`), so a restarted operator or a new leader
//! continues from the status alone.

use crate::api::{CloudRegionSpec, CloudRegionStatus, Quorum, RegionPhase};

/// What the checks of one round say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Whether each `spec.probes[]` passed, in spec order.
    pub probes: Vec<bool>,
    /// Whether enough of the region's Nodes are Ready; `None` when the region has no Nodes.
    pub nodes: Option<bool>,
}

/// How one round counts toward the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Round {
    Passed,
    Failed,
    /// Nothing can be concluded: edgeshift is presumed partitioned itself, or the region has
    /// neither probes nor Nodes. The phase becomes `Unknown` and both counts restart.
    Inconclusive,
}

/// Whether the probes fail by `quorum`; `None` when there are no probes (they have no say).
pub fn probes_fail(probes: &[bool], quorum: Quorum) -> Option<bool> {
    if probes.is_empty() {
        return None;
    }
    let failing = probes.iter().filter(|ok| !**ok).count();
    Some(match quorum {
        Quorum::Any => failing >= 1,
        Quorum::Majority => 2 * failing > probes.len(),
        Quorum::All => failing == probes.len(),
    })
}

/// How a round counts: it fails when its probes fail by `quorum`, or when too few of its Nodes
/// are Ready (Node readiness is a separate signal, as `nodeReadiness.minReadyFraction` says: "must
/// be Ready for a round to pass"). A round with neither probes nor Nodes is inconclusive.
pub fn round_of(checks: &Checks, quorum: Quorum) -> Round {
    match (probes_fail(&checks.probes, quorum), checks.nodes) {
        (None, None) => Round::Inconclusive,
        (probes, nodes) => {
            if probes == Some(true) || nodes == Some(false) {
                Round::Failed
            } else {
                Round::Passed
            }
        }
    }
}

/// Whether `ready` of `total` Nodes meet `min_ready_fraction`; `None` when there are no Nodes.
pub fn nodes_pass(ready: u32, total: u32, min_ready_fraction: f64) -> Option<bool> {
    if total == 0 {
        return None;
    }
    // The schema keeps the fraction in [0, 1]; a value that slipped past it means the default.
    let fraction = if min_ready_fraction.is_nan() {
        0.5
    } else {
        min_ready_fraction.clamp(0.0, 1.0)
    };
    Some(f64::from(ready.min(total)) / f64::from(total) >= fraction)
}

/// Rounds in a row that move the phase; both at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
}

impl Thresholds {
    pub fn new(failure: u32, success: u32) -> Self {
        Thresholds {
            failure: failure.max(1),
            success: success.max(1),
        }
    }

    pub fn of(spec: &CloudRegionSpec) -> Self {
        Thresholds::new(spec.failure_threshold, spec.success_threshold)
    }
}

/// The verdict and the counts it was reached with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub phase: RegionPhase,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
}

impl Default for Verdict {
    /// A region edgeshift has not judged yet.
    fn default() -> Self {
        Verdict {
            phase: RegionPhase::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
        }
    }
}

impl Verdict {
    /// The verdict a status carries (a new region's is `Unknown` with no counts).
    pub fn from_status(status: Option<&CloudRegionStatus>) -> Self {
        status.map_or_else(Verdict::default, |s| Verdict {
            phase: s.phase.unwrap_or_default(),
            consecutive_failures: s.consecutive_failures,
            consecutive_successes: s.consecutive_successes,
        })
    }

    /// The verdict after one more round.
    ///
    /// - `failure` failed rounds in a row make any region `Down`; fewer make a `Healthy` region
    ///   `Degraded` and leave the others as they are.
    /// - `success` passed rounds in a row make any region `Healthy`; fewer leave it as it is, so a
    ///   `Degraded` region, like a `Down` or `Unknown` one, needs the full streak to recover.
    /// - An inconclusive round makes it `Unknown` and restarts both counts.
    pub fn next(self, round: Round, thresholds: Thresholds) -> Verdict {
        match round {
            Round::Inconclusive => Verdict::default(),
            Round::Failed => {
                let failures = self.consecutive_failures.saturating_add(1);
                let phase = if failures >= thresholds.failure {
                    RegionPhase::Down
                } else if self.phase == RegionPhase::Healthy {
                    RegionPhase::Degraded
                } else {
                    self.phase
                };
                Verdict {
                    phase,
                    consecutive_failures: failures,
                    consecutive_successes: 0,
                }
            }
            Round::Passed => {
                let successes = self.consecutive_successes.saturating_add(1);
                let phase = if successes >= thresholds.success {
                    RegionPhase::Healthy
                } else {
                    self.phase
                };
                Verdict {
                    phase,
                    consecutive_failures: 0,
                    consecutive_successes: successes,
                }
            }
        }
    }

    /// The counts a person (and the next decision) cares about: streaks beyond their threshold
    /// change nothing, so a steady region's growing streak is no reason to write its status.
    pub fn progress(&self, thresholds: Thresholds) -> (u32, u32) {
        (
            self.consecutive_failures.min(thresholds.failure),
            self.consecutive_successes.min(thresholds.success),
        )
    }
}

/// The verdict after `rounds`, starting from `start`.
pub fn judge(start: Verdict, rounds: impl IntoIterator<Item = Round>, thr: Thresholds) -> Verdict {
    rounds.into_iter().fold(start, |v, r| v.next(r, thr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Round::{Failed as F, Inconclusive as I, Passed as P};

    const DEFAULT: Thresholds = Thresholds {
        failure: 3,
        success: 3,
    };

    fn phases(start: Verdict, rounds: &[Round]) -> Vec<RegionPhase> {
        rounds
            .iter()
            .scan(start, |v, r| {
                *v = v.next(*r, DEFAULT);
                Some(v.phase)
            })
            .collect()
    }

    fn healthy() -> Verdict {
        judge(Verdict::default(), [P, P, P], DEFAULT)
    }

    use RegionPhase::{Degraded, Down, Healthy, Unknown};

    #[test]
    fn a_new_region_is_unknown_until_a_full_streak() {
        assert_eq!(
            phases(Verdict::default(), &[P, P, P]),
            [Unknown, Unknown, Healthy]
        );
        assert_eq!(
            phases(Verdict::default(), &[F, F, F]),
            [Unknown, Unknown, Down]
        );
        assert_eq!(
            phases(Verdict::default(), &[P, F, P, P, P]),
            [Unknown, Unknown, Unknown, Unknown, Healthy]
        );
    }

    #[test]
    fn failures_below_the_threshold_degrade_a_healthy_region() {
        assert_eq!(
            phases(healthy(), &[F, F, P, P, P]),
            [Degraded, Degraded, Degraded, Degraded, Healthy]
        );
        assert_eq!(phases(healthy(), &[F, F, F]), [Degraded, Degraded, Down]);
    }

    #[test]
    fn a_down_region_needs_a_full_streak_of_successes() {
        let down = judge(healthy(), [F, F, F], DEFAULT);
        assert_eq!(
            phases(down, &[P, P, F, P, P, P]),
            [Down, Down, Down, Down, Down, Healthy]
        );
    }

    #[test]
    fn an_inconclusive_round_makes_it_unknown_and_restarts_the_counts() {
        let v = judge(healthy(), [F, F], DEFAULT).next(I, DEFAULT);
        assert_eq!(v, Verdict::default());
        assert_eq!(phases(v, &[F, F, F]), [Unknown, Unknown, Down]);
    }

    #[test]
    fn thresholds_of_one_act_at_once() {
        let one = Thresholds::new(0, 0);
        assert_eq!(one, Thresholds::new(1, 1));
        let v = Verdict::default().next(F, one);
        assert_eq!(v.phase, Down);
        assert_eq!(v.next(P, one).phase, Healthy);
    }

    #[test]
    fn quorum_counts_failing_probes() {
        let two_of_three = [false, false, true];
        let one_of_three = [true, false, true];
        assert_eq!(probes_fail(&one_of_three, Quorum::Any), Some(true));
        assert_eq!(probes_fail(&one_of_three, Quorum::Majority), Some(false));
        assert_eq!(probes_fail(&two_of_three, Quorum::Majority), Some(true));
        assert_eq!(probes_fail(&two_of_three, Quorum::All), Some(false));
        assert_eq!(probes_fail(&[false, true], Quorum::Majority), Some(false));
        assert_eq!(probes_fail(&[false, false], Quorum::All), Some(true));
        assert_eq!(probes_fail(&[], Quorum::Any), None);
    }

    #[test]
    fn node_readiness_fails_a_round_on_its_own() {
        let checks = |probes: &[bool], nodes| Checks {
            probes: probes.to_vec(),
            nodes,
        };
        assert_eq!(round_of(&checks(&[true], Some(false)), Quorum::All), F);
        assert_eq!(round_of(&checks(&[false], None), Quorum::Majority), F);
        assert_eq!(round_of(&checks(&[true], None), Quorum::Majority), P);
        assert_eq!(round_of(&checks(&[], Some(true)), Quorum::Majority), P);
        assert_eq!(round_of(&checks(&[], None), Quorum::Majority), I);
    }

    #[test]
    fn node_fraction() {
        assert_eq!(nodes_pass(0, 0, 0.5), None);
        assert_eq!(nodes_pass(1, 2, 0.5), Some(true));
        assert_eq!(nodes_pass(0, 2, 0.5), Some(false));
        assert_eq!(nodes_pass(0, 2, 0.0), Some(true));
        assert_eq!(nodes_pass(2, 3, 1.0), Some(false));
        assert_eq!(nodes_pass(0, 2, f64::NAN), Some(false));
        assert_eq!(nodes_pass(1, 2, f64::NAN), Some(true));
        assert_eq!(nodes_pass(5, 2, 1.0), Some(true));
    }
}
