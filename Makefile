# The README's two commands: `make demo` (set up + run the demo) and `make test` (set up + run every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint browser

$(BIN)/fulfil: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(BIN)/fulfil

setup: $(BIN)/fulfil

demo: setup
	$(BIN)/fulfil demo --reset

lint: setup
	$(BIN)/ruff check .
	FULFIL_CONFIG=fulfil.yaml $(BIN)/dagster definitions validate -w workspace.yaml

# Debian's Chromium for the browser test (tests/test_ui_browser.py); where it cannot be installed the test skips,
# except in CI (FULFIL_REQUIRE_BROWSER=1).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null) || echo "chromium not installed: the browser test will skip"

test: setup lint browser
	GX_ANALYTICS_ENABLED=false DAGSTER_DISABLE_TELEMETRY=1 $(BIN)/pytest -q -p no:cacheprovider -n 3 --durations=15
