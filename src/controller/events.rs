//! Publishing Kubernetes Events (`events.k8s.io/v1`) with a compact series cache.
//!
//! kube's `events::Recorder` remembers every Event it published, as a whole `Event` object
//! with its key (2–3 KB each), for six minutes, and drops old ones only when it publishes the
//! next. After a mass failover of 10,000 EdgeServices that is tens of MiB kept for nothing.
//! This recorder keeps what a series needs and nothing else: a 64-bit key, the Event's name
//! and namespace, its count and when it was last seen (~80 bytes), and drops expired entries
//! on a later publish whatever their key (at most every 30 s). The semantics are kube's: the
//! same (type, action, reason, regarding, related) from the same reporter within six minutes
//! becomes a series on the first Event (count and last time patched), not a new Event.
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

/// How long a published Event can grow into a series (kube's and client-go's value).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// How often at most the cache drops expired entries.
const GC_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// Publishes Events; cheap to clone (the cache is shared).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    series: Arc<Mutex<SeriesCache>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: Arc::new(Mutex::new(SeriesCache::default())),
        }
    }

    /// Creates the Event, or, when the same one was published within [`SERIES_WINDOW`],
    /// counts it on the earlier one. An earlier Event that is gone (deleted, expired) is
    /// replaced by a new one.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = series_key(&self.reporter, ev, regarding);
        let now = Timestamp::now();
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let earlier = self.lock().bump(key, now);
        if let Some(bumped) = earlier {
            let patch = serde_json::json!({
                "series": {"count": bumped.count, "lastObservedTime": MicroTime(now)},
            });
            match api
                .patch(&bumped.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => self.lock().forget(key),
                Err(e) => {
                    self.lock().forget(key);
                    return Err(e);
                }
            }
        }
        let event = new_event(&self.reporter, ev, regarding, now);
        let created = api.create(&PostParams::default(), &event).await?;
        if let Some(name) = created.metadata.name {
            self.lock().created(key, name, now);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The identity of an Event for series, as kube's recorder has it: reporter, type, action,
/// reason, and the regarding and related objects (kind, name, namespace, uid; not the
/// resourceVersion, which changes on every write). Not the note.
fn series_key(reporter: &Reporter, ev: &Event, regarding: &ObjectReference) -> u64 {
    fn object(h: &mut DefaultHasher, r: &ObjectReference) {
        r.api_version.hash(h);
        r.kind.hash(h);
        r.name.hash(h);
        r.namespace.hash(h);
        r.uid.hash(h);
    }
    let mut h = DefaultHasher::new();
    reporter.controller.hash(&mut h);
    reporter.instance.hash(&mut h);
    matches!(ev.type_, EventType::Warning).hash(&mut h);
    ev.action.hash(&mut h);
    ev.reason.hash(&mut h);
    object(&mut h, regarding);
    ev.secondary.is_some().hash(&mut h);
    if let Some(related) = &ev.secondary {
        object(&mut h, related);
    }
    h.finish()
}

fn new_event(
    reporter: &Reporter,
    ev: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> K8sEvent {
    let base = regarding.name.as_deref().unwrap_or(&reporter.controller);
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: ev.secondary.clone(),
        note: ev.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(format!("{base}.{:x}", now.as_nanosecond())),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match ev.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..Default::default()
    }
}

/// An earlier Event to count a repeat on.
#[derive(Debug, PartialEq, Eq)]
struct Bumped {
    name: Box<str>,
    count: i32,
}

#[derive(Debug)]
struct Series {
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

/// Published Events by series key, for [`SERIES_WINDOW`] after they were last seen. Pure:
/// time is passed in.
#[derive(Debug, Default)]
struct SeriesCache {
    entries: HashMap<u64, Series>,
    last_gc: Option<Timestamp>,
}

impl SeriesCache {
    /// A repeat of a live entry: its count goes up and its name is returned. `None` when
    /// there is no live entry (a new Event is to be created).
    fn bump(&mut self, key: u64, now: Timestamp) -> Option<Bumped> {
        self.gc(now);
        let entry = self.entries.get_mut(&key)?;
        if entry.last + SERIES_WINDOW <= now {
            self.entries.remove(&key);
            return None;
        }
        // A series starts at 2: the first occurrence is the Event itself.
        entry.count = entry.count.saturating_add(1).max(2);
        entry.last = now;
        Some(Bumped {
            name: entry.name.clone(),
            count: entry.count,
        })
    }

    /// A new Event was created under this key.
    fn created(&mut self, key: u64, name: String, now: Timestamp) {
        self.entries.insert(
            key,
            Series {
                name: name.into_boxed_str(),
                count: 1,
                last: now,
            },
        );
    }

    /// The earlier Event is gone or its patch failed: the next repeat starts afresh.
    fn forget(&mut self, key: u64) {
        self.entries.remove(&key);
    }

    /// Drops expired entries, at most every [`GC_EVERY`]; gives memory back after a burst.
    fn gc(&mut self, now: Timestamp) {
        if self.last_gc.is_some_and(|t| t + GC_EVERY > now) {
            return;
        }
        self.last_gc = Some(now);
        self.entries.retain(|_, s| s.last + SERIES_WINDOW > now);
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("a valid time")
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "edgeshift".into(),
            instance: Some("pod-a".into()),
        }
    }

    fn event(type_: EventType, reason: &str, note: &str) -> Event {
        Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn regarding(name: &str, rv: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("edgeshift.io/v1alpha1".into()),
            kind: Some("EdgeService".into()),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_key_ignores_the_note_and_resource_version_but_not_the_rest() {
        let r = reporter();
        let lost = event(EventType::Warning, "RegionLost", "aws-us-east-1 is Down");
        let base = series_key(&r, &lost, &regarding("web", "1"));
        let other_note = event(EventType::Warning, "RegionLost", "another message");
        assert_eq!(base, series_key(&r, &other_note, &regarding("web", "7")));
        assert_ne!(base, series_key(&r, &lost, &regarding("api", "1")));
        let normal = event(EventType::Normal, "RegionLost", "aws-us-east-1 is Down");
        assert_ne!(base, series_key(&r, &normal, &regarding("web", "1")));
        let reason = event(EventType::Warning, "FailedOver", "aws-us-east-1 is Down");
        assert_ne!(base, series_key(&r, &reason, &regarding("web", "1")));
        let other_instance = Reporter {
            instance: Some("pod-b".into()),
            ..reporter()
        };
        assert_ne!(
            base,
            series_key(&other_instance, &lost, &regarding("web", "1"))
        );
        let mut related = event(EventType::Warning, "RegionLost", "aws-us-east-1 is Down");
        related.secondary = Some(regarding("db", "1"));
        assert_ne!(base, series_key(&r, &related, &regarding("web", "1")));
    }

    #[test]
    fn a_repeat_within_the_window_counts_on_the_first_event() {
        let mut cache = SeriesCache::default();
        assert_eq!(
            cache.bump(1, at(0)),
            None,
            "the first occurrence creates an Event"
        );
        cache.created(1, "web.abc".into(), at(0));
        let name: Box<str> = "web.abc".into();
        assert_eq!(
            cache.bump(1, at(10)),
            Some(Bumped {
                name: name.clone(),
                count: 2
            })
        );
        assert_eq!(
            cache.bump(1, at(20)),
            Some(Bumped {
                name: name.clone(),
                count: 3
            })
        );
        // The window runs from the last occurrence.
        assert_eq!(cache.bump(1, at(20 + 359)), Some(Bumped { name, count: 4 }));
        assert_eq!(cache.bump(2, at(400)), None, "another key is another Event");
    }

    #[test]
    fn after_the_window_or_a_failed_patch_a_new_event_is_created() {
        let mut cache = SeriesCache::default();
        cache.created(1, "web.abc".into(), at(0));
        assert_eq!(cache.bump(1, at(360)), None);
        assert!(cache.entries.is_empty(), "the expired entry is dropped");
        cache.created(1, "web.def".into(), at(360));
        cache.forget(1);
        assert_eq!(cache.bump(1, at(361)), None);
    }

    #[test]
    fn expired_entries_are_dropped_without_waiting_for_their_key() {
        let mut cache = SeriesCache::default();
        for key in 0..10_000 {
            cache.created(key, format!("svc-{key}.1"), at(0));
        }
        cache.bump(99_999, at(1));
        assert_eq!(cache.entries.len(), 10_000, "nothing has expired yet");
        cache.bump(99_999, at(10));
        assert_eq!(cache.entries.len(), 10_000);
        // A publish of anything after the window drops them all, and gives the room back.
        cache.bump(99_999, at(400));
        assert!(cache.entries.is_empty());
        assert!(
            cache.entries.capacity() < 1_000,
            "{}",
            cache.entries.capacity()
        );
    }

    #[test]
    fn a_new_event_names_its_object_and_reporter() {
        let r = reporter();
        let e = new_event(
            &r,
            &event(EventType::Warning, "RegionLost", "aws-us-east-1 is Down"),
            &regarding("web", "3"),
            at(0),
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("shop"));
        let name = e.metadata.name.unwrap_or_default();
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("RegionLost"));
        assert_eq!(e.reporting_controller.as_deref(), Some("edgeshift"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(e.series, None);
    }
}
