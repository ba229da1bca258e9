# Two commands do everything on a fresh machine (Python 3.11, Node 20, no AWS account):
#   make synth   installs what is missing, then synthesizes every environment into cdk.out/
#   make test    installs what is missing, then lint, type checks and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install synth test lint bench clean snapshots stateful-ids diff cost deploy-local

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-ops.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: install
	npx cdk synth --quiet

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	UPDATE_STATEFUL_IDS= $(PY) -m pytest  # a leaked UPDATE_STATEFUL_IDS=1 would rewrite the guard's registry

bench: install
	$(PY) bench/bench.py

# Deploy MlopsDev with the real CDK CLI to a local AWS (a moto server in a background process, tests/local_deploy.py),
# then redeploy it with a new image tag; no AWS account, no Docker (tests/test_deploy_local.py, about 25 s alone).
deploy-local: install
	$(PY) -m pytest tests/test_deploy_local.py -q

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache

# After reviewing a template change: rewrite the snapshots (and the README's template figures) / the stateful
# logical-ID registry.
snapshots: install
	$(PY) -m pytest tests/test_snapshots.py --snapshot-update -q
	$(PY) -m tests.readme_figures

stateful-ids: install
	UPDATE_STATEFUL_IDS=1 $(PY) -m pytest tests/test_stateful_ids.py -q

# Offline diff of every stack against a base ref (default origin/main) into cdk-diff.md; exits 8 when a
# stateful resource would be replaced or deleted (`$(VENV)/bin/mlops-ops diff --help`).
BASE ?= origin/main
diff: install
	$(VENV)/bin/mlops-ops diff --base $(BASE) --output cdk-diff.md

# Monthly cost estimate of every environment from the synthesized templates, at the prices of
# mlops_infra/pricing/<region>.toml (`$(VENV)/bin/mlops-ops cost --help`).
cost: install
	npx cdk synth --quiet
	$(VENV)/bin/mlops-ops cost --assembly cdk.out
