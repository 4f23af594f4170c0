//! Workloads on hosts edgeshift does not control: what an edge pod may carry there, and the
//! restricted security settings it always gets. Pure functions over pod specs.

use k8s_openapi::api::core::v1::{
    Capabilities, EnvFromSource, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecurityContext, Volume,
};

use crate::api::EdgeFallback;

/// The one capability the restricted Pod Security Standard lets a container add.
const ALLOWED_ADDED_CAPABILITY: &str = "NET_BIND_SERVICE";

/// Everything in `template` that hands a credential to the node: Secret volumes (also inside
/// projected volumes and as volume-plugin credentials), `env[].valueFrom.secretKeyRef`,
/// `envFrom[].secretRef`, and service account tokens (projected, or an explicit
/// `automountServiceAccountToken: true`). `imagePullSecrets` are not listed: the kubelet
/// uses them, they are not mounted into the pod. One entry per reference, in template order,
/// e.g. `volume 'creds': Secret 'db'`.
pub fn edge_secret_refs(template: &PodTemplateSpec) -> Vec<String> {
    let mut refs = Vec::new();
    let Some(spec) = template.spec.as_ref() else {
        return refs;
    };
    for volume in spec.volumes.iter().flatten() {
        volume_secret_refs(volume, &mut refs);
    }
    if spec.automount_service_account_token == Some(true) {
        refs.push("automountServiceAccountToken: true (the service account token)".to_string());
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.env.as_deref(), c.env_from.as_deref()))
        .chain(
            spec.containers
                .iter()
                .map(|c| (c.name.as_str(), c.env.as_deref(), c.env_from.as_deref())),
        )
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.name.as_str(), c.env.as_deref(), c.env_from.as_deref())),
        );
    for (name, env, env_from) in containers {
        env_secret_refs(name, env.unwrap_or_default(), &mut refs);
        env_from_secret_refs(name, env_from.unwrap_or_default(), &mut refs);
    }
    let mut seen = std::collections::BTreeSet::new();
    refs.retain(|r| seen.insert(r.clone()));
    refs
}

fn volume_secret_refs(volume: &Volume, refs: &mut Vec<String>) {
    let name = &volume.name;
    if let Some(s) = &volume.secret {
        refs.push(format!(
            "volume '{name}': Secret '{}'",
            s.secret_name.as_deref().unwrap_or("")
        ));
    }
    if let Some(p) = &volume.projected {
        for source in p.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                refs.push(format!("volume '{name}': projected Secret '{}'", s.name));
            }
            if source.service_account_token.is_some() {
                refs.push(format!("volume '{name}': projected service account token"));
            }
        }
    }
    // Volume plugins that read credentials from a Secret on the node.
    let plugin_refs = [
        (
            "azureFile",
            volume.azure_file.as_ref().map(|v| v.secret_name.clone()),
        ),
        (
            "cephfs",
            volume
                .cephfs
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "cinder",
            volume
                .cinder
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "csi",
            volume
                .csi
                .as_ref()
                .and_then(|v| v.node_publish_secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "flexVolume",
            volume
                .flex_volume
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "iscsi",
            volume
                .iscsi
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "rbd",
            volume
                .rbd
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
        (
            "scaleIO",
            volume.scale_io.as_ref().map(|v| v.secret_ref.name.clone()),
        ),
        (
            "storageos",
            volume
                .storageos
                .as_ref()
                .and_then(|v| v.secret_ref.as_ref())
                .map(|r| r.name.clone()),
        ),
    ];
    for (plugin, secret) in plugin_refs {
        if let Some(secret) = secret {
            refs.push(format!(
                "volume '{name}': {plugin} credentials Secret '{secret}'"
            ));
        }
    }
}

fn env_secret_refs(container: &str, env: &[EnvVar], refs: &mut Vec<String>) {
    for var in env {
        if let Some(s) = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            refs.push(format!(
                "container '{container}' env {}: Secret '{}' key '{}'",
                var.name, s.name, s.key
            ));
        }
    }
}

fn env_from_secret_refs(container: &str, env_from: &[EnvFromSource], refs: &mut Vec<String>) {
    for source in env_from {
        if let Some(s) = &source.secret_ref {
            refs.push(format!(
                "container '{container}' envFrom: Secret '{}'",
                s.name
            ));
        }
    }
}

/// Makes an edge pod spec meet the restricted Pod Security Standard, keeping what the
/// template sets where it is at least as strict: run as non-root, RuntimeDefault seccomp (a
/// Localhost profile is kept), no privilege escalation, not privileged, ALL capabilities
/// dropped (only NET_BIND_SERVICE may be added back), no Unmasked /proc. Also sets
/// `runtimeClassName` from `fallback.edge`, and keeps the service account token off the node
/// unless `fallback.edge.allowSecrets`.
pub fn harden_for_edge(spec: &mut PodSpec, edge: &EdgeFallback) {
    let pod = spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    pod.run_as_non_root = Some(true);
    harden_seccomp(&mut pod.seccomp_profile, true);
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        harden_container(
            container
                .security_context
                .get_or_insert_with(SecurityContext::default),
        );
    }
    for container in spec.ephemeral_containers.iter_mut().flatten() {
        harden_container(
            container
                .security_context
                .get_or_insert_with(SecurityContext::default),
        );
    }
    if let Some(class) = &edge.runtime_class_name {
        spec.runtime_class_name = Some(class.clone());
    }
    if !edge.allow_secrets {
        spec.automount_service_account_token = Some(false);
    }
}

