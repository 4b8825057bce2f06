"""The lighting and wiring rules find the focused scenarios' events, and nothing else."""

from __future__ import annotations

import pytest

from bench.bench_detection import expectations, run_rules
from simulator.community import CommunityModel, load_scenario


@pytest.mark.parametrize("name", ["ebike-night", "unmetered-tap", "lamp-failures"])
def test_focused_scenario_detected_without_false_alarms(name: str) -> None:
    """Every labelled event raises its expected alarm on its device; nothing else raises."""
    scenario = load_scenario(name)
    alarms = run_rules(scenario)
    expected = expectations(scenario, CommunityModel(scenario))
    assert expected, "the scenario labels events these rules should find"
    unexplained = list(alarms)
    for e in expected:
        hits = [a for a in alarms if a.rule == e.rule and a.device == e.device
                and (e.channel is None or a.channel == e.channel)
                and e.record.start <= a.ts <= e.record.end]
        assert hits, f"{e.record.id} ({e.rule} on {e.device}) not detected"
        unexplained = [a for a in unexplained if a not in hits]
    assert unexplained == [], f"false alarms: {[a.message for a in unexplained]}"
