# `make demo` runs the main job and `make test` runs the test suite. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/study demo

test: lint browser
	$(BIN)/python -m pytest --durations=30

# The everyday tier: no Ray cluster and nothing marked slow (a test that starts Ray unmarked fails).
test-fast: lint
	STUDY_TESTS_WITHOUT_RAY=1 $(BIN)/python -m pytest -m "not ray and not slow"

# ruff with the rules and line length of pyproject.toml; part of `make test`, so of CI.
lint: $(STAMP)
	$(BIN)/ruff check .

# Debian's chromium, for the test that screenshots the HTML report (installed when running as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; }; } || \
		echo "chromium is not installed: install Debian's chromium package for the report screenshot test"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
