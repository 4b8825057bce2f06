# firewarden: `make demo` runs the simulated community end to end; `make test` is what CI runs.
.PHONY: setup demo test lint typecheck unit check bench clean install

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

# Install as a systemd service on this box (/opt/firewarden, /etc/firewarden, the unit), as root.
# Options go in INSTALL_ARGS, e.g. make install INSTALL_ARGS=--now; see systemd/install.sh --help.
install:
	@if [ "$$(id -u)" -eq 0 ]; then systemd/install.sh $(INSTALL_ARGS); \
	else sudo systemd/install.sh $(INSTALL_ARGS); fi

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
