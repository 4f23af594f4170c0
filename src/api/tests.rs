//! The generated CRDs: committed, structural, documented, defaulted like the Rust types, and
//! their CEL rules compile, fit the cost budget and reject what they should — checked with
//! kube's client-side CEL evaluator, without an API server.

use std::path::PathBuf;

use kube::core::cel::{analyze_rule, apply_defaults, compile_schema, ScopeContext, Validator};
use serde_json::{json, Value};

use super::*;

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value);
    match schema {
        Some(Ok(value)) => value,
        other => panic!("{} has no openAPIV3Schema: {other:?}", crd.spec.names.kind),
    }
}

fn crd_of(kind: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

#[test]
fn crds_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let update = std::env::var("EDGESHIFT_UPDATE_CRDS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for crd in crds() {
        let path = dir.join(crd_file_name(&crd));
        let generated =
            crd_yaml(&crd).unwrap_or_else(|e| panic!("serializing {}: {e}", crd.spec.names.kind));
        if update {
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            std::fs::write(&path, &generated)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            continue;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {}; regenerate with `EDGESHIFT_UPDATE_CRDS=1 cargo test --lib crds_are_up_to_date`",
        stale.join(", ")
    );
}

#[test]
fn crds_yaml_has_one_document_per_crd() {
    let yaml = crds_yaml().unwrap_or_default();
    assert_eq!(yaml.matches("\n---\n").count(), 3);
    for name in [
        "cloudregions.edgeshift.io",
        "edgenodes.edgeshift.io",
        "edgeservices.edgeshift.io",
    ] {
        assert!(yaml.contains(&format!("name: {name}")), "{name} missing");
    }
}

#[test]
fn every_kind_has_status_printer_columns_and_the_right_scope() {
    for (kind, scope, columns) in [
        (
            "CloudRegion",
            "Cluster",
            vec!["Provider", "Region", "Phase", "Ready-Nodes", "Drain", "Age"],
        ),
        (
            "EdgeNode",
            "Cluster",
            vec!["Node", "Operator", "Verified", "Ready", "Score", "Age"],
        ),
        (
            "EdgeService",
            "Namespaced",
            vec!["Phase", "Cloud", "Edge", "Edge-Traffic", "Age"],
        ),
    ] {
        let crd = crd_of(kind);
        let version = &crd.spec.versions[0];
        assert_eq!(crd.spec.scope, scope, "{kind}");
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{kind} has no status subresource"
        );
        let names: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, columns, "{kind}");
    }
    assert_eq!(
        crd_of("EdgeService").spec.names.short_names,
        Some(vec!["es".to_string()])
    );
}

/// Walks a schema and collects every way it is not structural or not documented.
fn check_schema(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in ["anyOf", "oneOf", "allOf", "not", "$ref"] {
        if object.contains_key(forbidden) {
            problems.push(format!("{path}: uses {forbidden}"));
        }
    }
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let type_ = object.get("type").and_then(Value::as_str);
    if type_.is_none() && !int_or_string {
        problems.push(format!("{path}: no type"));
    }
    // Unknown fields are kept nowhere: even the pod template carries Kubernetes' own schema.
    if preserve {
        problems.push(format!("{path}: preserves unknown fields"));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        if type_ != Some("object") {
            problems.push(format!("{path}: has properties but is not an object"));
        }
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            let documented = property
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !documented && !matches!(child.as_str(), ".apiVersion" | ".kind" | ".metadata") {
                problems.push(format!("{child}: no description"));
            }
            check_schema(property, &child, problems);
        }
    }
    if let Some(items) = object.get("items") {
        check_schema(items, &format!("{path}[]"), problems);
        if object.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            let required: Vec<&str> = items
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for key in object
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !required.contains(&key) {
                    problems.push(format!("{path}: list-map key {key} is not required"));
                }
            }
        }
    }
    if let Some(values) = object.get("additionalProperties") {
        if values.is_object() {
            check_schema(values, &format!("{path}{{}}"), problems);
        }
    }
}

#[test]
fn schemas_are_structural_and_every_field_is_documented() {
    for crd in crds() {
        let mut problems = Vec::new();
        check_schema(&schema_of(&crd), "", &mut problems);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            crd.spec.names.kind,
            problems.join("\n")
        );
    }
}