fn harden_seccomp(profile: &mut Option<SeccompProfile>, required: bool) {
    let keep = profile
        .as_ref()
        .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost");
    if !keep && (required || profile.is_some()) {
        *profile = Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        });
    }
}

fn harden_container(sc: &mut SecurityContext) {
    sc.allow_privilege_escalation = Some(false);
    if sc.privileged == Some(true) {
        sc.privileged = Some(false);
    }
    if sc.run_as_non_root == Some(false) {
        sc.run_as_non_root = Some(true);
    }
    if sc.proc_mount.as_deref() == Some("Unmasked") {
        sc.proc_mount = Some("Default".to_string());
    }
    harden_seccomp(&mut sc.seccomp_profile, false);
    let caps = sc.capabilities.get_or_insert_with(Capabilities::default);
    let drop = caps.drop.get_or_insert_with(Vec::new);
    if !drop.iter().any(|c| c == "ALL") {
        drop.push("ALL".to_string());
    }
    if let Some(add) = caps.add.as_mut() {
        add.retain(|c| c == ALLOWED_ADDED_CAPABILITY);
        if add.is_empty() {
            caps.add = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({ "spec": spec })).expect("pod template")
    }

    #[test]
    fn a_plain_template_references_no_secret() {
        let t = template(serde_json::json!({
            "containers": [{"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}]}],
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "tmp", "emptyDir": {}}]
        }));
        assert_eq!(edge_secret_refs(&t), Vec::<String>::new());
        assert_eq!(
            edge_secret_refs(&PodTemplateSpec::default()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_way_of_handing_a_secret_to_the_pod_is_listed() {
        let t = template(serde_json::json!({
            "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "bulk"}}]}],
            "containers": [{"name": "app", "image": "x", "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ]}],
            "automountServiceAccountToken": true,
            "volumes": [
                {"name": "creds", "secret": {"secretName": "db"}},
                {"name": "bundle", "projected": {"sources": [
                    {"configMap": {"name": "c"}},
                    {"secret": {"name": "tls"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}},
                {"name": "disk", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-creds"}}}
            ]
        }));
        assert_eq!(
            edge_secret_refs(&t),
            vec![
                "volume 'creds': Secret 'db'",
                "volume 'bundle': projected Secret 'tls'",
                "volume 'bundle': projected service account token",
                "volume 'disk': csi credentials Secret 'csi-creds'",
                "automountServiceAccountToken: true (the service account token)",
                "container 'init' envFrom: Secret 'bulk'",
                "container 'app' env PASSWORD: Secret 'db' key 'password'",
            ]
        );
    }

    fn pod(spec: serde_json::Value) -> PodSpec {
        serde_json::from_value(spec).expect("pod spec")
    }

    #[test]
    fn edge_pods_get_the_restricted_settings_merged_with_the_template() {
        let mut spec = pod(serde_json::json!({
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
            "containers": [
                {"name": "app", "image": "x", "securityContext": {
                    "privileged": true, "readOnlyRootFilesystem": true,
                    "capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE"], "drop": ["MKNOD"]}}},
                {"name": "sidecar", "image": "y"}
            ]
        }));
        let edge = EdgeFallback {
            runtime_class_name: Some("gvisor".into()),
            ..EdgeFallback::default()
        };
        harden_for_edge(&mut spec, &edge);
        let pod_sc = spec.security_context.clone().expect("pod securityContext");
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.run_as_user, Some(1000), "template values kept");
        assert_eq!(pod_sc.fs_group, Some(2000));
        assert_eq!(
            pod_sc.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let app = spec.containers[0].security_context.clone().expect("app");
        assert_eq!(app.privileged, Some(false));
        assert_eq!(app.allow_privilege_escalation, Some(false));
        assert_eq!(app.read_only_root_filesystem, Some(true));
        let caps = app.capabilities.expect("capabilities");
        assert_eq!(
            caps.drop,
            Some(vec!["MKNOD".to_string(), "ALL".to_string()])
        );
        assert_eq!(caps.add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        let sidecar = spec.containers[1]
            .security_context
            .clone()
            .expect("sidecar");
        assert_eq!(sidecar.allow_privilege_escalation, Some(false));
        assert_eq!(
            sidecar.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(spec.automount_service_account_token, Some(false));
    }

    #[test]
    fn hardening_is_idempotent_and_keeps_stricter_choices() {
        let mut spec = pod(serde_json::json!({
            "runtimeClassName": "kata",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
            "containers": [{"name": "app", "image": "x", "securityContext": {
                "seccompProfile": {"type": "Unconfined"}, "runAsNonRoot": false, "procMount": "Unmasked"}}]
        }));
        let edge = EdgeFallback {
            allow_secrets: true,
            ..EdgeFallback::default()
        };
        harden_for_edge(&mut spec, &edge);
        let once = spec.clone();
        harden_for_edge(&mut spec, &edge);
        assert_eq!(spec, once);
        assert_eq!(spec.runtime_class_name.as_deref(), Some("kata"));
        assert_eq!(spec.automount_service_account_token, None);
        let pod_profile = spec
            .security_context
            .and_then(|s| s.seccomp_profile)
            .expect("profile");
        assert_eq!(
            (
                pod_profile.type_.as_str(),
                pod_profile.localhost_profile.as_deref()
            ),
            ("Localhost", Some("p.json"))
        );
        let app = spec.containers[0].security_context.clone().expect("app");
        assert_eq!(
            app.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
        assert_eq!(app.run_as_non_root, Some(true));
        assert_eq!(app.proc_mount.as_deref(), Some("Default"));
    }
}
