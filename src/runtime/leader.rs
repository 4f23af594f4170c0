//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager). Only the leader
//! probes and writes; a standby keeps its caches warm and takes over when the lease expires
//! (SIGKILL of the leader) or is released (SIGTERM).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Lease settings (`edgeshift run --lease-*`).
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub name: String,
    pub namespace: String,
    /// This process's identity in the lease (the pod name in a cluster).
    pub identity: String,
    /// Seconds the lease is valid without renewal: how long a SIGKILLed leader blocks others.
    pub duration_seconds: u64,
    /// Seconds before expiry that the holder renews.
    pub grace_seconds: u64,
}

/// Whether this process leads, readable from anywhere, with a channel to wait for changes.
#[derive(Clone, Debug)]
pub struct Leadership {
    leading: Arc<AtomicBool>,
    changes: watch::Receiver<bool>,
    /// Keeps the channel of a fixed leadership open: a closed channel reads as "election
    /// over", which would stop whatever runs while leading.
    _fixed: Option<Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// Always the leader (leader election disabled: a single replica, or tests).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership {
            leading: Arc::new(AtomicBool::new(true)),
            changes: rx,
            _fixed: Some(Arc::new(tx)),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Resolves when this process becomes the leader (at once if it already is).
    pub async fn acquired(&mut self) {
        while !*self.changes.borrow_and_update() {
            if self.changes.changed().await.is_err() {
                // The election ended (shutdown): never resolve.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver of leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }
}

/// Runs the election until `shutdown` resolves, then releases the lease so a standby takes
/// over at once. Returns the leadership handle right away, and the task to await before the
/// process exits (it ends once the lease is released).
pub async fn elect(
    client: Client,
    options: LeaseOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(Leadership, tokio::task::JoinHandle<()>), String> {
    let params = LeaseParams::new(
        options.identity.clone(),
        options.duration_seconds.max(2),
        options
            .grace_seconds
            .clamp(1, options.duration_seconds.max(2) - 1),
    );
    let start = {
        let client = client.clone();
        let options = options.clone();
        move || {
            let client = client.clone();
            let options = options.clone();
            let params = params.clone();
            async move {
                let manager = LeaseManagerBuilder::new(client, options.name.clone())
                    .with_namespace(options.namespace.clone())
                    .with_parameters(params)
                    .build()
                    .await
                    .map_err(|e| {
                        format!(
                            "leader election on Lease {}/{}: {e}",
                            options.namespace, options.name
                        )
                    })?;
                Ok::<_, String>(manager.watch().await)
            }
        }
    };
    let (mut lease_changes, mut task) = start().await?;
    // The lease manager looks at a Lease held by another only when it would expire; watching
    // it lets a standby take over as soon as the holder releases it (a graceful stop).
    let released = watcher(
        Api::<Lease>::namespaced(client, &options.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", options.name)),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|lease| async move {
        let lease = lease.ok()?;
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        holder.is_empty().then_some(())
    });
    let leading = Arc::new(AtomicBool::new(false));
    let (tx, rx) = watch::channel(false);
    let flag = leading.clone();
    let election = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut released = std::pin::pin!(released);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(()) = released.next() => {
                    if !flag.load(Ordering::Acquire) {
                        // Start over: a new manager takes a free Lease at once. The old one
                        // is aborted, not dropped: it holds nothing, and a release from its
                        // stale view could clear the Lease the new one just took.
                        task.abort();
                        match start().await {
                            Ok((changes, new_task)) => {
                                lease_changes = changes;
                                task = new_task;
                            }
                            Err(e) => {
                                warn!(error = %e, "restarting the leader election");
                                break;
                            }
                        }
                    }
                }
                changed = lease_changes.changed() => {
                    if changed.is_err() {
                        warn!("leader election stopped");
                        break;
                    }
                    let now_leading = *lease_changes.borrow_and_update();
                    flag.store(now_leading, Ordering::Release);
                    let _ = tx.send(now_leading);
                    if now_leading {
                        info!(identity = %options.identity, lease = %options.name, "became the leader");
                    } else {
                        warn!(identity = %options.identity, lease = %options.name, "lost the leadership");
                    }
                }
            }
        }
        flag.store(false, Ordering::Release);
        let _ = tx.send(false);
        // Dropping the receiver makes the manager release the lease.
        drop(lease_changes);
        match task.await {
            Ok(Ok(_)) => info!(lease = %options.name, "released the lease"),
            Ok(Err(e)) => warn!(error = %e, "releasing the lease"),
            Err(e) => warn!(error = %e, "leader election task"),
        }
    });
    Ok((
        Leadership {
            leading,
            changes: rx,
            _fixed: None,
        },
        election,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fixed_leadership_leads_and_never_reports_a_change() {
        let mut leadership = Leadership::always();
        assert!(leadership.is_leader());
        leadership.acquired().await;
        let mut changes = leadership.subscribe();
        assert!(*changes.borrow_and_update());
        let changed =
            tokio::time::timeout(std::time::Duration::from_millis(50), changes.changed()).await;
        assert!(
            changed.is_err(),
            "no change and no closed channel: {changed:?}"
        );
    }
}
