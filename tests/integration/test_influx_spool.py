"""Nothing accepted is lost: influxd down under steady load, the spool's bound, a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.measurements import Quantity, Reading
from daemon.config import InfluxConfig
from daemon.sinks.influx import InfluxSink
from daemon.sinks.lineprotocol import timestamp_ns
from daemon.sinks.spool import Spool
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from simulator.services import InfluxDB
from tests.services import eventually

pytestmark = pytest.mark.integration
T0 = 1731661200.0


def reading(i: int, device: str = "m1") -> Reading:
    return Reading(ts=T0 + i * 0.01, device=device, quantity=Quantity.CURRENT,
                   value=float(i % 100), channel="L1")


def alarm_event(i: int) -> AlarmEvent:
    alarm = Alarm(alarm_id=f"leakage:rcm-{i}:1", rule="leakage", device=f"rcm-{i}",
                  severity=Severity.CRITICAL, state=AlarmState.UNACKED, value=350.0,
                  message="剩余电流 350 mA", seq=1)
    return AlarmEvent(kind=EventKind.RAISED, alarm=alarm, ts=T0 + i, previous=AlarmState.NORMAL)


def count(server: InfluxDB, db: str, measurement: str = "power",
          field: str = "current_a") -> int:
    rows = server.query(db, f"SELECT count({field}) FROM {measurement}")
    return int(rows[0]["count"]) if rows else 0


async def test_influxd_down_under_steady_load_loses_nothing(
        influxdb_factory: Callable[[], InfluxDB], tmp_path: Path) -> None:
    """2000 readings/s for 6 s with influxd stopped for 3 s in the middle: every one arrives,
    the ones from the outage through the spool."""
    server = influxdb_factory()
    await asyncio.to_thread(server.start)
    config = InfluxConfig(url=server.url, database="load", flush_interval=0.2, timeout=2.0,
                          batch_size=1000)
    produced = 0
    async with InfluxSink(config=config, site="s", device_tags={}, spool=tmp_path / "sp.db",
                          retry_initial=0.1, retry_max=0.5) as sink:

        async def load(seconds: float) -> None:
            nonlocal produced
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(20):
                    sink.add(reading(produced))
                    produced += 1
                await asyncio.sleep(0.01)

        await load(1.5)
        await asyncio.to_thread(server.stop)
        await load(3.0)
        assert sink.stats.spool_points > 0  # the outage went to disk
        spooled = sink.stats.spool_points
        await asyncio.to_thread(server.start)
        await load(1.5)
        async with asyncio.timeout(60):
            await sink.drain()
        stats = sink.stats
    assert (stats.pending, stats.spool_points, stats.spool_dropped) == (0, 0, 0)
    assert stats.written == produced
    total = await eventually(lambda: count(server, "load") == produced and produced,
                             within=20, what=f"{produced} points")
    print(f"\n{produced} readings produced, {spooled} through the spool, all {total} written")


async def test_spool_bound_drops_oldest_readings_never_alarms(tmp_path: Path) -> None:
    """With the server away and a 1 MB spool, the oldest readings go (counted), alarms stay;
    when it is back, every alarm and the newest readings arrive."""
    server = InfluxDB(workdir=tmp_path / "influxd")
    config = InfluxConfig(url=server.url, database="bound", flush_interval=0.1,
                          batch_size=500, spool_max_mb=1, timeout=1.0)
    async with InfluxSink(config=config, site="s", device_tags={}, spool=tmp_path / "sp.db",
                          retry_initial=0.05, retry_max=0.2) as sink:
        for i in range(30_000):
            sink.add(reading(i))
            if i % 3000 == 0:
                sink.add_alarm(alarm_event(i // 3000))
            if i % 1000 == 0:
                await asyncio.sleep(0.05)  # let the writer fail and spill
        await eventually(lambda: sink.stats.pending == 0, within=20, what="all spilled")
        stats = sink.stats
        assert stats.spool_dropped > 0
        assert stats.spool_bytes <= (1 << 20) + 200_000  # the bound, give or take a batch
        kept = stats.spool_points
        await asyncio.to_thread(server.start)
        try:
            async with asyncio.timeout(60):
                await sink.drain()
            final = sink.stats
        finally:
            await asyncio.to_thread(server.stop)
    assert final.spool_dropped + kept == 30_000 + 10  # every point is written or counted
    await asyncio.to_thread(server.start)
    try:
        alarms = count(server, "bound", "alarms", "value")
        readings = count(server, "bound")
        newest = server.query("bound", "SELECT last(current_a) FROM power")
    finally:
        await asyncio.to_thread(server.stop)
    assert alarms == 10  # never dropped
    assert readings == kept - 10
    assert newest[0]["time"] == int(timestamp_ns(reading(29_999).ts))
    print(f"\nspool bound 1 MB: {final.spool_dropped} oldest readings dropped and counted, "
          f"{kept - 10} readings and all 10 alarms kept and written")


async def test_spool_survives_a_restart(tmp_path: Path) -> None:
    """Points spooled by one sink (server down) are written by the next one (server up)."""
    server = InfluxDB(workdir=tmp_path / "influxd")
    config = InfluxConfig(url=server.url, database="restart", flush_interval=0.1, timeout=1.0)
    spool = tmp_path / "sp.db"
    async with InfluxSink(config=config, site="s", device_tags={}, spool=spool,
                          retry_initial=0.05, retry_max=0.2, close_timeout=0.5) as sink:
        for i in range(500):
            sink.add(reading(i))
        sink.add_alarm(alarm_event(1))
        await eventually(lambda: sink.stats.spool_points == 501, within=10)
    with Spool(spool, max_bytes=1 << 30) as left:
        assert left.points == 501
    with server:
        async with InfluxSink(config=config, site="s", device_tags={}, spool=spool) as again:
            async with asyncio.timeout(30):
                await again.drain()
        assert count(server, "restart") == 500
        assert count(server, "restart", "alarms", "value") == 1


async def test_a_spool_whose_disk_refuses_writes_keeps_points_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server down and the spool's disk refusing writes (``query_only``): the sink keeps going,
    holds points in memory up to its cap (the oldest readings beyond it are lost and counted,
    alarms kept), and writes everything it kept once the server is back."""
    import daemon.sinks.influx as influx_module

    monkeypatch.setattr(influx_module, "STRANDED_MAX", 2000)
    monkeypatch.setattr(influx_module, "SPOOL_RETRY", 0.2)
    server = InfluxDB(workdir=tmp_path / "influxd")
    config = InfluxConfig(url=server.url, database="full", flush_interval=0.1, batch_size=500,
                          timeout=1.0)
    async with InfluxSink(config=config, site="s", device_tags={}, spool=tmp_path / "sp.db",
                          retry_initial=0.05, retry_max=0.2) as sink:
        sink._spool.db.execute("PRAGMA query_only=ON")  # the disk refuses every write
        for i in range(3000):
            sink.add(reading(i))
        sink.add_alarm(alarm_event(1))
        await eventually(lambda: sink.stats.spool_failing and sink.stats.lost == 1000,
                         within=15, what="1000 readings over the memory cap lost")
        assert sink.stats.pending == 2001  # 2000 readings + 1 alarm held in memory
        await asyncio.to_thread(server.start)
        try:
            async with asyncio.timeout(30):
                await sink.drain()
            assert sink.stats.pending == 0
            assert count(server, "full") == 2000
            assert count(server, "full", "alarms", "value") == 1
            newest = server.query("full", "SELECT last(current_a) FROM power")
            assert newest[0]["time"] == int(timestamp_ns(reading(2999).ts))  # oldest went
        finally:
            await asyncio.to_thread(server.stop)
