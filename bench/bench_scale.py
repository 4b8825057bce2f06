"""Scale benchmark: ``python -m bench.bench_scale [--sizes 100,500,1000] [--no-search]``.

``firewarden run`` as a real process polls 100, 500 and 1000 simulated Modbus TCP devices
every second, with its rules, its InfluxDB writes (a private influxd) and MQTT (a private
mosquitto). The fleet is distribution boxes of ten devices: one Eastron SDM630 incomer, eight
SDM120 sub-circuit meters (five socket, two stairwell-lighting, one public circuit) and one
residual-current/temperature detector, with values that add up (the incomer carries its
sub-circuits), so no rule alarms; one Modbus TCP gateway per building of five boxes (50 unit
ids), at least two gateways.

The simulated gateways run in a **child process** (``python -m bench.bench_scale --simulator
N``), so their CPU is not the daemon's. They answer Modbus TCP from the profiles' register maps
(``simulator.modbus.SimulatedDevice.answer``) through a minimal MBAP server in this file
rather than pymodbus's server, which would need more than the second core of this box for
2000+ requests/s. The child's stdin/stdout is a small control channel, one JSON object per
line: it first prints ``{"ports": [...]}``; then ``{"device": NAME, "quantity": Q, "channel":
C, "value": V}`` sets a point and answers ``{"ok": true, "t": <time.time() of the set>}``
(``bench.bench_latency`` uses it to raise leakage alarms).

For each size, after ``WARMUP`` s, over ``WINDOW`` s:

- **CPU**: the daemon's utime+stime from ``/proc/<pid>/stat``, as % of one core;
- **RSS**: ``VmRSS`` at the end of the window and the peak ``VmHWM`` from ``/proc/<pid>/status``;
- **readings/s written**: field values in InfluxDB whose (poll) timestamps lie in the window;
- **polls/s**: ``device_health`` ``online`` points in the window (one per poll attempt, per
  poll group: the 1 s group and the 60 s energy counters), successful ones against the
  configured rate; **sustained** when achieved >= 0.98 x configured;
- **poll lag p50/p99/max**: each successful 1 s poll's start against its schedule, from the
  same data (no instrumentation in the daemon): each device's polls run on its own grid (the
  poller staggers a bus's devices across the interval) whose phase is the start offset that
  makes the lags smallest; the lag is a poll's start past its grid point (a reading's
  timestamp is taken when its poll starts; lags up to 0.9 s are resolved). The daemon's own
  worst lag per 10 s (``poll_lag_ms`` in the ``firewarden`` self-metrics) is reported alongside.

Then the largest device count one core sustains at 1 s is searched for: larger fleets (x1.5)
until polls fall behind or the daemon uses >= 95 % of a core, then one bisection step, with a
shorter window, within ``SEARCH_BUDGET`` s. Targets (reported, not asserted): 1000 devices at
1 s under 35 % of a core and 80 MB RSS. Writes ``bench/results/scale.json``; exits 0 unless
the run itself fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).parents[1]
RESULTS = Path(__file__).parent / "results" / "scale.json"
SIZES = (100, 500, 1000)
POLL = 1.0  # s
WARMUP = 10.0  # s after READY before measuring
WINDOW = 20.0  # s measured
SEARCH_WARMUP = 8.0
SEARCH_WINDOW = 12.0
SEARCH_BUDGET = 110.0  # s for the search for the largest sustained fleet
SEARCH_MAX = 4000
UNITS_PER_GATEWAY = 50  # one Modbus TCP gateway per building (5 boxes)
BOX = 10  # devices per distribution box
BOXES_PER_BUILDING = 5
SUSTAINED = 0.98
CPU_LIMIT = 95.0  # % of one core: the search stops there
TARGET_DEVICES = 1000
TARGET_CPU = 35.0  # % of a core (issue 16; was 50)
TARGET_RSS_MB = 80.0
SITE = "bench"
# SIGTERM to exit, as systemd's TimeoutStopSec gives it (the final flush of a busy daemon takes
# a few seconds); longer is a hang.
STOP_WITHIN = 30.0
HUNG = (f"the daemon did not exit within {STOP_WITHIN:g} s of SIGTERM (systemd's "
        "TimeoutStopSec) and was killed")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (role, profile, kind, rated A, current A per meter, power factor) of a box's devices
SUBS = (("sockets", 6.0, 0.95),) * 5 + (("stair", 0.4, 0.9),) * 2 + (("public", 2.6, 0.9),)
KINDS = {"sockets": "sockets", "stair": "lighting", "public": "public"}
VOLTS = 230.0


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """One simulated device and where it sits."""

    name: str
    gateway: int
    unit: int
    profile: str
    kind: str
    building: str
    box: str
    circuit: str = ""
    rated_current: float | None = None
    values: tuple[tuple[str, str | None, float], ...] = ()  # (quantity, channel, value)


def fleet(n: int) -> list[FleetDevice]:
    """``n`` devices (a multiple of ``BOX`` is a whole number of boxes), gateways in order."""
    out: list[FleetDevice] = []
    box_index = 0
    while len(out) < n:
        building = str(10 + box_index // BOXES_PER_BUILDING)
        box = str(box_index % BOXES_PER_BUILDING + 1)
        prefix = f"b{building}-box{box}"
        phases: dict[str, list[float]] = {p: [0.0, 0.0] for p in ("L1", "L2", "L3")}
        members: list[tuple[str, str, str, str, float | None, list[tuple[str, str | None,
                                                                         float]]]] = []
        for k, (role, amps, pf) in enumerate(SUBS):
            phase = ("L1", "L2", "L3")[k % 3]
            watts = round(VOLTS * amps * pf, 1)
            phases[phase][0] += amps
            phases[phase][1] += watts
            members.append((f"{prefix}-{role}{k + 1}", "eastron-sdm120", KINDS[role],
                            f"{role}{k + 1}", 16.0, [
                                ("current", "L1", amps), ("power", "L1", watts),
                                ("power_factor", "L1", pf),
                                ("apparent_power", "L1", round(VOLTS * amps, 1)),
                                ("reactive_power", "L1",
                                 round(VOLTS * amps * math.sqrt(1 - pf * pf), 1))]))
        incomer: list[tuple[str, str | None, float]] = []
        for phase, (amps, watts) in phases.items():
            incomer += [("current", phase, round(amps, 2)), ("power", phase, round(watts, 1)),
                        ("power_factor", phase, round(watts / (VOLTS * amps), 3))]
        total = sum(w for _, w in phases.values())
        incomer += [("power", "total", round(total, 1))]
        members.insert(0, (f"{prefix}-main", "eastron-sdm630", "incomer", "main", 63.0,
                           incomer))
        members.append((f"{prefix}-rc", "residual-current-temperature", "detector", "", None,
                        [("residual_current", "1", 40.0)]))
        for name, profile, kind, circuit, rated, values in members:
            if len(out) == n:
                break
            index = len(out)
            out.append(FleetDevice(
                name=name, gateway=index // UNITS_PER_GATEWAY,
                unit=index % UNITS_PER_GATEWAY + 1, profile=profile, kind=kind,
                building=building, box=box, circuit=circuit,
                rated_current=rated if kind == "incomer" else None, values=tuple(values)))
        box_index += 1
    return out


def gateways(n: int) -> int:
    return max(2, math.ceil(n / UNITS_PER_GATEWAY))


def _spread(devices: list[FleetDevice], count: int) -> list[FleetDevice]:
    """Re-assign units so ``count`` gateways share the fleet evenly, boxes kept whole."""
    boxes = math.ceil(len(devices) / BOX)
    per = math.ceil(boxes / count) * BOX
    return [replace(d, gateway=i // per, unit=i % per + 1) for i, d in enumerate(devices)]


def build_fleet(n: int) -> list[FleetDevice]:
    return _spread(fleet(n), gateways(n))


# -- the simulator child ----------------------------------------------------------------------

class _Gateway(asyncio.Protocol):
    """A Modbus TCP gateway serving reads (functions 1-4) from simulated devices' datastores;
    unknown units answer exception 11 (gateway target did not respond)."""

    def __init__(self, devices: Mapping[int, Any]) -> None:
        self.devices = devices
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 8:
            end = 6 + int.from_bytes(buffer[4:6], "big")
            if len(buffer) < end:
                break
            frame = bytes(buffer[:end])
            del buffer[:end]
            assert self.transport is not None
            self.transport.write(self.answer(frame))

    def answer(self, frame: bytes) -> bytes:
        unit, function = frame[6], frame[7]
        device = self.devices.get(unit)
        if device is None:
            pdu = bytes((function | 0x80, 11))
        elif function in (1, 2, 3, 4) and len(frame) >= 12:
            address, count = struct.unpack(">HH", frame[8:12])
            result = device.answer(function, address, count)
            if isinstance(result, int):
                pdu = bytes((function | 0x80, result))
            elif function in (3, 4):
                pdu = bytes((function, 2 * count)) + struct.pack(f">{count}H", *result)
            else:
                packed = bytearray((count + 7) // 8)
                for i, bit in enumerate(result[:count]):
                    if bit:
                        packed[i // 8] |= 1 << (i % 8)
                pdu = bytes((function, len(packed))) + bytes(packed)
        else:
            pdu = bytes((function | 0x80, 1))
        return frame[0:4] + (len(pdu) + 1).to_bytes(2, "big") + bytes((unit,)) + pdu


async def _serve_fleet(n: int) -> None:
    """The child process: serve ``n`` devices, print the ports, obey control lines."""
    from drivers.profile import load_profile
    from simulator.modbus import SimulatedDevice

    devices = build_fleet(n)
    profiles = {p: load_profile(p) for p in {d.profile for d in devices}}
    by_gateway: dict[int, dict[int, SimulatedDevice]] = {}
    by_name: dict[str, SimulatedDevice] = {}
    for d in devices:
        sim = SimulatedDevice(profiles[d.profile], d.unit)
        for quantity, channel, value in d.values:
            sim.set(quantity, value, channel)
        by_gateway.setdefault(d.gateway, {})[d.unit] = sim
        by_name[d.name] = sim
    loop = asyncio.get_running_loop()
    servers = []
    for g in sorted(by_gateway):
        units = by_gateway[g]
        servers.append(await loop.create_server(lambda u=units: _Gateway(u),  # type: ignore[misc]
                                                "127.0.0.1", 0))
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports}), flush=True)
    done = asyncio.Event()

    def control(line: str) -> None:
        try:
            msg = json.loads(line)
            by_name[msg["device"]].set(msg["quantity"], float(msg["value"]), msg.get("channel"))
            answer: dict[str, Any] = {"ok": True, "t": time.time()}
        except Exception as exc:  # a bad command must not stop the gateways
            answer = {"ok": False, "error": repr(exc)}
        print(json.dumps(answer), flush=True)

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(control, line)
        loop.call_soon_threadsafe(done.set)  # stdin closed: the parent is gone

    threading.Thread(target=read_stdin, daemon=True).start()
    await done.wait()


class SimulatorProcess:
    """The gateways' child process and its control channel (thread-safe ``set``)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_scale", "--simulator", str(n)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        first = self._stdout.readline()
        if not first:
            raise RuntimeError(f"simulator for {n} devices exited with {self.proc.wait()}")
        self.ports: list[int] = json.loads(first)["ports"]

    @property
    def _stdout(self) -> IO[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def set(self, device: str, quantity: str, value: float, channel: str | None = None) -> float:
        """Set a point in the child; the child's time.time() of the set."""
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps({"device": device, "quantity": quantity,
                                              "channel": channel, "value": value}) + "\n")
            self.proc.stdin.flush()
            answer = json.loads(self._stdout.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"simulator refused: {answer}")
        return float(answer["t"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the daemon as a process ------------------------------------------------------------------

def daemon_config(devices: Sequence[FleetDevice], ports: Sequence[int], *, influx_url: str,
                  database: str, mqtt_port: int, state_dir: Path,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config tables (for ``dump_toml``) of a daemon polling ``devices`` every second."""
    raw: dict[str, Any] = {
        "site": {"id": SITE, "name": "bench", "latitude": 31.23, "longitude": 121.47,
                 "timezone": "Asia/Shanghai"},
        "daemon": {"state_dir": str(state_dir)},
        "influxdb": {"url": influx_url, "database": database},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "bus": [{"name": f"gw{g + 1}", "type": "tcp", "host": "127.0.0.1", "port": port,
                 "timeout": "1s"} for g, port in enumerate(ports)],
        "device": [],
    }
    for d in devices:
        entry: dict[str, Any] = {"name": d.name, "bus": f"gw{d.gateway + 1}", "unit": d.unit,
                                 "profile": d.profile, "poll": f"{POLL:g}s",
                                 "building": d.building, "box": d.box, "kind": d.kind}
        if d.circuit:
            entry["circuit"] = d.circuit
        if d.rated_current is not None:
            entry["rated_current"] = d.rated_current
        raw["device"].append(entry)
    for key, value in (extra or {}).items():
        raw[key] = value
    return raw


class Daemon:
    """``firewarden run -c FILE`` as a child process with its own NOTIFY_SOCKET."""

    def __init__(self, conf: Path, workdir: Path) -> None:
        from simulator.services import free_port

        self.log = workdir / "daemon.log"
        self.hung = False  # did not exit on SIGTERM (see STOP_WITHIN)
        self.stop_s = 0.0  # how long it took to exit after SIGTERM
        self.notify_path = workdir / f"notify-{free_port()}.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "run", "-c", str(conf)], env=env,
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, within: float = 60.0) -> float:
        """Block until READY=1; the seconds it took."""
        started = time.monotonic()
        self.notify.settimeout(0.2)
        while time.monotonic() - started < within:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.splitlines():
                return time.monotonic() - started
        raise RuntimeError(f"daemon not ready within {within:.0f} s:\n{self.log_tail()}")

    def stop(self, within: float = STOP_WITHIN) -> int:
        """SIGTERM, and SIGKILL if it has not exited ``within`` s (``hung`` says so)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            started = time.monotonic()
            try:
                self.proc.wait(within)
                self.stop_s = time.monotonic() - started
            except subprocess.TimeoutExpired:
                self.hung = True
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        self.notify_path.unlink(missing_ok=True)
        return int(self.proc.returncode)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def tracebacks(self) -> int:
        return self.log.read_text(encoding="utf-8", errors="replace").count("Traceback")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MB (MiB)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


@contextmanager
def scratch(keep: Path | None) -> Iterator[Path]:
    """A temporary work directory, or ``keep`` (created, left in place)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        yield Path(tmp)


@contextmanager
def services(workdir: Path) -> Iterator[tuple[Any, Any]]:
    """A private influxd and mosquitto for the whole run."""
    from simulator.services import InfluxDB, Mosquitto

    with InfluxDB(workdir=workdir / "influxd") as influx, \
            Mosquitto(workdir=workdir / "mosquitto") as mqtt:
        yield influx, mqtt


def configured_polls_per_s(devices: Sequence[FleetDevice]) -> float:
    """Poll attempts per second the fleet's schedule asks for (every poll group)."""
    from drivers.modbus.poller import PolledDevice, device_plan
    from drivers.profile import load_profile

    @dataclass(frozen=True)
    class _Cfg:
        name: str
        unit: int
        poll: float
        enabled: bool = True
        building: str = ""
        box: str = ""

    rate: dict[str, float] = {}
    for profile in {d.profile for d in devices}:
        plan = device_plan(PolledDevice(_Cfg(profile, 1, POLL), load_profile(profile)))
        rate[profile] = sum(1.0 / interval for interval, _ in plan)
    return sum(rate[d.profile] for d in devices)


# -- measuring ---------------------------------------------------------------------------------

@dataclass
class Measurement:
    devices: int
    gateways: int
    window_s: float
    cpu_pct: float
    rss_mb: float
    hwm_mb: float
    readings_per_s: float
    polls_per_s: float
    polls_ok_per_s: float
    configured_polls_per_s: float
    sustained: bool
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    selfmetric_poll_lag_max_ms: float | None
    readings_refused: float | None
    simulator_cpu_pct: float
    influxd_cpu_pct: float
    ready_s: float
    notes: list[str] = field(default_factory=list)


def poll_lags(polls: Sequence[tuple[float, float]], interval: float = POLL) -> list[float]:
    """Start lags (ms) of one poll group's polls ``(start, duration)`` (s) (pure).

    The poller keeps a fixed, non-drifting schedule, so a poll on time starts on a grid point
    ``phase + k * interval`` and a late one after it. The phase is not known from outside (the
    poller staggers devices; the first poll may itself be late), so it is taken as the start
    offset that makes the lags smallest: on-time polls sit on it, late ones after it. An offset
    within the last tenth of the interval is a poll a hair early (jitter): lag 0."""
    offsets = [t % interval for t, _ in polls]
    if not offsets:
        return []
    phase = min(offsets, key=lambda p: sum((o - p) % interval for o in offsets))
    lags = []
    for offset in offsets:
        late = (offset - phase) % interval
        lags.append(0.0 if late > 0.9 * interval else late * 1000.0)
    return lags


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _lags(influx: Any, database: str, start: float, end: float) -> list[float]:
    """Every successful 1 s poll's start lag (ms) inside [start, end), from InfluxDB.

    Each device's polls run on its own grid (the poller staggers the devices of a bus across
    the interval; see ``poll_lags`` for the phase). A reading's timestamp is taken when its
    poll starts. The 60 s energy
    counters' polls (their own job, on the same grid) are told apart by their
    ``energy_kwh`` readings and left out."""
    span = f"time >= {int((start - 3 * POLL) * 1e9)} AND time < {int(end * 1e9)}"
    slow = {(str(r["device"]), int(r["time"])) for r in influx.query(
        database, f'SELECT "energy_kwh" FROM power WHERE {span} GROUP BY "device"')}
    polls: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in influx.query(database, f'SELECT "latency_ms" FROM device_health WHERE {span} '
                          'GROUP BY "bus", "device"'):
        if (str(r["device"]), int(r["time"])) in slow:
            continue
        polls.setdefault((str(r["bus"]), str(r["device"])), []).append(
            (int(r["time"]) / 1e9, float(r["latency_ms"]) / 1000.0))
    lags: list[float] = []
    for series in polls.values():
        series.sort()
        lags += [lag for (t, _), lag in zip(series, poll_lags(series),
                                             strict=True) if t >= start]
    return lags


def measure(influx: Any, database: str, daemon: Daemon, sim: SimulatorProcess,
            devices: Sequence[FleetDevice], *, warmup: float, window: float,
            ready_s: float) -> Measurement:
    """Sleep through the warm-up, then measure one window."""
    time.sleep(warmup)
    started_wall = time.time()
    started = time.monotonic()
    cpu0, sim0 = cpu_seconds(daemon.pid), cpu_seconds(sim.proc.pid)
    influx0 = cpu_seconds(influx.pid)
    time.sleep(window)
    elapsed = time.monotonic() - started
    ended_wall = started_wall + elapsed
    cpu = (cpu_seconds(daemon.pid) - cpu0) / elapsed * 100.0
    sim_cpu = (cpu_seconds(sim.proc.pid) - sim0) / elapsed * 100.0
    influx_cpu = (cpu_seconds(influx.pid) - influx0) / elapsed * 100.0
    mem = memory_mb(daemon.pid)
    time.sleep(2.5)  # the sink flushes every second
    span = f"time >= {int(started_wall * 1e9)} AND time < {int(ended_wall * 1e9)}"
    counts = influx.query(database, f"SELECT count(*) FROM /.*/ WHERE {span}")
    values = sum(int(v) for row in counts for k, v in row.items()
                 if k.startswith("count_") and v is not None)
    # the self-metrics' own fields are not readings
    own = influx.query(database, f"SELECT count(*) FROM firewarden WHERE {span}")
    values -= sum(int(v) for row in own for k, v in row.items()
                  if k.startswith("count_") and v is not None)
    rows = influx.query(database, f'SELECT "online" FROM device_health WHERE {span}')
    ok = sum(1 for row in rows if row["online"] == 1)
    lags = _lags(influx, database, started_wall, ended_wall)
    metrics = influx.query(database, "SELECT poll_lag_ms, readings_refused FROM firewarden "
                           f"WHERE time > {int(started_wall * 1e9)}")
    lag_self = max((float(r["poll_lag_ms"]) for r in metrics
                    if r.get("poll_lag_ms") is not None), default=None)
    refused = max((float(r["readings_refused"]) for r in metrics
                   if r.get("readings_refused") is not None), default=None)
    configured = configured_polls_per_s(devices)
    notes = []
    if refused:
        notes.append(f"{refused:.0f} readings refused since start: the bulk queue "
                     "(queue_size 10000) overflowed: the pipeline could not keep up")
    if sim_cpu >= 90.0:
        notes.append(f"the simulator child used {sim_cpu:.0f} % of a core: it may be what "
                     "limits the polls here")
    return Measurement(
        devices=len(devices), gateways=len(sim.ports), window_s=round(elapsed, 2),
        cpu_pct=round(cpu, 1), rss_mb=round(mem["VmRSS"], 1), hwm_mb=round(mem["VmHWM"], 1),
        readings_per_s=round(values / elapsed), polls_per_s=round(len(rows) / elapsed, 1),
        polls_ok_per_s=round(ok / elapsed, 1), configured_polls_per_s=round(configured, 1),
        sustained=ok / elapsed >= SUSTAINED * configured,
        lag_p50_ms=round(_pct(lags, 0.5), 2), lag_p99_ms=round(_pct(lags, 0.99), 2),
        lag_max_ms=round(max(lags, default=math.nan), 2),
        selfmetric_poll_lag_max_ms=lag_self, readings_refused=refused,
        simulator_cpu_pct=round(sim_cpu, 1), influxd_cpu_pct=round(influx_cpu, 1),
        ready_s=round(ready_s, 2), notes=notes)


@contextmanager
def running_fleet(n: int, influx: Any, mqtt: Any, workdir: Path, database: str,
                  extra: Mapping[str, Any] | None = None
                  ) -> Iterator[tuple[Daemon, SimulatorProcess, list[FleetDevice], float]]:
    """The simulator child and the daemon for ``n`` devices, the daemon READY."""
    from simulator.toml_writer import dump_toml

    devices = build_fleet(n)
    sim = SimulatorProcess(n)
    daemon: Daemon | None = None
    try:
        here = workdir / f"{database}"
        here.mkdir(parents=True, exist_ok=True)
        conf = here / "firewarden.toml"
        conf.write_text(dump_toml(daemon_config(
            devices, sim.ports, influx_url=influx.url, database=database,
            mqtt_port=mqtt.port, state_dir=here / "state", extra=extra)), encoding="utf-8")
        daemon = Daemon(conf, here)
        ready = daemon.wait_ready()
        yield daemon, sim, devices, ready
    finally:
        if daemon is not None:
            code = daemon.stop()
            if daemon.tracebacks() or (code != 0 and not daemon.hung):
                print(f"warning: daemon exit {code}, {daemon.tracebacks()} tracebacks; "
                      f"log {daemon.log}", file=sys.stderr)
        sim.close()


def run_size(n: int, influx: Any, mqtt: Any, workdir: Path, *, warmup: float,
             window: float) -> Measurement:
    database = f"scale{n}"
    with running_fleet(n, influx, mqtt, workdir, database) as (daemon, sim, devices, ready):
        result = measure(influx, database, daemon, sim, devices, warmup=warmup, window=window,
                         ready_s=ready)
    if daemon.hung:
        result.notes.append(HUNG)
    elif daemon.stop_s > 5.0:
        result.notes.append(f"the daemon took {daemon.stop_s:.1f} s to exit after SIGTERM "
                            "(flushing MQTT and InfluxDB; systemd allows 30 s)")
    influx.drop_database(database)
    return result


def ok_at(m: Measurement) -> bool:
    return m.sustained and m.cpu_pct < CPU_LIMIT


def search(first: Measurement, known: Sequence[Measurement], influx: Any, mqtt: Any,
           workdir: Path, budget: float) -> tuple[int | None, list[Measurement]]:
    """The largest fleet (multiple of ``BOX``) found sustained under ``CPU_LIMIT``, and the
    probes made."""
    deadline = time.monotonic() + budget
    probe_cost = SEARCH_WARMUP + SEARCH_WINDOW + 8.0
    good = max((m.devices for m in known if ok_at(m)), default=None)
    bad = min((m.devices for m in known if not ok_at(m)), default=None)
    probes: list[Measurement] = []
    while time.monotonic() + probe_cost < deadline:
        if bad is None:
            n = min(SEARCH_MAX, int((good or first.devices) * 1.5) // BOX * BOX)
            if good is not None and n <= good:
                break
        else:
            low = good or 0
            if bad - low <= max(BOX, bad // 8):
                break
            n = (low + bad) // 2 // BOX * BOX
        m = run_size(n, influx, mqtt, workdir, warmup=SEARCH_WARMUP, window=SEARCH_WINDOW)
        probes.append(m)
        print(_row(m, probe=True), flush=True)
        if ok_at(m):
            good = max(good or 0, n)
        else:
            bad = n if bad is None else min(bad, n)
        if bad is None and n >= SEARCH_MAX:
            break
    return good, probes


HEAD = (f"{'devices':>7} {'gw':>3} {'CPU %':>6} {'RSS MB':>7} {'HWM MB':>7} {'readings/s':>10} "
        f"{'polls/s ok/cfg':>15} {'lag p50':>8} {'p99':>7} {'max':>7} {'self max':>8} "
        f"{'sim %':>6} {'influxd %':>9}  sustained")


def _row(m: Measurement, probe: bool = False) -> str:
    self_lag = f"{m.selfmetric_poll_lag_max_ms:8.1f}" if m.selfmetric_poll_lag_max_ms \
        is not None else f"{'-':>8}"
    return (f"{m.devices:>7} {m.gateways:>3} {m.cpu_pct:>6.1f} {m.rss_mb:>7.1f} {m.hwm_mb:>7.1f} "
            f"{m.readings_per_s:>10,.0f} {m.polls_ok_per_s:>7.0f}/{m.configured_polls_per_s:<7.0f}"
            f" {m.lag_p50_ms:>8.1f} {m.lag_p99_ms:>7.1f} {m.lag_max_ms:>7.1f} {self_lag} "
            f"{m.simulator_cpu_pct:>6.0f} {m.influxd_cpu_pct:>9.0f}  "
            f"{'yes' if m.sustained else 'NO'}{' (search)' if probe else ''}")


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--warmup", type=float, default=WARMUP)
    parser.add_argument("--window", type=float, default=WINDOW)
    parser.add_argument("--search-budget", type=float, default=SEARCH_BUDGET)
    parser.add_argument("--no-search", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep configs, logs and data here")
    parser.add_argument("--simulator", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.simulator is not None:
        asyncio.run(_serve_fleet(args.simulator))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    rows: list[Measurement] = []
    probes: list[Measurement] = []
    best: int | None = None
    print(f"daemon polling simulated Modbus TCP devices every {POLL:g} s; warm-up "
          f"{args.warmup:g} s, window {args.window:g} s", flush=True)
    print(HEAD)
    print("-" * len(HEAD), flush=True)
    with scratch(args.workdir) as tmp, services(tmp) as (influx, mqtt):
        for n in sizes:
            m = run_size(n, influx, mqtt, tmp, warmup=args.warmup, window=args.window)
            rows.append(m)
            print(_row(m), flush=True)
        if not args.no_search and rows:
            best, probes = search(rows[-1], rows, influx, mqtt, tmp, args.search_budget)
    elapsed = time.perf_counter() - started
    at_target = next((m for m in rows if m.devices == TARGET_DEVICES), None)
    targets = []
    if at_target is not None:
        targets = [
            {"target": f"{TARGET_DEVICES} devices at 1 s under {TARGET_CPU:g} % of a core",
             "met": at_target.cpu_pct < TARGET_CPU and at_target.sustained,
             "value": at_target.cpu_pct, "limit": TARGET_CPU, "unit": "% CPU"},
            {"target": f"{TARGET_DEVICES} devices at 1 s under {TARGET_RSS_MB:g} MB RSS",
             "met": at_target.hwm_mb < TARGET_RSS_MB, "value": at_target.hwm_mb,
             "limit": TARGET_RSS_MB, "unit": "MB (VmHWM)"},
        ]
    for t in targets:
        print(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']} {t['unit']}")
    if best is not None:
        print(f"largest fleet sustained at 1 s under {CPU_LIMIT:g} % of a core found: {best} "
              f"devices (search within {args.search_budget:g} s)")
    print(f"runtime {elapsed:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "poll_s": POLL, "warmup_s": args.warmup, "window_s": args.window,
        "fleet": {"box": "1 eastron-sdm630 incomer, 8 eastron-sdm120 (5 sockets, 2 lighting, "
                         "1 public), 1 residual-current-temperature",
                  "units_per_gateway": UNITS_PER_GATEWAY},
        "machine": machine(), "runtime_s": round(elapsed, 1), "targets": targets,
        "max_sustained_devices": best, "cpu_limit_pct": CPU_LIMIT,
        "sizes": [m.__dict__ for m in rows], "search": [m.__dict__ for m in probes],
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
