# The README's two commands: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv and install the project with its extras first (needs Python 3.11+, Java 17).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RESULTS := results

.PHONY: setup browser flintrock demo test lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taskbench needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dask,spark,duckdb,report,ec2,dev]'
	touch $(STAMP)

setup: $(STAMP)

# make demo: the whole story on this machine. ROWS scales it (make demo ROWS=1M).
ROWS ?= 10M
DATA := $(RESULTS)/data/yellow-2015-01-$(ROWS)
RUN := $(RESULTS)/runs/demo-$(ROWS)
SITE := $(RESULTS)/site

demo: setup
	@mkdir -p $(dir $(DATA)) $(dir $(RUN))
	@test -f $(DATA)/manifest.json || $(BIN)/taskbench data generate --rows $(ROWS) \
		--start 2015-01 --months 1 --seed 0 --out $(DATA)
	rm -rf $(RUN)
	$(BIN)/taskbench compare --engines all --mode memory --data $(DATA) --out $(RUN); \
		echo $$? > $(RUN)/compare.status
	$(BIN)/taskbench bench scheduler --vs dask --json-out $(RUN)/bench/scheduler.json \
		--stream-out $(RUN)/bench/scheduler-stream.jsonl
	$(BIN)/taskbench bench balance --vs dask --workloads skewed,straggler \
		--policies random,locality+stealing --json-out $(RUN)/bench/balance.json \
		--stream-out $(RUN)/bench/balance
	$(BIN)/taskbench bench shuffle --rows 2M --repeats 3 --json-out $(RUN)/bench/shuffle.json
	-$(BIN)/python -m taskbench.reports.asv_history check  # a point of history for the report
	$(BIN)/taskbench report $(RUN) --out $(SITE)
	@exit $$(cat $(RUN)/compare.status)

# flintrock pins old boto3 and PyYAML: it gets a venv of its own, called as its CLI.
FLINTROCK := .venv-flintrock/.installed-stamp
$(FLINTROCK):
	$(PYTHON) -m venv .venv-flintrock
	.venv-flintrock/bin/python -m pip install -q 'flintrock==2.1.*'
	touch $(FLINTROCK)

flintrock: $(FLINTROCK)

# Debian's chromium for the report's browser tests (pytest -m browser); installs only if missing.
browser:
	@sh reports/install-browser.sh

# Timing suites run once (informative); deterministic metrics are compared with the stored
# baseline through asv compare and fail naming the metric that regressed.
test: setup browser flintrock
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	$(BIN)/asv machine --yes --machine ci-$$(hostname) >/dev/null
	$(BIN)/asv run --python=same --quick --show-stderr --machine ci-$$(hostname) \
		--bench '^(?!deterministic\.)' --set-commit-hash $$(git rev-parse HEAD)
	$(BIN)/python -m taskbench.reports.asv_history check

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv-flintrock .asv $(RESULTS)
