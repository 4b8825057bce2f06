# firewarden: `make demo` runs the simulated community end to end; `make test` is what CI runs.
.PHONY: setup demo test lint typecheck unit check bench fuzz clean install

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

# Every benchmark, then bench/RESULTS.md and bench/results/chart.png from their JSON. A bench
# that misses its target exits 1; `-` keeps going so the report still shows every figure.
# PEERS=1 adds the comparison with Node-RED and the ThingsBoard gateway (bench/bench_peers.py,
# the shared harness; ~25 min at its defaults), options in PEERS_ARGS, e.g.
# make bench PEERS=1 PEERS_ARGS="--install --silent"
PEERS ?=
PEERS_ARGS ?=
bench: setup
	-$(PY) -m bench.bench_planner
	-$(PY) -m bench.bench_rtu_bus
	-$(PY) -m bench.bench_detection
	-$(PY) -m bench.bench_corpus
	-$(PY) -m bench.bench_influx
	-$(PY) -m bench.bench_rules
	-$(PY) -m bench.bench_scale
	-$(PY) -m bench.bench_latency
	-$(PY) -m bench.bench_profile --label after --commit "$$(git rev-parse --short HEAD 2>/dev/null)"
	-@if [ "$(PEERS)" = 1 ]; then $(PY) -m bench.bench_peers $(PEERS_ARGS); \
	else echo "bench_peers: skipped (make bench PEERS=1 runs it)"; fi
	$(PY) -m bench.report

# Coverage-guided fuzzing of the GB/T 26875.3 frame decoder (atheris; not in CI).
fuzz: setup
	$(PY) -m pip install -q -e '.[fuzz]'
	$(PY) -m fuzz.fuzz_gb26875 -max_total_time=$${FUZZ_SECONDS:-60}

check: setup
	$(VENV)/bin/firewarden check -c examples/site-sample.toml

# Install as a systemd service on this box (/opt/firewarden, /etc/firewarden, the unit), as root.
# Options go in INSTALL_ARGS, e.g. make install INSTALL_ARGS=--now; see systemd/install.sh --help.
install:
	@if [ "$$(id -u)" -eq 0 ]; then systemd/install.sh $(INSTALL_ARGS); \
	else sudo systemd/install.sh $(INSTALL_ARGS); fi

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
