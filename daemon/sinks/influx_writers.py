"""The two InfluxDB write APIs behind one ``Writer`` interface, and how a reply is judged.

v1 ``POST /write?db=&rp=&precision=ns`` with aiohttp (InfluxDB 1.x, 2.x's compatibility API,
3.x, VictoriaMetrics) and v2 ``/api/v2/write`` through influxdb-client's async API, with org,
bucket and a token from a file. Each sends one batch and answers WRITTEN, RETRY, REFUSED or
TOO_LARGE; what to do about that (spooling, bisecting, backing off) is ``daemon/sinks/influx.py``'s
job, so a writer holds no state beyond its connection.
"""

from __future__ import annotations

import ipaddress
import logging
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp

from daemon.config import InfluxConfig
from daemon.secrets import read_secret

log = logging.getLogger(__name__)

_GZIP_MIN_BYTES = 64 * 1024  # below this, compressing costs more loop time than it saves
_RETRY_STATUS = frozenset({401, 403, 404, 408, 429})  # fixable by the server side; keep


class Outcome(Enum):
    WRITTEN = "written"
    RETRY = "retry"  # the server did not take it now: try again later
    REFUSED = "refused"  # the server says these lines are wrong: retrying cannot help
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    detail: str = ""


class Writer(Protocol):
    """One API's way of sending a batch of lines."""

    async def prepare(self) -> None: ...

    async def write(self, lines: list[str]) -> WriteResult: ...

    async def close(self) -> None: ...


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    return compressor.compress(body) + compressor.flush()


def use_gzip(config: InfluxConfig) -> bool:
    """``gzip = "auto"`` compresses unless the server is on this box: over a 4G or DSL link
    line protocol shrinks ~15x, over loopback compressing only costs CPU the server needs."""
    if config.gzip != "auto":
        return config.gzip == "always"
    host = urlsplit(config.url).hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def _classify(status: int, text: str) -> WriteResult:
    if 200 <= status < 300:
        return WriteResult(Outcome.WRITTEN)
    detail = f"HTTP {status}: {text.strip()[:300]}"
    if status == 413:
        return WriteResult(Outcome.TOO_LARGE, detail)
    if status >= 500 or status in _RETRY_STATUS:
        return WriteResult(Outcome.RETRY, detail)
    return WriteResult(Outcome.REFUSED, detail)


class V1Writer:
    """``POST /write`` with aiohttp; basic auth from ``username`` and ``password_file``."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._gzip = use_gzip(config)

    async def prepare(self) -> None:
        auth = None
        if self._config.username:
            password = read_secret(self._config.password_file, "influxdb.password_file") or ""
            auth = aiohttp.BasicAuth(self._config.username, password)
        self._session = aiohttp.ClientSession(
            auth=auth, timeout=aiohttp.ClientTimeout(total=self._config.timeout))

    async def create_database(self) -> None:
        """``CREATE DATABASE`` is idempotent in 1.x; failure is logged, not fatal (the server
        may be down now, or the user may lack admin rights on a database that exists)."""
        assert self._session is not None
        name = self._config.database.replace("\\", "\\\\").replace('"', '\\"')
        try:
            async with self._session.post(f"{self._config.url.rstrip('/')}/query",
                                          data={"q": f'CREATE DATABASE "{name}"'}) as response:
                text = await response.text(errors="replace")
                if response.status != 200 or '"error"' in text:
                    log.warning("CREATE DATABASE %s: HTTP %d %s", self._config.database,
                                response.status, text.strip()[:200])
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("CREATE DATABASE %s failed (%s); writes will retry",
                        self._config.database, exc or type(exc).__name__)

    async def write(self, lines: list[str]) -> WriteResult:
        assert self._session is not None
        body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip and len(body) >= _GZIP_MIN_BYTES:
            body = _gzip(body)
            headers["Content-Encoding"] = "gzip"
        params = {"db": self._config.database, "precision": "ns"}
        if self._config.retention_policy:
            params["rp"] = self._config.retention_policy
        try:
            async with self._session.post(f"{self._config.url.rstrip('/')}/write",
                                          params=params, data=body,
                                          headers=headers) as response:
                result = _classify(response.status, await response.text(errors="replace"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return WriteResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}".rstrip(": "))
        if "database not found" in result.detail:
            await self.create_database()
            return WriteResult(Outcome.RETRY, result.detail)
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class V2Writer:
    """``/api/v2/write`` through influxdb-client's async API (gzip on), token from a file."""

    def __init__(self, config: InfluxConfig) -> None:
        self._config = config
        self._client: object | None = None

    async def prepare(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self._client = InfluxDBClientAsync(
            url=self._config.url,
            token=read_secret(self._config.token_file, "influxdb.token_file") or "",
            org=self._config.org or "", timeout=int(self._config.timeout * 1000),
            enable_gzip=use_gzip(self._config))

    async def write(self, lines: list[str]) -> WriteResult:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
        from influxdb_client.rest import ApiException

        client = self._client
        assert isinstance(client, InfluxDBClientAsync)
        try:
            await client.write_api().write(bucket=self._config.bucket or "",
                                           org=self._config.org or "",
                                           record="\n".join(lines))
        except ApiException as exc:
            return _classify(int(exc.status or 500), str(exc.body or exc.reason or ""))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return WriteResult(Outcome.RETRY, f"{type(exc).__name__}: {exc}".rstrip(": "))
        return WriteResult(Outcome.WRITTEN)

    async def close(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        if isinstance(self._client, InfluxDBClientAsync):
            await self._client.close()  # type: ignore[no-untyped-call]
        self._client = None
