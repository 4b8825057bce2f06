"""InfluxSink against a real influxd 1.x: what arrives, and surviving a server that is down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from core.measurements import Quality, Quantity, Reading
from daemon.config import InfluxConfig
from daemon.sinks.influx import InfluxSink
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from simulator.services import InfluxDB
from tests.services import eventually

pytestmark = pytest.mark.integration

TAGS = {"b12-box1-main": {"building": "12 栋", "box": "1,2", "circuit": "main=A"},
        "rcm-1": {"building": "江畔 3"}}


def _db() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def _rows(server: InfluxDB, db: str, query: str, count: int = 1) -> list[dict[str, Any]]:
    """Poll until the query returns at least ``count`` rows (writes are visible quickly)."""
    async def enough() -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(server.query, db, query)
        return rows if len(rows) >= count else []

    return await eventually(enough, within=15, what=f"{count} rows from {query!r}")


async def test_readings_and_alarms_arrive(influxdb: InfluxDB) -> None:
    """Measurement, escaped tags, float fields and exact ns timestamps survive the trip."""
    db = _db()
    config = InfluxConfig(url=influxdb.url, database=db, flush_interval=0.1)
    async with InfluxSink(config=config, site="jiangpan", device_tags=TAGS) as sink:
        sink.add(Reading(ts=1700000000.123, device="b12-box1-main", quantity=Quantity.CURRENT,
                         value=12.5, channel="L2"))
        sink.add(Reading(ts=1700000000.123, device="b12-box1-main", quantity=Quantity.VOLTAGE,
                         value=230, channel="L2"))
        sink.add(Reading(ts=1700000001.0, device="rcm-1", quantity=Quantity.RESIDUAL_CURRENT,
                         value=35.5, channel="3"))
        sink.add(Reading(ts=1700000002.0, device="rcm-1", quantity=Quantity.RESIDUAL_CURRENT,
                         value=float("nan"), channel="3", quality=Quality.BAD))
        alarm = Alarm(alarm_id="leakage:rcm-1:3", rule="leakage", device="rcm-1",
                      severity=Severity.CRITICAL, state=AlarmState.UNACKED, channel="3",
                      value=350.0, message='剩余电流 350 mA > "300", 请检查 c:\\path',
                      context={"building": "江畔 3"})
        sink.add_alarm(AlarmEvent(kind=EventKind.RAISED, alarm=alarm, ts=1700000003.5,
                                  previous=AlarmState.NORMAL))
        async with asyncio.timeout(15):
            await sink.drain()
        stats = sink.stats
    assert (stats.written, stats.pending, stats.dropped_bad_quality) == (4, 0, 1)

    power = await _rows(influxdb, db, "SELECT * FROM power")
    assert power == [{"time": 1700000000_123000000, "box": "1,2", "building": "12 栋",
                      "circuit": "main=A", "current_a": 12.5, "device": "b12-box1-main",
                      "phase": "L2", "site": "jiangpan", "voltage_v": 230.0}]
    leakage = await _rows(influxdb, db, "SELECT * FROM leakage")
    assert leakage == [{"time": 1700000001_000000000, "building": "江畔 3", "channel": "3",
                        "device": "rcm-1", "residual_ma": 35.5, "site": "jiangpan"}]
    fields = await _rows(influxdb, db, "SHOW FIELD KEYS FROM power")
    assert {row["fieldType"] for row in fields} == {"float"}
    alarms = await _rows(influxdb, db, "SELECT * FROM alarms")
    assert alarms == [{"time": 1700000003_500000000, "alarm_id": "leakage:rcm-1:3",
                       "building": "江畔 3", "channel": "3", "device": "rcm-1",
                       "event": "raised",
                       "message": '剩余电流 350 mA > "300", 请检查 c:\\path', "rule": "leakage",
                       "severity": "critical", "site": "jiangpan", "state": "unacknowledged",
                       "value": 350.0}]


async def test_batches_by_size_and_gzip(influxdb: InfluxDB) -> None:
    """Many points go out in size-limited batches (large ones gzipped) and all arrive."""
    db = _db()
    config = InfluxConfig(url=influxdb.url, database=db, batch_size=2000, flush_interval=60)
    async with InfluxSink(config=config, site="s", device_tags={}) as sink:
        for i in range(5000):
            sink.add(Reading(ts=1700000000 + i / 1000, device=f"dev-{i % 7}",
                             quantity=Quantity.POWER, value=float(i)))
        # Two full batches go out at once, despite the 60 s age limit.
        await eventually(lambda: sink.stats.written >= 4000, what="two batches written")
        assert sink.stats.pending == 1000
    assert sink.stats.written == 5000  # the final flush on exit
    rows = await _rows(influxdb, db, "SELECT count(power_w) FROM power")
    assert rows[0]["count"] == 5000


async def test_rejected_batch_is_counted_not_retried(influxdb: InfluxDB) -> None:
    """A batch InfluxDB refuses (field type conflict) is counted and the sink moves on."""
    db = _db()
    influxdb.create_database(db)
    await asyncio.to_thread(_write_raw, influxdb, db, "power,device=d,site=s power_w=1i 1")
    config = InfluxConfig(url=influxdb.url, database=db, flush_interval=0.05)
    async with InfluxSink(config=config, site="s", device_tags={}) as sink:
        sink.add(Reading(ts=2.0, device="d", quantity=Quantity.POWER, value=5.0))
        async with asyncio.timeout(15):
            await sink.drain()
        sink.add(Reading(ts=3.0, device="d", quantity=Quantity.LATENCY, value=5.0))
        async with asyncio.timeout(15):
            await sink.drain()
        stats = sink.stats
    assert (stats.rejected, stats.written, stats.failed_writes) == (1, 1, 0)


def _write_raw(server: InfluxDB, db: str, text: str) -> None:
    import urllib.request

    request = urllib.request.Request(f"{server.url}/write?db={db}", data=text.encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


async def test_survives_server_down_at_start(influxdb_factory: Callable[[], InfluxDB]) -> None:
    """Points accepted while influxd is down are written, all and once, after it starts."""
    server = influxdb_factory()  # a fixed port, nothing listening yet
    config = InfluxConfig(url=server.url, database="late", flush_interval=0.05, timeout=2)
    async with InfluxSink(config=config, site="s", device_tags={}, retry_initial=0.05,
                          retry_max=0.5) as sink:
        for i in range(50):
            sink.add(Reading(ts=1700000000 + i, device="d", quantity=Quantity.CURRENT,
                             value=float(i)))
        await eventually(lambda: sink.stats.failed_writes >= 2, what="failed writes")
        assert sink.stats.written == 0
        await asyncio.to_thread(server.start)
        for i in range(50, 60):
            sink.add(Reading(ts=1700000000 + i, device="d", quantity=Quantity.CURRENT,
                             value=float(i)))
        async with asyncio.timeout(20):
            await sink.drain()
        assert sink.stats.written == 60
    rows = await _rows(server, "late", "SELECT current_a FROM power", count=60)
    assert [row["current_a"] for row in rows] == [float(i) for i in range(60)]


async def test_final_flush_on_exit(influxdb: InfluxDB) -> None:
    """Leaving the context writes what is still buffered, even before the age limit."""
    db = _db()
    config = InfluxConfig(url=influxdb.url, database=db, flush_interval=3600)
    async with InfluxSink(config=config, site="s", device_tags={}) as sink:
        sink.add(Reading(ts=10.0, device="d", quantity=Quantity.LUX, value=3.0))
        await asyncio.sleep(0.1)
        assert sink.stats.written == 0
    assert sink.stats.written == 1
    rows = await _rows(influxdb, db, "SELECT lux FROM lighting")
    assert rows[0]["lux"] == 3.0
