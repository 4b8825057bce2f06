"""The escalation shell: runs the pure chains (rules/escalation.py) over the engine's alarms on
every rule tick and after every operator command, and queues what they say in the alarm
store's outbox for the tiers' webhooks.

The chain states are kept in the store (table ``escalations``) and written in the same
transaction as the pages they queue, so a restarted daemon neither pages a tier again nor
forgets to page the next one. Webhooks then send those rows like any other event (retrying,
in order, fire first).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from daemon.config import Config
from daemon.config_notify import to_chain
from daemon.store import AlarmStore
from rules.escalation import Chain, ChainState, Escalate, StandDown, chain_for, step
from rules.model import Alarm, Severity

log = logging.getLogger("firewarden")


def chains(config: Config) -> list[Chain]:
    """The config's ``[[escalation]]`` chains, in order."""
    return [to_chain(e, config.site.timezone) for e in config.escalations]


def state_to_json(state: ChainState) -> str:
    return json.dumps(asdict(state), ensure_ascii=False)


def state_from_json(text: str) -> ChainState:
    data: dict[str, Any] = json.loads(text)
    data["paged"] = tuple((int(t), float(at)) for t, at in data.get("paged", ()))
    known = ChainState.__dataclass_fields__
    return ChainState(**{k: v for k, v in data.items() if k in known})


class Escalator:
    """Keeps every alarm's chain state; ``run(alarms, now)`` queues the pages due."""

    def __init__(self, *, chains: Sequence[Chain], store: AlarmStore) -> None:
        self._chains = {c.name: c for c in chains}
        self._order = list(chains)
        self._store = store
        self.states: dict[str, ChainState] = {}
        for alarm_id, text in store.load_escalations().items():
            try:
                self.states[alarm_id] = state_from_json(text)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("escalation state of %s does not decode (%s): dropped", alarm_id, exc)
        self.paged = 0  # pages queued since start (tests, self-metrics)

    def run(self, alarms: Mapping[str, Alarm], now: float, *, flooding: bool = False) -> int:
        """Step every chain; queue the pages and stand-downs (with the new states, in one
        transaction). Returns how many messages were queued."""
        if not self._order:
            return 0
        messages: list[tuple[str, str, dict[str, Any], bool]] = []
        changed: dict[str, str] = {}
        for alarm_id, alarm in alarms.items():
            state = self.states.get(alarm_id)
            if state is None and alarm.acked:
                continue  # the common case: nothing to escalate, nothing running
            if state is not None and state.ended and alarm.acked:
                continue
            chain = (self._chains.get(state.chain) if state is not None and not state.ended
                     else None) or chain_for(self._order, alarm)
            if chain is None:
                continue
            new, actions = step(chain, alarm, state, now)
            if new is None or new == state:
                continue
            self.states[alarm_id] = new
            changed[alarm_id] = state_to_json(new)
            for action in actions:
                messages += self._messages(chain, alarm, new, action, now, flooding)
        if changed:
            self._store.notify(messages, escalations=changed)
            self.paged += sum(1 for m in messages if m[2]["event"] == "escalated")
        return len(messages)

    def _messages(self, chain: Chain, alarm: Alarm, state: ChainState,
                  action: Escalate | StandDown, now: float,
                  flooding: bool) -> list[tuple[str, str, dict[str, Any], bool]]:
        urgent = alarm.severity is Severity.FIRE
        base: dict[str, Any] = {**alarm.as_dict(), "ts": now, "chain": chain.name,
                                "flood": flooding and not urgent, "previous": None, "by": None}
        chain_id = f"{alarm.alarm_id}@{state.started_at:.0f}"
        if isinstance(action, Escalate):
            payload = {**base, "event": "escalated", "event_id": f"{chain_id}#t{action.tier + 1}",
                       "tier": action.tier + 1, "tier_name": action.tier_name,
                       "waited": round(action.waited, 1), "off_hours": action.off_hours,
                       "previous_tiers": list(action.previous)}
            log.warning("escalation %s: %s paged (tier %d: %s) after %.0f min unacknowledged",
                        chain.name, alarm.alarm_id, action.tier + 1, action.tier_name,
                        action.waited / 60)
        else:
            payload = {**base, "event": "escalation_ended", "event_id": f"{chain_id}#end",
                       "reason": action.reason, "by": action.by,
                       "after": round(action.after, 1), "tiers": list(action.tiers)}
            log.info("escalation %s: %s %s%s after %.0f min; told %s", chain.name,
                     alarm.alarm_id, action.reason, f" by {action.by}" if action.by else "",
                     action.after / 60, ", ".join(action.tiers))
        return [(f"webhook:{name}", str(payload["event_id"]), payload, urgent)
                for name in action.notify]
