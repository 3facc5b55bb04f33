"""simulators.scenario: parsing with paths and lines, checks against simulators, the timeline."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from attrs import define, field

from floorctl.config import Config, DeviceConfig
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.scenario import (
    BUILTIN_DIR,
    Scenario,
    ScenarioError,
    ScenarioRun,
    resolve_scenario,
)
from simulators.signals import FaultParamError

GOOD = b"""\
[scenario]
name = "two rooms"
seed = 7
duration = "10m"

[[step]]
at = "90s"
device = "rm-1"
fault = "excursion"
for = "2m"
field = "dp"
to = 2.0
ramp = "30s"

[[step]]
at = 300
device = "rm-2"
fault = "silent"
"""


def _problems(text: str | bytes, filename: str = "s.toml") -> list[str]:
    with pytest.raises(ScenarioError) as info:
        Scenario.parse(text, filename)
    return str(info.value).splitlines()


# --- parsing ------------------------------------------------------------------------------


def test_parse_a_scenario():
    s = Scenario.parse(GOOD, "two.toml")
    assert (s.name, s.seed, s.duration, s.filename) == ("two rooms", 7, 600.0, "two.toml")
    first, second = s.steps
    assert (first.index, first.at, first.device, first.duration) == (0, 90.0, "rm-1", 120.0)
    assert first.fault == Fault("excursion", {"field": "dp", "to": 2.0, "ramp": "30s"})
    assert (second.at, second.duration, second.fault) == (300.0, None, Fault("silent", {}))
    assert second.end(s.duration) == 600.0 and first.end(s.duration) == 210.0
    assert first.describe() == "rm-1 excursion field=dp to=2.0 ramp=30s for 2m"


def test_name_defaults_to_the_file_name_and_seed_to_none(tmp_path):
    path = tmp_path / "night-shift.toml"
    path.write_text('[scenario]\nduration = "1h"\n')
    s = Scenario.load(path)
    assert (s.name, s.seed, s.steps, s.duration) == ("night-shift", None, (), 3600.0)


def test_every_problem_at_once_with_its_path_and_line():
    text = """\
[scenario]
name = "bad"
seed = "seven"
duration = "10 minutes"
colour = "red"

[[step]]
at = "1m"
device = "rm-1"

[[step]]
at = -5
device = "rm-1"
fault = "silent"
for = "0s"

[[step]]
at = "1m"
device = 3
fault = "silent"

[extra]
"""
    assert _problems(text) == [
        "s.toml:3: scenario.seed: expected an integer, got string 'seven'",
        's.toml:4: scenario.duration: bad duration \'10 minutes\': use a number and a unit, e.g. "500ms", "5s", "1m"',  # noqa: E501
        "s.toml:5: scenario.colour: unknown key (expected name, description, seed, duration)",
        "s.toml:7: step[0].fault: required",
        "s.toml:12: step[1].at: must be a finite number of seconds >= 0, got -5",
        "s.toml:15: step[1].for: must be more than 0 (leave it out: until the end)",
        "s.toml:19: step[2].device: expected a non-empty string, got number 3",
        "s.toml:22: extra: unknown table (expected [scenario] and [[step]])",
    ]


def test_steps_must_fit_in_the_duration():
    text = """\
[scenario]
duration = "5m"

[[step]]
at = "5m"
device = "a"
fault = "silent"

[[step]]
at = "4m"
device = "b"
fault = "silent"
for = "90s"

[[step]]
at = "4m"
device = "c"
fault = "silent"
for = "1m"
"""
    assert _problems(text) == [
        "s.toml:5: step[0].at: 5m is not before the end of the scenario (duration 5m)",
        "s.toml:13: step[1].for: ends at 5m30s, after the end of the scenario (duration 5m); "
        "leave it out to run to the end",
    ]


def test_missing_scenario_table_and_bad_toml():
    assert _problems('[[step]]\nat = "1s"\ndevice = "a"\nfault = "silent"\n') == [
        "s.toml: a [scenario] table is required (name, seed, duration)"
    ]
    assert _problems("[scenario]\n") == [
        's.toml:1: scenario.duration: required (simulated time, e.g. "1h")'
    ]
    (line,) = _problems("[scenario\nduration = 1\n")
    assert line.startswith("s.toml: not valid TOML: ")
    with pytest.raises(ScenarioError, match=r"nope\.toml: cannot read the scenario"):
        Scenario.load("nope.toml")


def test_overlapping_faults_of_a_name_on_one_device_are_refused():
    text = """\
