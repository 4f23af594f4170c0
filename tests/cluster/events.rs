//! The operator's Event recorder against the real API server: a repeat becomes a series on
//! the first Event (the patch the API server accepts), and a repeat of an Event that is gone
//! is recorded as a new one.
use edgeshift::controller::events::Recorder;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Resource};

use crate::support::*;

fn warning(note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: "RegionLost".into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

async fn events_about(api: &Api<K8sEvent>, name: &str) -> Vec<K8sEvent> {
    api.list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

#[tokio::test]
async fn a_repeated_event_becomes_a_series_and_a_deleted_one_is_recorded_anew() {
    let _cluster = shared_cluster().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "events").await;
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "subject"}}))
            .expect("ConfigMap");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    let regarding = cm.object_ref(&());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "edgeshift-e2e".into(),
            instance: None,
        },
    );
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), &ns.name);

    let warn = |note: &'static str| {
        let (recorder, regarding) = (&recorder, &regarding);
        async move {
            recorder
                .publish(&warning(note), regarding)
                .await
                .unwrap_or_else(|e| panic!("publish {note:?}: {e}"))
        }
    };
    warn("aws-us-east-1 is Down").await;
    warn("aws-us-east-1 is still Down").await;
    warn("aws-us-east-1 is still Down").await;
    let events = events_about(&api, "subject").await;
    assert_eq!(events.len(), 1, "repeats count on one Event: {events:?}");
    let first = &events[0];
    assert_eq!(first.reason.as_deref(), Some("RegionLost"));
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.note.as_deref(), Some("aws-us-east-1 is Down"));
    assert_eq!(first.reporting_controller.as_deref(), Some("edgeshift-e2e"));
    let series = first.series.as_ref().expect("a series");
    assert_eq!(series.count, 3);

    // Another reason is another Event.
    let mut other = warning("edge replicas Ready");
    other.type_ = EventType::Normal;
    other.reason = "FailedOver".into();
    recorder
        .publish(&other, &regarding)
        .await
        .expect("another reason");
    assert_eq!(events_about(&api, "subject").await.len(), 2);

    // The first Event is gone (deleted or expired): the next repeat creates a new one.
    let first_name = first.metadata.name.clone().expect("a name");
    api.delete(&first_name, &DeleteParams::default())
        .await
        .expect("delete the first Event");
    warn("aws-us-east-1 is Down again").await;
    let events = events_about(&api, "subject").await;
    let lost: Vec<_> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RegionLost"))
        .collect();
    assert_eq!(lost.len(), 1, "{events:?}");
    assert_ne!(lost[0].metadata.name.as_deref(), Some(first_name.as_str()));
    assert_eq!(lost[0].note.as_deref(), Some("aws-us-east-1 is Down again"));
    assert_eq!(lost[0].series, None);
}
