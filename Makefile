# The two commands a newcomer needs: `make run` and `make test`. Both install first when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck unit test-deploy bench soak soak-lifecycle soak-edge soak-contract soak-outage simulator gallery clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The package, and the fonts the PNG cards draw with (installed when root, else named).
install: $(STAMP)
	@sh scripts/fonts.sh

run: $(STAMP)
	$(BIN)/nowplaying serve

simulator: $(STAMP)
	$(BIN)/nowplaying simulator

lint: $(STAMP)
	$(BIN)/ruff check src tests harness bench soak scripts
	$(BIN)/ruff format --check src tests harness bench soak scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Browser tests run in their own process: Playwright's sync API keeps an event loop running
# in the main thread, which the async tests need for themselves. Coverage adds the two up.
unit: $(STAMP)
	$(BIN)/pytest tests/browser --cov --cov-report= --cov-fail-under=0
	$(BIN)/pytest --ignore=tests/browser --cov --cov-append --cov-report=term

test: lint typecheck unit

# The deployment files on their own: the Dockerfile built offline and run (docker, debootstrap),
# compose.yaml's shape, deploy/nginx.conf under Debian's nginx with the edge cache. `unit` (and
# so `make test`) runs them too; .ci/run installs and starts what they need.
test-deploy: $(STAMP)
	$(BIN)/pytest tests/deploy -q

bench: $(STAMP)
	$(BIN)/python -m bench

# The fault soak (2+ minutes, loopback only): prints a summary, see docs/security.md.
soak: $(STAMP)
	$(BIN)/python -m soak

# The life-cycle soak (about 4 minutes, loopback, local PostgreSQL and Redis db 15): rolling
# restarts, key rotation, CLI re-login, the quota lockout; see docs/operations.md.
soak-lifecycle: $(STAMP)
	$(BIN)/python -m soak lifecycle

# The edge probe (about a minute, loopback): slow headers and bodies, 5,000 unfinished requests
# from one address past a 2,048-descriptor limit, stalled readers; see docs/security.md.
soak-edge: $(STAMP)
	$(BIN)/python -m soak edge

# The contract probe (loopback; about 13 minutes on a loaded machine): schemathesis against
# /openapi.json of a demo server with a published widget, 100 examples per operation, the
# stateful phase 30 scenarios, each run stopped at 30 minutes; see docs/security.md.
soak-contract: $(STAMP)
	$(BIN)/python -m soak contract

# The Redis outage probe (about 2 minutes, loopback, local PostgreSQL, a redis-server of its own):
# Redis killed for 60 s under two instances and 20 viewers; see docs/operations.md.
soak-outage: $(STAMP)
	$(BIN)/python -m soak outage

# The README gallery: one PNG per theme under docs/img, rendered by Chromium (scripts/gallery.py).
gallery: $(STAMP)
	$(BIN)/python scripts/gallery.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
