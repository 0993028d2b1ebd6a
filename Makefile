# The two commands that matter: `make train` (1 server + 4 workers on the bundled mnist5k) and
# `make test`. Both create the virtual environment first when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
NPROC ?= 5
PORT ?= 29500
ARGS ?=
BIN := $(VENV)/bin

.PHONY: install train test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

# Scores need the evaluation classifier of the dataset: trained once (about a minute), then cached.
train: install
	$(BIN)/mdgan-eval train-classifier $(ARGS)
	$(BIN)/torchrun --nproc_per_node=$(NPROC) --master-port=$(PORT) -m mdgan_dist.train $(ARGS)

# The 20 slowest tests are listed at the end: where the suite's time goes.
test: install
	$(BIN)/python -m pytest --durations=20

# The oracle on the five cases of FAST (tests/conftest.py), the protocol, config errors, data, units:
# about 1 minute on 2 cores (README).
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not slurm and not gpu and not bench"

# CI runs this before the tests: ruff's rules and formatting, mypy on the package. Configured in
# pyproject.toml; the tools are pinned in setup.cfg's lint extra, so every checkout agrees.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The speed suite: real jobs side by side, markdown tables on stdout (ARGS="--quick --json out.json",
# "--device cuda", "-- model=mnist_cnn"; see bench/suite.py).
bench: install
	$(BIN)/python bench/suite.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
