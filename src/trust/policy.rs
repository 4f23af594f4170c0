//! The trust policy (which operators and keys may register edge nodes) and the verdict on a
//! registration: a pure function of the registration and the policy.
//!
//! The policy lives in a ConfigMap with up to three keys, any other key is an error (a typo
//! such as `revokedkeys` must not silently revoke nothing):
//!
//! ```yaml
//! data:
//!   mode: strict            # or `open` (dev clusters: any valid self-signature is accepted)
//!   allowedOperators: |     # operator id -> its public keys (base64)
//!     alice: [D0P7c8Cc6PZWM2yyN0dWUyDgbmcWBh5pfhdHmVcVhkU=]
//!   revokedKeys: |          # public keys never accepted, in either mode
//!     - 3nd0fQ8cC0G0Wg5pXo3rQzJ9yBQn8c6lLZb3oV3y1gE=
//! ```

use std::collections::{BTreeMap, BTreeSet};

use super::keys::{parse_public_key, verify_signature};
use crate::api::EdgeNodeSpec;

/// ConfigMap keys of a trust policy.
pub const KEY_MODE: &str = "mode";
pub const KEY_ALLOWED_OPERATORS: &str = "allowedOperators";
pub const KEY_REVOKED_KEYS: &str = "revokedKeys";

/// How strict the policy is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Only operators and keys listed in `allowedOperators`.
    #[default]
    Strict,
    /// Any registration with a valid self-signature (dev clusters).
    Open,
}

/// The trust policy in effect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    pub mode: Mode,
    /// Operator id → the public keys (base64) it may register with.
    pub allowed_operators: BTreeMap<String, BTreeSet<String>>,
    /// Public keys (base64) never accepted.
    pub revoked_keys: BTreeSet<String>,
    /// Set when this is the safe default standing in for an unusable policy: every
    /// registration is then rejected with `PolicyInvalid` and this text.
    pub invalid: Option<String>,
}

/// Why a ConfigMap is not a usable trust policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown key '{0}' (a trust policy has only mode, allowedOperators and revokedKeys)")]
    UnknownKey(String),
    #[error("mode '{0}' is neither 'strict' nor 'open'")]
    Mode(String),
    #[error("{key} is not valid YAML of the expected shape: {message}")]
    Yaml { key: &'static str, message: String },
    #[error("{key}: '{value}' is not a base64 ed25519 public key: {message}")]
    Key {
        key: &'static str,
        value: String,
        message: String,
    },
}

impl TrustPolicy {
    /// Open mode, nothing revoked (dev clusters, tests).
    pub fn open() -> Self {
        TrustPolicy {
            mode: Mode::Open,
            ..Default::default()
        }
    }

    /// Strict mode with nothing allowed: every registration is rejected as unknown. The
    /// policy when none is configured.
    pub fn strict_empty() -> Self {
        TrustPolicy::default()
    }

    /// The safe default standing in for an unusable policy: rejects every registration and
    /// says why.
    pub fn reject_all(problem: impl Into<String>) -> Self {
        TrustPolicy {
            invalid: Some(problem.into()),
            ..Default::default()
        }
    }

    /// Parses a ConfigMap's `data`.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<Self, PolicyError> {
        if let Some(unknown) = data
            .keys()
            .find(|k| ![KEY_MODE, KEY_ALLOWED_OPERATORS, KEY_REVOKED_KEYS].contains(&k.as_str()))
        {
            return Err(PolicyError::UnknownKey(unknown.clone()));
        }
        let mode = match data.get(KEY_MODE).map(|m| m.trim()) {
            None | Some("strict") => Mode::Strict,
            Some("open") => Mode::Open,
            Some(other) => return Err(PolicyError::Mode(other.to_string())),
        };
        let allowed_operators: BTreeMap<String, Vec<String>> =
            yaml_or_empty(data, KEY_ALLOWED_OPERATORS)?;
        let revoked_keys: Vec<String> = yaml_or_empty(data, KEY_REVOKED_KEYS)?;
        let check = |key: &'static str, value: &String| {
            parse_public_key(value).map_err(|e| PolicyError::Key {
                key,
                value: value.clone(),
                message: e.to_string(),
            })
        };
        for keys in allowed_operators.values() {
            for k in keys {
                check(KEY_ALLOWED_OPERATORS, k)?;
            }
        }
        for k in &revoked_keys {
            check(KEY_REVOKED_KEYS, k)?;
        }
        Ok(TrustPolicy {
            mode,
            allowed_operators: allowed_operators
                .into_iter()
                .map(|(op, keys)| (op, keys.into_iter().collect()))
                .collect(),
            revoked_keys: revoked_keys.into_iter().collect(),
            invalid: None,
        })
    }
}