/// Every `x-kubernetes-validations` rule with the schema node it sits on.
fn rules(node: &Value, path: &str, out: &mut Vec<(String, String, Value)>) {
    if let Some(list) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in list {
            let text = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
            out.push((path.to_string(), text.to_string(), node.clone()));
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            rules(property, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        rules(items, &format!("{path}[]"), out);
    }
}

#[test]
fn cel_rules_compile_have_messages_and_fit_the_cost_budget() {
    let mut count = 0;
    for crd in crds() {
        let schema = schema_of(&crd);
        let mut found = Vec::new();
        rules(&schema, "", &mut found);
        for (path, rule, node) in found {
            count += 1;
            let compiled = compile_schema(&node);
            assert!(
                !compiled.has_errors(),
                "{path}: {rule} does not compile: {:?}",
                compiled.compilation_errors()
            );
            // The scope check mistakes variables bound by macros (`all(s, ...)`) for free ones.
            let bound = macro_variables(&rule);
            let warnings: Vec<_> = analyze_rule(&rule, &compiled, ScopeContext::CrdValidation)
                .into_iter()
                .filter(|w| {
                    !bound
                        .iter()
                        .any(|v| w.message.starts_with(&format!("variable '{v}' ")))
                })
                .collect();
            assert!(warnings.is_empty(), "{path}: {rule}: {warnings:?}");
        }
        let mut messages = Vec::new();
        collect_messages(&schema, &mut messages);
        for message in messages {
            assert!(
                message.starts_with("spec."),
                "a CEL message names its field: {message}"
            );
        }
    }
    assert_eq!(
        count, 7,
        "the rules counted here are the rules the CRDs carry"
    );
}

/// Variables bound by CEL macros in `rule`: the `x` of `.all(x, ...)`, `.exists(x, ...)`, ...
fn macro_variables(rule: &str) -> Vec<String> {
    let mut bound = Vec::new();
    for macro_name in [".all(", ".exists(", ".exists_one(", ".map(", ".filter("] {
        for (start, _) in rule.match_indices(macro_name) {
            let rest = &rule[start + macro_name.len()..];
            if let Some((variable, _)) = rest.split_once(',') {
                let variable = variable.trim();
                if !variable.is_empty() && variable.chars().all(|c| c.is_alphanumeric() || c == '_')
                {
                    bound.push(variable.to_string());
                }
            }
        }
    }
    bound
}

fn collect_messages(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(list) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                for rule in list {
                    match rule.get("message").and_then(Value::as_str) {
                        Some(message) => out.push(message.to_string()),
                        None => out.push(format!("(no message for {rule})")),
                    }
                }
            }
            map.values().for_each(|v| collect_messages(v, out));
        }
        Value::Array(list) => list.iter().for_each(|v| collect_messages(v, out)),
        _ => {}
    }
}

/// The schema's defaults (as the API server applies them) give the same object as serde's.
#[test]
fn schema_defaults_match_the_rust_defaults() {
    let minimal = [
        (
            "EdgeService",
            json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "regions": ["aws-us-east-1"],
                    "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}},
                    "traffic": {"ports": [{"name": "http", "port": 80}], "dns": {"hostname": "web.example.com"}},
                    "fallback": {"edge": {"requirements": {}}}
                }
            }),
        ),
        (
            "CloudRegion",
            json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "CloudRegion",
                "metadata": {"name": "aws-us-east-1"},
                "spec": {
                    "provider": "aws", "region": "us-east-1",
                    "probes": [
                        {"name": "api", "http": {"url": "https://api.example.com/healthz"}},
                        {"name": "db", "tcp": {"host": "db.example.com", "port": 5432}}
                    ]
                }
            }),
        ),
        (
            "EdgeNode",
            json!({
                "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeNode",
                "metadata": {"name": "edge-1"},
                "spec": {
                    "nodeName": "edge-1", "operator": "op",
                    "publicKey": fixtures::TEST_PUBLIC_KEY, "signature": fixtures::TEST_SIGNATURE
                }
            }),
        ),
    ];
    for (kind, object) in minimal {
        let schema = schema_of(&crd_of(kind));
        let defaulted = apply_defaults(&schema, &object);
        let through_serde = match kind {
            "EdgeService" => {
                serde_json::from_value::<EdgeService>(object.clone()).and_then(serde_json::to_value)
            }
            "CloudRegion" => {
                serde_json::from_value::<CloudRegion>(object.clone()).and_then(serde_json::to_value)
            }
            _ => serde_json::from_value::<EdgeNode>(object.clone()).and_then(serde_json::to_value),
        };
        let through_serde = through_serde.unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(
            defaulted["spec"], through_serde["spec"],
            "{kind}: schema and serde defaults differ"
        );
    }
}

