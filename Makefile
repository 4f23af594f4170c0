# edgeshift — everything a developer and CI run. `make help` lists the targets.
SHELL := /bin/bash
CLUSTER := e2e/cluster.sh
# Cluster tests talk to this kubeconfig; set E2E_KUBECONFIG to run them against another
# cluster (kind included, see e2e/kind/README.md).
E2E_KUBECONFIG ?= $(CURDIR)/target/e2e/kubeconfig
export E2E_KUBECONFIG
# Parallel cluster tests: scenarios that cannot disturb each other run side by side.
E2E_THREADS ?= 4
# helm for the chart targets: the pinned build of the test cluster, else helm on PATH.
HELM ?= $(shell bash -c '. e2e/lib/common.sh; [ -x "$$HELM_BIN" ] && echo "$$HELM_BIN" || echo helm')
# Where `make manifests` writes (the packaging cluster test renders elsewhere to compare).
MANIFESTS_OUT ?= manifests/install.yaml

.PHONY: image kind-build kind-up kind-down kind-test kind-suite
.PHONY: help demo test bench lint fmt-check clippy unit e2e-tests chaos crds cluster-build cluster-up cluster-down cluster-status chart-crds manifests helm-lint

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: ## the main job: local cluster, operator, and a region-loss drill you can watch
	e2e/demo.sh

test: lint unit ## everything CI runs: fmt, clippy, unit tests, the KWOK lane (cluster tests, chaos), then the kind lane
	@$(MAKE) --no-print-directory cluster-down
	@$(MAKE) --no-print-directory cluster-up
	@status=0; $(MAKE) --no-print-directory e2e-tests || status=$$?; \
	  $(MAKE) --no-print-directory cluster-down; \
	  if [ $$status -ne 0 ]; then echo "cluster tests failed (component logs: target/e2e/logs)"; exit $$status; fi
	@$(MAKE) --no-print-directory kind-test

# The kind lane (e2e/kind/README.md): real kubelets and containers, built offline.
image: ## the operator image, offline: the release binary on glibc + CA certificates, non-root, no shell
	cargo build --release --locked --bin edgeshift
	e2e/kind/kind.sh image

kind-build: ## the kind lane's toolchain and images (Docker engine, kind, node/operator/workload images; cached)
	e2e/kind/kind.sh build

kind-up: kind-build ## a kind cluster: 3 regions, 3 edge nodes, the operator by helm install, the DNS chain
	e2e/kind/kind.sh up

kind-down: ## delete the kind cluster and stop what kind-up started (dockerd included, if it started it)
	e2e/kind/kind.sh down

kind-test: ## the kind lane alone: a fresh kind cluster, the scenarios, one table; leaves nothing behind
	@e2e/kind/kind.sh down
	@status=0; { $(MAKE) --no-print-directory kind-up && $(MAKE) --no-print-directory kind-suite; } || status=$$?; \
	  e2e/kind/kind.sh down; \
	  if [ $$status -ne 0 ]; then echo "kind lane failed (logs: target/e2e-kind)"; fi; \
	  exit $$status

# The scenarios take regions away, so they run one at a time; the table is printed at the end.
kind-suite: ## the kind scenarios against the kind cluster (must be up)
	@mkdir -p target/e2e-kind && rm -f target/e2e-kind/report.txt
	@status=0; E2E_KUBECONFIG=$(CURDIR)/target/e2e-kind/kubeconfig E2E_FAULTS=$(CURDIR)/e2e/kind/kind.sh \
	  cargo test --features e2e --test kind -- --test-threads=1 --nocapture || status=$$?; \
	  echo "==> kind lane figures (seconds; windows: first failed request -> 20 successes in a row)"; \
	  cat target/e2e-kind/report.txt 2>/dev/null || true; \
	  exit $$status

bench: ## benchmarks vs native Kubernetes on a cluster of their own (not part of test; ~1 h on 2 cores): one table
	e2e/bench/run.sh

lint: fmt-check clippy

fmt-check: ## rustfmt check
	cargo fmt --all -- --check

clippy: ## clippy, warnings are errors
	cargo clippy --all-targets --all-features -- -D warnings

unit: ## unit and property tests (no cluster)
	cargo test --features e2e --lib --bins --test bench-stats

crds: ## regenerate crds/, the chart's copies and manifests/install.yaml from the Rust types
	EDGESHIFT_UPDATE_CRDS=1 cargo test --features e2e --lib crds_are_up_to_date
	@$(MAKE) --no-print-directory manifests

e2e-tests: ## cluster tests, then the chaos suite, against $(E2E_KUBECONFIG) (the cluster must be up)
	cargo test --features e2e --test cluster -- --test-threads=$(E2E_THREADS)
	@$(MAKE) --no-print-directory chaos

# The scenarios take regions away, so they run one at a time; each prints its RTO, and the
# figures are shown together at the end (target/e2e/chaos-report.txt).
chaos: ## the region-loss chaos suite against $(E2E_KUBECONFIG) (the cluster must be up)
	@mkdir -p target/e2e && rm -f target/e2e/chaos-report.txt
	@status=0; cargo test --features e2e --test chaos -- --test-threads=1 --nocapture || status=$$?; \
	  echo "==> chaos suite figures (first failed probe -> replicas Ready and traffic shifted)"; \
	  cat target/e2e/chaos-report.txt 2>/dev/null || true; \
	  exit $$status

cluster-build: ## build the test cluster binaries from Go modules (cached)
	$(CLUSTER) build

cluster-up: cluster-build ## start the local multi-region cluster
	$(CLUSTER) up

cluster-down: ## stop the local cluster, leaving no process behind
	$(CLUSTER) down

cluster-status: ## components, endpoints and nodes of the local cluster
	$(CLUSTER) status

chart-crds: ## copy crds/ into charts/edgeshift/crds/ (a cluster test fails while they differ)
	rm -f charts/edgeshift/crds/*.yaml
	cp crds/*.yaml charts/edgeshift/crds/

# The kube version only satisfies the chart's kubeVersion check offline; nothing renders by it.
manifests: chart-crds ## render manifests/install.yaml from the chart (a cluster test fails while it is stale)
	@{ printf '%s\n' \
	    '# edgeshift: a plain `kubectl apply` install, rendered from charts/edgeshift by `make manifests`.' \
	    '# Do not edit; change the chart. Install: kubectl apply --server-side -f manifests/install.yaml' \
	    '---' \
	    'apiVersion: v1' \
	    'kind: Namespace' \
	    'metadata:' \
	    '  name: edgeshift-system' \
	    '  labels:' \
	    '    app.kubernetes.io/name: edgeshift' \
	    '    pod-security.kubernetes.io/enforce: restricted' && \
	  $(HELM) template edgeshift charts/edgeshift --namespace edgeshift-system --include-crds --kube-version 1.34.0; \
	} > $(MANIFESTS_OUT).tmp && mv $(MANIFESTS_OUT).tmp $(MANIFESTS_OUT)

helm-lint: ## helm lint --strict of charts/edgeshift
	$(HELM) lint --strict charts/edgeshift
