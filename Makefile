# edgeshift — everything a developer and CI run. `make help` lists the targets.
SHELL := /bin/bash
CLUSTER := e2e/cluster.sh
# Cluster tests talk to this kubeconfig; set E2E_KUBECONFIG to run them against another
# cluster (kind included, see e2e/kind/README.md).
E2E_KUBECONFIG ?= $(CURDIR)/target/e2e/kubeconfig
export E2E_KUBECONFIG
# Parallel cluster tests: scenarios that cannot disturb each other run side by side.
E2E_THREADS ?= 4

.PHONY: help test lint fmt-check clippy unit e2e-tests crds cluster-build cluster-up cluster-down cluster-status

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

test: lint unit ## everything CI runs: fmt, clippy, unit tests, then cluster tests on a fresh local cluster
	@$(MAKE) --no-print-directory cluster-up
	@status=0; $(MAKE) --no-print-directory e2e-tests || status=$$?; \
	  $(MAKE) --no-print-directory cluster-down; \
	  if [ $$status -ne 0 ]; then echo "cluster tests failed (component logs: target/e2e/logs)"; fi; \
	  exit $$status

lint: fmt-check clippy

fmt-check: ## rustfmt check
	cargo fmt --all -- --check

clippy: ## clippy, warnings are errors
	cargo clippy --all-targets --all-features -- -D warnings

unit: ## unit and property tests (no cluster)
	cargo test --features e2e --lib --bins

crds: ## regenerate crds/ from the Rust types (unit tests fail while they differ)
	EDGESHIFT_UPDATE_CRDS=1 cargo test --features e2e --lib crds_are_up_to_date

e2e-tests: ## cluster tests against $(E2E_KUBECONFIG) (the cluster must be up)
	cargo test --features e2e --test cluster -- --test-threads=$(E2E_THREADS)

cluster-build: ## build the test cluster binaries from Go modules (cached)
	$(CLUSTER) build

cluster-up: cluster-build ## start the local multi-region cluster
	$(CLUSTER) up

cluster-down: ## stop the local cluster, leaving no process behind
	$(CLUSTER) down

cluster-status: ## components, endpoints and nodes of the local cluster
	$(CLUSTER) status