#[test]
fn documented_defaults_are_the_ones_in_the_schema() {
    let spec: EdgeServiceSpec = serde_json::from_value(json!({
        "regions": ["aws-us-east-1"],
        "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.placement, Placement::Spread);
    assert_eq!(spec.fallback.mode, FallbackMode::Spillover);
    let edge = &spec.fallback.edge;
    assert_eq!(
        (
            edge.max_replicas,
            edge.warm_replicas,
            edge.overprovision_percent,
            edge.max_per_node
        ),
        (10, 0, 25, 2)
    );
    assert!(!edge.allow_secrets);
    let failback = &spec.fallback.failback;
    assert!(failback.automatic);
    assert_eq!(failback.stabilization_seconds, 300);
    assert_eq!(failback.steps, vec![25, 50, 100]);

    let region: CloudRegionSpec = serde_json::from_value(json!({
        "provider": "aws", "region": "us-east-1",
        "probes": [{"name": "api", "http": {"url": "https://x.example.com"}}]
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            region.interval_seconds,
            region.failure_threshold,
            region.success_threshold
        ),
        (2, 3, 3)
    );
    assert_eq!(region.quorum, Quorum::Majority);
    assert!(!region.drain);
    assert_eq!(region.node_readiness.min_ready_fraction, 0.5);
    let http = region.probes[0]
        .http
        .as_ref()
        .map(|h| (h.expected_status.clone(), h.timeout_millis));
    assert_eq!(http, Some((vec![200], 1000)));
    assert_eq!(
        region.effective_node_selector(),
        [(
            "topology.kubernetes.io/region".to_string(),
            "us-east-1".to_string()
        )]
        .into()
    );
}

fn validate(kind: &str, object: &Value) -> Result<(), Vec<String>> {
    Validator::new()
        .validate(&schema_of(&crd_of(kind)), object, None)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
}

fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_fixtures_are_valid_objects() {
    assert_eq!(
        validate("EdgeService", &as_json(&EdgeService::test())),
        Ok(())
    );
    assert_eq!(
        validate("CloudRegion", &as_json(&CloudRegion::test("aws-us-east-1"))),
        Ok(())
    );
    assert_eq!(
        validate("EdgeNode", &as_json(&EdgeNode::test("edge-1"))),
        Ok(())
    );
    assert_eq!(fixtures::TEST_PUBLIC_KEY.len(), 44);
    assert_eq!(fixtures::TEST_SIGNATURE.len(), 88);
}

#[test]
fn cel_rules_reject_bad_objects_with_messages_that_name_the_field() {
    let service = as_json(&EdgeService::test());
    let region = as_json(&CloudRegion::test("aws-us-east-1"));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "EdgeService",
            with(
                &service,
                "/spec/fallback/edge",
                json!({"warmReplicas": 5, "maxReplicas": 2}),
            ),
            "spec.fallback.edge.warmReplicas must be <= spec.fallback.edge.maxReplicas",
        ),
        (
            "EdgeService",
            with(
                &service,
                "/spec/fallback/failback/steps",
                json!([50, 25, 100]),
            ),
            "spec.fallback.failback.steps must be strictly ascending",
        ),
        (
            "EdgeService",
            with(
                &service,
                "/spec/fallback/failback/steps",
                json!([25, 25, 100]),
            ),
            "spec.fallback.failback.steps must be strictly ascending",
        ),
        (
            "EdgeService",
            with(&service, "/spec/fallback/failback/steps", json!([25, 50])),
            "spec.fallback.failback.steps must end with 100",
        ),
        (
            "EdgeService",
            with(&service, "/spec/regions", json!(["aws-us-east-1", "edge"])),
            "spec.regions must not contain 'edge'",
        ),
        (
            "CloudRegion",
            with(
                &region,
                "/spec/probes",
                json!([{"name": "both", "http": {"url": "https://x.example.com"}, "tcp": {"host": "x", "port": 1}}]),
            ),
            "each probe must set exactly one of http or tcp",
        ),
        (
            "CloudRegion",
            with(&region, "/spec/probes", json!([{"name": "neither"}])),
            "each probe must set exactly one of http or tcp",
        ),
        (
            "CloudRegion",
            with(
                &region,
                "/spec/probes",
                json!([{"name": "ftp", "http": {"url": "ftp://files.example.com"}}]),
            ),
            "spec.probes[].http.url must start with http:// or https://",
        ),
    ];
    for (kind, object, expected) in cases {
        match validate(kind, &object) {
            Ok(()) => panic!("{kind} accepted, expected {expected:?}: {object}"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{kind}: expected {expected:?}, got {errors:?}"
            ),
        }
    }
    // Ascending steps ending at 100, and warm == max, pass.
    let fine = with(&service, "/spec/fallback/failback/steps", json!([10, 100]));
    let fine = with(
        &fine,
        "/spec/fallback/edge",
        json!({"warmReplicas": 3, "maxReplicas": 3}),
    );
    assert_eq!(validate("EdgeService", &fine), Ok(()));
}

/// `object` with the value at JSON pointer `pointer` replaced (parents must exist).
fn with(object: &Value, pointer: &str, value: Value) -> Value {
    let mut copy = object.clone();
    match copy.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!("{pointer} not in {object}"),
    }
    copy
}

#[test]
fn conditions_of_each_kind_are_a_map_keyed_by_type() {
    for crd in crds() {
        let schema = schema_of(&crd);
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{}",
            crd.spec.names.kind
        );
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }
}

