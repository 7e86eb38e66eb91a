# `make demo` runs the main job and `make test` runs the test suite. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-extended lint install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/study demo

# The tests that start no Ray and are not slow, spread over every core (pytest-xdist, each file on
# one worker); a test among them that starts Ray in its process without the `ray` mark fails.
FAST_TIER := STUDY_TESTS_WITHOUT_RAY=1 $(BIN)/python -m pytest -m "not ray and not slow" \
	-n auto --dist loadfile

# The fast tier, then the Ray and slow tests in one process, one Ray cluster at a time, less the
# `extended` ones; both halves always run, and the target fails if either did. This is CI.
test: lint browser
	$(FAST_TIER) --durations=10; fast=$$?; \
	$(BIN)/python -m pytest -m "(ray or slow) and not extended" --durations=30; rest=$$?; \
	exit $$((fast || rest))

# The everyday tier: the first half of `make test`.
test-fast: lint
	$(FAST_TIER)

# What `make test` leaves out: minutes of training or of cluster start-up per test.
test-extended: lint browser
	$(BIN)/python -m pytest -m extended --durations=30

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
