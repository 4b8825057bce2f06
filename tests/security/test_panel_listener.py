"""The fire-panel (GB/T 26875.3) listener against hostile and broken inputs (issue 13).

- a flood of idle TCP connections (the daemon's descriptors capped at 256, 300 connections):
  the real UITD still gets in, its fire is ACKed and on MQTT, and the log stays small;
- bare TCP connects every half second (a port scanner, a health probe) do not keep a dead
  panel online: its comms alarm is raised;
- the wall clock stepped back an hour (NTP after boot): a dead panel still turns offline on
  time, in the link and through the whole daemon (in-process, injected wall clock);
- a UITD that reboots with its clock unset restarts its serials and sends the very same fire
  frame again on a new connection: that is a new fire activation, not a resend;
- SIGHUP during a burst of fire frames on one open connection: the connection stays open,
  every frame is ACKed and every fire reaches MQTT.

Everything is real: ``firewarden run`` as a process (or the Supervisor in-process for the
clock), mosquitto, TCP sockets and the UITD simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from core.measurements import Quantity
from daemon.app import Supervisor
from daemon.config import load_config
from drivers.gb26875.codec import Command, Frame, Header, encode_frame
from drivers.gb26875.link import FirePanelLink
from simulator.services import Mosquitto, free_port
from simulator.uitd import UitdPeer, fire_frame
from tests.faults.harness import (
    Daemon,
    events,
    fire_alarm,
    is_event,
    send_fire,
    write_config,
)
from tests.services import MqttCollector, eventually

pytestmark = pytest.mark.system
UNSET = datetime(2000, 1, 1, 0, 0, 5)  # what a UITD with its clock never set sends
HEARTBEAT_TIMEOUT = 5.0  # the smallest the config allows


def heartbeat(serial: int, *, time_label: datetime = UNSET) -> bytes:
    """An empty send-data frame: the UITD's "I am alive"."""
    return encode_frame(Frame(Header(serial=serial, version=(1, 0), time=time_label,
                                     source=0x123456, destination=1,
                                     command=Command.SEND_DATA)))


def config(tmp: Path, site: str, mosquitto: Mosquitto, panel_port: int,
           **panel: object) -> Path:
    return write_config(tmp, {
        "site": {"id": site},
        "daemon": {"state_dir": str(tmp / "state")},
        # nothing listens there: readings go to the spool, alarms still go to MQTT
        "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "database": "x",
                     "flush_interval": "200ms", "timeout": "500ms"},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "fire_panel": [{"name": "p1", "transport": "tcp-server", "host": "127.0.0.1",
                        "port": panel_port, **panel}],
        "alarms": {"flood_count": 1000},
    })


class LimitedDaemon(Daemon):
    """The daemon with RLIMIT_NOFILE set (a tiny exec wrapper, as for RLIMIT_FSIZE)."""

    def __init__(self, conf: Path, tmp: Path, *, nofile: int) -> None:
        super().__init__(conf, tmp)
        self.nofile = nofile

    def command(self) -> list[str]:
        wrapper = ("import os, resource, sys; "
                   f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.nofile}, {self.nofile}));"
                   " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
        return [sys.executable, "-c", wrapper, *super().command()[1:]]


async def _open_idle(port: int, n: int) -> list[asyncio.StreamWriter]:
    """``n`` connections that send nothing (those the daemon never accepts time out)."""
    async def one() -> asyncio.StreamWriter | None:
        try:
            async with asyncio.timeout(3):
                return (await asyncio.open_connection("127.0.0.1", port))[1]
        except (OSError, TimeoutError):
            return None

    return [w for w in await asyncio.gather(*(one() for _ in range(n))) if w is not None]


