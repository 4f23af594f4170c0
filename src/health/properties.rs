//! The verdict's promises, checked over generated round sequences (10,000 cases per property):
//! flapping never makes a region Down, Down takes exactly `failureThreshold` failed rounds in a
//! row and recovery exactly `successThreshold` passed ones, the verdict depends on the sequence
//! alone (also across a restart that reads it back from status), and more failing checks never
//! make a round pass.

use proptest::prelude::*;

use super::verdict::*;
use crate::api::{CloudRegionStatus, Quorum, RegionPhase};

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

fn thresholds() -> impl Strategy<Value = Thresholds> {
    (1u32..=6, 1u32..=6).prop_map(|(f, s)| Thresholds::new(f, s))
}

fn round() -> impl Strategy<Value = Round> {
    prop_oneof![
        5 => Just(Round::Passed),
        5 => Just(Round::Failed),
        1 => Just(Round::Inconclusive),
    ]
}

fn rounds() -> impl Strategy<Value = Vec<Round>> {
    prop::collection::vec(round(), 0..64)
}

fn quorum() -> impl Strategy<Value = Quorum> {
    prop_oneof![Just(Quorum::Any), Just(Quorum::Majority), Just(Quorum::All)]
}

/// A region that is not Down and has no failures behind it (a new one, or a serving one).
fn serving_start() -> impl Strategy<Value = Verdict> {
    (
        prop_oneof![
            Just(RegionPhase::Unknown),
            Just(RegionPhase::Healthy),
            Just(RegionPhase::Degraded)
        ],
        0u32..10,
    )
        .prop_map(|(phase, successes)| Verdict {
            phase,
            consecutive_failures: 0,
            consecutive_successes: successes,
        })
}

/// Breaks every run of failures before it reaches the threshold: a flapping region.
fn flapping(mut rounds: Vec<Round>, thr: Thresholds) -> Vec<Round> {
    let mut run = 0;
    for r in rounds.iter_mut() {
        if *r == Round::Failed {
            if run + 1 >= thr.failure {
                *r = Round::Passed;
                run = 0;
            } else {
                run += 1;
            }
        } else {
            run = 0;
        }
    }
    rounds
}

/// Consecutive `kind` rounds at the end of `rounds` (an inconclusive round ends any run).
fn trailing(rounds: &[Round], kind: Round) -> u32 {
    rounds.iter().rev().take_while(|r| **r == kind).count() as u32
}

fn checks() -> impl Strategy<Value = Checks> {
    (
        prop::collection::vec(any::<bool>(), 0..8),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(probes, nodes)| Checks { probes, nodes })
}