fn yaml_or_empty<T: serde::de::DeserializeOwned + Default>(
    data: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<T, PolicyError> {
    match data.get(key) {
        None => Ok(T::default()),
        Some(text) if text.trim().is_empty() => Ok(T::default()),
        Some(text) => serde_yaml::from_str(text).map_err(|e| PolicyError::Yaml {
            key,
            message: e.to_string(),
        }),
    }
}

/// Why a registration was accepted or rejected; the `as_str()` form goes into status and Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Verified,
    /// `publicKey`, `signature` or a number cannot be read.
    MalformedRegistration,
    /// The signature does not match (forged, another key, or a field changed after signing).
    InvalidSignature,
    /// Strict mode: the operator is not in `allowedOperators`.
    UnknownOperator,
    /// Strict mode: the operator is known, this key is not one of its keys.
    KeyNotAllowed,
    /// The key is in `revokedKeys`.
    Revoked,
    /// The trust policy cannot be read; everything is rejected until it is fixed.
    PolicyInvalid,
    /// No Kubernetes Node has the registration's `nodeName`.
    NodeNotFound,
    /// The Node belongs to a CloudRegion; an edge registration may not claim it.
    NodeInCloudRegion,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Verified => "Verified",
            Reason::MalformedRegistration => "MalformedRegistration",
            Reason::InvalidSignature => "InvalidSignature",
            Reason::UnknownOperator => "UnknownOperator",
            Reason::KeyNotAllowed => "KeyNotAllowed",
            Reason::Revoked => "Revoked",
            Reason::PolicyInvalid => "PolicyInvalid",
            Reason::NodeNotFound => "NodeNotFound",
            Reason::NodeInCloudRegion => "NodeInCloudRegion",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub verified: bool,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    pub fn accept(message: impl Into<String>) -> Self {
        Verdict {
            verified: true,
            reason: Reason::Verified,
            message: message.into(),
        }
    }

    pub fn reject(reason: Reason, message: impl Into<String>) -> Self {
        Verdict {
            verified: false,
            reason,
            message: message.into(),
        }
    }
}

