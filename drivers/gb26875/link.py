"""GB/T 26875.3 receiver for fire-panel UITDs over a serial line or TCP (the thin shell).

``FirePanelLink`` listens to one or more user information transmission devices (UITDs) and
hands every valid frame to ``on_frame``. Three transports:

- ``serial``: a tty (RS-232/485 adapter) through pyserial-asyncio-fast; reopened with backoff
  when the adapter goes away;
- ``tcp-server``: UITDs connect to us on ``host:port``; at most ``max_connections`` at once,
  ``max_per_source`` from one address (see "Hostile peers" below);
- ``tcp-client``: we connect to ``host:port`` and reconnect with capped, jittered exponential
  backoff when the connection fails or drops.

Receive rules (GB/T 26875.3-2011 §7–8), in the order they happen inside ``data_received``:

1. bytes go through a ``StreamDecoder`` decoding with ``strict_time=False``: a frame whose
   time label is impossible (a panel clock never set) is still a frame, with ``time=None``;
   a fire alarm is never NAKed for a bad clock;
2. a valid send-data (2) frame is ACKed (confirm, 3) with its own serial number; an empty one
   is a heartbeat (liveness only, not delivered);
3. every other valid frame with data (send data, response, user commands) is delivered to
   ``on_frame`` once: a resend with the same (source address, serial number) and the same ADU
   bytes on the same connection (TCP connection, or tty session) within ``RESEND_WINDOW``
   seconds (and among the last ``RESEND_MEMORY`` serials of that source) is ACKed again but not
   delivered again. The same serial with a different ADU is a new frame (serials wrap) and is
   delivered: a fire is never dropped as a "duplicate". A UITD that reboots restarts its
   serials and may send the very same frame again: on a new connection, or after its time label
   went back by more than the window (a new session on a tty), nothing is a resend;
4. a complete frame that fails its checksum or content checks is NAKed (deny, 6) when its
   serial number can be read from its bytes; garbage between frames is only counted.

Fire first: nothing here does bulk work, and ``on_frame`` runs synchronously in the receive
path, so it must be quick (append to a queue). Whatever it raises is caught, logged and
counted (``callback_errors``); the link keeps running.

Liveness: the link is ``online`` while it has heard a valid frame within ``heartbeat_timeout``
seconds (or started less than that ago); otherwise it is a communication fault, logged once
when it starts and once when it ends. Only valid frames count: a bare TCP connect (a port
scan, a health probe) says nothing about the panel. Liveness, idle timeouts and the resend
window run on the monotonic clock (``monotonic``), so a wall clock stepped back by NTP cannot
hide a dead panel; ``clock`` (wall time) only labels our replies.

Hostile peers (``tcp-server``): idle connections must not eat the process's file descriptors
or lock a real UITD out. A connection that has sent no valid frame is closed after
``idle_timeout``; one that has is closed after ``2 * heartbeat_timeout`` of silence (a
half-open connection). When a new connection would exceed ``max_per_source`` for its address,
or ``max_connections`` in all, the one idle longest is closed to make room, connections that
never sent a valid frame first, so a real UITD always gets in; one host alone cannot fill the
listener (``max_per_source``), so it only ever pushes out its own connections. Accepting
pauses for ``ACCEPT_PAUSE`` when the process is out of descriptors or memory (EMFILE, ENFILE,
ENOBUFS, ENOMEM) instead of spinning, and every per-connection log line goes through a
``LogLimiter``: one line per cause a minute, with the count of those left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Literal, Self

import serial_asyncio_fast

from core.aio import cancel_and_wait
from core.measurements import Quantity, Reading
from drivers.gb26875.codec import (
    MAX_FRAME,
    Command,
    Frame,
    FrameError,
    Header,
    StreamDecoder,
    ack_for,
    nak_for,
)
from drivers.gb26875.connection import CANDIDATE_REASONS, Connection, time_label
from drivers.gb26875.session import Backoff, LinkState, LogLimiter

log = logging.getLogger(__name__)

RECONNECT = Backoff()  # tcp-client and serial reopen: capped, jittered, exponential

Transport = Literal["serial", "tcp-server", "tcp-client"]

MAX_CONNECTIONS = 16  # tcp-server connections at once
MAX_PER_SOURCE = 4  # tcp-server connections from one address at once
IDLE_TIMEOUT = 30.0  # s a tcp-server connection may stay without sending a valid frame
ACCEPT_PAUSE = 1.0  # s without accepting after running out of descriptors or memory
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_NO_REPLY_COMMANDS = frozenset({int(Command.CONFIRM), int(Command.DENY)})


class FirePanelLink:
    """Receives GB/T 26875.3 frames from fire-panel UITDs; an async context manager.

    ``port`` is the tty path for ``serial`` and the TCP port otherwise (0 for ``tcp-server``
    picks a free one, see ``listening_port``); ``host`` is the address to listen on (None:
    all) or to connect to. ``address`` is our 6-byte address, the source of our ACK/NAK
    replies; 0 answers from the destination address the UITD used (whatever it calls us).
    ``backoff`` paces reopening the tty and reconnecting as a TCP client. ``clock`` is wall
    time (reply labels); ``monotonic`` runs liveness, timeouts and the resend window.
    ``max_connections``, ``max_per_source`` and ``idle_timeout`` bound a ``tcp-server``.
    """

    def __init__(self, *, name: str, transport: Transport, port: str | int,
                 host: str | None = None, baudrate: int = 9600,
                 on_frame: Callable[[Frame], None], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 address: int = 0, heartbeat_timeout: float = 90.0,
                 backoff: Backoff = RECONNECT, max_connections: int = MAX_CONNECTIONS,
                 max_per_source: int = MAX_PER_SOURCE,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        if transport not in ("serial", "tcp-server", "tcp-client"):
            raise ValueError(f"fire panel {name}: unknown transport {transport!r}")
        if transport != "serial" and not str(port).isdigit():
            raise ValueError(f"fire panel {name}: TCP port must be a number, got {port!r}")
        if transport == "tcp-client" and not host:
            raise ValueError(f"fire panel {name}: tcp-client needs a host")
        if not 0 <= address < 1 << 48:
            raise ValueError(f"fire panel {name}: address {address} does not fit 6 bytes")
        if heartbeat_timeout <= 0 or idle_timeout <= 0:
            raise ValueError(f"fire panel {name}: heartbeat_timeout and idle_timeout must be "
                             f"positive")
        if not 1 <= max_per_source <= max_connections:
            raise ValueError(f"fire panel {name}: need 1 <= max_per_source <= max_connections, "
                             f"got {max_per_source} and {max_connections}")
        self.name = name
        self.transport: Transport = transport
        self._port = port
        self._host = host
        self._baudrate = baudrate
        self._on_frame = on_frame
        self._clock = clock
        self._monotonic = monotonic
        self._address = address
        self.heartbeat_timeout = heartbeat_timeout
        self._backoff = backoff
        self._max_connections = max_connections
        self._max_per_source = max_per_source
        self.idle_timeout = idle_timeout
        self.state = LinkState()
        self._connections: set[Connection] = set()
        self._sockets: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._limited = LogLimiter(log, clock=monotonic)

    # -- public -------------------------------------------------------------------------------

    @property
    def listening_port(self) -> int | None:
        """The TCP port a ``tcp-server`` link listens on (useful with port 0)."""
        if not self._sockets:
            return None
        return int(self._sockets[0].getsockname()[1])

    def online(self, now: float | None = None) -> bool:
        """Heard a valid frame within ``heartbeat_timeout`` of ``now`` (monotonic; default:
        the link's monotonic clock now).

        Not "connected right now": many UITDs open a TCP connection per report, and a panel
        that has not dialled in yet since we started is not faulty until the timeout has passed
        (a daemon restart must not page every panel as failed). A connection without a valid
        frame is not a sign of life: anything can connect to a port.
        """
        now = self._monotonic() if now is None else now
        s = self.state
        heard = max((t for t in (s.last_frame_at, s.started_at) if t is not None), default=None)
        return heard is not None and now - heard <= self.heartbeat_timeout

    def health_readings(self, ts: float) -> list[Reading]:
        """ONLINE (1/0) and ERRORS (defects since start) for the panel as a device, stamped
        ``ts`` (wall time); liveness itself is judged on the monotonic clock."""
        return [
            Reading(ts=ts, device=self.name, quantity=Quantity.ONLINE,
                    value=1.0 if self.online() else 0.0),
            Reading(ts=ts, device=self.name, quantity=Quantity.ERRORS,
                    value=float(self.state.errors)),
        ]

    async def __aenter__(self) -> Self:
        self.state.started_at = self._monotonic()
        if self.transport == "tcp-server":
            # fails loudly at startup when the port is taken: a listener that never listens
            # would be a silent fire-alarm outage
            self._sockets = await _listen(self._host, int(self._port))
            for sock in self._sockets:
                self._tasks.append(asyncio.create_task(
                    self._accept(sock), name=f"gb26875-accept:{self.name}"))
            log.info("fire panel %s: listening on %s:%s (at most %d connections, %d per "
                     "address)", self.name, self._host or "*", self.listening_port,
                     self._max_connections, self._max_per_source)
        else:
            self._tasks.append(asyncio.create_task(
                self._keep_connected(), name=f"gb26875-connect:{self.name}"))
        self._tasks.append(asyncio.create_task(self._watch(),
                                               name=f"gb26875-watchdog:{self.name}"))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(conn.closed)

    # -- background loops ---------------------------------------------------------------------

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(self, str(self._port))
        if self.transport == "serial":
            # exclusive: a second reader on the same line would steal half the frames
            await serial_asyncio_fast.create_serial_connection(
                loop, lambda: conn, str(self._port), baudrate=self._baudrate, exclusive=True)
        else:
            await loop.create_connection(lambda: conn, str(self._host), int(self._port))
        return conn

    async def _accept(self, sock: socket.socket) -> None:
        """tcp-server: accept, make room, serve. Out of descriptors (or memory), wait and try
        again rather than spin (asyncio's own server logs a traceback at every retry)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(sock)
            except OSError as exc:
                self.state.accept_errors += 1
                exhausted = exc.errno in _ACCEPT_EXHAUSTED
                self._limited.log("accept", logging.ERROR,
                                  "fire panel %s: cannot accept a connection: %s%s", self.name,
                                  exc, "; pausing" if exhausted else "")
                await asyncio.sleep(ACCEPT_PAUSE if exhausted else 0.01)
                continue
            try:
                self._make_room(client)
                await loop.connect_accepted_socket(lambda: Connection(self, "tcp"), client)
            except OSError as exc:  # the peer went away already, or no memory for it
                client.close()
                self.state.accept_errors += 1
                self._limited.log("accept", logging.WARNING,
                                  "fire panel %s: dropped a new connection: %s", self.name, exc)

    def _make_room(self, client: socket.socket) -> None:
        """Close what must go so the new connection fits both caps (oldest-idle first)."""
        try:
            source = str(client.getpeername()[0]).removeprefix("::ffff:")
        except OSError:
            source = ""
        for cap, only in ((self._max_per_source, source), (self._max_connections, None)):
            group = sorted((c for c in self._connections if only in (None, c.source)),
                           key=Connection.eviction_order)
            for conn in group[:max(0, len(group) - cap + 1)]:
                self._drop(conn)
                self.state.evicted += 1
                self._limited.log(
                    "evict", logging.WARNING, "fire panel %s: connection limit (%d, %d per "
                    "address) reached: closed %s, idle %.0fs%s, for a new one from %s",
                    self.name, self._max_connections, self._max_per_source, conn.label,
                    self._monotonic() - conn.idle_since(),
                    "" if conn.valid_at is not None else " and never sent a valid frame",
                    source)

    def _drop(self, conn: Connection) -> None:
        """Close now and stop counting it (its ``connection_lost`` comes later)."""
        self._connections.discard(conn)
        self.state.connections = len(self._connections)
        conn.abort()

    async def _keep_connected(self) -> None:
        """Serial and tcp-client: (re)open the link whenever it is down, with backoff."""
        failures = 0
        where = self._port if self.transport == "serial" else f"{self._host}:{self._port}"
        while True:
            try:
                conn = await self._open()
            except OSError as exc:  # serial.SerialException is an OSError too
                failures += 1
                delay = self._backoff.delay(failures)
                level = logging.ERROR if failures == 1 else logging.DEBUG
                log.log(level, "fire panel %s: cannot open %s: %s; retrying in %.1fs",
                        self.name, where, exc, delay)
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("fire panel %s: %s open again after %d failed attempts", self.name,
                         where, failures)
            failures = 0
            await asyncio.shield(conn.closed)
            failures = 1  # reopen at once is pointless: the peer just went away
            delay = self._backoff.delay(failures)
            log.error("fire panel %s: %s closed; reopening in %.1fs", self.name, where, delay)
            await asyncio.sleep(delay)

    async def _watch(self) -> None:
        """Turn a silent link into a communication fault (and back), logging transitions."""
        every = min(1.0, self.heartbeat_timeout / 4, self.idle_timeout / 4)
        while True:
            now = self._monotonic()
            self._check_online(now)
            if self.transport == "tcp-server":
                self._close_idle(now)
            await asyncio.sleep(every)

    def _close_idle(self, now: float) -> None:
        """Close connections that never sent a valid frame within ``idle_timeout``, and
        half-open ones silent for twice the heartbeat timeout."""
        for conn in list(self._connections):
            limit = (self.idle_timeout if conn.valid_at is None
                     else 2 * self.heartbeat_timeout)
            if now - conn.idle_since() > limit:
                self._drop(conn)
                self.state.idle_closed += 1
                self._limited.log("idle", logging.INFO,
                                  "fire panel %s: closed %s, silent for %.0fs%s", self.name,
                                  conn.label, now - conn.idle_since(),
                                  "" if conn.valid_at is not None
                                  else " without a valid frame")

    def _check_online(self, now: float) -> None:
        online = self.online(now)
        if online == self.state.online:
            return
        self.state.online = online
        if online:
            log.info("fire panel %s: communication up", self.name)
        else:
            heard = self.state.last_frame_at
            since = "never heard" if heard is None else f"last frame {now - heard:.0f}s ago"
            log.error("fire panel %s: communication fault (%s, timeout %gs)", self.name,
                      since, self.heartbeat_timeout)

    # -- receive path (called by Connection; synchronous, no bulk work) ----------------------

    def _opened(self, conn: Connection) -> None:
        self._connections.add(conn)
        self.state.connections = len(self._connections)
        self.state.connected = True
        self.state.connected_at = conn.opened_at
        self._limited.log("connect", logging.INFO, "fire panel %s: connected (%s)", self.name,
                          conn.label)

    def _lost(self, conn: Connection, exc: Exception | None) -> None:
        self._connections.discard(conn)
        self.state.connections = len(self._connections)
        self.state.connected = bool(self._connections)
        for error in conn.decoder.flush():
            self._count_error(conn, error)
        self._limited.log("disconnect", logging.INFO, "fire panel %s: %s disconnected%s",
                          self.name, conn.label, f" ({exc})" if exc else "")

    def _received(self, conn: Connection, data: bytes) -> None:
        conn.recent += data
        try:
            items = conn.decoder.feed(data)
        except Exception:  # the decoder never raises; if it ever does, keep the link alive
            log.exception("fire panel %s: decoder failed on %d bytes", self.name, len(data))
            conn.decoder = StreamDecoder(strict_time=False)
            items = []
        for item in items:
            try:
                if isinstance(item, FrameError):
                    self._rejected(conn, item)
                else:
                    self._frame(conn, item)
            except Exception:  # e.g. a reply that cannot be encoded: count, never crash
                self.state.errors += 1
                log.exception("fire panel %s: failed to handle %r", self.name, item)
        excess = len(conn.recent) - 2 * MAX_FRAME
        if excess > 0:
            del conn.recent[:excess]
            conn.recent_base += excess

    def _reply_label(self) -> datetime | None:
        return time_label(self._clock())

    def _reply(self, conn: Connection, reply: Frame) -> None:
        if self._address:
            h = reply.header
            reply = Frame(Header(serial=h.serial, version=h.version, time=h.time,
                                 source=self._address, destination=h.destination,
                                 command=h.command))
        conn.send(reply)

    def _frame(self, conn: Connection, frame: Frame) -> None:
        now = self._monotonic()
        s = self.state
        s.frames += 1
        s.last_frame_at = conn.valid_at = now
        if not s.online:
            self._check_online(now)
        h = frame.header
        wants_ack = h.command == Command.SEND_DATA
        if wants_ack and not frame.raw_adu:
            self._ack(conn, frame)
            s.heartbeats += 1
            return
        if not wants_ack and (h.command in _NO_REPLY_COMMANDS or not frame.raw_adu):
            return  # confirm/deny from the UITD, empty frames: liveness only
        if conn.resends.seen(h.source, h.serial, hash(frame.raw_adu), now, h.time):
            s.duplicates += 1
            log.debug("fire panel %s: resend of serial %d from %d not delivered again",
                      self.name, h.serial, h.source)
        else:
            s.delivered += 1
            try:
                # Synchronously, before the ACK: what the callback accepts (the daemon stores
                # a fire alarm in it) is durable by the time the panel hears "received".
                self._on_frame(frame)
            except Exception:
                s.callback_errors += 1
                s.errors += 1
                level = logging.ERROR if s.callback_errors == 1 else logging.DEBUG
                log.log(level, "fire panel %s: on_frame failed (serial %d)", self.name,
                        h.serial, exc_info=True)
        if wants_ack:  # a resend is ACKed again: our first ACK was evidently lost
            self._ack(conn, frame)

    def _ack(self, conn: Connection, frame: Frame) -> None:
        self._reply(conn, ack_for(frame, now=self._reply_label()))
        self.state.acks += 1

    def _rejected(self, conn: Connection, error: FrameError) -> None:
        self._count_error(conn, error)
        if error.reason not in CANDIDATE_REASONS:
            return
        candidate = conn.rejected_candidate(error)
        if candidate is None or candidate[26] in _NO_REPLY_COMMANDS:
            return
        stub = Frame(Header(serial=int.from_bytes(candidate[2:4], "little"),
                            version=(candidate[4], candidate[5]), time=None,
                            source=int.from_bytes(candidate[12:18], "little"),
                            destination=int.from_bytes(candidate[18:24], "little"),
                            command=Command.SEND_DATA))
        self._reply(conn, nak_for(stub, now=self._reply_label()))
        self.state.naks += 1

    def _count_error(self, conn: Connection, error: FrameError) -> None:
        self.state.errors += 1
        self._limited.log("bad-bytes", logging.WARNING, "fire panel %s: %s: %s", self.name,
                          conn.label, error)


async def _listen(host: str | None, port: int) -> list[socket.socket]:
    """Listening sockets for ``host`` (None: every address, IPv6 and IPv4), non-blocking."""
    if host is None:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(("", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=128)
        else:
            sock = socket.create_server(("", port), backlog=128)
        sock.setblocking(False)
        return [sock]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys((i[0], 0, 0, "", i[4]) for i in infos):
            sock = socket.create_server((address[0], port), family=family, backlog=128)
            sock.setblocking(False)
            sockets.append(sock)
            port = port or int(sock.getsockname()[1])  # port 0: the same free port on all
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
