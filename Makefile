# tokenmint: `make run` starts the embedded server, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The SAM CLI pins its own boto3/cfn-lint versions, so it lives in a venv of its own.
SAM_VENV := .tools/sam
SAM      := $(SAM_VENV)/bin/sam
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: run test build bench lint docs clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(SAM): 
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet 'aws-sam-cli>=1.120'

run: $(BIN)/.installed
	$(BIN)/tokenmint serve

test: $(BIN)/.installed
	$(BIN)/pytest

# The shipped code (functions/), with zero findings: ruff, then mypy (its settings: pyproject.toml).
lint: $(BIN)/.installed
	$(BIN)/ruff check functions
	$(BIN)/mypy

# sam build needs neither Docker nor python3.13: functions/Makefile copies the code and
# cross-installs the dependency layer for python3.13 on arm64.
build: $(SAM)
	$(SAM) validate --lint
	$(SAM) build

# Budget (bench.py), load on `tokenmint serve` (load.py), then $ per million tokens (cost.py) from both.
BENCH_LOAD_JSON ?= $(or $(TMPDIR),/tmp)/tokenmint-bench-load.json
bench: $(BIN)/.installed
	$(BIN)/python infra/bench/bench.py
	$(BIN)/python infra/bench/load.py --json $(BENCH_LOAD_JSON)
	$(BIN)/python infra/bench/cost.py --load $(BENCH_LOAD_JSON)

# docs/ as a site (mkdocs.yml): strict, so a broken link, anchor or nav entry fails the build.
docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .tools .aws-sam .pytest_cache site
