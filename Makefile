# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## solve the shipped demo catalog and print the plan
	$(BIN)/offeropt demo

test: lint typecheck pytest  ## everything CI runs

lint: $(STAMP)
	$(BIN)/ruff check optimizer api tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)  ## the report test photographs a page in Debian's Chromium
	command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m pytest

bench: $(STAMP)  ## benchmarks/README.md records the figures
	command -v wrk >/dev/null && command -v hey >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk hey)
	$(BIN)/python -m pytest benchmarks -s --benchmark-columns=min,median,max,rounds

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .benchmarks
