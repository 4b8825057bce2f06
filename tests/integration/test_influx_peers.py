"""InfluxSink against both peers (influxd 1.x over v1 /write, VictoriaMetrics over v2
/api/v2/write through influxdb-client) for every escaping case, plus refusals quarantined."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.measurements import Quantity, Reading
from daemon.config import InfluxConfig
from daemon.sinks.influx import InfluxSink
from rules.model import Alarm, AlarmEvent, AlarmState, EventKind, Severity
from simulator.services import InfluxDB, VictoriaMetrics
from tests.services import eventually

pytestmark = pytest.mark.integration

# Every escaping case: spaces, commas, equals signs, quotes, backslashes and Chinese in tag
# values; an alarm message with all of them as a string field.
TAGS = {
    "b12 box,1=main": {"building": "12 栋", "box": "1,2", "circuit": "main=A", "area": 'say "hi"',
                       "floor": "c:\\floor\\3"},
}
DEVICE = "b12 box,1=main"
MESSAGE = '剩余电流 350 mA > "300", 请检查 c:\\path = x, y'
TS = 1731661200.125


def _readings() -> list[Reading]:
    return [Reading(ts=TS + i, device=DEVICE, quantity=Quantity.CURRENT, value=10.0 + i,
                    channel="L1") for i in range(3)]


def _event() -> AlarmEvent:
    alarm = Alarm(alarm_id="leakage:rcm 1,x=3:1", rule="leakage", device=DEVICE,
                  severity=Severity.CRITICAL, state=AlarmState.UNACKED, channel="1",
                  value=350.0, message=MESSAGE, context={"building": "12 栋"})
    return AlarmEvent(kind=EventKind.RAISED, alarm=alarm, ts=TS + 10, previous=AlarmState.NORMAL)


async def _write(config: InfluxConfig, tmp: Path) -> InfluxSink:
    async with InfluxSink(config=config, site="江畔 site", device_tags=TAGS,
                          spool=tmp / "spool.db") as sink:
        for reading in _readings():
            sink.add(reading)
        sink.add_alarm(_event())
        async with asyncio.timeout(15):
            await sink.drain()
    return sink


async def test_v1_influxd_every_escape(influxdb: InfluxDB, tmp_path: Path) -> None:
    db = f"t_{uuid.uuid4().hex[:10]}"
    sink = await _write(InfluxConfig(url=influxdb.url, database=db, flush_interval=0.1),
                        tmp_path)
    assert sink.stats.written == 4

    async def rows(q: str) -> list[dict[str, Any]]:
        return await eventually(lambda: influxdb.query(db, q), within=10)

    power = await rows("SELECT * FROM power")
    assert [(r["time"], r["current_a"]) for r in power] == [
        (1731661200_125000000 + i * 1_000_000_000, 10.0 + i) for i in range(3)]
    assert {k: power[0][k] for k in ("site", "device", "building", "box", "circuit", "area",
                                     "floor", "phase")} == {
        "site": "江畔 site", "device": DEVICE, "building": "12 栋", "box": "1,2",
        "circuit": "main=A", "area": 'say "hi"', "floor": "c:\\floor\\3", "phase": "L1"}
    (alarm,) = await rows("SELECT * FROM alarms")
    assert (alarm["message"], alarm["alarm_id"], alarm["time"]) == (
        MESSAGE, "leakage:rcm 1,x=3:1", 1731661210_125000000)


async def test_v2_victoriametrics_every_escape(victoriametrics: VictoriaMetrics,
                                               tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret-token\n", encoding="utf-8")
    config = InfluxConfig(url=victoriametrics.url, api="v2", org="jiangpan", bucket="fw",
                          token_file=token, flush_interval=0.1)
    sink = await _write(config, tmp_path)
    assert sink.stats.written == 4

    def series() -> list[dict[str, Any]]:
        return victoriametrics.export('{__name__="power_current_a", site="江畔 site"}')

    (exported,) = await eventually(series, within=15, what="the exported series")
    labels = exported["metric"]
    assert {k: labels[k] for k in ("device", "building", "box", "circuit", "area", "floor",
                                   "phase")} == {
        "device": DEVICE, "building": "12 栋", "box": "1,2", "circuit": "main=A",
        "area": 'say "hi"', "floor": "c:\\floor\\3", "phase": "L1"}
    assert exported["values"] == [10.0, 11.0, 12.0]
    assert exported["timestamps"] == [1731661200125 + i * 1000 for i in range(3)]  # ms
    (alarm,) = await eventually(lambda: victoriametrics.export(
        '{__name__="alarms_value", site="江畔 site"}'), within=15)
    assert alarm["metric"]["rule"] == "leakage"
    assert alarm["values"] == [350.0]  # VictoriaMetrics keeps numeric fields only


async def test_refused_lines_are_quarantined_and_the_rest_written(
        influxdb: InfluxDB, tmp_path: Path) -> None:
    """A field-type conflict in the middle of a batch: bisection isolates the one line;
    it is quarantined (with the server's reason) and every other point is written."""
    db = f"t_{uuid.uuid4().hex[:10]}"
    influxdb.create_database(db)
    # an integer field in the same shard (field types are per shard in 1.x)
    await asyncio.to_thread(_post, influxdb, db, "power,site=s current_a=1i 1699999999000000000")
    config = InfluxConfig(url=influxdb.url, database=db, flush_interval=0.1, batch_size=64)
    async with InfluxSink(config=config, site="s", device_tags={},
                          spool=tmp_path / "spool.db") as sink:
        for i in range(40):
            if i == 17:  # the same series' field as a float: conflicts with the integer
                sink.add_point("power", {"current_a": 2.5}, 1700000000 + i)
            else:
                sink.add_point("power", {"voltage_v": 230.0 + i}, 1700000000 + i)
        async with asyncio.timeout(15):
            await sink.drain()
        stats = sink.stats
    assert (stats.quarantined, stats.written) == (1, 39)
    rows = await eventually(lambda: influxdb.query(db, "SELECT count(voltage_v) FROM power"))
    assert rows[0]["count"] == 39


def _post(server: InfluxDB, db: str, body: str) -> None:
    import urllib.request

    request = urllib.request.Request(f"{server.url}/write?db={db}", data=body.encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
