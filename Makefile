# driftline: `make demo` runs the embedded demo, `make test` runs the whole suite.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo dev test test-fast lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/driftline demo

dev: install
	$(BIN)/driftline dev

# Debian's docker-compose validates docker-compose.yml in the tests.
system-deps:
	bash scripts/ensure-system-deps.sh

lint: install
	$(BIN)/ruff check streams detectors tests bench
	$(BIN)/mypy
	$(BIN)/mypy bench

test: install system-deps lint
	$(BIN)/pytest -q -ra

test-fast: install lint
	$(BIN)/pytest -q -ra -m "not slow"

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results
