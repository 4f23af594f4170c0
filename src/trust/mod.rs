//! Trust in community edge nodes, as pure functions:
//!
//! - [`encoding`]: the canonical bytes of a registration (what a node operator signs);
//! - [`keys`]: ed25519 keys and signatures in the base64 forms an EdgeNode carries;
//! - [`policy`]: the trust policy and `verify(registration, policy) -> Verdict`;
//! - [`reputation`]: availability, flaps and quarantine, probation, the placement score;
//! - [`workload`]: what an edge pod may carry onto a host nobody vetted, and the restricted
//!   security settings it always gets.
//!
//! The EdgeNode controller (`controller::edge_node`) feeds these from the cluster and writes
//! the results; `docs/joining.md` is the node operator's side.

pub mod encoding;
pub mod keys;
pub mod policy;
pub mod reputation;
pub mod workload;

pub use encoding::{canonical_bytes, canonical_string, EncodingError};
pub use keys::{verify_signature, KeyError, NodeKey, SignatureError};
pub use policy::{verify, Mode, PolicyError, Reason, TrustPolicy, Verdict};
pub use reputation::{score, Probation, Readiness, Reputation, ReputationSettings};
pub use workload::{edge_secret_refs, harden_for_edge};

#[cfg(test)]
mod properties;

#[cfg(test)]
mod docs {
    //! `docs/joining.md` shows exactly what the code does.
    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;
    use crate::api::{EdgeNode, EdgeNodeSpec};

    const JOINING: &str = include_str!("../../docs/joining.md");

    /// The fenced block that starts with `first_line`.
    fn block(first_line: &str) -> &'static str {
        let start = JOINING.find(first_line).expect("block in docs/joining.md");
        let len = JOINING[start..].find("```").expect("end of the block");
        &JOINING[start..start + len]
    }

    fn example() -> (NodeKey, EdgeNodeSpec) {
        let key = NodeKey::from_seed(std::array::from_fn(|i| i as u8));
        // The registration of docs/joining.md, the same one the encoding tests use.
        let mut spec = crate::trust::encoding::tests::spec();
        spec.public_key.clear();
        key.sign(&mut spec).expect("signs");
        (key, spec)
    }

    #[test]
    fn the_worked_example_is_what_the_code_signs() {
        let (key, spec) = example();
        let bytes = canonical_string(&spec).expect("encodes");
        assert_eq!(
            block("edgeshift-registration-v1\nnodeName=edge-berlin-1"),
            bytes
        );
        assert!(JOINING.contains(&format!("({} bytes, UTF-8)", bytes.len())));
        assert!(JOINING.contains(&format!("signature: {}", spec.signature)));
        assert!(JOINING.contains(&key.to_base64()));
        let manifest: EdgeNode =
            serde_yaml::from_str(block("# EdgeNode for Node edge-berlin-1")).expect("manifest");
        assert_eq!(manifest.spec, spec);
    }

    #[test]
    fn the_documented_policy_parses_and_accepts_the_example() {
        let cm: ConfigMap =
            serde_yaml::from_str(block("apiVersion: v1\nkind: ConfigMap")).expect("ConfigMap");
        let policy = TrustPolicy::from_data(&cm.data.unwrap_or_default()).expect("policy");
        assert_eq!(policy.mode, Mode::Strict);
        assert_eq!(policy.revoked_keys.len(), 1);
        assert!(verify(&example().1, &policy).verified);
    }
}
