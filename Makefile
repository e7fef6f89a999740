# fynlo-sync: the two commands are `make test` and `make check`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test check venv clean bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[server,postgres,redis,payments]' --group dev
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# `make demo`, the first command to run: creates .venv if missing, installs what the demo
# needs (the server extra), and runs a restaurant service with 6 terminals on the real server.
# The report and its timeline picture go to a temporary folder it prints. DEMO_ARGS passes
# options through, e.g. make demo DEMO_ARGS="--seed 3 --terminals 8 --out demo-report".
.PHONY: demo
demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[server,payments]' localstripe
	$(BIN)/fynlo demo --payments 6 $(DEMO_ARGS)
