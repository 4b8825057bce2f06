"""bench.corpus_serve's config writer: a real corpus' devices become a valid daemon config."""

from __future__ import annotations

from pathlib import Path

from bench.corpus import build
from bench.corpus_serve import Endpoint, daemon_config, lamps_setting
from daemon.config import validate_config


def test_lamps_setting_lists_the_channels_in_use() -> None:
    """Channels up to the last one in use; an unused one between them is 0 lamps (nothing
    connected, not watched); a controller with nothing in use gets one lamp on channel 1."""
    assert lamps_setting((5, 0, 2, 0, 5, 0, 0, 3)) == [5, 0, 2, 0, 5, 0, 0, 3]
    assert lamps_setting((0, 4, 0, 6, 1, 1, 2, 0)) == [0, 4, 0, 6, 1, 1, 2]
    assert lamps_setting((0,) * 8) == [1]


def test_corpus_config_validates(tmp_path: Path) -> None:
    """Site from the corpus, a tcp bus per building, every device with its tags, kind and
    breaker, lighting controllers with lamps and lamp current: the daemon accepts it."""
    corpus = build("holdout", 7, days=0.25, buildings=2)
    units: dict[str, int] = {}
    endpoints = {}
    for d in corpus.devices:
        units[d.building] = units.get(d.building, 0) + 1
        endpoints[d.name] = Endpoint("127.0.0.1", 15000 + int(d.building), units[d.building])
    raw = daemon_config(corpus, endpoints, site="corpus")
    raw |= {"influxdb": {"url": "http://127.0.0.1:8086"}, "mqtt": {"host": "127.0.0.1"}}
    loaded = validate_config(raw, tmp_path / "corpus.toml")
    config = loaded.config
    assert (config.site.latitude, config.site.timezone) == (corpus.latitude, corpus.timezone)
    assert [b.name for b in config.buses] == ["b1-gw", "b2-gw"]
    assert {d.name for d in config.devices} == {d.name for d in corpus.devices}
    assert all(d.poll == 60.0 for d in config.devices)
    incomer = next(d for d in config.devices if d.kind == "incomer")
    assert (incomer.box, incomer.circuit, incomer.rated_current) == ("1A", "main", 63.0)
    controllers = [d for d in config.devices if d.profile == "lighting-controller"]
    assert len(controllers) == 2
    assert all(d.kind == "lighting" and "lighting" in d.rules for d in controllers)
