//! The canonical bytes of a registration: exactly what a node operator signs.
//!
//! ```text
//! edgeshift-registration-v1
//! nodeName=<nodeName>
//! operator=<operator>
//! publicKey=<publicKey>
//! location.latitude=<latitude, 6 decimals>      (these three only with a location;
//! location.longitude=<longitude, 6 decimals>     the country only when set)
//! location.country=<country>
//! capacity.cpu=<cpu as written>                 (each only when set)
//! capacity.memory=<memory as written>
//! capacity.pods=<pods, decimal integer>
//! pricePerHour=<price, 6 decimals>              (only when set)
//! label.<key>=<value>                           (one per label, keys sorted bytewise)
//! ```
//!
//! Every line ends with `\n`, the last one too. In every value and label key, `%` and control
//! characters (U+0000–U+001F, U+007F–U+009F) are written as `%XX` per UTF-8 byte (uppercase
//! hex), and so is `=` in label keys: a line always splits at its first `=`, and no value can
//! forge a line. Numbers are
//! written with exactly 6 decimals (`-0` as `0.000000`), and a number with more precision than
//! that is refused rather than silently rounded: what is signed is exactly what is used.
//! `docs/joining.md` shows a worked example.

use std::fmt::Write as _;

use crate::api::EdgeNodeSpec;

/// The first line: the version of this encoding. A new encoding gets a new line.
pub const VERSION_LINE: &str = "edgeshift-registration-v1";

/// Decimals of every number in the encoding.
pub const DECIMALS: usize = 6;

