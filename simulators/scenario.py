"""Scenarios: device faults on a timeline of simulated time, scripted in a TOML file.

::

    [scenario]
    name = "smoke"          # optional; default: the file name without .toml
    description = "..."     # optional
    seed = 7                # optional; the signals' seed unless --seed is given
    duration = "10m"        # required: how long the scenario runs, in simulated time

    [[step]]
    at = "90s"              # required: simulated time since the scenario started
    device = "rm-buffer"    # required: a device id of devices.toml
    fault = "excursion"     # required: a fault the device's simulator can show
    for = "2m"              # optional; absent: until the end of the scenario
    field = "dp"            # every other key is a parameter of the fault
    to = 2.0

Durations are strings ("500ms", "90s", "2m", "1h") or numbers of seconds.

A device runs one fault of a name at a time (``end_fault(device, name)`` could not tell two
apart), except excursions of different fields: when one of those ends, the engine calls the
simulator's ``end_excursion(device, field)`` if it has one, else ``end_fault(device,
"excursion")`` and starts the excursions still due again at once.

:meth:`Scenario.check` checks every step against the simulators before anything starts;
:class:`ScenarioRun` then starts and ends each fault at its time (one INFO line each) and keeps
a :attr:`~ScenarioRun.timeline` of what it did. When the scenario's ``duration`` is over,
faults still on end and the devices go on serving normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from floorctl.config import Config, Problem, describe_value, line_index, parse_duration
from simulators.faults import Fault, Faultable, SimClock, UnsupportedFault
from simulators.signals import FaultParamError

__all__ = [
    "BUILTIN_DIR",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "Step",
    "TimelineEntry",
    "resolve_scenario",
]

log = logging.getLogger("floorctl.simulators.scenario")

#: where the built-in scenarios live (``--scenario demo`` finds ``demo.toml`` here)
BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"

SCENARIO_KEYS = ("name", "description", "seed", "duration")
#: the keys of a ``[[step]]`` that are not fault parameters
STEP_KEYS = ("at", "device", "fault", "for")

PathT = tuple[str | int, ...]


class ScenarioError(Exception):
    """A scenario file is wrong, or does not fit the simulated floor: every problem at once."""

    def __init__(self, problems: list[Problem], filename: str) -> None:
        self.problems = problems
        self.filename = filename
        super().__init__("\n".join(p.format(filename) for p in problems))


@frozen
class Step:
    """One ``[[step]]``: ``fault`` on ``device`` from ``at`` for ``duration`` (None: to the end)."""

    index: int
    at: float
    device: str
    fault: Fault
    duration: float | None = None

    def end(self, scenario_duration: float) -> float:
        return scenario_duration if self.duration is None else self.at + self.duration

    def describe(self) -> str:
        """``buffer excursion field=dp to=2.0 for 2m``"""
        params = " ".join(f"{k}={_param_text(v)}" for k, v in self.fault.params.items())
        text = f"{self.device} {self.fault.name}"
        if params:
            text += f" {params}"
        if self.duration is not None:
            text += f" for {_hms(self.duration)}"
        return text


@frozen
class TimelineEntry:
    """What a :class:`ScenarioRun` did: ``action`` is "start", "end" or "error"."""

    t: float  # simulated seconds since the scenario started
    planned: float  # when the step said it should happen
    wall: float  # UNIX time
    action: str
    step: int
    device: str
    fault: str
    detail: str = ""


@frozen
class Scenario:
    """A parsed scenario file (see the module docstring)."""

    name: str
    duration: float
    steps: tuple[Step, ...] = ()
    seed: int | None = None
    description: str = ""
    filename: str = "scenario.toml"
    lines: Mapping[PathT, int] = field(factory=dict, repr=False, eq=False)

    # --- loading ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read and parse a scenario file; raises ScenarioError naming every problem."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ScenarioError(
                [Problem("", f"cannot read the scenario: {exc.strerror or exc}")], str(path)
            ) from None
        return cls.parse(data, str(path), name=path.stem)

    @classmethod
    def parse(
        cls, text: str | bytes, filename: str = "scenario.toml", *, name: str = "scenario"
    ) -> Scenario:
        """Parse scenario TOML; ``name`` is the default for ``[scenario] name``."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ScenarioError([Problem("", f"not UTF-8: {exc}")], filename) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError([Problem("", f"not valid TOML: {exc}")], filename) from None
        parser = _Parser(raw, line_index(text), filename)
        scenario = parser.parse(name)
        if parser.problems:
            raise ScenarioError(parser.sorted_problems(), filename)
        assert scenario is not None
        return scenario

    # --- planning and checking ----------------------------------------------------------------

    def events(self) -> list[tuple[float, str, Step]]:
        """(simulated time, "start" or "end", step), in order; at one time ends come first."""
        out: list[tuple[float, int, int, str, Step]] = []
        for s in self.steps:
            out.append((s.at, 1, s.index, "start", s))
            out.append((s.end(self.duration), 0, s.index, "end", s))
        out.sort(key=lambda e: e[:3])
        return [(t, action, s) for t, _, _, action, s in out]

    def problem(self, path: PathT, message: str) -> Problem:
        return Problem(_pretty(path), message, _find_line(self.lines, path))

    def check(self, sims: Iterable[object], config: Config | None = None) -> dict[str, Faultable]:
        """Check every step against the simulators: the device is served by a Faultable
        simulator and its ``check_fault`` accepts the fault. Returns device id -> simulator;
        raises ScenarioError with every problem."""
        owners: dict[str, Faultable] = {}
        for sim in sims:
            if isinstance(sim, Faultable):
                for device_id in sim.device_ids():
                    owners.setdefault(device_id, sim)
        problems: list[Problem] = []
        for step in self.steps:
            where: PathT = ("step", step.index)
            owner = owners.get(step.device)
            if owner is None:
                problems.append(
                    self.problem((*where, "device"), self._no_owner(step.device, owners, config))
                )
                continue
            try:
                owner.check_fault(step.device, step.fault)
            except UnsupportedFault as exc:
                problems.append(self.problem((*where, "fault"), str(exc)))
            except FaultParamError as exc:
                param = exc.param if exc.param in step.fault.params else None
                path = (*where, param) if param else where
                reason = exc.reason if param else f"{exc.fault}: {exc.reason}"
                problems.append(self.problem(path, f"{reason} (device {step.device})"))
            except Exception as exc:  # ValueError, or a simulator's bug: report, keep checking
                detail = str(exc) or type(exc).__name__
                problems.append(self.problem(where, f"{step.fault.name}: {detail}"))
        if problems:
            raise ScenarioError(sorted(problems, key=lambda p: p.line or 0), self.filename)
        return owners

    @staticmethod
    def _no_owner(device_id: str, owners: Mapping[str, object], config: Config | None) -> str:
        if config is not None:
            device = next((d for d in config.devices if d.id == device_id), None)
            if device is None:
                return f"no device {device_id!r} in the devices file"
            return f"device {device_id!r} (kind {device.kind}) has no simulator that takes faults"
        known = ", ".join(sorted(owners)[:12]) or "none"
        more = ", ..." if len(owners) > 12 else ""
        return f"no simulated device {device_id!r} takes faults (devices that do: {known}{more})"


