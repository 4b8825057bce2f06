"""Webhook notifier: alarm pages to an HTTP endpoint as generic JSON, a WeCom group robot
(企业微信群机器人) or a DingTalk custom robot (钉钉自定义机器人).

Like the MQTT notifier, it sends from the alarm store's outbox (sink ``webhook:<name>``) and
deletes a row only once the receiver took it, so nothing accepted is lost across an outage or a
restart. Rows whose event kind is not in ``events`` or whose severity ranks below
``min_severity`` are marked delivered without sending (counted as ``filtered``). Fire goes
first and is never digested; rows raised during an alarm flood (``flood: true``) are held for
``flood_hold`` seconds and then sent as one digest message instead of one page each.

Outcomes of one POST (``classify``):

- 2xx, and for the robots a JSON body with ``errcode`` 0: delivered, the rows are deleted.
- robot rate limits (WeCom 45009, DingTalk 130101), 429, and a 3xx (DingTalk answers a robot
  that keeps sending too fast with a 302 for 10 minutes): wait at least ``rate_delay``, retry.
- a bad key, token or signature (WeCom 93000; DingTalk 310000, 300001, 300005), 401, 403, 404,
  410: logged once and clearly, retried slowly (every ``retry_max``) rather than dropped: it
  affects every page, fixing the config must not lose the ones waiting.
- 5xx, 408, time-outs, connection errors, unknown non-zero errcodes: retried with capped,
  jittered exponential backoff, in order.
- other 4xx, and the robots' "this message is malformed" errcodes: the endpoint refuses this
  payload, which can never succeed: logged with the body, counted and dropped (quarantined),
  so one bad payload does not block the queue.

Secrets (the robot key or access_token in the URL, the DingTalk signing secret) are read once
at start from ``url_file``/``secret_file``. The logs name the endpoint only as ``redact_url``
gives it (no user:password, token-like path segments and query values as ``***``), and quote a
failing receiver's answer only as a short excerpt with the URL's secrets, and anything else
token-like, masked (``log_excerpt``): a receiver may echo the URL back.

The formatting, the classification of answers and the redaction are in
daemon/notify/webhook_format.py (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from daemon.config import Config, WebhookConfig
from daemon.config_notify import covered, escalated_sinks
from daemon.escalation import chains as escalation_chains
from daemon.notify.base import CommandHandler, Notifier, capped_backoff
from daemon.notify.webhook_format import (
    BAD_CREDENTIALS,
    BAD_PAYLOAD,
    DIGEST_TOP,
    DINGTALK_RATE_LIMITED,
    DINGTALK_TEXT_MAX,
    LOG_EXCERPT,
    MENTION_SEVERITIES,
    SEVERITY_RANK,
    TRUNCATED,
    WECOM_MARKDOWN_MAX,
    WECOM_RATE_LIMITED,
    WECOM_TEXT_MAX,
    Outcome,
    Page,
    Style,
    ack_hint,
    classify,
    digest_markdown,
    dingtalk_message,
    dingtalk_sign,
    event_markdown,
    json_body,
    json_digest,
    local_time,
    log_excerpt,
    messages,
    place,
    plan,
    redact,
    redact_url,
    signed_url,
    truncate_utf8,
    wanted,
    wecom_messages,
)
from daemon.secrets import read_secret
from daemon.store import Outbox
from rules.escalation import Chain

__all__ = [
    "ANSWER_READ",
    "BAD_CREDENTIALS",
    "BAD_PAYLOAD",
    "DIGEST_TOP",
    "DINGTALK_RATE_LIMITED",
    "DINGTALK_TEXT_MAX",
    "LOG_EXCERPT",
    "MENTION_SEVERITIES",
    "SEVERITY_RANK",
    "TRUNCATED",
    "WECOM_MARKDOWN_MAX",
    "WECOM_RATE_LIMITED",
    "WECOM_TEXT_MAX",
    "Outcome",
    "Page",
    "Style",
    "WebhookNotifier",
    "WebhookStats",
    "ack_hint",
    "classify",
    "digest_markdown",
    "dingtalk_message",
    "dingtalk_sign",
    "event_markdown",
    "json_body",
    "json_digest",
    "local_time",
    "log_excerpt",
    "messages",
    "place",
    "plan",
    "redact",
    "redact_url",
    "signed_url",
    "truncate_utf8",
    "wanted",
    "wecom_messages",
]

log = logging.getLogger(__name__)

ANSWER_READ = 4096  # bytes of a receiver's answer read (for its errcode and the log)
# plain pages an escalation chain replaces on the webhooks it pages, for the alarms it covers
CHAIN_PAGES = frozenset({"raised", "realarm", "chattering"})


# -- the notifier (I/O) ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebhookStats:
    """Counters since start."""

    queued: int  # rows waiting in this webhook's outbox
    sent: int  # events delivered (a digest counts all it covers)
    messages: int  # HTTP requests the receiver accepted
    digests: int  # flood digests sent
    failed: int  # failed attempts (retried)
    quarantined: int  # events the endpoint refused as invalid: dropped
    filtered: int  # events not for this webhook (kind, severity): dropped unsent


class WebhookNotifier(Notifier):
    """Sends one webhook's outbox to its endpoint, retrying forever; an async context manager.
    Starting does not wait for the endpoint. The lifecycle (worker task, wake/drain, close
    deadline, crash restart) is daemon/notify/base.py's."""

    def __init__(self, *, config: WebhookConfig, site: str, outbox: Outbox,
                 timezone: str | None = None, topic_prefix: str = "firewarden",
                 flood_hold: float = 10.0, retry_initial: float = 1.0,
                 retry_max: float | None = None, rate_delay: float = 60.0,
                 max_per_window: int | None = None, rate_window: float = 60.0,
                 close_timeout: float | None = None, chains: Sequence[Chain] = ()) -> None:
        super().__init__(outbox=outbox, sink=config.sink, label=f"webhook {config.name}",
                         task_name=f"webhook-{config.name}",
                         close_timeout=close_timeout if close_timeout is not None
                         else config.timeout)
        self._config = config
        # the escalation chains paging this webhook: they page its alarms, not plain events
        self._chains = tuple(chains)
        self._style = Style(format=config.format, site=site, timezone=timezone,
                            mention=config.mention, topic_prefix=topic_prefix)
        self._flood_hold = flood_hold
        self._retry_initial = retry_initial
        self._retry_max = retry_max if retry_max is not None else config.retry_max
        self._rate_delay = rate_delay
        # The robots allow 20 messages a minute (DingTalk then blocks for 10 minutes): pace
        # ourselves rather than find out.
        robot = config.format != "json"
        self._max_per_window = max_per_window if max_per_window is not None else (
            20 if robot else None)
        self._rate_window = rate_window
        self._robot = robot
        self._url = ""
        self._secret: str | None = None
        self._host = ""
        self._session: aiohttp.ClientSession | None = None
        self._flood_since: float | None = None  # monotonic: when the held flood was first seen
        self._partial: tuple[tuple[int, ...], int] | None = None  # page seqs, messages sent
        self._recent: deque[float] = deque()  # monotonic send times, for pacing
        self._failing: Outcome | None = None
        self._sent = 0
        self._messages = 0
        self._digests = 0
        self._failed = 0
        self._quarantined = 0
        self._filtered = 0

    @classmethod
    def sinks(cls, config: Config) -> list[str]:
        return [w.sink for w in config.webhooks]

    @classmethod
    def from_config(cls, config: Config, *, outbox: Outbox,
                    on_command: CommandHandler | None = None) -> list[WebhookNotifier]:
        paged = escalated_sinks(config.escalations)
        chains = escalation_chains(config) if paged else []
        return [cls(config=w, site=config.site.id, outbox=outbox,
                    timezone=config.site.timezone, topic_prefix=config.mqtt.topic_prefix,
                    chains=chains if w.name in paged else ())
                for w in config.webhooks]

    @property
    def stats(self) -> WebhookStats:
        return WebhookStats(queued=self._queued, sent=self._sent, messages=self._messages,
                            digests=self._digests, failed=self._failed,
                            quarantined=self._quarantined, filtered=self._filtered)

    async def _open(self) -> None:
        # Read once at start: a missing secret is a startup error, not a retry loop.
        if self._config.url_file is not None:
            self._url = (read_secret(self._config.url_file,
                                     f"webhook {self._config.name} url_file") or "").strip()
        else:
            self._url = self._config.url or ""
        if self._config.secret_file is not None:
            self._secret = (read_secret(self._config.secret_file,
                                        f"webhook {self._config.name} secret_file") or "").strip()
        self._host = redact_url(self._url)  # how the logs name this endpoint
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.timeout))

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the send loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            # Cleared before reading the outbox: a wake() from here on is not lost.
            self._wake.clear()
            page, wait = self._next_page()
            if page is None:
                if wait is None:
                    self._idle.set()
                    if self._closing:
                        return
                await self._wait(wait)
                continue
            outcome = await self._send(page)
            if outcome in (Outcome.OK, Outcome.REJECTED):
                attempt = 0
                continue
            attempt += 1
            backoff = capped_backoff(attempt, self._retry_initial, self._retry_max)
            if outcome is Outcome.RATE_LIMITED:
                backoff = min(self._retry_max, max(backoff, self._rate_delay))
            elif outcome is Outcome.BAD_CREDENTIALS:
                backoff = self._retry_max
            await self._backoff(backoff * random.uniform(0.5, 1.0))

    def _next_page(self) -> tuple[Page | None, float | None]:
        """The next page to send, or (None, seconds until a held flood digest is due)."""
        items = self._outbox.pending(self._sink, 500)
        skipped = {i.seq for i in items if not wanted(i.payload, self._config)
                   or (self._chains and i.payload.get("event") in CHAIN_PAGES
                       and covered(i.payload, self._chains))}
        if skipped:
            self._outbox.delivered(self._sink, sorted(skipped))
            self._filtered += len(skipped)
            items = [i for i in items if i.seq not in skipped]
        pages = plan(items)
        now = time.monotonic()
        held: float | None = None
        for page in pages:
            if page.flood and not self._closing:
                if self._flood_since is None:
                    self._flood_since = now
                due = self._flood_since + self._flood_hold - now
                if due > 0:
                    held = due  # gather more of the flood; send anything else meanwhile
                    continue
            return page, None
        return None, held

    async def _wait(self, delay: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _send(self, page: Page) -> Outcome:
        """Send one page's messages in order; deletes its rows once all were taken (or one was
        refused as invalid)."""
        bodies = messages(page, self._style)
        done = self._partial[1] if self._partial and self._partial[0] == page.seqs else 0
        index = done
        for index in range(done, len(bodies)):
            await self._pace()
            outcome = await self._post(bodies[index], page)
            if outcome is Outcome.REJECTED:
                break  # retrying cannot help; what went out before it counts as sent
            if outcome is not Outcome.OK:
                self._partial = (page.seqs, index)
                return outcome
        else:
            outcome = Outcome.OK
        self._partial = None
        self._outbox.delivered(self._sink, list(page.seqs))
        if outcome is Outcome.OK or index > 0:  # refused only the WeCom mention: delivered
            self._sent += len(page.items)
            self._digests += page.digest
        else:
            self._quarantined += len(page.items)
        if page.flood:
            self._flood_since = None
        return outcome

    async def _post(self, body: dict[str, Any], page: Page) -> Outcome:
        assert self._session is not None
        url = self._url
        if self._secret is not None:
            url = signed_url(url, self._secret, int(time.time() * 1000))
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            # Already encoded (the sign's %2B must stay); no redirects: DingTalk's 302 is a
            # throttle, not a new home.
            async with self._session.post(
                    yarl.URL(url, encoded=True), data=data, allow_redirects=False,
                    headers={"Content-Type": "application/json; charset=utf-8"}) as response:
                status = response.status
                # enough for an errcode; never the whole of what a broken server sends
                raw = await response.content.read(ANSWER_READ)
                text = raw.decode(response.charset or "utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._failure(Outcome.RETRY, self._redact(
                f"{type(exc).__name__}: {exc}".rstrip(": ")))
        outcome, errcode = classify(status, text, robot=self._robot)
        if outcome is Outcome.OK:
            self._messages += 1
            if self._failing is not None:
                log.info("webhook %s (%s) delivering again after %d failed attempts",
                         self._config.name, self._host, self._failed)
                self._failing = None
            return outcome
        why = f"HTTP {status}" + (f" errcode {errcode}" if errcode is not None else "")
        why = f"{why}: {self._redact(text)}"
        if outcome is Outcome.REJECTED:
            self._quarantine_log(page, why)
            return outcome
        return self._failure(outcome, why)

    def _failure(self, outcome: Outcome, why: str) -> Outcome:
        self._failed += 1
        if self._failing is not outcome:
            if outcome is Outcome.BAD_CREDENTIALS:
                log.error("webhook %s (%s) refuses our credentials (%s): check the key or "
                          "access_token in url_file%s; retrying every %.0f s, %d events "
                          "queued", self._config.name, self._host, why,
                          " and the secret_file (DingTalk 加签) and the robot's security "
                          "settings" if self._config.format == "dingtalk" else "",
                          self._retry_max, self._queued)
            elif outcome is Outcome.RATE_LIMITED:
                log.warning("webhook %s (%s) rate-limits us (%s); slowing down, %d events "
                            "queued", self._config.name, self._host, why, self._queued)
            else:
                log.error("webhook %s (%s) failed (%s); retrying, %d events queued",
                          self._config.name, self._host, why, self._queued)
            self._failing = outcome
        else:
            log.debug("webhook %s (%s) failed again (%s)", self._config.name, self._host, why)
        return outcome

    def _quarantine_log(self, page: Page, why: str) -> None:
        ids = ", ".join(i.event_id for i in page.items[:5])
        log.error("webhook %s (%s) refused %d event(s) as invalid (%s); dropped: %s",
                  self._config.name, self._host, len(page.items), why, ids)

    async def _pace(self) -> None:
        """At most ``max_per_window`` messages per ``rate_window`` seconds."""
        if self._max_per_window is None:
            return
        while True:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self._rate_window:
                self._recent.popleft()
            if len(self._recent) < self._max_per_window:
                self._recent.append(now)
                return
            await asyncio.sleep(self._recent[0] + self._rate_window - now)

    async def _backoff(self, delay: float) -> None:
        """Sleep before retrying, cut short by shutdown."""
        if self._closing:
            await asyncio.sleep(min(delay, 0.2))
            return
        await self._sleep(delay)

    def _redact(self, text: str) -> str:
        """Never log the key, token, password, secret or signature, nor a long answer."""
        return log_excerpt(text, self._url, self._secret)
