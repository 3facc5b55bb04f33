"""The whole demo floor (root devices.toml) for a simulated hour at 60x speed, with the demo
scenario: every point produces readings and every scripted fault is seen by the daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from floorctl import hookimpl
from floorctl.model import Event, EventKind, Quality, Reading
from simulators.scenario import Scenario, ScenarioRun, Step, resolve_scenario
from simulators.serve import serve
from tests.helpers import free_port

from .floorkit import running_floor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SPEED = 60.0


class EventRecorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def floorctl_on_event(self, event: Event) -> None:
        self.events.append(event)


def _in_window(r: Reading, start: float, end: float) -> bool:
    return start <= r.receive_time <= end


def fault_seen(
    step: Step, readings: list[Reading], events: list[Event], start: float, end: float
) -> bool:
    """Did the daemon see this fault between its start and (a little after) its end?"""
    device, fault, params = step.device, step.fault.name, step.fault.params
    mine = [r for r in readings if r.device == device and _in_window(r, start, end)]
    if fault == "excursion":
        target = float(params["to"])
        values = [
            r.value for r in mine if r.point == params["field"] and isinstance(r.value, int | float)
        ]
        return any(abs(v - target) <= max(0.15 * abs(target), 0.5) for v in values)
    if fault in ("laser", "flow", "service"):
        return any(
            r.quality is Quality.DEVICE_ERROR and fault in (r.detail or "").lower() for r in mine
        )
    if fault == "exception":
        return any(r.quality is Quality.DEVICE_ERROR for r in mine)
    if fault == "malformed":
        return any(r.quality is Quality.BAD for r in mine)
    if fault == "silent":
        return any(
            e.kind is EventKind.COMM_LOSS and e.source == device and start <= e.time <= end
            for e in events
        )
    if fault == "door_open":
        return any(r.point == "open" and r.value is True for r in mine)
    if fault == "backfill":
        late = [
            r for r in readings if r.device == device and r.historical and r.receive_time >= start
        ]
        gap = [
            e
            for e in events
            if e.kind is EventKind.DATA_GAP and e.source == device and e.time >= start
        ]
        return bool(late) and bool(gap)
    raise AssertionError(f"the test does not know how to see fault {fault!r}: teach it")


async def test_demo_floor_for_a_simulated_hour(mosquitto) -> None:
    env = {
        "FLOORCTL_MQTT_PORT": mosquitto.port,
        "FLOORCTL_MODBUS_PORT": free_port(),
        "FLOORCTL_MODBUS_PORT_2": free_port(),
        "FLOORCTL_SICS_PORT": free_port(),
    }
    recorder = EventRecorder()
    scenario = Scenario.load(resolve_scenario("demo"))
    run = ScenarioRun(scenario)
    text = (ROOT / "devices.toml").read_text()
    async with running_floor(text, plugins=[recorder], **env) as (floor, seen):
        stop = asyncio.Event()
        sims = asyncio.create_task(serve(floor.config, stop=stop, speed=SPEED, scenario=run))
        try:
            await asyncio.wait_for(run.finished.wait(), scenario.duration / SPEED + 30)
            await asyncio.sleep(3.0)  # the last faults' effects reach the daemon
        finally:
            stop.set()
            await asyncio.wait_for(sims, 15)

    # every point of every device produced readings, and at least one good one
    points = {(d.id, f.name) for d in floor.config.devices for f in d.fields}
    got = {(r.device, r.point) for r in seen}
    assert points <= got, f"points without a reading: {sorted(points - got)}"
    good = {(r.device, r.point) for r in seen if r.quality is Quality.GOOD}
    assert points <= good, f"points never good: {sorted(points - good)}"

    # every scripted fault started, ended, and was seen by the daemon while it lasted
    starts = {e.step: e for e in run.entries("start")}
    ends = {e.step: e for e in run.entries("end")}
    assert not run.entries("error"), run.entries("error")
    assert set(starts) == set(range(len(scenario.steps)))
    missed = []
    for i, step in enumerate(scenario.steps):
        start = starts[i].wall
        end = (ends[i].wall if i in ends else start + scenario.duration / SPEED) + 5.0
        if not fault_seen(step, seen, recorder.events, start, end):
            missed.append(f"step[{i}] {step.describe()} at {step.at:g}s")
    assert not missed, f"faults the daemon never saw: {missed}"
