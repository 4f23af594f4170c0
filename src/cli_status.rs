//! `edgeshift status` (regions, edge nodes and services in one view) and `edgeshift plan`
//! (a what-if against the live cluster: where replicas and traffic would go now, and why).
//! Both only read.
use std::collections::BTreeMap;
use std::path::PathBuf;

use edgeshift::api::{CloudRegion, EdgeNode, EdgeService, TargetKind};
use edgeshift::controller::child_cache::ChildRecord;
use edgeshift::controller::children::LABEL_SERVICE;
use edgeshift::controller::observe::{edge_node_view_for, observed_targets};
use edgeshift::controller::slim::ChildDeployment;
use edgeshift::planner::{self, PlanInput, PreviousState, RegionView};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::{Api, Client, ResourceExt};

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn or_dash(s: Option<String>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

async fn list<K>(api: Api<K>, what: &str) -> Result<Vec<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing {what}: {e}"))
}

/// Regions, edge nodes and services, with phases and traffic weights.
pub async fn status(client: Client, namespace: Option<&str>) -> Result<String, String> {
    let regions = list(Api::<CloudRegion>::all(client.clone()), "CloudRegions").await?;
    let nodes = list(Api::<EdgeNode>::all(client.clone()), "EdgeNodes").await?;
    // One by one, as the operator reads them: an unreadable object is a row of its own.
    let services = match namespace {
        Some(ns) => {
            list(
                Api::<DeserializeGuard<EdgeService>>::namespaced(client.clone(), ns),
                "EdgeServices",
            )
            .await?
        }
        None => {
            list(
                Api::<DeserializeGuard<EdgeService>>::all(client.clone()),
                "EdgeServices",
            )
            .await?
        }
    };
    let mut out = String::new();
    let mut rows = vec![["REGION", "PROVIDER", "PHASE", "NODES", "SINCE", "PROBES"]
        .map(String::from)
        .to_vec()];
    for r in &regions {
        let st = r.status.clone().unwrap_or_default();
        let probes = st
            .probes
            .iter()
            .map(|p| format!("{}={}", p.name, if p.ok { "ok" } else { "failing" }))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            r.name_any(),
            r.spec.provider.clone(),
            r.phase().to_string(),
            or_dash(st.nodes),
            or_dash(st.last_transition_time.map(|t| t.0.to_string())),
            or_dash(Some(probes)),
        ]);
    }
    out.push_str(&table(rows));
    out.push_str("\n\n");
    let mut rows = vec![[
        "EDGE NODE",
        "NODE",
        "OPERATOR",
        "VERIFIED",
        "READY",
        "SCORE",
        "REASON",
    ]
    .map(String::from)
    .to_vec()];
    for n in &nodes {
        let st = n.status.clone().unwrap_or_default();
        rows.push(vec![
            n.name_any(),
            n.spec.node_name.clone(),
            n.spec.operator.clone(),
            st.verified.to_string(),
            st.ready.to_string(),
            st.score.map_or("-".into(), |s| format!("{s:.2}")),
            or_dash(st.reason),
        ]);
    }
    out.push_str(&table(rows));
    out.push_str("\n\n");
    let mut rows = vec![[
        "EDGESERVICE",
        "PHASE",
        "CLOUD",
        "EDGE",
        "TRAFFIC",
        "LAST FAILOVER",
    ]
    .map(String::from)
    .to_vec()];
    for guarded in &services {
        let s = match &guarded.0 {
            Ok(s) => s,
            Err(invalid) => {
                let meta = &invalid.metadata;
                rows.push(vec![
                    format!(
                        "{}/{}",
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default()
                    ),
                    "Unreadable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                continue;
            }
        };
        let st = s.status.clone().unwrap_or_default();
        let traffic = st
            .targets
            .iter()
            .filter(|t| t.traffic_weight > 0)
            .map(|t| format!("{} {}%", t.name, t.traffic_weight))
            .collect::<Vec<_>>()
            .join(", ");
        let failover = st.last_failover.map(|f| {
            let ready = f.edge_ready_millis.map_or(String::new(), |ms| {
                format!(", ready in {:.1}s", ms as f64 / 1000.0)
            });
            format!("{} ({}{ready})", f.from.join("+"), f.detected_at.0)
        });
        rows.push(vec![
            format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
            s.phase().to_string(),
            or_dash(st.cloud),
            or_dash(st.edge),
            or_dash(Some(traffic)),
            or_dash(failover),
        ]);
    }
    out.push_str(&table(rows));
    Ok(out)
}

/// What the planner would decide for the EdgeService in `file`, against the live cluster.
pub async fn plan(
    client: Client,
    file: &PathBuf,
    namespace: Option<&str>,
) -> Result<String, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let mut es: EdgeService = serde_yaml::from_str(&text)
        .map_err(|e| format!("{} is not an EdgeService: {e}", file.display()))?;
    let ns = namespace
        .map(String::from)
        .or_else(|| es.namespace())
        .unwrap_or_else(|| "default".into());
    es.metadata.namespace = Some(ns.clone());
    let name = es.name_any();
    // What the cluster already holds for it: its status and its children.
    let live = Api::<EdgeService>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading EdgeService {ns}/{name}: {e}"))?;
    if let Some(live) = &live {
        es.metadata.uid = live.metadata.uid.clone();
    }
    let regions = list(Api::<CloudRegion>::all(client.clone()), "CloudRegions").await?;
    let nodes = list(Api::<EdgeNode>::all(client.clone()), "EdgeNodes").await?;
    let deployments = list(
        Api::<ChildDeployment>::namespaced(client.clone(), &ns),
        "Deployments",
    )
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let key = format!("{ns}/{name}");
    let input = PlanInput {
        spec: es.spec.clone(),
        generation: es.metadata.generation,
        previous: live
            .as_ref()
            .and_then(|l| l.status.as_ref())
            .map(PreviousState::from_status)
            .unwrap_or_default(),
        regions: regions
            .iter()
            .filter(|r| es.spec.regions.contains(&r.name_any()))
            .map(RegionView::from_cloud_region)
            .collect(),
        edge_nodes: nodes
            .iter()
            .map(|n| edge_node_view_for(n, Some(&key), now))
            .collect(),
        observed: observed_targets(
            &es,
            &deployments
                .iter()
                .filter(|d| d.labels().get(LABEL_SERVICE) == Some(&name))
                .map(ChildRecord::from_deployment)
                .collect::<Vec<_>>(),
        ),
        now,
    };
    let plan = planner::plan(&input);
    let mut out = format!(
        "EdgeService {ns}/{name}: {}{}\n\n",
        plan.phase,
        if live.is_some() {
            ""
        } else {
            " (not in the cluster yet)"
        }
    );
    let mut rows = vec![[
        "TARGET",
        "KIND",
        "VERDICT",
        "REPLICAS NOW",
        "PLANNED",
        "READY",
        "TRAFFIC",
    ]
    .map(String::from)
    .to_vec()];
    let verdicts: BTreeMap<String, String> = input
        .regions
        .iter()
        .map(|r| (r.name.clone(), r.phase.to_string()))
        .collect();
    for t in &plan.targets {
        let observed = input.observed.get(&t.name).copied().unwrap_or_default();
        rows.push(vec![
            t.name.clone(),
            match t.kind {
                TargetKind::Region => "region".into(),
                TargetKind::Edge => "edge".into(),
            },
            match t.kind {
                TargetKind::Region => verdicts
                    .get(&t.name)
                    .cloned()
                    .unwrap_or_else(|| "no CloudRegion".into()),
                TargetKind::Edge => "-".into(),
            },
            format!("{} -> {}", observed.replicas, t.replicas),
            t.planned.to_string(),
            observed.ready.to_string(),
            format!("{}%", plan.weight(&t.name)),
        ]);
    }
    out.push_str(&table(rows));
    out.push_str(&format!(
        "\n\nedge candidates: {}\n",
        if plan.edge_candidates.is_empty() {
            "none".to_string()
        } else {
            plan.edge_candidates.join(", ")
        }
    ));
    out.push_str("\nwhy:\n");
    for c in &plan.conditions {
        out.push_str(&format!(
            "  {} {} ({}): {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    for n in &plan.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out.push_str("\n(nothing was written)\n");
    Ok(out)
}