async def test_idle_connection_flood_does_not_lock_out_the_uitd(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = "flood"
    base = f"firewarden/{site}"
    port = free_port()
    daemon = LimitedDaemon(config(tmp_path, site, mosquitto, port), tmp_path, nofile=256)
    idle: list[asyncio.StreamWriter] = []
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            before = len(daemon.lines)
            idle = await _open_idle(port, 300)
            await asyncio.sleep(2)  # whatever the flood does to the daemon, let it happen
            await send_fire(port, 1, 3)  # ACKed, or it raises
            await mqtt.wait_for(is_event(base, fire_alarm("p1", 3), "raised"), timeout=10)
            await asyncio.sleep(1)
            flood_log = daemon.lines[before:]
            assert daemon.running
            assert await daemon.stop() == 0
    finally:
        for writer in idle:
            writer.close()
        daemon.ensure_dead()
    size = sum(len(line) + 1 for line in flood_log)
    # one line per cause a minute: connects, disconnects, evictions, the fire itself
    assert len(flood_log) <= 40, (len(flood_log), flood_log[-20:])
    assert size <= 8000, (size, flood_log[-20:])
    assert "Traceback" not in daemon.output()


async def test_caps_evict_idle_strangers_never_the_talking_uitd() -> None:
    """The link alone, peers on several loopback addresses: one address never holds more
    than ``max_per_source`` (its own oldest goes), the listener never more than
    ``max_connections``, and the connections that never sent a valid frame go first: the
    UITD that talks keeps its connection through it all."""
    async with FirePanelLink(name="p", transport="tcp-server", port=0, host="127.0.0.1",
                             on_frame=lambda f: None, max_connections=6,
                             max_per_source=2) as link:
        port = link.listening_port
        assert port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=("127.0.0.10", 0))
        uitd = UitdPeer(reader, writer)
        strangers: list[asyncio.StreamWriter] = []
        try:
            await uitd.write(heartbeat(1))
            await uitd.reply()
            most = 0
            for host in ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"):
                for _ in range(3):
                    strangers.append((await asyncio.open_connection(
                        "127.0.0.1", port, local_addr=(host, 0)))[1])
                    await asyncio.sleep(0.02)
                    most = max(most, link.state.connections)
                    per_source = Counter(c.source for c in link._connections)
                    assert max(per_source.values()) <= 2, per_source
            assert most <= 6
            await eventually(lambda: link.state.connections == 6, what="six connections")
            assert link.state.evicted == 12 + 1 - 6
            await uitd.write(heartbeat(2))  # still connected, still answered
            assert (await uitd.reply()).header.serial == 2
        finally:
            for stranger in strangers:
                stranger.close()
            await uitd.close()


