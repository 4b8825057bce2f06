"""The disk fills up: the daemon runs with RLIMIT_FSIZE so small that no file it writes (the
InfluxDB spool, then the alarm store) can grow past it, with InfluxDB away so the spool must
grow. It says so clearly in its log, keeps running (polling, STATUS=), and every fire the panel
reports still reaches MQTT.

RLIMIT_FSIZE is a real "disk full" for the process without root: a write past the limit fails
with EFBIG (Python ignores SIGXFSZ), which SQLite reports as "database or disk is full" or a
disk I/O error, exactly where a full filesystem would fail. The daemon's output goes to a pipe,
so its log is not subject to the limit.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus import ModbusTcpSimulator, SimulatedDevice
from simulator.services import Mosquitto, free_port
from tests.faults.harness import (
    PROFILE,
    Daemon,
    fire_alarm,
    is_event,
    meters,
    send_fire,
    write_config,
)
from tests.services import MqttCollector

pytestmark = pytest.mark.faults
SITE = "diskfull"
BASE = f"firewarden/{SITE}"
FSIZE = 160 * 1024  # bytes: room to start (schemas, a few transactions), not to spool
DISK_FULL = ("disk full", "cannot spool", "database or disk is full")


async def test_disk_full_keeps_alarms_flowing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    panel = free_port()
    profile = load_profile(str(PROFILE))
    async with ModbusTcpSimulator(devices=[SimulatedDevice(profile, u)
                                           for u in (1, 2, 3)]) as sim:
        conf = write_config(tmp_path, {
            "site": {"id": SITE},
            "daemon": {"state_dir": str(tmp_path / "state")},
            # nothing listens there: every batch must go to the spool
            "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "database": "full",
                         "flush_interval": "200ms", "timeout": "500ms"},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "bus": [{"name": "gw", "type": "tcp", "host": "127.0.0.1", "port": sim.port}],
            "device": meters("gw", [1, 2, 3], poll="100ms"),
            "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                            "port": panel}],
            "alarms": {"flood_count": 1000},
        })
        daemon = Daemon(conf, tmp_path, fsize=FSIZE)
        try:
            async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                     topics=[f"{BASE}/#"]) as mqtt:
                await daemon.start()
                await send_fire(panel, 1, 1)  # before the disk is full
                await mqtt.wait_for(is_event(BASE, fire_alarm("p1", 1)))
                full = await daemon.wait_log(*DISK_FULL, within=30)
                full_at = time.time()
                # Keep reporting fires past the point where the alarm store is full too.
                for zone in range(2, 14):
                    await send_fire(panel, zone, zone)
                    await asyncio.sleep(0.3)
                for zone in range(1, 14):
                    await mqtt.wait_for(is_event(BASE, fire_alarm("p1", zone), "raised"),
                                        timeout=15)
                statuses = len(daemon.notify.statuses())
                await asyncio.sleep(11)  # one more STATUS= period: the loop is alive
                assert daemon.running, daemon.tail()
                assert len(daemon.notify.statuses()) > statuses
                await send_fire(panel, 99, 14)  # and it still takes fires
                await mqtt.wait_for(is_event(BASE, fire_alarm("p1", 14)), timeout=15)
                after = [line for line in daemon.lines if "ERROR" in line or "CRITICAL" in line]
                code = await daemon.stop()
        finally:
            daemon.ensure_dead()
    # both the spool and the alarm store met the full disk (the store after a few fires)
    refused = [line for line in daemon.grep(*DISK_FULL) if "alarm store" in line]
    assert refused, "the alarm store never hit the limit: the test did not exercise it"
    assert not daemon.grep("flush task crashed"), daemon.grep("flush task crashed")
    assert not daemon.grep("CRITICAL"), daemon.grep("CRITICAL")
    assert code == 0, daemon.tail()
    print(f"\nfirst disk-full line ({time.strftime('%H:%M:%S', time.localtime(full_at))}): "
          f"{full[0]}\n{len(after)} ERROR/CRITICAL lines; every fire reached MQTT")
