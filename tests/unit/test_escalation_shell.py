"""The escalation shell around a real alarm store file: chain states survive a restart (no page
twice, the next one not forgotten); the config names its bad fields; the pages' formatting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon.config import ConfigError, validate_config
from daemon.escalation import Escalator, chains
from daemon.notify.webhook_format import Page, Style, messages, wanted
from daemon.store import AlarmStore, OutboxItem
from rules.alarm import Ack, transition
from rules.model import Alarm, Condition, Severity
from rules.policy import BY_SEVERITY

SINKS = ["webhook:electricians", "webhook:manager"]
T0 = 1_731_463_200.0  # 2024-11-13 10:00 Asia/Shanghai, a Wednesday


def _raw(**escalation: Any) -> dict[str, Any]:
    chain = {"name": "site", "tier": [
        {"name": "electricians", "notify": ["electricians"]},
        {"name": "manager", "notify": ["manager"], "after": "10m"}], **escalation}
    return {"site": {"id": "t", "timezone": "Asia/Shanghai"},
            "webhook": [{"name": "electricians", "url": "http://127.0.0.1:9/e"},
                        {"name": "manager", "url": "http://127.0.0.1:9/m"}],
            "escalation": [chain]}


def _alarm(t: float) -> Alarm:
    a = Alarm(alarm_id="leakage:d1:1", rule="leakage", device="d1", channel="1",
              severity=Severity.CRITICAL, context={"building": "12"})
    a, _ = transition(a, Condition("leakage", "d1", True, Severity.CRITICAL, t, channel="1",
                                   message="剩余电流 350 mA"), t, BY_SEVERITY[Severity.CRITICAL])
    return a


def _queued(store: AlarmStore) -> dict[str, list[dict[str, Any]]]:
    return {s: [i.payload for i in store.pending(s)] for s in SINKS}


def test_chain_state_survives_a_restart(tmp_path: Path) -> None:
    """Tier 1 paged, the daemon restarts: tier 1 is not paged again, tier 2 is paged when due
    (10 min after tier 1), then the ack tells both."""
    loaded = validate_config(_raw(), tmp_path / "fw.toml")
    alarm = {"leakage:d1:1": _alarm(T0)}
    with AlarmStore(tmp_path / "alarms.db", sinks=SINKS) as store:
        assert Escalator(chains=chains(loaded.config), store=store).run(alarm, T0) == 1
    with AlarmStore(tmp_path / "alarms.db", sinks=SINKS) as store:
        again = Escalator(chains=chains(loaded.config), store=store)
        assert again.run(alarm, T0 + 60) == 0
        assert again.run(alarm, T0 + 599) == 0
        assert again.run(alarm, T0 + 600) == 1
        acked = transition(alarm["leakage:d1:1"], Ack("李师傅"), T0 + 700,
                           BY_SEVERITY[Severity.CRITICAL])[0]
        assert again.run({"leakage:d1:1": acked}, T0 + 700) == 2
        queued = _queued(store)
    assert [p["event"] for p in queued["webhook:electricians"]] == [
        "escalated", "escalation_ended"]
    assert [p["event"] for p in queued["webhook:manager"]] == ["escalated", "escalation_ended"]
    assert queued["webhook:manager"][1]["by"] == "李师傅"
    assert queued["webhook:manager"][1]["after"] == 700.0


@pytest.mark.parametrize(("change", "message"), [
    ({"off_hours_start": "manager"}, "escalation[0]: off_hours_start needs "
                                     "working_hours"),
    ({"working_hours": "8-18"}, "escalation[0].working_hours"),
    ({"tier": [{"name": "a", "notify": ["electricians"]},
               {"name": "b", "notify": ["nobody"], "after": "5m"}]},
     "escalation[0].tier[1].notify: no [[webhook]] named 'nobody' (webhooks: electricians, "
     "manager)"),
    ({"tier": [{"name": "a", "notify": ["electricians"]},
               {"name": "b", "notify": ["manager"], "after": {"fire": "5m"}}]},
     "tier[1].after: no delay for critical, warning"),
    ({"tier": [{"name": "a", "notify": ["electricians"], "after": "5m"}]},
     "tier[0].after: the first tier is paged when the alarm raises"),
])
def test_config_errors_name_the_field(tmp_path: Path, change: dict[str, Any],
                                      message: str) -> None:
    """Each mistake is one error line naming the field."""
    with pytest.raises(ConfigError) as caught:
        validate_config(_raw(**change), tmp_path / "fw.toml")
    assert any(message in line for line in caught.value.errors), caught.value.errors


def test_escalation_pages_are_formatted_and_always_wanted(tmp_path: Path) -> None:
    """An escalated row says which tier, how long unacknowledged and who was paged before; it
    is sent whatever the webhook's ``events``; the stand-down says who and after how long."""
    loaded = validate_config(_raw(), tmp_path / "fw.toml")
    hook = loaded.config.webhooks[0]
    page = {**_alarm(T0).as_dict(), "event": "escalated", "event_id": "x#t2", "ts": T0,
            "tier": 2, "tier_name": "manager", "waited": 600.0, "off_hours": True,
            "previous_tiers": ["electricians"]}
    assert wanted(page, hook)
    style = Style(format="wecom", site="t", timezone="Asia/Shanghai")
    (body,) = messages(Page((OutboxItem(1, "x#t2", page),)), style)
    text = body["markdown"]["content"]
    assert "升级 第 2 级 (manager): 剩余电流 350 mA" in text
    assert "已 10 分钟无人确认 (已通知: electricians) · 非工作时间" in text
    ended = {**page, "event": "escalation_ended", "reason": "acknowledged", "by": "李师傅",
             "after": 720.0, "tiers": ["electricians", "manager"]}
    (body,) = messages(Page((OutboxItem(2, "x#end", ended),)), style)
    assert "由 李师傅 已确认 (告警 12 分钟后)，升级结束" in body["markdown"]["content"]