/// The status a verdict is written as, read back through JSON, as a restarted operator sees it.
fn through_status(v: Verdict) -> Verdict {
    let status = CloudRegionStatus {
        phase: Some(v.phase),
        consecutive_failures: v.consecutive_failures,
        consecutive_successes: v.consecutive_successes,
        ..CloudRegionStatus::default()
    };
    let json = serde_json::to_string(&status).unwrap_or_default();
    let back: Option<CloudRegionStatus> = serde_json::from_str(&json).ok();
    Verdict::from_status(back.as_ref())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn flapping_never_makes_a_region_down(
        start in serving_start(),
        thr in thresholds(),
        raw in rounds(),
    ) {
        let seq = flapping(raw, thr);
        let mut v = start;
        for (i, r) in seq.iter().enumerate() {
            v = v.next(*r, thr);
            prop_assert_ne!(v.phase, RegionPhase::Down, "after {:?}", &seq[..=i]);
        }
    }

    #[test]
    fn down_takes_exactly_failure_threshold_failed_rounds_in_a_row(
        start in serving_start(),
        thr in thresholds(),
        seq in rounds(),
    ) {
        let mut v = start;
        for i in 0..seq.len() {
            let before = v.phase;
            v = v.next(seq[i], thr);
            let run = trailing(&seq[..=i], Round::Failed);
            if before != RegionPhase::Down && v.phase == RegionPhase::Down {
                prop_assert_eq!(run, thr.failure, "entered Down after {:?}", &seq[..=i]);
            }
            if run >= thr.failure {
                prop_assert_eq!(v.phase, RegionPhase::Down, "after {:?}", &seq[..=i]);
            }
        }
    }

    #[test]
    fn recovery_takes_exactly_success_threshold_passed_rounds_in_a_row(
        thr in thresholds(),
        extra_failures in 0u32..5,
        seq in rounds(),
    ) {
        let down = Verdict {
            phase: RegionPhase::Down,
            consecutive_failures: thr.failure + extra_failures,
            consecutive_successes: 0,
        };
        let mut v = down;
        for i in 0..seq.len() {
            let before = v.phase;
            v = v.next(seq[i], thr);
            let run = trailing(&seq[..=i], Round::Passed);
            if before != RegionPhase::Healthy && v.phase == RegionPhase::Healthy {
                prop_assert_eq!(run, thr.success, "recovered after {:?}", &seq[..=i]);
            }
            if before == RegionPhase::Down && v.phase != RegionPhase::Down {
                // Leaving Down is recovery, or not knowing any more.
                prop_assert!(
                    v.phase == RegionPhase::Healthy || seq[i] == Round::Inconclusive,
                    "left Down for {:?} after {:?}", v.phase, &seq[..=i]
                );
            }
            if run >= thr.success {
                prop_assert_eq!(v.phase, RegionPhase::Healthy, "after {:?}", &seq[..=i]);
            }
        }
    }

    #[test]
    fn the_verdict_depends_on_the_sequence_alone_even_across_a_restart(
        start in serving_start(),
        thr in thresholds(),
        seq in rounds(),
        split in any::<prop::sample::Index>(),
    ) {
        let once = judge(start, seq.iter().copied(), thr);
        let again = judge(start, seq.iter().copied(), thr);
        prop_assert_eq!(once, again);
        // A restart at any round continues from what status holds.
        let k = split.index(seq.len() + 1);
        let before_restart = judge(start, seq[..k].iter().copied(), thr);
        let resumed = judge(through_status(before_restart), seq[k..].iter().copied(), thr);
        prop_assert_eq!(resumed, once);
        // Capped counts (what status writes are decided on) are just as good a state.
        let (f, s) = before_restart.progress(thr);
        let capped = Verdict { consecutive_failures: f, consecutive_successes: s, ..before_restart };
        prop_assert_eq!(judge(capped, seq[k..].iter().copied(), thr).phase, once.phase);
    }

    #[test]
    fn more_failing_checks_never_make_a_round_pass(
        c in checks(),
        q in quorum(),
        which in any::<prop::sample::Index>(),
    ) {
        let before = round_of(&c, q);
        // One passing probe fails.
        if !c.probes.is_empty() {
            let mut worse = c.clone();
            worse.probes[which.index(c.probes.len())] = false;
            if before == Round::Failed {
                prop_assert_eq!(round_of(&worse, q), Round::Failed, "{:?} then {:?}", c, worse);
            }
        }
        // The Nodes fall below the fraction.
        if c.nodes.is_some() {
            let worse = Checks { nodes: Some(false), ..c.clone() };
            if before == Round::Failed {
                prop_assert_eq!(round_of(&worse, q), Round::Failed);
            }
        }
        // One more probe, failing.
        let mut worse = c.clone();
        worse.probes.push(false);
        prop_assert!(before != Round::Failed || round_of(&worse, q) == Round::Failed);
        prop_assert_ne!(round_of(&worse, q), Round::Inconclusive);
        // And the quorums are ordered: All is the strictest, Any the most eager.
        let fails = |q| probes_fail(&c.probes, q) == Some(true);
        prop_assert!(!fails(Quorum::All) || fails(Quorum::Majority));
        prop_assert!(!fails(Quorum::Majority) || fails(Quorum::Any));
    }
}
