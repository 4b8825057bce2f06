"""A simulated open residential community: the test bed for firewarden's rules and demo.

The model
---------
A community (``[community]`` in a scenario) has buildings; each building has distribution
boxes, Modbus smoke detectors, a lighting controller for dark-area safety lamps and a fire
panel with a GB/T 26875.3 UITD. A box has an incomer meter (Eastron SDM630, three phases,
breaker e.g. 63 A), one single-phase sub-circuit meter (SDM120) per role - ``sockets``
(household curve), ``stair`` (stairwell lighting, lit from civil dusk to dawn) and
``public`` (public sockets) on L1, L2, L3 - and a residual-current/temperature detector.
Names are fixed: ``b12-box1-main``, ``b12-box1-stair``, ``b12-box1-rc``, ``b12-smoke1``,
``b12-lights``, ``b12-fire-panel`` (see ``topology``).

``CommunityModel(scenario).sample(t)`` is pure and deterministic: the value of every served
point at simulated epoch ``t``, keyed ``{device: {(quantity, channel): value}}`` in the
profiles' engineering units: V, A, W, VA, var, PF, Hz, kWh (counters never decrease), mA, °C,
dB/m, %, lx, relay 0/1. Loads follow the time of day (night trough, morning bump, evening
peak 19-22 h) with noise hashed from (seed, stream, time bucket); voltage ~230 V sags a little
at the peak; the lamps' relays follow civil dusk and dawn from astral for the site's
coordinates, lamp current = working lamps x lamp current. The incomer phase carries its
sub-circuits plus the box's own small draw plus any unmetered tap, so a tap shows as incomer
power above the sub-circuits' sum.

Events and scenarios
--------------------
Scenarios are TOML files in ``simulator/scenarios/`` (see its README): a start time, duration,
time compression, seed, the community, listed ``[[event]]`` and random ``[[generate]]`` events.
Event kinds (``events.KINDS``): ebike (CC/CV), heater, unmetered-tap, lamp-failure (one, all,
day-burning, cycling), leakage-creep, cable-heating, smoke-fire, detector-fault,
device-silent, device-garbage.

``ground_truth(scenario)`` labels every event (kind, label, target, building, box, circuit,
phase/channel, simulated window in epoch and local ISO time, real-time offsets at the
scenario's compression, expected effect, affected points); ``write_truth`` writes it as
``truth.json``. Because the model is deterministic, the truth holds for every run.

Running it
----------
``CommunityRunner(scenario, ...)`` (async context manager) serves each building on its own
Modbus TCP port (a gateway per building, units 1..N), runs the panels' UITDs (TCP client or
socat pty), ticks the model into the devices and exposes ``sim_time()``, ``truth`` and
``endpoints``; ``daemon_config(community, runner.endpoints)`` is a matching firewarden config.
``python -m simulator.community --scenario evening`` (``firewarden simulate``) runs one.
"""

from simulator.community.daemon_config import Endpoints, FirePanelEndpoint, daemon_config
from simulator.community.events import KINDS, Event
from simulator.community.model import CommunityModel
from simulator.community.runner import CommunityRunner, TimelineEntry, UitdMode
from simulator.community.scenario import Scenario, ScenarioError, available, load_scenario
from simulator.community.topology import Community
from simulator.community.truth import TruthRecord, ground_truth, truth_document, write_truth

__all__ = [
    "KINDS",
    "Community",
    "CommunityModel",
    "CommunityRunner",
    "Endpoints",
    "Event",
    "FirePanelEndpoint",
    "Scenario",
    "ScenarioError",
    "TimelineEntry",
    "TruthRecord",
    "UitdMode",
    "available",
    "daemon_config",
    "ground_truth",
    "load_scenario",
    "truth_document",
    "write_truth",
]