[scenario]
duration = "10m"

[[step]]
at = "1m"
device = "rm-1"
fault = "silent"
for = "2m"

[[step]]
at = "2m"
device = "rm-1"
fault = "silent"

[[step]]
at = "3m"
device = "rm-1"
fault = "exception"

[[step]]
at = "1m"
device = "rm-1"
fault = "excursion"
field = "dp"
to = 1

[[step]]
at = "2m"
device = "rm-1"
fault = "excursion"
field = "dp"
by = 1
"""
    assert _problems(text) == [
        "s.toml:11: step[1].at: overlaps step[0] (rm-1 silent from 1m to 3m): a device runs "
        "one fault of a name at a time",
        "s.toml:28: step[4].at: overlaps step[3] (rm-1 excursion from 1m to 10m): a device runs "
        "one fault of one field at a time",
    ]


def test_faults_may_touch_and_excursions_of_different_fields_may_overlap():
    text = b"""\
[scenario]
duration = "10m"

[[step]]
at = "1m"
device = "rm-1"
fault = "silent"
for = "1m"

[[step]]
at = "2m"
device = "rm-1"
fault = "silent"

[[step]]
at = "1m"
device = "rm-1"
fault = "excursion"
field = "dp"
to = 1

[[step]]
at = "1m"
device = "rm-1"
fault = "excursion"
field = "temperature"
to = 30
"""
    assert len(Scenario.parse(text).steps) == 4


def test_events_are_in_time_order_with_ends_before_starts():
    s = Scenario.parse(
        b"""\
[scenario]
duration = "10m"

[[step]]
at = "2m"
device = "b"
fault = "silent"

[[step]]
at = "1m"
device = "a"
fault = "silent"
for = "1m"

[[step]]
at = "1m"
device = "c"
fault = "silent"
for = "9m"
"""
    )
    assert [(t, action, step.index) for t, action, step in s.events()] == [
        (60.0, "start", 1),
        (60.0, "start", 2),
        (120.0, "end", 1),
        (120.0, "start", 0),
        (600.0, "end", 0),
        (600.0, "end", 2),
    ]


def test_builtin_scenarios_parse_and_resolve(tmp_path, monkeypatch):
    for name in ("smoke", "demo"):
        path = resolve_scenario(name)
        assert path == BUILTIN_DIR / f"{name}.toml"
        assert Scenario.load(path).name == name
    assert resolve_scenario("smoke.toml") == BUILTIN_DIR / "smoke.toml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke.toml").write_text('[scenario]\nduration = "1m"\n')
    assert resolve_scenario("smoke") == BUILTIN_DIR / "smoke.toml"
    assert resolve_scenario("smoke.toml").resolve() == tmp_path / "smoke.toml"  # a file wins
    assert resolve_scenario("elsewhere/x") == Path("elsewhere/x")


def test_demo_scenario_raises_alarms_in_the_first_minute_and_names_demo_devices():
    demo = Scenario.load(BUILTIN_DIR / "demo.toml")
    early = [(s.device, s.fault.params.get("field")) for s in demo.steps if s.at < 60]
    assert ("thp-buffer", "dp") in early and ("thp-buffer", "t") in early
    faults = {s.fault.name for s in demo.steps}
    assert {"silent", "exception", "malformed", "laser", "door_open", "backfill"} <= faults
    ids = {
        "thp-ante",
        "thp-buffer",
        "thp-hd",
        "pc-buffer",
        "pc-hd",
        "pc-laf-1",
        "pc-bsc-1",
        "logger-corridor",
        "bal-1",
        "bal-2",
        "autoclave-1",
        "fridge-1",
        "fridge-2",
        "freezer-1",
        "door-ante",
        "door-buffer",
        "door-hd",
    }
    assert {s.device for s in demo.steps} <= ids


# --- checking against simulators ----------------------------------------------------------


@define
class FakeSim:
    """A Faultable simulator that records what it was asked."""

    devices: tuple[str, ...]
    faults: tuple[str, ...] = ("excursion", "silent")
    calls: list[tuple[str, ...]] = field(factory=list)
    fail_start: set[str] = field(factory=set)

    def device_ids(self) -> tuple[str, ...]:
        return self.devices

    def check_fault(self, device_id: str, fault: Fault) -> None:
        if fault.name not in self.faults:
            raise UnsupportedFault(f"device {device_id!r} cannot show {fault.name!r}")
        to = fault.params.get("to", 0)
        if not isinstance(to, int | float):
            raise FaultParamError(device_id, fault.name, "to", "expected a number")
        if fault.params.get("boom"):
            raise ValueError("boom is not a thing")

    def start_fault(self, device_id: str, fault: Fault) -> None:
        if device_id in self.fail_start:
            raise RuntimeError("broken simulator")
        self.calls.append(("start", device_id, fault.name, str(fault.params.get("field", ""))))

    def end_fault(self, device_id: str, name: str) -> None:
        self.calls.append(("end", device_id, name))


@define
class FieldWiseSim(FakeSim):
    def end_excursion(self, device_id: str, field_name: str) -> None:
        self.calls.append(("end_excursion", device_id, field_name))


class NotFaultable:
    async def start(self) -> None: ...


def _config(*devices: tuple[str, str]) -> Config:
    """Only ``devices`` is read by the check."""
    return SimpleNamespace(devices=[DeviceConfig(id=i, kind=k) for i, k in devices])  # type: ignore[return-value]


def test_check_reports_every_step_that_does_not_fit():
    s = Scenario.parse(
        b"""\
