# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench lock clean

# Exact versions with hashes from the lock; the project itself goes in editable, with no
# dependency resolution of its own, so nothing newer than the lock can slip in.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: $(STAMP)  ## solve the shipped demo catalog and print the plan
	$(BIN)/offeropt demo

test: lint typecheck pytest  ## everything CI runs

lint: $(STAMP)
	$(BIN)/ruff check optimizer api cli jobs tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Two test processes, one per core of CI's machine; each test module stays in one process,
# so a module's server, browser or solved catalog is set up once.
pytest: $(STAMP)  ## the report and workbench tests drive Debian's Chromium
	command -v chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)  ## benchmarks/README.md records the figures
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	OFFEROPT_BENCH_SIZE=full $(BIN)/python -m pytest benchmarks -s --benchmark-columns=min,median,max,rounds

UV_VERSION := 0.13.9
# torch (for obp, the off-policy comparison) is the CPU build this machine kind keeps in
# /opt/wheels: the lock names it, so no multi-GB CUDA build is ever downloaded.
lock:  ## re-resolve requirements.lock from pyproject.toml's ranges (newest versions that fit)
	$(PYTHON) -m venv .lock-tools
	.lock-tools/bin/python -m pip install --quiet uv==$(UV_VERSION)
	.lock-tools/bin/uv pip compile pyproject.toml --extra dev --extra bench --generate-hashes \
		--universal --python-version 3.11 --upgrade --find-links /opt/wheels \
		--override lock-overrides.txt -o requirements.lock
	rm -rf .lock-tools

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .benchmarks
