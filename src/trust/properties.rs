//! Properties of signatures, the canonical encoding, the policy and reputation over generated
//! registrations: 10,000 cases each.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;

use super::encoding::{canonical_bytes, canonical_string, VERSION_LINE};
use super::keys::{verify_signature, NodeKey, SignatureError};
use super::policy::{verify, Mode, TrustPolicy};
use super::reputation::{score, Readiness, Reputation, ReputationSettings};
use crate::api::fixtures::at;
use crate::api::{EdgeCapacity, EdgeLocation, EdgeNodeSpec};

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Short strings that include every character the encoding escapes.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c0-9=%.\\n\\t\u{0}\u{85}é-]{0,6}").expect("regex")
}

/// A number with at most 6 decimals, as registrations carry them.
fn micro(min: i64, max: i64) -> impl Strategy<Value = f64> {
    (min..=max).prop_map(|n| n as f64 / 1e6)
}

fn registration() -> impl Strategy<Value = EdgeNodeSpec> {
    let location = proptest::option::of(
        (
            micro(-90_000_000, 90_000_000),
            micro(-180_000_000, 180_000_000),
            proptest::option::of(text()),
        )
            .prop_map(|(latitude, longitude, country)| EdgeLocation {
                latitude,
                longitude,
                country,
            }),
    );
    let capacity = proptest::option::of(
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(0u32..3),
        )
            .prop_map(|(cpu, memory, pods)| EdgeCapacity {
                cpu: cpu.map(Quantity),
                memory: memory.map(Quantity),
                pods,
            }),
    );
    (
        text(),
        text(),
        text(),
        location,
        capacity,
        proptest::option::of(micro(0, 3_000_000)),
        proptest::collection::btree_map(text(), text(), 0..3),
    )
        .prop_map(
            |(node_name, operator, public_key, location, capacity, price_per_hour, labels)| {
                EdgeNodeSpec {
                    node_name,
                    operator,
                    public_key,
                    signature: String::new(),
                    location,
                    capacity,
                    price_per_hour,
                    labels,
                }
            },
        )
}

