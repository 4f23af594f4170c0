//! What a production operator process needs around its controllers: leader election on a
//! Lease, Prometheus metrics, `/healthz` and `/readyz`, and graceful shutdown.
pub mod leader;
pub mod metrics;
pub mod rate_limit;
pub mod server;
