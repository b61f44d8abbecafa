# The README's two commands: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv and install the project with its extras first (needs Python 3.11+, Java 17).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RESULTS := results

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taskbench needs Python 3.11+, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dask,spark,duckdb,report,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	mkdir -p $(RESULTS)
	$(BIN)/taskbench bench scheduler --vs dask --stream-out $(RESULTS)/scheduler-stream.jsonl
	$(BIN)/taskbench stream plot $(RESULTS)/scheduler-stream.jsonl \
		$(RESULTS)/scheduler-stream-dask.jsonl -o $(RESULTS)/task-stream.png
	$(BIN)/taskbench bench balance --sim --plot $(RESULTS)/balance-skewed-sim.png
	$(BIN)/taskbench bench balance --vs dask --plot $(RESULTS)/balance-skewed.png

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	$(BIN)/asv machine --yes --machine ci-$$(hostname) >/dev/null
	$(BIN)/asv run --python=same --quick --show-stderr --machine ci-$$(hostname) \
		--set-commit-hash $$(git rev-parse HEAD)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .asv $(RESULTS)
