# Confide: `make run` serves the app locally, `make test` runs the whole suite.
SHELL := /bin/bash
# The openfhe wheel imports only under CPython 3.10 here: a working python3.10 on PATH,
# else the newest ~/.pyenv/versions/3.10*.
PYTHON310 ?= $(shell for p in python3.10 $$(ls -d $(HOME)/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | sort -rV); do \
	if $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then command -v $$p; break; fi; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit integration bench clean
.PHONY: cluster-up cluster-down cluster-kill-node drills

install: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then echo "CPython 3.10 not found (python3.10 or ~/.pyenv/versions/3.10*)" >&2; exit 1; fi
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
		rm -rf $(VENV) && $(PYTHON310) -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: install
	$(PY) -m serve_app

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy confide fhe actors gateway serve_app.py

unit: install
	$(VENV)/bin/pytest -q tests/unit

integration: install
	$(VENV)/bin/pytest -q tests/integration

test: install lint typecheck
	$(VENV)/bin/pytest -q -m "not drill"

bench: install
	$(PY) benchmarks/fanout.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The browser client (web/, docs/web.md): `make install` installs its npm packages from the
# lockfile (npm ci) and builds what the gateway serves (web/dist); `make test` runs its
# vitest unit tests. Needs Node.js >= 20 with npm.
WEB_MODULES := web/node_modules/.installed
WEB_BUILT := web/dist/BUILT
.PHONY: web web-test
install: $(WEB_BUILT)
test: web-test
web: $(WEB_BUILT)

$(WEB_MODULES): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $@

$(WEB_BUILT): $(WEB_MODULES) docs/protocol.schema.json $(shell find web/src web/demo web/scripts -type f 2>/dev/null)
	cd web && npm run build

web-test: $(WEB_MODULES)
	cd web && npx vitest run

# A three-node Ray cluster on this machine (cluster/local.py, docs/operations.md).
cluster-up: install
	$(PY) cluster/local.py up

cluster-down: install
	$(PY) cluster/local.py down

cluster-kill-node: install
	$(PY) cluster/local.py kill-node $(NODE)

# Failure drills on a local three-node cluster (about 3–4 min on 2 cores; not in `test`).
drills: install
	$(VENV)/bin/pytest -q -s -m drill tests/integration/test_drills.py