/// Why a registration has no canonical encoding.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EncodingError {
    #[error("{field} is not a finite number")]
    NotFinite { field: &'static str },
    #[error("{field} = {value} has more than 6 decimals; registrations carry at most 6 so that what is signed is exactly what is used")]
    TooPrecise { field: &'static str, value: f64 },
}

/// The canonical encoding of `spec` (its `signature` is not part of it).
pub fn canonical_bytes(spec: &EdgeNodeSpec) -> Result<Vec<u8>, EncodingError> {
    canonical_string(spec).map(String::into_bytes)
}

/// [`canonical_bytes`] as text (it is always UTF-8).
pub fn canonical_string(spec: &EdgeNodeSpec) -> Result<String, EncodingError> {
    let mut out = String::with_capacity(256);
    out.push_str(VERSION_LINE);
    out.push('\n');
    line(&mut out, "nodeName", &spec.node_name);
    line(&mut out, "operator", &spec.operator);
    line(&mut out, "publicKey", &spec.public_key);
    if let Some(location) = &spec.location {
        line(
            &mut out,
            "location.latitude",
            &decimal("location.latitude", location.latitude)?,
        );
        line(
            &mut out,
            "location.longitude",
            &decimal("location.longitude", location.longitude)?,
        );
        if let Some(country) = &location.country {
            line(&mut out, "location.country", country);
        }
    }
    if let Some(capacity) = &spec.capacity {
        if let Some(cpu) = &capacity.cpu {
            line(&mut out, "capacity.cpu", &cpu.0);
        }
        if let Some(memory) = &capacity.memory {
            line(&mut out, "capacity.memory", &memory.0);
        }
        if let Some(pods) = capacity.pods {
            line(&mut out, "capacity.pods", &pods.to_string());
        }
    }
    if let Some(price) = spec.price_per_hour {
        line(&mut out, "pricePerHour", &decimal("pricePerHour", price)?);
    }
    // A BTreeMap iterates in bytewise key order: the documented order.
    for (key, value) in &spec.labels {
        out.push_str("label.");
        escape(&mut out, key, true);
        out.push('=');
        escape_into(&mut out, value);
        out.push('\n');
    }
    Ok(out)
}

fn line(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    escape_into(out, value);
    out.push('\n');
}

fn escape_into(out: &mut String, value: &str) {
    escape(out, value, false)
}

/// Writes `text`, with `%XX` per UTF-8 byte for `%`, control characters, and `=` in keys.
fn escape(out: &mut String, text: &str, key: bool) {
    for c in text.chars() {
        if c == '%' || c.is_control() || (key && c == '=') {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).as_bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// `value` with exactly 6 decimals; refused when that is not exactly `value`.
pub fn decimal(field: &'static str, value: f64) -> Result<String, EncodingError> {
    if !value.is_finite() {
        return Err(EncodingError::NotFinite { field });
    }
    // -0 and 0 are the same number: one spelling.
    let value = if value == 0.0 { 0.0 } else { value };
    let text = format!("{value:.DECIMALS$}");
    if text.parse::<f64>() != Ok(value) {
        return Err(EncodingError::TooPrecise { field, value });
    }
    Ok(text)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::api::{EdgeCapacity, EdgeLocation};

    pub(crate) fn spec() -> EdgeNodeSpec {
        EdgeNodeSpec {
            node_name: "edge-berlin-1".into(),
            operator: "alice".into(),
            public_key: "D0P7c8Cc6PZWM2yyN0dWUyDgbmcWBh5pfhdHmVcVhkU=".into(),
            signature: String::new(),
            location: Some(EdgeLocation {
                latitude: 52.52,
                longitude: 13.405,
                country: Some("DE".into()),
            }),
            capacity: Some(EdgeCapacity {
                cpu: Some(Quantity("4".into())),
                memory: Some(Quantity("8Gi".into())),
                pods: Some(20),
            }),
            price_per_hour: Some(0.05),
            labels: BTreeMap::from([
                ("network".to_string(), "fiber".to_string()),
                ("gpu".to_string(), "none".to_string()),
            ]),
        }
    }

    #[test]
    fn the_documented_example_encodes_to_these_exact_bytes() {
        let expected = "edgeshift-registration-v1\n\
                        nodeName=edge-berlin-1\n\
                        operator=alice\n\
                        publicKey=D0P7c8Cc6PZWM2yyN0dWUyDgbmcWBh5pfhdHmVcVhkU=\n\
                        location.latitude=52.520000\n\
                        location.longitude=13.405000\n\
                        location.country=DE\n\
                        capacity.cpu=4\n\
                        capacity.memory=8Gi\n\
                        capacity.pods=20\n\
                        pricePerHour=0.050000\n\
                        label.gpu=none\n\
                        label.network=fiber\n";
        assert_eq!(canonical_string(&spec()), Ok(expected.to_string()));
    }

    #[test]
    fn a_bare_registration_has_only_the_identity_lines() {
        let mut s = spec();
        s.location = None;
        s.capacity = None;
        s.price_per_hour = None;
        s.labels.clear();
        assert_eq!(
            canonical_string(&s).expect("encodes"),
            "edgeshift-registration-v1\nnodeName=edge-berlin-1\noperator=alice\n\
             publicKey=D0P7c8Cc6PZWM2yyN0dWUyDgbmcWBh5pfhdHmVcVhkU=\n"
        );
    }

    #[test]
    fn separators_and_control_characters_cannot_forge_lines() {
        let mut s = spec();
        s.labels = BTreeMap::from([("a=b".to_string(), "c\nlabel.x=%y".to_string())]);
        let text = canonical_string(&s).expect("encodes");
        assert!(text.ends_with("label.a%3Db=c%0Alabel.x=%25y\n"), "{text}");
        s.operator = "\u{85}é".into();
        let text = canonical_string(&s).expect("encodes");
        assert!(text.contains("operator=%C2%85é\n"), "{text}");
    }

    #[test]
    fn numbers_have_six_decimals_and_more_precision_is_refused() {
        assert_eq!(decimal("x", 0.05).as_deref(), Ok("0.050000"));
        assert_eq!(decimal("x", -0.0).as_deref(), Ok("0.000000"));
        assert_eq!(decimal("x", -33.868820).as_deref(), Ok("-33.868820"));
        assert_eq!(decimal("x", 1e9).as_deref(), Ok("1000000000.000000"));
        assert!(matches!(
            decimal("pricePerHour", 0.0500001),
            Err(EncodingError::TooPrecise {
                field: "pricePerHour",
                ..
            })
        ));
        assert_eq!(
            decimal("x", f64::NAN),
            Err(EncodingError::NotFinite { field: "x" })
        );
        assert_eq!(
            decimal("x", f64::INFINITY),
            Err(EncodingError::NotFinite { field: "x" })
        );
    }

    #[test]
    fn an_empty_capacity_means_the_same_as_none() {
        let mut a = spec();
        a.capacity = None;
        let mut b = spec();
        b.capacity = Some(EdgeCapacity {
            cpu: None,
            memory: None,
            pods: None,
        });
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
    }
}
