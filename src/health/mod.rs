//! Region health: probes (the only I/O here), rounds, quorum and hysteresis → a verdict, and
//! the status, conditions and Events that verdict implies. See `docs/health.md`.
//!
//! - [`probe`]: HTTP(S) and TCP checks with deadlines and messages a person can act on.
//! - [`verdict`]: which checks fail a round, and how rounds in a row move the phase (pure).
//! - [`status`]: round → CloudRegion status, and whether that is worth a write (pure).
pub mod probe;
pub mod status;
pub mod verdict;

#[cfg(test)]
mod properties;

pub use probe::{Outcome, Prober, Target};
pub use status::{Partition, PartitionCause, ProbeReport, ProviderRollup, RoundReport};
pub use verdict::{Checks, Round, Thresholds, Verdict};
