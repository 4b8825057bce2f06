# firewarden: `make demo` runs the simulated community end to end; `make test` is what CI runs.
.PHONY: setup demo test lint typecheck unit check bench clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/firewarden demo

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(VENV)/bin/pytest -q -p no:cacheprovider

unit: setup
	$(VENV)/bin/pytest -q tests/unit

bench: setup
	$(PY) -m bench.bench_planner
	$(PY) -m bench.bench_rtu_bus
	$(PY) -m bench.bench_detection
	$(PY) -m bench.bench_influx

check: setup
	$(VENV)/bin/firewarden check -c examples/site-sample.toml

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
