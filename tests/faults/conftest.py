"""The fault-injection suite (``pytest -m faults``): real processes, real peers, injected
faults. The ``faults`` marker is registered here, so the suite needs no change elsewhere."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault injection against real processes and peers (tests/faults)")