def resolve_scenario(name: str | Path) -> Path:
    """A scenario file path; a bare name such as ``demo`` that is not a file names a
    built-in scenario (``simulators/scenarios/demo.toml``)."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    builtin = BUILTIN_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    return builtin if builtin.exists() else path


# --- running ------------------------------------------------------------------------------


class ScenarioRun:
    """One run of a scenario: :meth:`check`, then :meth:`start` in the running event loop.

    ``timeline`` records every start, end and error (simulated and wall time), for logs and
    for tests that verify a fault showed up; ``finished`` is set once the scenario's
    ``duration`` has passed.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``sleep`` waits real seconds (tests pass one that moves a fake clock)."""
        self.scenario = scenario
        self._sleep = sleep
        self.timeline: list[TimelineEntry] = []
        self.finished = asyncio.Event()
        self._owners: dict[str, Faultable] | None = None
        self._clock: SimClock | None = None
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None
        self._active: dict[int, Step] = {}

    def check(self, sims: Iterable[object], config: Config | None = None) -> None:
        """:meth:`Scenario.check`; raises ScenarioError."""
        self._owners = self.scenario.check(sims, config)

    def start(self, clock: SimClock) -> asyncio.Task[None]:
        """Start the timeline now (simulated time 0 of the scenario)."""
        if self._owners is None:
            raise RuntimeError("check() the scenario against the simulators first")
        if self._task is not None:
            raise RuntimeError("a ScenarioRun runs once")
        self._clock = clock
        self._t0 = clock.now()
        log.info(
            "scenario %s: %d step(s) over %s of simulated time (%s real)",
            self.scenario.name,
            len(self.scenario.steps),
            _hms(self.scenario.duration),
            _hms(clock.real_seconds(self.scenario.duration)),
        )
        self._task = asyncio.create_task(self._run(), name=f"scenario-{self.scenario.name}")
        return self._task

    def now(self) -> float:
        """Simulated seconds since the scenario started (0 before)."""
        return 0.0 if self._clock is None else self._clock.now() - self._t0

    @property
    def active(self) -> list[Step]:
        """Steps whose fault is on now."""
        return list(self._active.values())

    def entries(self, action: str) -> list[TimelineEntry]:
        return [e for e in self.timeline if e.action == action]

    async def wait(self) -> None:
        """Until the scenario has finished (its task ended, also by cancellation or a bug)."""
        if self._task is None:
            raise RuntimeError("the scenario was not started")
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Cancel the timeline if it still runs; end every fault still on."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for step in list(self._active.values()):
            self._end(step, self.now(), "scenario stopped")

    async def _run(self) -> None:
        sc = self.scenario
        for t, action, step in sc.events():
            await self._sleep_until(t)
            if action == "start":
                self._start(step, t)
            elif step.index in self._active:
                self._end(step, t)
        await self._sleep_until(sc.duration)
        errors = len(self.entries("error"))
        log.info(
            "scenario %s finished at %s: %d fault(s) started, %d error(s); devices keep serving",
            sc.name,
            _hms(self.now()),
            len(self.entries("start")),
            errors,
        )
        self.finished.set()

    async def _sleep_until(self, t: float) -> None:
        assert self._clock is not None
        while (left := t - self.now()) > 0:
            await self._sleep(self._clock.real_seconds(left))

    def _record(self, step: Step, planned: float, action: str, detail: str = "") -> None:
        self.timeline.append(
            TimelineEntry(
                t=self.now(),
                planned=planned,
                wall=time.time(),
                action=action,
                step=step.index,
                device=step.device,
                fault=step.fault.name,
                detail=detail,
            )
        )

    def _start(self, step: Step, planned: float) -> None:
        assert self._owners is not None
        try:
            self._owners[step.device].start_fault(step.device, step.fault)
        except Exception as exc:
            log.exception(
                "scenario %s: step[%d] %s failed", self.scenario.name, step.index, step.describe()
            )
            self._record(step, planned, "error", f"start: {type(exc).__name__}: {exc}")
            return
        self._active[step.index] = step
        self._record(step, planned, "start")
        log.info(
            "scenario %s [%s] start %s", self.scenario.name, _clock(self.now()), step.describe()
        )

    def _end(self, step: Step, planned: float, detail: str = "") -> None:
        assert self._owners is not None
        del self._active[step.index]
        owner = self._owners[step.device]
        others = [
            s
            for s in self._active.values()
            if (s.device, s.fault.name) == (step.device, step.fault.name)
        ]
        try:
            end_excursion = getattr(owner, "end_excursion", None)
            if others and step.fault.name == "excursion" and end_excursion is not None:
                end_excursion(step.device, step.fault.params["field"])
            else:
                owner.end_fault(step.device, step.fault.name)
                for s in others:  # end_fault ended them too: they are still due
                    owner.start_fault(s.device, s.fault)
        except Exception as exc:
            log.exception(
                "scenario %s: ending step[%d] %s failed",
                self.scenario.name,
                step.index,
                step.describe(),
            )
            self._record(step, planned, "error", f"end: {type(exc).__name__}: {exc}")
            return
        self._record(step, planned, "end", detail)
        which = step.fault.params.get("field") if step.fault.name == "excursion" else None
        log.info(
            "scenario %s [%s] end %s %s%s%s",
            self.scenario.name,
            _clock(self.now()),
            step.device,
            step.fault.name,
            f" field={_param_text(which)}" if which is not None else "",
            f" ({detail})" if detail else "",
        )


# --- parsing ------------------------------------------------------------------------------


def _param_text(value: object) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() for c in value) else repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _pretty(path: PathT) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _find_line(lines: Mapping[PathT, int], path: PathT) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _hms(seconds: float) -> str:
    """90 -> "1m30s", 3600 -> "1h", 0.5 -> "0.5s"."""
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds != int(seconds) else f"{int(seconds)}s"
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


def _clock(seconds: float) -> str:
    """Simulated time as ``hh:mm:ss.s``."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:04.1f}"


