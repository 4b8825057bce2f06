"""``firewarden scan`` against the Modbus TCP simulator, as a process and in-process."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from daemon.scan import ScanResult, scan, scan_bus
from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.pty import SocatPair
from simulator.rtu import RtuSimulator
from tests.services import missing

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
EXPECTED = {1: "eastron-sdm630", 3: "residual-current-temperature", 7: "modbus-smoke-detector"}
# 10 units at the default 0.3 s timeout: 7 silent ones cost ~2 s; generous for a loaded CI box
DEADLINE = 30.0


def devices() -> list[SimulatedDevice]:
    return [SimulatedDevice(load_profile(name), unit) for unit, name in EXPECTED.items()]


@pytest.fixture(params=[False, True], ids=["gateway-exception", "silent"])
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[ModbusTcpSimulator]:
    """Units 1, 3 and 7; unknown units get exception 11, or (silent) no answer at all."""
    async with ModbusTcpSimulator(devices(), silent_unknown=request.param) as s:
        yield s


@pytest.fixture
async def gateway() -> AsyncIterator[ModbusTcpSimulator]:
    async with ModbusTcpSimulator(devices()) as s:
        yield s


class Run(NamedTuple):
    rc: int
    stdout: str
    stderr: str
    seconds: float


async def firewarden(*args: str) -> Run:
    """Run ``python -m daemon.cli`` without blocking the loop the simulator serves on."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)


async def test_scan_finds_the_three_devices(sim: ModbusTcpSimulator) -> None:
    """Units 1-10 over TCP find exactly units 1, 3 and 7 with their profiles, quickly."""
    run = await firewarden("scan", "--host", sim.host, "--port", str(sim.port),
                           "--units", "1-10", "--json")
    assert run.rc == 0, run.stderr
    found: list[dict[str, Any]] = json.loads(run.stdout)
    assert {r["unit"]: r["profile"] for r in found} == EXPECTED
    assert [r["unit"] for r in found] == [1, 3, 7]
    assert run.seconds < DEADLINE
    assert "━" not in run.stderr  # no progress bar when stderr is not a terminal
    meter = found[0]
    assert meter["values"]["voltage/L1"] == pytest.approx(230.0)
    assert meter["values"]["frequency/total"] == pytest.approx(50.0)
    assert meter["candidates"][0]["profile"] == "eastron-sdm630"
    assert meter["candidates"][1]["profile"] == "eastron-sdm120"  # a subset of its map
    assert 0.5 < meter["confidence"] <= 1.0
    detector = found[1]
    assert detector["values"]["residual_current/1"] == pytest.approx(50.0)
    assert detector["values"]["temperature/1"] == pytest.approx(25.0)


async def test_scan_reads_live_values(gateway: ModbusTcpSimulator) -> None:
    """The values reported are what the device holds now, not defaults."""
    gateway.device(3).set("residual_current", 120.0, channel="1")
    gateway.device(3).set("temperature", 3276.7, channel="2")  # sentinel: probe absent
    gateway.device(7).set("battery", 64.0)
    run = await firewarden("scan", "--host", gateway.host, "--port", str(gateway.port),
                           "--units", "3,7", "--json")
    assert run.rc == 0, run.stderr
    by_unit = {r["unit"]: r for r in json.loads(run.stdout)}
    assert by_unit[3]["profile"] == "residual-current-temperature"
    assert by_unit[3]["values"]["residual_current/1"] == pytest.approx(120.0)
    assert "temperature/2" not in by_unit[3]["values"]  # bad quality is left out
    assert by_unit[7]["profile"] == "modbus-smoke-detector"
    assert by_unit[7]["values"]["battery"] == pytest.approx(64.0)


async def test_scan_table(gateway: ModbusTcpSimulator) -> None:
    """Without --json the responders come as a table with key values and the runner-up."""
    run = await firewarden("scan", "--host", gateway.host, "--port", str(gateway.port),
                           "--units", "1-3")
    assert run.rc == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if "│" in line]
    assert len(rows) == 2
    assert "eastron-sdm630" in rows[0]
    assert "voltage/L1 230 V" in rows[0]
    assert "eastron-sdm120" in rows[0]  # runner-up
    assert "residual-current-temperature" in rows[1]
    assert "50 mA" in rows[1]


async def test_scan_none_found(gateway: ModbusTcpSimulator) -> None:
    """No responder exits 1 with an empty JSON list, or a sentence without --json."""
    run = await firewarden("scan", "--host", gateway.host, "--port", str(gateway.port),
                           "--units", "20-22", "--json")
    assert (run.rc, json.loads(run.stdout)) == (1, [])
    run = await firewarden("scan", "--host", gateway.host, "--port", str(gateway.port),
                           "--units", "20-22")
    assert run.rc == 1
    assert "no device answered" in run.stdout
    assert "3 unit ids" in run.stdout


async def test_scan_unreachable_gateway() -> None:
    """A host that refuses the connection exits 1 with a reason, not a traceback."""
    async with ModbusTcpSimulator(devices()) as s:
        port = s.port
    run = await firewarden("scan", "--host", "127.0.0.1", "--port", str(port), "--units", "1")
    assert run.rc == 1
    assert "error:" in run.stderr
    assert "Traceback" not in run.stderr


async def test_scan_rtu_over_a_pty() -> None:
    """Over Modbus RTU (socat pty pair) the same three are found; a silent unit costs one
    request and is not retried."""
    if not SocatPair.available():
        missing("socat")
    with SocatPair() as pair:
        async with RtuSimulator(pair.b, devices(), baudrate=9600) as sim:
            run = await firewarden("scan", "--port", str(pair.a), "--baudrate", "9600",
                                   "--units", "1-10", "--json")
            requests = dict(sim.requests)
    assert run.rc == 0, run.stderr
    assert {r["unit"]: r["profile"] for r in json.loads(run.stdout)} == EXPECTED
    assert run.seconds < DEADLINE
    silent = set(range(1, 11)) - set(EXPECTED)
    assert {u: requests.get(u) for u in silent} == dict.fromkeys(silent, 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "127.0.0.1", "--units", "1-300"], "unit 300"),
    (["--port", "/dev/ttyUSB0", "--units", "0-3"], "0 is broadcast"),
    (["--units", "1-3"], "give --port DEVICE"),
    (["--host", "127.0.0.1", "--port", "ttyS0"], "TCP port"),
    (["--port", "/dev/ttyUSB0", "--baudrate", "1234"], "baudrate"),
])
async def test_scan_bad_arguments(args: list[str], message: str) -> None:
    """Bad arguments exit 2 with one line naming the problem."""
    run = await firewarden("scan", *args)
    assert run.rc == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


async def test_scan_in_process_progress_and_unknown_device(gateway: ModbusTcpSimulator) -> None:
    """``scan()`` reports every unit to ``progress``; a failing device is found but unknown."""
    gateway.device(7).fail = True  # answers every read with exception 4
    seen: list[tuple[int, ScanResult | None]] = []
    bus = scan_bus(host=gateway.host, port=gateway.port, timeout=0.5)
    results = await scan(bus, [1, 2, 7], progress=lambda u, r: seen.append((u, r)))
    assert [u for u, _ in seen] == [1, 2, 7]
    assert seen[1][1] is None
    assert [(r.unit, r.profile) for r in results] == [(1, "eastron-sdm630"), (7, None)]
    assert all(c.error and "exception 4" in c.error for c in results[1].candidates)
