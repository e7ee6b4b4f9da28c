# Two commands do everything: `make devnet` and `make test`. Set-up is idempotent:
# a second run finds the stamps and skips what is done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: setup system-deps devnet test test-quick contracts bench clean

setup: $(PY_STAMP) $(NPM_STAMP) system-deps

# Headless Chromium (dashboard test) and docker-compose (compose file validation), from
# Debian's packages; skipped when present, or when apt is not usable (the tests then skip).
SYSTEM_PKGS := chromium docker-compose
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (apt) ..."; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note:$$missing missing and apt-get unavailable (not root?); their tests will skip"; fi; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(PY_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# make devnet SCENARIO=vol-spike|crash|venue-outage (docs/operator.md, "Market scenarios").
SCENARIO ?= calm
devnet: setup
	$(PY) -m relayer devnet --nodes 4 --scenario $(SCENARIO)

# The type checker first (configured in pyproject.toml), then the whole suite.
test: setup
	$(PY) -m mypy
	$(PY) -m pytest

test-quick: setup
	$(PY) -m mypy
	$(PY) -m pytest -m "not slow"

contracts: $(NPM_STAMP)
	node scripts/compile_contracts.js

bench: setup
	$(PY) bench/round_latency.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis
