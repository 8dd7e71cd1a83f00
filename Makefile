# Every target creates .venv from the package registries when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck bench bench-compare stress clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## The main job: trains if needed (once the ML issue lands) and runs a full session on sp500.
run: $(STAMP)
	$(BIN)/ultrathink run

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

## Lint, types and the whole test suite (benchmarks excluded), on TEST_WORKERS pytest-xdist
## workers (one test file per worker at a time: module fixtures such as a Ray or PostgreSQL
## cluster start once per file). Serial, the suite left one of the two cores idle.
TEST_WORKERS ?= 2
test: lint typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## Benchmarks: pytest budgets, the full suite (results appended to .bench/results.jsonl, plots
## in .bench/plots), then the peer comparisons in their own bench-only venvs (bench/peers): the
## 1M-bar sma_cross against backtrader and NautilusTrader, and the sweep grid against
## backtesting.py and vectorbt.
bench: $(STAMP)
	$(BIN)/python -m pytest -q -m bench tests/benchmarks -p no:randomly -s
	$(BIN)/ultrathink bench --plots .bench/plots
	$(MAKE) bench-peers bench-peers-sweep

## The full stress suite (`make test` runs its --quick form); reports in .ultrathink/stress/.
stress: $(STAMP)
	$(BIN)/ultrathink stress suite

## Regression check against a git ref (default HEAD~1): exit 1 on a significant slowdown.
bench-compare: $(STAMP)
	$(BIN)/ultrathink bench --compare $(or $(REF),HEAD~1) $(ARGS)

## Peer comparison (bench-only venvs): same SMA(10/30) on 1M bars in backtrader and NautilusTrader.
include bench/peers/peers.mk

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
