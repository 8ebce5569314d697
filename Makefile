# `make run` and `make test` set themselves up on a fresh machine with Python 3.11.
PYTHON ?= python3
REPRO_SEEDS ?= 0,1,2,3,4
REPRO_LONG ?=
REPRO_REDUCE ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all bench profile reproduce ablations clean

setup: $(STAMP)

# torch first and pinned, so that no dependency can pull a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/inet run $(ARGS)

test: setup
	$(BIN)/pytest -m "not slow" -q -n 2 $(ARGS)

test-all: setup
	$(BIN)/pytest -q -n 2 $(ARGS)

# The paper's experiment set in parallel, then outputs/reproduce/report.md (`inet reproduce`, docs/reproduce.md).
# Variables: REPRO_SEEDS (0,1,2,3,4), REPRO_LONG (overrides of base/training_wheels), REPRO_REDUCE (of reduce/*), REPRO_ARGS (every job).
reproduce: setup
	REPRO_SEEDS=$(REPRO_SEEDS) REPRO_LONG="$(REPRO_LONG)" REPRO_REDUCE="$(REPRO_REDUCE)" REPRO_ARGS="$(REPRO_ARGS)" $(BIN)/inet reproduce

# The section 6 mechanisms, each alone, against the baseline (`inet ablations`, docs/mechanisms.md); ARGS e.g.
# --budget full, --only baseline,guard, --combine guard,explore_counts.
ablations: setup
	$(BIN)/inet ablations $(ARGS)

# inet against the plain-torch reference of scripts/reference.py (docs/performance.md); ARGS e.g. --lanes 1 16 256.
bench: setup
	$(BIN)/python scripts/bench.py $(ARGS)

# Where one inet iteration's time goes, phase by phase (ARGS e.g. --lanes 256 or --seconds 10).
profile: setup
	$(BIN)/python scripts/bench.py --profile $(ARGS)

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns outputs/reproduce outputs/ablations