[scenario]
duration = "10m"

[[step]]
at = "1m"
device = "ghost"
fault = "silent"

[[step]]
at = "1m"
device = "door-1"
fault = "silent"

[[step]]
at = "1m"
device = "rm-1"
fault = "malformed"

[[step]]
at = "1m"
device = "rm-1"
fault = "excursion"
field = "dp"
to = "high"

[[step]]
at = "2m"
device = "rm-2"
fault = "silent"
boom = true
""",
        "c.toml",
    )
    sims = [FakeSim(("rm-1", "rm-2")), NotFaultable()]
    with pytest.raises(ScenarioError) as info:
        s.check(sims, _config(("rm-1", "modbus"), ("rm-2", "modbus"), ("door-1", "door_panel")))
    assert str(info.value).splitlines() == [
        "c.toml:6: step[0].device: no device 'ghost' in the devices file",
        "c.toml:11: step[1].device: device 'door-1' (kind door_panel) has no simulator that "
        "takes faults",
        "c.toml:17: step[2].fault: device 'rm-1' cannot show 'malformed'",
        "c.toml:24: step[3].to: expected a number (device rm-1)",
        "c.toml:26: step[4]: silent: boom is not a thing",
    ]
    with pytest.raises(
        ScenarioError,
        match=r"no simulated device 'ghost' takes faults "
        r"\(devices that do: rm-1, rm-2\)",
    ):
        s.check(sims)


def test_check_passes_and_maps_devices_to_their_simulators():
    a, b = FakeSim(("rm-1",)), FakeSim(("rm-2",))
    owners = Scenario.parse(GOOD).check([a, NotFaultable(), b])
    assert owners == {"rm-1": a, "rm-2": b}


# --- running ------------------------------------------------------------------------------


class FakeClock(SimClock):
    """Simulated time that moves only when the scenario sleeps: runs are instant and exact."""

    def __init__(self, speed: float = 60.0) -> None:
        super().__init__(speed)
        self.t = 100.0  # the scenario's own time starts where the clock is when it starts
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, real: float) -> None:
        self.slept.append(real)
        self.t += real * self.speed
        await asyncio.sleep(0)


async def _run(text: bytes, *sims: Any, clock: FakeClock | None = None) -> ScenarioRun:
    clock = clock or FakeClock()
    run = ScenarioRun(Scenario.parse(text), sleep=clock.sleep)
    run.check(sims)
    run.start(clock)
    await asyncio.wait_for(run.wait(), 5)
    return run


OVERLAP = b"""\
[scenario]
name = "overlap"
duration = "10m"

[[step]]
at = "1m"
device = "rm-1"
fault = "excursion"
for = "1m"
field = "dp"
to = 1

[[step]]
at = "30s"
device = "rm-1"
fault = "excursion"
for = "5m"
field = "temperature"
to = 30

