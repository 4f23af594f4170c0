//! How much an edge node can be relied on: rolling availability, flaps and quarantine,
//! probation, and the placement score. Pure: times come in as arguments.

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Knobs of `edgeshift run` (`--probation-seconds`, `--quarantine-*`, ...).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReputationSettings {
    /// A node is on probation (at most one replica of any service) until it has been verified
    /// and continuously Ready this long.
    pub probation: SignedDuration,
    /// This many Ready→NotReady flaps within `flap_window` quarantine a node (0: never).
    pub quarantine_flaps: u32,
    pub flap_window: SignedDuration,
    /// How long a quarantine lasts.
    pub quarantine_for: SignedDuration,
    /// Time constant of the availability average: roughly the window it looks back over.
    pub availability_window: SignedDuration,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        ReputationSettings {
            probation: SignedDuration::from_secs(600),
            quarantine_flaps: 3,
            flap_window: SignedDuration::from_secs(600),
            quarantine_for: SignedDuration::from_secs(1800),
            availability_window: SignedDuration::from_secs(3600),
        }
    }
}

/// What the Node's `Ready` condition says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// The condition's `lastTransitionTime`.
    pub since: Option<Timestamp>,
}

impl Readiness {
    pub fn ready_since(since: Timestamp) -> Self {
        Readiness {
            ready: true,
            since: Some(since),
        }
    }

    pub fn not_ready() -> Self {
        Readiness {
            ready: false,
            since: None,
        }
    }
}

/// An edge node's track record, kept in memory between reconciles and resumed from status
/// after a restart (availability and quarantine; the flap history starts afresh).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reputation {
    availability: Option<f64>,
    last: Option<Sample>,
    flaps: Vec<Timestamp>,
    quarantined_until: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Timestamp,
    readiness: Readiness,
}

/// What one observation changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The node went from Ready to not Ready (or did and came back between two looks).
    pub flapped: bool,
    /// That flap started a quarantine.
    pub quarantined: bool,
}

impl Reputation {
    /// Continues from what status recorded.
    pub fn resume(availability: Option<f64>, quarantined_until: Option<Timestamp>) -> Self {
        Reputation {
            availability: availability
                .filter(|a| a.is_finite())
                .map(|a| a.clamp(0.0, 1.0)),
            quarantined_until,
            ..Default::default()
        }
    }

    /// Exponentially weighted fraction of observed time the node was Ready, in [0, 1].
    pub fn availability(&self) -> Option<f64> {
        self.availability
    }

    /// Until when the node takes no new workloads (in the past: the last quarantine's end).
    pub fn quarantined_until(&self) -> Option<Timestamp> {
        self.quarantined_until
    }

    /// Takes in the Node's readiness at `now`. Between two looks the node is taken to have
    /// stayed as it was at the first; a restart's gap is not counted at all.
    pub fn observe(
        &mut self,
        readiness: Readiness,
        now: Timestamp,
        settings: &ReputationSettings,
    ) -> Observed {
        let mut observed = Observed::default();
        match self.last {
            Some(last) => {
                let dt = now.duration_since(last.at).as_secs_f64().max(0.0);
                let tau = settings.availability_window.as_secs_f64().max(1.0);
                let state = if last.readiness.ready { 1.0 } else { 0.0 };
                let before = self.availability.unwrap_or(state);
                self.availability =
                    Some((state + (before - state) * (-dt / tau).exp()).clamp(0.0, 1.0));
                let went_down = last.readiness.ready && !readiness.ready;
                // Down and up again between two looks: the Ready condition moved on.
                let bounced = last.readiness.ready
                    && readiness.ready
                    && matches!((last.readiness.since, readiness.since), (Some(a), Some(b)) if b > a);
                observed.flapped = went_down || bounced;
            }
            None => {
                if self.availability.is_none() {
                    self.availability = Some(if readiness.ready { 1.0 } else { 0.0 });
                }
            }
        }
        self.last = Some(Sample { at: now, readiness });
        if observed.flapped {
            self.flaps.push(now);
        }
        let horizon = now
            .checked_sub(settings.flap_window)
            .unwrap_or(Timestamp::MIN);
        self.flaps.retain(|t| *t > horizon);
        let limit = usize::try_from(settings.quarantine_flaps).unwrap_or(usize::MAX);
        if limit > 0 && self.flaps.len() >= limit {
            let until = now.checked_add(settings.quarantine_for).unwrap_or(now);
            self.quarantined_until = Some(self.quarantined_until.map_or(until, |u| u.max(until)));
            self.flaps.clear();
            observed.quarantined = true;
        }
        observed
    }
}

