//! edgeshift: keeps services up when a cloud region or provider is lost, by moving their
//! replicas and traffic onto verified community edge nodes, and back once the cloud recovers.
#![forbid(unsafe_code)]
#![deny(warnings)]

pub mod api;
pub mod clock;
pub mod controller;
pub mod health;
pub mod planner;
pub mod runtime;
pub mod telemetry;
pub mod trust;

/// Errors the operator reports; each carries the context a person needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing {what}: {source}")]
    Serialize {
        what: String,
        source: serde_json::Error,
    },
}

impl Error {
    /// A short, stable label for metrics (`reconcile_errors_total{error=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize { .. } => "serialize",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