class _Parser:
    def __init__(self, raw: dict[str, Any], lines: Mapping[PathT, int], filename: str) -> None:
        self.raw = raw
        self.lines = lines
        self.filename = filename
        self.problems: list[Problem] = []

    def error(self, path: PathT, message: str) -> None:
        self.problems.append(Problem(_pretty(path), message, _find_line(self.lines, path)))

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.line or 0, p.path))

    def seconds(self, table: Mapping[str, Any], key: str, path: PathT) -> float | None:
        if key not in table:
            return None
        value = table[key]
        where = (*path, key)
        if isinstance(value, str):
            try:
                return float(parse_duration(value))
            except ValueError as exc:
                self.error(where, str(exc))
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(
                where, f'expected a duration ("90s", "2m") or seconds, got {describe_value(value)}'
            )
            return None
        if not math.isfinite(value) or value < 0:
            self.error(where, f"must be a finite number of seconds >= 0, got {value!r}")
            return None
        return float(value)

    def string(self, table: Mapping[str, Any], key: str, path: PathT) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error((*path, key), f"expected a non-empty string, got {describe_value(value)}")
            return None
        return value

    def parse(self, default_name: str) -> Scenario | None:
        for key in self.raw:
            if key not in ("scenario", "step"):
                self.error((key,), "unknown table (expected [scenario] and [[step]])")
        head = self.raw.get("scenario")
        if not isinstance(head, dict):
            if head is None:
                self.error((), "a [scenario] table is required (name, seed, duration)")
            else:
                self.error(("scenario",), f"expected a table, got {describe_value(head)}")
            head = {}
        where: PathT = ("scenario",)
        for key in head:
            if key not in SCENARIO_KEYS:
                self.error((*where, key), f"unknown key (expected {', '.join(SCENARIO_KEYS)})")
        name = self.string(head, "name", where) or default_name
        description = self.string(head, "description", where) or ""
        seed = head.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            self.error((*where, "seed"), f"expected an integer, got {describe_value(seed)}")
            seed = None
        duration = self.seconds(head, "duration", where)
        if "duration" not in head and isinstance(self.raw.get("scenario"), dict):
            self.error((*where, "duration"), 'required (simulated time, e.g. "1h")')
        elif duration is not None and duration <= 0:
            self.error((*where, "duration"), "must be more than 0")
            duration = None
        raw_steps = self.raw.get("step", [])
        if not isinstance(raw_steps, list):
            self.error(("step",), "expected [[step]] tables")
            raw_steps = []
        steps = [s for i, item in enumerate(raw_steps) if (s := self.step(i, item, duration))]
        self.overlaps(steps, duration)
        if self.problems or duration is None:
            return None
        return Scenario(
            name=name,
            duration=duration,
            steps=tuple(steps),
            seed=seed,
            description=description,
            filename=self.filename,
            lines=self.lines,
        )

    def step(self, i: int, item: object, duration: float | None) -> Step | None:
        where: PathT = ("step", i)
        if not isinstance(item, dict):
            self.error(where, f"expected a table, got {describe_value(item)}")
            return None
        ok = True
        for key in ("at", "device", "fault"):
            if key not in item:
                self.error((*where, key), "required")
                ok = False
        at = self.seconds(item, "at", where)
        length = self.seconds(item, "for", where)
        device = self.string(item, "device", where)
        fault = self.string(item, "fault", where)
        if length is not None and length <= 0:
            self.error((*where, "for"), "must be more than 0 (leave it out: until the end)")
            ok = False
        if at is not None and duration is not None:
            if at >= duration:
                self.error(
                    (*where, "at"),
                    f"{_hms(at)} is not before the end of the scenario (duration {_hms(duration)})",
                )
                ok = False
            elif length is not None and at + length > duration + 1e-9:
                self.error(
                    (*where, "for"),
                    f"ends at {_hms(at + length)}, after the end of the "
                    f"scenario (duration {_hms(duration)}); leave it out to run to the end",
                )
                ok = False
        if not ok or at is None or device is None or fault is None:
            return None
        params = {k: v for k, v in item.items() if k not in STEP_KEYS}
        return Step(i, at, device, Fault(fault, params), length)

    def overlaps(self, steps: list[Step], duration: float | None) -> None:
        if duration is None:
            return
        for n, s in enumerate(steps):
            for earlier in steps[:n]:
                if (earlier.device, earlier.fault.name) != (s.device, s.fault.name):
                    continue
                if not (s.at < earlier.end(duration) and earlier.at < s.end(duration)):
                    continue
                fields = (earlier.fault.params.get("field"), s.fault.params.get("field"))
                if (
                    s.fault.name == "excursion"
                    and isinstance(fields[0], str)
                    and (fields[0] != fields[1])
                ):
                    continue  # excursions of different fields may overlap
                why = "of one field" if s.fault.name == "excursion" else "of a name"
                self.error(
                    ("step", s.index, "at"),
                    f"overlaps step[{earlier.index}] ({s.device} {s.fault.name} from "
                    f"{_hms(earlier.at)} to {_hms(earlier.end(duration))}): a device runs "
                    f"one fault {why} at a time",
                )
                break