[[step]]
at = "3m"
device = "rm-2"
fault = "silent"
"""


async def test_run_starts_and_ends_each_fault_on_time_and_records_it(caplog):
    caplog.set_level(logging.INFO, logger="floorctl.simulators.scenario")
    sim = FakeSim(("rm-1", "rm-2"))
    clock = FakeClock(speed=60.0)
    run = await _run(OVERLAP, sim, clock=clock)
    assert run.finished.is_set() and not run.active
    rows = [(e.t, e.action, e.step, e.device, e.fault) for e in run.timeline]
    assert rows == [
        (30.0, "start", 1, "rm-1", "excursion"),
        (60.0, "start", 0, "rm-1", "excursion"),
        (120.0, "end", 0, "rm-1", "excursion"),
        (180.0, "start", 2, "rm-2", "silent"),
        (330.0, "end", 1, "rm-1", "excursion"),
        (600.0, "end", 2, "rm-2", "silent"),
    ]
    assert all(e.t == e.planned for e in run.timeline)
    # without end_excursion: end_fault ends both excursions, the one still due starts again
    assert sim.calls == [
        ("start", "rm-1", "excursion", "temperature"),
        ("start", "rm-1", "excursion", "dp"),
        ("end", "rm-1", "excursion"),
        ("start", "rm-1", "excursion", "temperature"),
        ("start", "rm-2", "silent", ""),
        ("end", "rm-1", "excursion"),
        ("end", "rm-2", "silent"),
    ]
    # sleeps in real seconds: simulated gaps / speed, the last one up to the duration
    assert clock.slept == pytest.approx([0.5, 0.5, 1.0, 1.0, 2.5, 4.5])
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "scenario overlap [00:01:00.0] start rm-1 excursion field=dp to=1 for 1m" in lines
    assert "scenario overlap [00:02:00.0] end rm-1 excursion field=dp" in lines
    assert "scenario overlap [00:10:00.0] end rm-2 silent" in lines
    assert sum("] start " in m or "] end " in m for m in lines) == 6


async def test_run_ends_one_excursion_with_end_excursion_when_the_simulator_has_it():
    sim = FieldWiseSim(("rm-1", "rm-2"))
    await _run(OVERLAP, sim)
    assert sim.calls[2] == ("end_excursion", "rm-1", "dp")
    assert ("end", "rm-1", "excursion") in sim.calls[3:]
    assert len([c for c in sim.calls if c[0] == "start"]) == 3  # nothing restarted


async def test_a_step_that_fails_is_recorded_and_the_run_goes_on(caplog):
    sim = FakeSim(("rm-1", "rm-2"), fail_start={"rm-1"})
    run = await _run(OVERLAP, sim)
    errors = run.entries("error")
    assert [e.step for e in errors] == [1, 0]
    assert errors[0].detail == "start: RuntimeError: broken simulator"
    assert [(e.step, e.action) for e in run.timeline if e.action != "error"] == [
        (2, "start"),
        (2, "end"),
    ]
    assert "broken simulator" in caplog.text


async def test_stop_ends_the_faults_still_on():
    sim = FakeSim(("rm-1", "rm-2"))
    run = ScenarioRun(Scenario.parse(OVERLAP))
    run.check([sim])
    clock = SimClock(speed=600.0)  # a real clock: 1 s real = 10 simulated minutes
    run.start(clock)
    await asyncio.sleep(0.15)  # 90 simulated seconds: steps 0 and 1 are on
    await run.stop()
    assert not run.finished.is_set()
    assert {e.step for e in run.entries("start")} == {0, 1}
    ended = run.entries("end")
    assert {e.step for e in ended} == {0, 1} and all(e.detail == "scenario stopped" for e in ended)
    assert 60 <= ended[0].t < 120
    with pytest.raises(RuntimeError, match="runs once"):
        run.start(clock)


def test_start_needs_a_check_first():
    with pytest.raises(RuntimeError, match="check"):
        ScenarioRun(Scenario.parse(GOOD)).start(SimClock())


# --- the clock ----------------------------------------------------------------------------


def test_sim_clock_maths(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("simulators.faults.time.monotonic", lambda: now[0])
    clock = SimClock(speed=60.0, t0=1000.0)
    assert clock.now() == 0.0
    now[0] += 1.5
    assert clock.now() == pytest.approx(90.0)  # 1.5 real seconds = 90 simulated
    assert clock.real_seconds(3600) == pytest.approx(60.0)
    assert SimClock().real_seconds(5) == 5
