"""Which notifiers the daemon has: config section -> notifier class.

The supervisor (daemon/app.py) asks ``sinks(config)`` for the alarm store's outbox sinks and
``build(config, ...)`` for the notifiers to start, in this order (stopped in reverse). Adding a
notifier: a module with a ``daemon.notify.base.Notifier`` subclass, one line here, and its
config section in daemon/config.py.
"""

from __future__ import annotations

from daemon.config import Config
from daemon.notify.base import CommandHandler, Notifier
from daemon.notify.mqtt import MqttNotifier
from daemon.notify.webhook import WebhookNotifier
from daemon.store import Outbox

# config section ([mqtt], [[webhook]]) -> the class that builds its notifiers
NOTIFIERS: dict[str, type[Notifier]] = {
    "mqtt": MqttNotifier,
    "webhook": WebhookNotifier,
}


def sinks(config: Config) -> list[str]:
    """Every outbox sink ``config`` needs, one per notifier."""
    return [sink for kind in NOTIFIERS.values() for sink in kind.sinks(config)]


def build(config: Config, *, outbox: Outbox,
          on_command: CommandHandler | None = None) -> list[Notifier]:
    """The notifiers ``config`` asks for, not yet started (each is an async context manager)."""
    return [notifier for kind in NOTIFIERS.values()
            for notifier in kind.from_config(config, outbox=outbox, on_command=on_command)]
