"""Shared fixtures: private mosquitto and influxd instances for the whole session, and
factories for tests that need their own (to stop and restart them)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.services import InfluxDB, Mosquitto, VictoriaMetrics
from tests.services import require


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A running private broker (``.host``, ``.port``), shared by the session."""
    require(Mosquitto)
    with Mosquitto(workdir=tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """A running private InfluxDB 1.x (``.url``, ``.query()``, ``.create_database()``)."""
    require(InfluxDB)
    with InfluxDB(workdir=tmp_path_factory.mktemp("influxd")) as server:
        yield server


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Makes private brokers (not started) on fixed free ports; all stopped at teardown.

    ``make(persistence=True)`` keeps sessions and retained messages across a restart."""
    require(Mosquitto)
    made: list[Mosquitto] = []

    def make(*, persistence: bool = False) -> Mosquitto:
        made.append(Mosquitto(workdir=tmp_path / f"mosquitto-{len(made)}",
                              persistence=persistence))
        return made[-1]

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def influxdb_factory(tmp_path: Path) -> Iterator[Callable[[], InfluxDB]]:
    """Makes private InfluxDB servers (not started) on fixed free ports; stopped at teardown."""
    require(InfluxDB)
    made: list[InfluxDB] = []

    def make() -> InfluxDB:
        made.append(InfluxDB(workdir=tmp_path / f"influxd-{len(made)}"))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A running private VictoriaMetrics (the v2 write peer: ``.url``, ``.export()``)."""
    require(VictoriaMetrics)
    with VictoriaMetrics(workdir=tmp_path_factory.mktemp("victoria-metrics")) as server:
        yield server
