# Peer comparison (issue #5, item 4). Included by the top-level Makefile, which defines
# PY, BIN and STAMP; standalone: make -f Makefile -f bench/peers/peers.mk bench-peers
PEERS := bench/peers
PEERS_BT := $(PEERS)/.venv-bt
PEERS_NT := $(PEERS)/.venv-nt
# NautilusTrader 1.231 needs Python 3.12-3.14: the first such interpreter on PATH or in pyenv
NT_PY ?= $(shell for p in python3.12 python3.13 python3.14 $$HOME/.pyenv/versions/3.1[234]*/bin/python3; do \
	"$$p" -c 'import sys; sys.exit(not (3, 12) <= sys.version_info[:2] < (3, 15))' >/dev/null 2>&1 \
	&& { echo "$$p"; break; }; done)
PEERS_ARGS ?= --bars 1000000 --repeats 3
# the sma_cross grid on sp500 (bench-peers-sweep): backtesting.py and vectorbt in one env
PEERS_SWEEP := $(PEERS)/.venv-sweep
SWEEP_DATA := $(PEERS)/data/sp500.parquet
SWEEP_WORK := $(PEERS)/work

.PHONY: bench-peers bench-peers-sweep clean-peers

$(PEERS_BT)/.installed: $(PEERS)/requirements-backtrader.txt
	test -x $(PEERS_BT)/bin/python || $(PY) -m venv $(PEERS_BT)
	$(PEERS_BT)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_BT)/bin/python -m pip install --quiet -r $<
	touch $@

$(PEERS_NT)/.installed: $(PEERS)/requirements-nautilus.txt
	@test -n "$(NT_PY)" || { echo "bench-peers: NautilusTrader needs Python 3.12-3.14 and none was found; pass NT_PY=/path/to/python3.12"; exit 1; }
	test -x $(PEERS_NT)/bin/python || $(NT_PY) -m venv $(PEERS_NT)
	$(PEERS_NT)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_NT)/bin/python -m pip install --quiet -r $<
	touch $@

# bench/peers/.gitignore predates this venv: the venv ignores itself
$(PEERS_SWEEP)/.installed: $(PEERS)/requirements-sweep.txt
	test -x $(PEERS_SWEEP)/bin/python || $(PY) -m venv $(PEERS_SWEEP)
	echo '*' > $(PEERS_SWEEP)/.gitignore
	$(PEERS_SWEEP)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_SWEEP)/bin/python -m pip install --quiet -r $<
	touch $@

## sma_cross 10/30 on 1,000,000 synthetic bars in ULTRATHINK, backtrader and NautilusTrader
## (benchmark-only venvs); trades checked equal; results in bench/peers/results/.
bench-peers: $(STAMP) $(PEERS_BT)/.installed $(PEERS_NT)/.installed
	$(BIN)/python $(PEERS)/compare_peers.py $(PEERS_ARGS)

## sma_cross grid (342 points) on sp500: backtesting.py Backtest.optimize (all cores, then one
## process) and vectorbt (whole grid in one simulation), each point checked against
## ULTRATHINK's backtest; backtests/s of all three in bench/peers/results/sweep-<date>.json.
bench-peers-sweep: $(STAMP) $(PEERS_SWEEP)/.installed
	mkdir -p $(SWEEP_WORK)
	$(BIN)/python $(PEERS)/sweep_export.py --out $(SWEEP_DATA)
	$(PEERS_SWEEP)/bin/python $(PEERS)/sweep_backtesting.py --data $(SWEEP_DATA) > $(SWEEP_WORK)/sweep-backtesting.json
	$(PEERS_SWEEP)/bin/python $(PEERS)/sweep_backtesting.py --data $(SWEEP_DATA) --processes 1 > $(SWEEP_WORK)/sweep-backtesting-1p.json
	$(PEERS_SWEEP)/bin/python $(PEERS)/sweep_vectorbt.py --data $(SWEEP_DATA) --from-signals > $(SWEEP_WORK)/sweep-vectorbt.json
	$(BIN)/python $(PEERS)/sweep_check.py $(SWEEP_WORK)/sweep-backtesting.json \
		$(SWEEP_WORK)/sweep-backtesting-1p.json $(SWEEP_WORK)/sweep-vectorbt.json

clean-peers:
	rm -rf $(PEERS_BT) $(PEERS_NT) $(PEERS_SWEEP) $(PEERS)/data $(SWEEP_WORK)/sweep-*.json