#[test]
fn the_pod_template_is_kept_as_its_json_and_reads_back_the_same() {
    let json = serde_json::json!({
        "metadata": {"labels": {"app": "shop"}},
        "spec": {"containers": [{"name": "app", "image": "shop:1",
                                 "ports": [{"containerPort": 8080}]}],
                 "unknownField": "dropped, as by PodTemplateSpec"}
    });
    let direct: k8s_openapi::api::core::v1::PodTemplateSpec =
        serde_json::from_value(json.clone()).expect("PodTemplateSpec");
    let kept: crate::api::PodTemplate = serde_json::from_value(json).expect("PodTemplate");
    assert_eq!(kept.spec(), direct);
    assert_eq!(
        serde_json::to_value(&kept).expect("serialize"),
        serde_json::to_value(&direct).expect("serialize")
    );
    assert_eq!(kept, crate::api::PodTemplate::from(&direct));
    assert!(!kept.as_json().contains(' ') && !kept.as_json().contains("unknownField"));
    // Cloning shares the text.
    let copy = kept.clone();
    assert!(std::ptr::eq(copy.as_json(), kept.as_json()));
}

#[test]
fn a_template_kubernetes_would_not_read_is_refused_with_the_edge_service() {
    let es = serde_json::json!({
        "apiVersion": "edgeshift.io/v1alpha1", "kind": "EdgeService",
        "metadata": {"name": "shop", "namespace": "prod"},
        "spec": {"regions": ["aws-us-east-1"],
                 "template": {"spec": {"containers": [{"name": "app", "image": "shop:1",
                                                       "ports": "8080"}]}}}
    });
    let err = serde_json::from_value::<EdgeService>(es).expect_err("refused");
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn the_pod_template_carries_kubernetes_own_pod_schema_with_our_bounds() {
    let schema = schema_of(&crd_of("EdgeService"));
    let spec = &schema["properties"]["spec"]["properties"]["template"]["properties"]["spec"];
    let containers = &spec["properties"]["containers"];
    let port = &containers["items"]["properties"]["ports"]["items"]["properties"]["containerPort"];
    assert_eq!(port["type"], "integer", "{port}");
    assert!(port["description"]
        .as_str()
        .is_some_and(|d| d.contains("port")));
    assert_eq!(containers["minItems"], 1);
    assert_eq!(containers["maxItems"], edge_service::MAX_CONTAINERS);
    assert_eq!(
        spec["properties"]["initContainers"]["maxItems"],
        edge_service::MAX_CONTAINERS
    );
    let required = containers["items"]["required"]
        .as_array()
        .expect("required");
    assert!(required.iter().any(|r| r == "name") && required.iter().any(|r| r == "image"));
    // Pod fields beyond the containers are described too (what `kubectl explain` shows).
    for field in [
        "restartPolicy",
        "nodeSelector",
        "tolerations",
        "volumes",
        "initContainers",
    ] {
        assert!(
            spec["properties"][field]["description"].is_string(),
            "{field} is not described"
        );
    }
}