/// What a registration means: the signature is not part of it, and an empty capacity says
/// the same as none.
fn meaning(spec: &EdgeNodeSpec) -> EdgeNodeSpec {
    let mut s = spec.clone();
    s.signature.clear();
    if s.capacity
        .as_ref()
        .is_some_and(|c| c.cpu.is_none() && c.memory.is_none() && c.pods.is_none())
    {
        s.capacity = None;
    }
    s
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Reads the canonical encoding back: if this recovers every registration, no two distinct
/// registrations can share an encoding.
fn decode(text: &str) -> EdgeNodeSpec {
    let mut lines = text.split_terminator('\n');
    assert_eq!(lines.next(), Some(VERSION_LINE));
    let mut spec = EdgeNodeSpec {
        node_name: String::new(),
        operator: String::new(),
        public_key: String::new(),
        signature: String::new(),
        location: None,
        capacity: None,
        price_per_hour: None,
        labels: BTreeMap::new(),
    };
    let number = |v: &str| v.parse::<f64>().expect("number");
    for line in lines {
        let (key, value) = line.split_once('=').expect("key=value");
        let value = unescape(value);
        let location = || EdgeLocation {
            latitude: 0.0,
            longitude: 0.0,
            country: None,
        };
        let capacity = || EdgeCapacity {
            cpu: None,
            memory: None,
            pods: None,
        };
        match key {
            "nodeName" => spec.node_name = value,
            "operator" => spec.operator = value,
            "publicKey" => spec.public_key = value,
            "location.latitude" => {
                spec.location.get_or_insert_with(location).latitude = number(&value)
            }
            "location.longitude" => {
                spec.location.get_or_insert_with(location).longitude = number(&value)
            }
            "location.country" => spec.location.get_or_insert_with(location).country = Some(value),
            "capacity.cpu" => {
                spec.capacity.get_or_insert_with(capacity).cpu = Some(Quantity(value))
            }
            "capacity.memory" => {
                spec.capacity.get_or_insert_with(capacity).memory = Some(Quantity(value))
            }
            "capacity.pods" => {
                spec.capacity.get_or_insert_with(capacity).pods = Some(value.parse().expect("pods"))
            }
            "pricePerHour" => spec.price_per_hour = Some(number(&value)),
            label => {
                let key = label.strip_prefix("label.").expect("a label line");
                spec.labels.insert(unescape(key), value);
            }
        }
    }
    spec
}

/// One change to one signed field (index picks which), always to a different meaning.
fn mutate(spec: &mut EdgeNodeSpec, which: u8, other_key: &str) {
    match which % 14 {
        0 => spec.node_name.push('x'),
        1 => spec.operator.push('='),
        2 => spec.public_key = other_key.to_string(),
        3 => {
            spec.location = match spec.location.take() {
                Some(_) => None,
                None => Some(EdgeLocation {
                    latitude: 1.0,
                    longitude: 2.0,
                    country: None,
                }),
            }
        }
        4 => {
            let l = spec.location.get_or_insert(EdgeLocation {
                latitude: 0.0,
                longitude: 0.0,
                country: None,
            });
            l.latitude = if l.latitude > 0.0 {
                l.latitude - 1.0
            } else {
                l.latitude + 1.0
            };
        }
        5 => {
            let l = spec.location.get_or_insert(EdgeLocation {
                latitude: 0.0,
                longitude: 0.0,
                country: None,
            });
            l.longitude = if l.longitude > 0.0 {
                l.longitude - 0.000001
            } else {
                l.longitude + 0.5
            };
        }
        6 => {
            let l = spec.location.get_or_insert(EdgeLocation {
                latitude: 0.0,
                longitude: 0.0,
                country: None,
            });
            l.country = match l.country.take() {
                Some(c) if c == "DE" => Some("FR".into()),
                _ => Some("DE".into()),
            };
        }
        7 => {
            let c = spec.capacity.get_or_insert(EdgeCapacity {
                cpu: None,
                memory: None,
                pods: None,
            });
            c.cpu = Some(Quantity(format!(
                "{}m",
                c.cpu.as_ref().map_or(0, |q| q.0.len()) + 1
            )));
        }
        8 => {
            let c = spec.capacity.get_or_insert(EdgeCapacity {
                cpu: None,
                memory: None,
                pods: None,
            });
            c.memory = match c.memory.take() {
                Some(_) => None,
                None => Some(Quantity("1Gi".into())),
            };
        }
        9 => {
            let c = spec.capacity.get_or_insert(EdgeCapacity {
                cpu: None,
                memory: None,
                pods: None,
            });
            c.pods = Some(c.pods.map_or(0, |p| p + 1));
        }
        10 => {
            spec.price_per_hour = match spec.price_per_hour {
                Some(p) if p > 0.0 => Some(p + 0.000001),
                Some(_) => None,
                None => Some(0.01),
            }
        }
        11 => {
            spec.labels.insert("added=".into(), "%".into());
        }
        12 => match spec.labels.keys().next().cloned() {
            Some(k) => {
                let v = spec.labels.remove(&k).unwrap_or_default();
                spec.labels.insert(format!("{k}\n"), v);
            }
            None => {
                spec.labels.insert(String::new(), String::new());
            }
        },
        _ => match spec.labels.iter_mut().next() {
            Some((_, v)) => v.push('\u{85}'),
            None => {
                spec.labels.insert("k".into(), "v".into());
            }
        },
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_signed_registration_always_verifies(spec in registration(), seed in any::<[u8; 32]>()) {
        let mut spec = spec;
        let key = NodeKey::from_seed(seed);
        key.sign(&mut spec).expect("generated numbers have 6 decimals");
        prop_assert_eq!(verify_signature(&spec), Ok(()));
        prop_assert!(verify(&spec, &TrustPolicy::open()).verified);
        prop_assert_eq!(spec.public_key.len(), 44);
        prop_assert_eq!(spec.signature.len(), 88);
    }

    #[test]
    fn changing_any_signed_field_breaks_verification(
        spec in registration(),
        seed in any::<[u8; 32]>(),
        which in any::<u8>(),
    ) {
        let mut signed = spec;
        NodeKey::from_seed(seed).sign(&mut signed).expect("signs");
        let other_key = NodeKey::from_seed([seed[0].wrapping_add(1); 32]).public_key_base64();
        let mut tampered = signed.clone();
        mutate(&mut tampered, which, &other_key);
        prop_assert_ne!(meaning(&tampered), meaning(&signed), "the mutation changes something");
        prop_assert!(verify_signature(&tampered).is_err());
        prop_assert!(!verify(&tampered, &TrustPolicy::open()).verified);
    }

    #[test]
    fn the_encoding_reads_back_to_the_registration(spec in registration()) {
        let text = canonical_string(&spec).expect("encodes");
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(decode(&text), meaning(&spec));
    }

    #[test]
    fn distinct_registrations_never_share_an_encoding(a in registration(), b in registration()) {
        let (ea, eb) = (canonical_bytes(&a).expect("a"), canonical_bytes(&b).expect("b"));
        prop_assert_eq!(ea == eb, meaning(&a) == meaning(&b));
    }

    #[test]
    fn garbage_keys_and_signatures_are_errors_not_panics(
        spec in registration(),
        key in ".{0,100}",
        signature in ".{0,120}",
        b64_key in proptest::string::string_regex("[A-Za-z0-9+/]{0,50}={0,2}").expect("regex"),
    ) {
        let mut s = spec;
        for (k, sig) in [(key.clone(), signature.clone()), (b64_key.clone(), signature), (b64_key, key)] {
            s.public_key = k;
            s.signature = sig;
            let result = verify_signature(&s);
            prop_assert!(result.is_err());
            let verdict = verify(&s, &TrustPolicy::open());
            prop_assert!(!verdict.verified);
            prop_assert!(!verdict.message.is_empty());
        }
    }

    #[test]
    fn a_valid_signature_by_another_key_is_a_mismatch(spec in registration(), seed in any::<[u8; 32]>()) {
        let mut s = spec;
        NodeKey::from_seed(seed).sign(&mut s).expect("signs");
        let mut other = [0u8; 32];
        other.copy_from_slice(&seed);
        other[31] ^= 1;
        s.signature = NodeKey::from_seed(other)
            .sign_bytes(&canonical_bytes(&s).expect("encodes"));
        prop_assert_eq!(verify_signature(&s), Err(SignatureError::Mismatch));
    }

    #[test]
    fn strict_mode_verifies_exactly_allowed_unrevoked_keys(
        spec in registration(),
        seed in 0u8..4,
        allowed in proptest::collection::btree_set(0u8..4, 0..4),
        revoked in proptest::collection::btree_set(0u8..4, 0..2),
        operator_known in any::<bool>(),
    ) {
        let pk = |n: u8| NodeKey::from_seed([n; 32]).public_key_base64();
        let mut s = spec;
        NodeKey::from_seed([seed; 32]).sign(&mut s).expect("signs");
        let mut policy = TrustPolicy {
            mode: Mode::Strict,
            revoked_keys: revoked.iter().map(|n| pk(*n)).collect(),
            ..TrustPolicy::default()
        };
        if operator_known {
            policy.allowed_operators.insert(s.operator.clone(), allowed.iter().map(|n| pk(*n)).collect());
        }
        let expected = operator_known && allowed.contains(&seed) && !revoked.contains(&seed);
        prop_assert_eq!(verify(&s, &policy).verified, expected);
    }

    #[test]
    fn policy_parsing_never_panics(entries in proptest::collection::btree_map(
        prop_oneof![Just("mode".to_string()), Just("allowedOperators".to_string()), Just("revokedKeys".to_string()), ".{0,8}"],
        ".{0,60}",
        0..4,
    )) {
        let _ = TrustPolicy::from_data(&entries);
    }

    #[test]
    fn score_is_bounded_and_monotone(
        a in proptest::option::of(prop_oneof![any::<f64>(), 0.0f64..=1.0]),
        b in 0.0f64..=1.0,
        p in proptest::option::of(prop_oneof![any::<f64>(), 0.0f64..10.0]),
        q in 0.0f64..10.0,
    ) {
        let s = score(a, p);
        prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s), "{}", s);
        let (lo, hi) = (b.min(0.5), b.max(0.5));
        prop_assert!(score(Some(lo), Some(q)) <= score(Some(hi), Some(q)));
        let (cheap, dear) = (q.min(1.0), q.max(1.0));
        prop_assert!(score(Some(b), Some(cheap)) >= score(Some(b), Some(dear)));
    }

    #[test]
    fn availability_stays_a_fraction_and_quarantine_needs_enough_flaps(
        steps in proptest::collection::vec((any::<bool>(), 0i64..400), 1..40),
        start in proptest::option::of(any::<f64>()),
    ) {
        let settings = ReputationSettings::default();
        let mut r = Reputation::resume(start, None);
        let mut t = 0;
        let mut downs = 0usize;
        let mut was_ready = None;
        for (ready, dt) in steps {
            t += dt;
            let readiness = if ready { Readiness::ready_since(at(0)) } else { Readiness::not_ready() };
            let observed = r.observe(readiness, at(t), &settings);
            if was_ready == Some(true) && !ready {
                downs += 1;
            }
            was_ready = Some(ready);
            let a = r.availability().expect("known after a look");
            prop_assert!((0.0..=1.0).contains(&a), "{}", a);
            prop_assert!(!observed.quarantined || downs >= 3);
        }
    }
}
