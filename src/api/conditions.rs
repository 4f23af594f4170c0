//! Standard `metav1.Condition`s: the condition types edgeshift sets, and one pure helper that
//! updates a condition list without moving `lastTransitionTime` unless the status really changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// EdgeService: enough ready replicas serve the traffic (`spec.replicas` ready on targets with weight).
pub const READY: &str = "Ready";
/// EdgeService: some of its regions are lost and their replicas run elsewhere.
pub const FAILED_OVER: &str = "FailedOver";
/// EdgeService: recovered regions are taking their replicas and traffic back, step by step.
pub const FAILING_BACK: &str = "FailingBack";
/// EdgeService: the edge cannot host what the plan asks of it (too few matching nodes, or maxReplicas).
pub const EDGE_CAPACITY_INSUFFICIENT: &str = "EdgeCapacityInsufficient";
/// CloudRegion: the region's probes and nodes say it can serve.
pub const REGION_HEALTHY: &str = "Healthy";
/// EdgeNode: the registration's signature and trust policy check out.
pub const NODE_VERIFIED: &str = "Verified";
/// EdgeNode: the Kubernetes Node is Ready and heart-beating.
pub const NODE_READY: &str = "Ready";

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// The wire form: `"True"`, `"False"` or `"Unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sets condition `type_` in `conditions` and returns whether anything changed.
///
/// `lastTransitionTime` moves to `now` only when the status changes (or the condition is new);
/// a new reason, message or generation alone updates those fields and keeps the transition time,
/// so a steady object is not rewritten and the time still says when the state last flipped.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let mut changed = false;
            if existing.status != status {
                existing.status = status.to_string();
                existing.last_transition_time = Time(now);
                changed = true;
            }
            if existing.reason != reason {
                existing.reason = reason.to_string();
                changed = true;
            }
            if existing.message != message {
                existing.message = message.to_string();
                changed = true;
            }
            if existing.observed_generation != observed_generation {
                existing.observed_generation = observed_generation;
                changed = true;
            }
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn new_condition_is_added_with_now_as_transition_time() {
        let mut conditions = vec![];
        let changed = set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "ReplicasReady",
            "3/3 ready",
            Some(1),
            t(0),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, Time(t(0)));
    }

    #[test]
    fn same_condition_again_changes_nothing() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "R",
            "m",
            Some(1),
            t(0),
        );
        let before = conditions.clone();
        let changed = set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "R",
            "m",
            Some(1),
            t(60),
        );
        assert!(!changed);
        assert_eq!(conditions, before);
    }

    #[test]
    fn new_message_keeps_transition_time() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "R",
            "m",
            Some(1),
            t(0),
        );
        let changed = set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "R2",
            "m2",
            Some(2),
            t(60),
        );
        assert!(changed);
        assert_eq!(conditions[0].reason, "R2");
        assert_eq!(conditions[0].message, "m2");
        assert_eq!(conditions[0].observed_generation, Some(2));
        assert_eq!(conditions[0].last_transition_time, Time(t(0)));
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "R",
            "m",
            None,
            t(0),
        );
        set_condition(
            &mut conditions,
            FAILED_OVER,
            ConditionStatus::False,
            "R",
            "m",
            None,
            t(0),
        );
        let changed = set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            "R",
            "m",
            None,
            t(60),
        );
        assert!(changed);
        assert_eq!(conditions[0].last_transition_time, Time(t(60)));
        assert_eq!(
            conditions[1].last_transition_time,
            Time(t(0)),
            "other conditions untouched"
        );
        assert_eq!(
            find_condition(&conditions, READY).map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