/// Whether a node is on probation, and until when (unknown while it is not Ready).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probation {
    pub on: bool,
    pub until: Option<Timestamp>,
}

/// A node is on probation until it has been registered, verified, Ready and out of
/// quarantine, all of it for `settings.probation`. Uses only times the cluster keeps, so a
/// restarted operator reaches the same answer.
pub fn probation(
    registered: Option<Timestamp>,
    verified_since: Option<Timestamp>,
    readiness: Readiness,
    quarantined_until: Option<Timestamp>,
    now: Timestamp,
    settings: &ReputationSettings,
) -> Probation {
    if !readiness.ready {
        return Probation {
            on: true,
            until: None,
        };
    }
    let start = [
        registered,
        verified_since,
        readiness.since,
        quarantined_until,
    ]
    .into_iter()
    .flatten()
    .max();
    match start.and_then(|s| s.checked_add(settings.probation).ok()) {
        Some(until) => Probation {
            on: now < until,
            until: Some(until),
        },
        None => Probation {
            on: true,
            until: None,
        },
    }
}

/// The price at which a node's score is halved (platform billing units per hour).
pub const REFERENCE_PRICE_PER_HOUR: f64 = 0.10;

/// Placement score in [0, 1], higher is better, rounded to 3 decimals so status is stable:
/// availability squared (down 10 % of the time is much worse than down 1 %) times a price
/// factor `1 / (1 + price / 0.10)`. An unknown availability counts as 0, an unknown price as
/// the reference price, and a price that is not a finite non-negative number as infinite.
pub fn score(availability: Option<f64>, price_per_hour: Option<f64>) -> f64 {
    let a = availability
        .filter(|a| a.is_finite())
        .map_or(0.0, |a| a.clamp(0.0, 1.0));
    let price_factor = match price_per_hour {
        None => 0.5,
        Some(p) if p.is_finite() && p >= 0.0 => 1.0 / (1.0 + p / REFERENCE_PRICE_PER_HOUR),
        Some(_) => 0.0,
    };
    round_to(a * a * price_factor, 3)
}

