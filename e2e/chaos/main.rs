//! The region-loss chaos suite (`make test` runs it after the cluster tests; `make chaos` alone).
//!
//! Every scenario runs the operator as production does — the real region prober (2 s × 3 by
//! default), the EdgeNode controller verifying signed registrations of the community nodes,
//! HTTPRoute and DNSEndpoint publishing — and injects faults through `e2e/cluster.sh` (or the
//! injector named by `E2E_FAULTS`): a lost region stops heart-beating and its health
//! endpoint stops answering. A sampler records what a user would
//! see every 250 ms (region verdicts, pods, EndpointSlices, route weights, DNS targets), each
//! scenario asserts on that timeline and prints its RTO: first failed probe → replicas Ready
//! where they moved and traffic shifted there.
//!
//! The scenarios take regions of the shared cluster away, so they run one at a time.
// The cluster tests' harness; the chaos suite uses part of it.
#[allow(dead_code)]
#[path = "../../tests/cluster/support.rs"]
mod support;

mod drill;
mod guards;
mod region_loss;