/// Checks the signature, then the policy: revoked keys, then (strict mode) the operator and
/// its keys. Pure and cheap (one ed25519 verification).
pub fn verify(spec: &EdgeNodeSpec, policy: &TrustPolicy) -> Verdict {
    if let Err(e) = verify_signature(spec) {
        let reason = if e.is_malformed() {
            Reason::MalformedRegistration
        } else {
            Reason::InvalidSignature
        };
        return Verdict::reject(reason, e.to_string());
    }
    if let Some(problem) = &policy.invalid {
        return Verdict::reject(
            Reason::PolicyInvalid,
            format!("the trust policy is unusable, so every registration is rejected until it is fixed: {problem}"),
        );
    }
    if policy.revoked_keys.contains(&spec.public_key) {
        return Verdict::reject(
            Reason::Revoked,
            format!(
                "publicKey {} is revoked by the trust policy",
                spec.public_key
            ),
        );
    }
    match policy.mode {
        Mode::Open => Verdict::accept(format!(
            "valid signature by {} (open trust policy: any valid self-signature is accepted)",
            spec.public_key
        )),
        Mode::Strict => match policy.allowed_operators.get(&spec.operator) {
            None => Verdict::reject(
                Reason::UnknownOperator,
                format!(
                    "operator '{}' is not in the trust policy's allowedOperators",
                    spec.operator
                ),
            ),
            Some(keys) if !keys.contains(&spec.public_key) => Verdict::reject(
                Reason::KeyNotAllowed,
                format!(
                    "publicKey {} is not one of operator '{}''s allowed keys",
                    spec.public_key, spec.operator
                ),
            ),
            Some(_) => Verdict::accept(format!(
                "valid signature by operator '{}' with an allowed key",
                spec.operator
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::encoding::tests::spec;
    use crate::trust::keys::NodeKey;

    fn signed(seed: u8, operator: &str) -> EdgeNodeSpec {
        let mut s = spec();
        s.operator = operator.into();
        NodeKey::from_seed([seed; 32]).sign(&mut s).expect("signs");
        s
    }

    fn pk(seed: u8) -> String {
        NodeKey::from_seed([seed; 32]).public_key_base64()
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strict(alice_keys: &[u8], revoked: &[u8]) -> TrustPolicy {
        TrustPolicy {
            mode: Mode::Strict,
            allowed_operators: BTreeMap::from([(
                "alice".to_string(),
                alice_keys.iter().map(|s| pk(*s)).collect(),
            )]),
            revoked_keys: revoked.iter().map(|s| pk(*s)).collect(),
            invalid: None,
        }
    }

    #[test]
    fn strict_accepts_an_allowed_operator_key() {
        let v = verify(&signed(1, "alice"), &strict(&[1], &[]));
        assert_eq!((v.verified, v.reason), (true, Reason::Verified));
    }

    #[test]
    fn each_rejection_has_its_reason() {
        let policy = strict(&[1, 3], &[3]);
        let reason = |s: &EdgeNodeSpec| verify(s, &policy).reason;
        assert_eq!(reason(&signed(2, "mallory")), Reason::UnknownOperator);
        assert_eq!(reason(&signed(2, "alice")), Reason::KeyNotAllowed);
        assert_eq!(reason(&signed(3, "alice")), Reason::Revoked);
        let mut tampered = signed(1, "alice");
        tampered.price_per_hour = Some(0.5);
        assert_eq!(reason(&tampered), Reason::InvalidSignature);
        let mut forged = signed(1, "alice");
        forged.signature = NodeKey::from_seed([9; 32]).sign_bytes(b"anything");
        assert_eq!(reason(&forged), Reason::InvalidSignature);
        let mut garbled = signed(1, "alice");
        garbled.signature = "!".repeat(88);
        assert_eq!(reason(&garbled), Reason::MalformedRegistration);
    }

    #[test]
    fn open_accepts_any_valid_self_signature_but_not_revoked_keys() {
        let mut open = TrustPolicy::open();
        assert!(verify(&signed(5, "anyone"), &open).verified);
        open.revoked_keys.insert(pk(5));
        assert_eq!(verify(&signed(5, "anyone"), &open).reason, Reason::Revoked);
        let mut tampered = signed(6, "anyone");
        tampered.node_name = "edge-2".into();
        assert_eq!(
            verify(&tampered, &TrustPolicy::open()).reason,
            Reason::InvalidSignature
        );
    }

    #[test]
    fn an_unusable_policy_rejects_everything_and_says_why() {
        let v = verify(
            &signed(1, "alice"),
            &TrustPolicy::reject_all("mode 'lax' is neither"),
        );
        assert_eq!((v.verified, v.reason), (false, Reason::PolicyInvalid));
        assert!(v.message.contains("mode 'lax'"), "{}", v.message);
        assert_eq!(
            verify(&signed(1, "alice"), &TrustPolicy::strict_empty()).reason,
            Reason::UnknownOperator
        );
    }

    #[test]
    fn a_config_map_parses_into_a_policy() {
        let policy = TrustPolicy::from_data(&data(&[
            ("mode", "strict\n"),
            (
                "allowedOperators",
                &format!("alice: [{}]\nbob:\n  - {}\n", pk(1), pk(2)),
            ),
            ("revokedKeys", &format!("- {}\n", pk(3))),
        ]))
        .expect("parses");
        assert_eq!(policy.mode, Mode::Strict);
        assert_eq!(policy.allowed_operators["bob"], BTreeSet::from([pk(2)]));
        assert!(policy.revoked_keys.contains(&pk(3)));
        assert_eq!(
            TrustPolicy::from_data(&data(&[("mode", "open")])),
            Ok(TrustPolicy::open())
        );
        assert_eq!(
            TrustPolicy::from_data(&BTreeMap::new()),
            Ok(TrustPolicy::strict_empty())
        );
        assert_eq!(
            TrustPolicy::from_data(&data(&[("mode", "open"), ("revokedKeys", "")])),
            Ok(TrustPolicy::open())
        );
    }

    #[test]
    fn config_map_mistakes_are_errors_not_silent_defaults() {
        let err = |pairs: &[(&str, &str)]| TrustPolicy::from_data(&data(pairs)).unwrap_err();
        assert_eq!(
            err(&[("revokedkeys", "- x")]),
            PolicyError::UnknownKey("revokedkeys".into())
        );
        assert_eq!(err(&[("mode", "lax")]), PolicyError::Mode("lax".into()));
        assert!(matches!(
            err(&[("allowedOperators", "- just a list")]),
            PolicyError::Yaml {
                key: "allowedOperators",
                ..
            }
        ));
        assert!(matches!(
            err(&[("revokedKeys", "- not-a-key")]),
            PolicyError::Key {
                key: "revokedKeys",
                ..
            }
        ));
        let message = err(&[("allowedOperators", "alice: [AAAA]")]).to_string();
        assert!(
            message.contains("'AAAA'") && message.contains("32"),
            "{message}"
        );
    }
}