async def test_out_of_descriptors_pauses_accepting_quietly(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Caps configured above what the process may open (a misconfiguration): accepting hits
    EMFILE. The listener pauses instead of spinning, says so once (not a traceback a second),
    closes the idle connections after ``idle_timeout``, and then the UITD gets in."""
    site = "emfile"
    base = f"firewarden/{site}"
    port = free_port()
    daemon = LimitedDaemon(config(tmp_path, site, mosquitto, port, max_connections=256,
                                  max_per_source=256, idle_timeout="3s"), tmp_path, nofile=128)
    idle: list[asyncio.StreamWriter] = []
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            before = len(daemon.lines)
            idle = await _open_idle(port, 200)
            await daemon.wait_log("cannot accept a connection", within=10)
            await asyncio.sleep(3)  # paused, not spinning
            await send_fire(port, 1, 3, within=15)  # once the idle ones are closed
            await mqtt.wait_for(is_event(base, fire_alarm("p1", 3), "raised"), timeout=10)
            flood_log = daemon.lines[before:]
            assert await daemon.stop() == 0
    finally:
        for writer in idle:
            writer.close()
        daemon.ensure_dead()
    accept_lines = [line for line in flood_log if "cannot accept" in line]
    assert 1 <= len(accept_lines) <= 2, accept_lines
    assert len(flood_log) <= 60, (len(flood_log), flood_log[-30:])
    assert "Traceback" not in daemon.output()


async def test_bare_connects_do_not_keep_a_dead_panel_online(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = "probe"
    base = f"firewarden/{site}"
    port = free_port()
    daemon = Daemon(config(tmp_path, site, mosquitto, port,
                           heartbeat_timeout=f"{HEARTBEAT_TIMEOUT:g}s"), tmp_path)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            uitd = await UitdPeer.tcp("127.0.0.1", port)
            await uitd.write(heartbeat(1))
            await uitd.reply()
            await uitd.close()  # the panel dies; a probe keeps connecting

            async def probe() -> None:
                while True:
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.close()
                    await asyncio.sleep(0.5)

            prober = asyncio.create_task(probe())
            try:
                # the heartbeat timeout, the 5 s health sample and slack: the bare connects
                # go on for much longer than the timeout
                await mqtt.wait_for(is_event(base, "comms:p1", "raised"),
                                    timeout=HEARTBEAT_TIMEOUT * 4)
            finally:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
            assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()


async def test_link_liveness_ignores_a_wall_clock_stepped_back() -> None:
    """The link alone: after the wall clock goes back an hour, silence still means offline
    after the heartbeat timeout (of real time), and the health reading says so."""
    offset = [0.0]

    def wall() -> float:
        return time.time() + offset[0]

    async with FirePanelLink(name="p", transport="tcp-server", port=0, host="127.0.0.1",
                             on_frame=lambda f: None, clock=wall,
                             heartbeat_timeout=1.0) as link:
        assert link.listening_port is not None
        uitd = await UitdPeer.tcp("127.0.0.1", link.listening_port)
        try:
            await uitd.write(heartbeat(1))
            await uitd.reply()
            assert link.state.online
            offset[0] -= 3600.0
            silent_at = time.monotonic()
            await eventually(lambda: not link.state.online, within=5.0,
                             what="offline after the heartbeat timeout")
            assert time.monotonic() - silent_at >= 0.5  # not before the timeout (generous)
            online = {r.quantity: r.value for r in link.health_readings(wall())}
            assert online[Quantity.ONLINE] == 0.0
        finally:
            await uitd.close()


async def test_dead_panel_raises_comms_with_the_wall_clock_stepped_back(
        tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    """The whole daemon in-process with an injected wall clock: the panel is heard, the
    clock goes back an hour and the panel falls silent; its comms alarm comes on time."""
    caplog.set_level(logging.INFO)
    site = "stepback"
    base = f"firewarden/{site}"
    port = free_port()
    offset = [0.0]

    def wall() -> float:
        return time.time() + offset[0]

    conf = config(tmp_path, site, mosquitto, port, heartbeat_timeout=f"{HEARTBEAT_TIMEOUT:g}s")
    stop = asyncio.Event()
    async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                             topics=[f"{base}/#"]) as mqtt:
        runner = asyncio.create_task(Supervisor(loaded=load_config(conf), clock=wall).run(stop))
        try:
            uitd = await eventually_connected(port)
            for serial in range(1, 4):  # heard for a while: online
                await uitd.write(heartbeat(serial))
                await uitd.reply()
                await asyncio.sleep(1)
            offset[0] -= 3600.0
            await uitd.close()
            await mqtt.wait_for(is_event(base, "comms:p1", "raised"),
                                timeout=HEARTBEAT_TIMEOUT * 4)
        finally:
            stop.set()
            done, _ = await asyncio.wait({runner}, timeout=30)
            if not done:
                runner.cancel()
    assert runner.done(), "the Supervisor did not stop within 30 s"
    assert not runner.cancelled()
    assert runner.exception() is None


async def eventually_connected(port: int, within: float = 20.0) -> UitdPeer:
    deadline = time.monotonic() + within
    while True:
        try:
            return await UitdPeer.tcp("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_rebooted_uitd_repeating_its_first_fire_frame_is_a_new_activation(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Fire, then the fire clears (the alarm stays latched), then the UITD reboots with its
    clock unset and reports the fire again with the very same frame (serial 1 again): the
    operator must see the fire raised again."""
    site = "reboot"
    base = f"firewarden/{site}"
    alarm = fire_alarm("p1", 3)
    port = free_port()
    daemon = Daemon(config(tmp_path, site, mosquitto, port), tmp_path)
    first = fire_frame(1, zone=3, time=UNSET)
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            uitd = await UitdPeer.tcp("127.0.0.1", port)
            await uitd.write(first)
            assert (await uitd.reply()).header.serial == 1
            await mqtt.wait_for(is_event(base, alarm, "raised"))
            await uitd.write(fire_frame(2, zone=3, fire=False, time=UNSET))
            assert (await uitd.reply()).header.serial == 2
            await mqtt.wait_for(is_event(base, alarm, "latched"))
            await uitd.close()

            rebooted = await UitdPeer.tcp("127.0.0.1", port)  # serials start again at 1
            await rebooted.write(first)
            assert (await rebooted.reply()).header.serial == 1
            await rebooted.close()

            def raised() -> int:
                return sum(1 for m in mqtt.messages if is_event(base, alarm, "raised")(m))

            await eventually(lambda: raised() == 2, within=10, what="the fire raised again")
            assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()


async def test_sighup_during_a_fire_burst_keeps_the_connection_and_every_fire(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A burst of fires written back to back (not waiting for each ACK), SIGHUP a tenth of
    the way in: the reload swaps the pipeline while frames keep arriving on the one open
    connection. Every frame is ACKed on that connection and every fire is raised on MQTT."""
    site = "hup"
    base = f"firewarden/{site}"
    port = free_port()
    daemon = Daemon(config(tmp_path, site, mosquitto, port), tmp_path)
    zones = range(1, 201)
    acked: set[int] = set()
    try:
        async with MqttCollector(host="127.0.0.1", port=mosquitto.port,
                                 topics=[f"{base}/#"]) as mqtt:
            await daemon.start()
            uitd = await UitdPeer.tcp("127.0.0.1", port)

            async def write() -> None:
                for zone in zones:
                    if zone == len(zones) // 10:
                        assert daemon.proc is not None
                        daemon.proc.send_signal(signal.SIGHUP)
                    await uitd.write(fire_frame(zone, zone=zone))
                    await asyncio.sleep(0.003)

            writer = asyncio.create_task(write())
            try:
                while len(acked) < len(zones):
                    reply = await uitd.reply(within=10)  # same connection, never reopened
                    assert reply.header.command == Command.CONFIRM
                    acked.add(reply.header.serial)
                await writer
            finally:
                writer.cancel()
                await uitd.close()
            await daemon.wait_log("reloaded", within=20)
            wanted = {fire_alarm("p1", z) for z in zones}

            def raised() -> set[str]:
                return {str(e.get("alarm_id")) for e in events(mqtt.messages, base)
                        if e.get("event") == "raised"} & wanted

            await eventually(lambda: raised() == wanted, within=30,
                             what=f"{len(wanted)} fires raised on MQTT")
            assert daemon.notify.count("READY=1") >= 2  # the reload really happened
            assert await daemon.stop() == 0
    finally:
        daemon.ensure_dead()
    assert acked == set(zones)
    assert "Traceback" not in daemon.output()


async def test_reload_with_a_changed_panel_config_restarts_the_listener(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Kept across a reload only while unchanged: a new port takes effect (in-process)."""
    site = "moved"
    old, new = free_port(), free_port()
    conf = config(tmp_path, site, mosquitto, old)
    stop, reload = asyncio.Event(), asyncio.Event()
    supervisor = Supervisor(loaded=load_config(conf))
    runner = asyncio.create_task(supervisor.run(stop, reload))
    try:
        await (await eventually_connected(old)).close()
        config(tmp_path, site, mosquitto, new)
        reload.set()
        await eventually(lambda: supervisor.reloads == 1, what="the reload")
        uitd = await eventually_connected(new)
        await uitd.write(heartbeat(1))
        assert (await uitd.reply()).header.serial == 1
        await uitd.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", old)
    finally:
        stop.set()
        done, _ = await asyncio.wait({runner}, timeout=30)
        if not done:
            runner.cancel()
    assert runner.done(), "the Supervisor did not stop within 30 s"
    assert runner.exception() is None