/// `x` rounded to `decimals` decimals (what status shows, so small drifts write nothing).
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fixtures::at;

    fn s() -> ReputationSettings {
        ReputationSettings::default()
    }

    #[test]
    fn availability_starts_from_what_is_seen_and_decays_while_down() {
        let mut r = Reputation::default();
        r.observe(Readiness::ready_since(at(0)), at(0), &s());
        assert_eq!(r.availability(), Some(1.0));
        r.observe(Readiness::not_ready(), at(60), &s());
        assert_eq!(r.availability(), Some(1.0), "Ready until this look");
        r.observe(Readiness::not_ready(), at(60 + 3600), &s());
        let a = r.availability().expect("known");
        assert!((a - (-1.0f64).exp()).abs() < 1e-9, "{a}");
    }

    #[test]
    fn availability_resumes_from_status_after_a_restart() {
        let mut r = Reputation::resume(Some(0.5), None);
        r.observe(Readiness::ready_since(at(0)), at(1000), &s());
        assert_eq!(r.availability(), Some(0.5), "the gap is not counted");
        r.observe(Readiness::ready_since(at(0)), at(1000 + 3600), &s());
        let a = r.availability().expect("known");
        assert!((a - (1.0 - 0.5 * (-1.0f64).exp())).abs() < 1e-9, "{a}");
        assert_eq!(
            Reputation::resume(Some(f64::NAN), None).availability(),
            None
        );
        assert_eq!(
            Reputation::resume(Some(7.0), None).availability(),
            Some(1.0)
        );
    }

    #[test]
    fn three_flaps_in_the_window_quarantine_the_node() {
        let mut r = Reputation::default();
        let mut t = 0;
        let mut last = Observed::default();
        for flap in 0..3 {
            r.observe(Readiness::ready_since(at(t)), at(t), &s());
            last = r.observe(Readiness::not_ready(), at(t + 10), &s());
            assert!(last.flapped);
            assert_eq!(last.quarantined, flap == 2, "flap {flap}");
            t += 20;
        }
        assert!(last.quarantined);
        assert_eq!(r.quarantined_until(), Some(at(40 + 10 + 1800)));
    }

    #[test]
    fn flaps_further_apart_than_the_window_do_not() {
        let mut r = Reputation::default();
        for i in 0..5 {
            let t = i * 400;
            r.observe(Readiness::ready_since(at(t)), at(t), &s());
            assert!(
                !r.observe(Readiness::not_ready(), at(t + 10), &s())
                    .quarantined
            );
        }
        assert_eq!(r.quarantined_until(), None);
        let off = ReputationSettings {
            quarantine_flaps: 0,
            ..s()
        };
        let mut r = Reputation::default();
        for i in 0..5 {
            r.observe(Readiness::ready_since(at(i * 20)), at(i * 20), &off);
            r.observe(Readiness::not_ready(), at(i * 20 + 10), &off);
        }
        assert_eq!(r.quarantined_until(), None, "0 flaps disables quarantine");
    }

    #[test]
    fn a_down_and_up_between_two_looks_is_a_flap() {
        let mut r = Reputation::default();
        r.observe(Readiness::ready_since(at(0)), at(0), &s());
        assert!(
            !r.observe(Readiness::ready_since(at(0)), at(30), &s())
                .flapped
        );
        assert!(
            r.observe(Readiness::ready_since(at(50)), at(60), &s())
                .flapped
        );
    }

    #[test]
    fn probation_lasts_from_the_latest_of_registration_verification_readiness_and_quarantine() {
        let p = |verified: i64, ready: i64, quarantine: Option<i64>, now: i64| {
            probation(
                Some(at(0)),
                Some(at(verified)),
                Readiness::ready_since(at(ready)),
                quarantine.map(at),
                at(now),
                &s(),
            )
        };
        assert_eq!(
            p(5, 100, None, 650),
            Probation {
                on: true,
                until: Some(at(700))
            }
        );
        assert!(!p(5, 100, None, 700).on);
        assert_eq!(p(5, 100, Some(2000), 2500).until, Some(at(2600)));
        let down = probation(
            Some(at(0)),
            Some(at(0)),
            Readiness::not_ready(),
            None,
            at(9999),
            &s(),
        );
        assert_eq!(
            down,
            Probation {
                on: true,
                until: None
            }
        );
    }

    #[test]
    fn score_prefers_available_and_cheap_nodes_and_survives_nonsense() {
        assert_eq!(score(Some(1.0), Some(0.0)), 1.0);
        assert_eq!(score(Some(1.0), Some(0.10)), 0.5);
        assert_eq!(score(Some(1.0), None), 0.5);
        assert_eq!(score(Some(0.5), Some(0.0)), 0.25);
        assert_eq!(score(None, Some(0.0)), 0.0);
        assert_eq!(score(Some(f64::NAN), Some(0.0)), 0.0);
        assert_eq!(score(Some(1.0), Some(f64::NAN)), 0.0);
        assert_eq!(score(Some(1.0), Some(-1.0)), 0.0);
        assert_eq!(score(Some(1.0), Some(f64::INFINITY)), 0.0);
        assert_eq!(score(Some(2.0), Some(0.0)), 1.0);
    }
}
