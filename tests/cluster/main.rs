//! Tests against a real cluster (`make e2e-tests`): the local one from `e2e/cluster.sh up`,
//! or any cluster named by `E2E_KUBECONFIG` with a matching fault injector in `E2E_FAULTS`.
mod cli;
mod cloud_region;
mod edge_node;
mod edge_service;
mod events;
mod ha;
mod packaging;
mod smoke;
mod support;
mod traffic;
mod validation;
