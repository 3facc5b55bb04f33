"""Simulators of the equipment kinds: ``bsc``, ``cold_storage``, ``door`` and ``autoclave``.

Each device gets a behaviour model, a function of simulated time (``SimClock.now()``, so
``--speed`` makes an hour pass in a minute) with seeded episodes and the state its faults
leave:

- ``bsc``: steady downflow/inflow with small noise; sash alarm episodes (BSC only) in which
  the inflow drops below 0.40 m/s and the cabinet's airflow alarm comes on.
- ``cold_storage``: the compressor's sawtooth (refrigerator 3.0-5.5 °C, freezer -21..-18 °C),
  door openings that bump the temperature up, then decay.
- ``door``: openings on a seeded schedule; the interlock engages while the other door of the
  airlock is (simulated) open.
- ``autoclave``: a 121 °C cycle every ``cycle_every`` simulated seconds (conditioning with three
  vacuum pulses, 15 min exposure, exhaust, drying, complete), F0 integrated from the chamber
  temperature (z = 10 °C, 121.1 °C reference; about 17 min at the end).

The Modbus kinds join the ``"modbus-tcp"`` group: :class:`EquipmentModbusSim` wraps the
generic :class:`~simulators.modbus_device.ModbusSimServer` of the connection (which also serves
the generic ``modbus`` devices on it) and feeds it the models' values. The MQTT forms
(``autoclave``; ``cold_storage`` via an ``[[mqtt]]`` connection) are published by
:class:`EquipmentMqttSim` through a :class:`~simulators.mqtt_publisher.MqttJsonPublisher`.

Faults (docs/devices.md): ``excursion`` (numeric and boolean points), ``silent``,
``exception`` (Modbus), ``malformed`` (MQTT), ``sash`` (bsc), ``abort`` (autoclave),
``compressor`` and ``door_open`` (cold_storage), ``door_open`` (door).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from attrs import define, frozen

from floorctl.config import DeviceConfig, ModbusConnection, MqttConnection
from floorctl.plugins.equipment import DEFAULT_TOPIC
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.modbus_device import ModbusSimServer, SimulatorError
from simulators.mqtt_publisher import MqttJsonPublisher, build_document, parse_path
from simulators.serve import SimRequest, register_simulator
from simulators.signals import (
    Excursion,
    FaultParamError,
    Signal,
    SignalKind,
    check_fault_params,
    parse_excursion,
    parse_simulate,
    stable_seed,
)

__all__ = [
    "AutoclaveModel",
    "BscModel",
    "ColdStorageModel",
    "DoorModel",
    "Episodes",
    "EquipmentModbusSim",
    "EquipmentMqttSim",
    "build_model",
]

log = logging.getLogger("floorctl.simulators.equipment")

#: faults the transports add to the models' own
MODBUS_FAULTS = ("silent", "exception")
MQTT_FAULTS = ("silent", "malformed")


def _uniform(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on ``seed`` and ``parts``."""
    return stable_seed(seed, *parts) / 2.0**63


def _noise(seed: int, sigma: float) -> Signal:
    return Signal(base=0.0, noise=sigma, seed=seed)


# --- schedules and excursions ----------------------------------------------------------------


@frozen
class Episodes:
    """Seeded episodes: in each window of ``every`` seconds, with probability ``chance``, one
    episode of ``shortest``..``longest`` seconds at a seeded place in the window."""

    seed: int
    every: float
    shortest: float
    longest: float
    chance: float = 1.0

    def window(self, k: int) -> tuple[float, float] | None:
        """(start, end) of the episode in window ``k``, or None."""
        if _uniform(self.seed, k, "chance") >= self.chance:
            return None
        length = self.shortest + (self.longest - self.shortest) * _uniform(self.seed, k, "len")
        start = k * self.every + (self.every - length) * _uniform(self.seed, k, "at")
        return start, start + length

    def active(self, t: float) -> tuple[float, float] | None:
        w = self.window(math.floor(t / self.every))
        return w if w is not None and w[0] <= t < w[1] else None

    def since(self, t: float, horizon: float) -> list[tuple[float, float]]:
        """Episodes that started in (t - horizon, t]."""
        first = math.floor((t - horizon) / self.every)
        out = []
        for k in range(first, math.floor(t / self.every) + 1):
            w = self.window(k)
            if w is not None and t - horizon < w[0] <= t:
                out.append(w)
        return out


# --- models ----------------------------------------------------------------------------------


class Model:
    """A device's behaviour: ``sample(point, t)`` at ``t`` simulated seconds (``clock.now()``).

    Excursions (the shared :class:`~simulators.signals.Excursion`) move a numeric or boolean
    point on top of the model, so what the model derives from it follows (a BSC's airflow
    alarm, an autoclave's F0); kind-specific faults are the subclass's business.
    """

    kind = ""
    #: kind-specific faults the model understands (none takes parameters)
    faults: frozenset[str] = frozenset()
    #: points that are booleans / numbers (the points an excursion can move)
    booleans: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()

    def __init__(self, device: DeviceConfig, seed: int) -> None:
        self.device = device
        self.seed = seed
        self.points = tuple(f.name for f in device.fields)
        self.excursions: dict[str, Excursion] = {}
        self.active: dict[str, Fault] = {}
        #: the model's own value of each movable point, what an excursion moves
        self.bare = {
            p: ModelSignal(model=self, point=p, bare=True, kind=self._signal_kind(p))
            for p in self.points
            if p in self.booleans | self.numbers
        }

    def _signal_kind(self, point: str) -> SignalKind:
        return SignalKind.BOOL if point in self.booleans else SignalKind.FLOAT

    def signal(self, point: str) -> ModelSignal:
        """The signal a Modbus server serves the point with (excursions included)."""
        return ModelSignal(model=self, point=point, kind=self._signal_kind(point))

    def value(self, point: str, t: float) -> Any:
        raise NotImplementedError

    def sample(self, point: str, t: float) -> Any:
        ex = self.excursions.get(point)
        if ex is None:
            return self.value(point, t)
        v = ex.apply(self.bare[point], t)
        return v >= 0.5 if point in self.booleans else v

    def noise(self, point: str, sigma: float) -> Signal:
        return _noise(stable_seed(self.seed, point, "noise"), sigma)

    # --- faults ---------------------------------------------------------------------------

    def check_fault(self, fault: Fault, others: Sequence[str] = ()) -> None:
        """Raise UnsupportedFault or FaultParamError; ``others``: the transport's faults
        (named in the message)."""
        if fault.name == "excursion":
            parse_excursion(self.device.id, fault, self.bare)
        elif fault.name in self.faults:
            check_fault_params(self.device.id, fault, ())
        else:
            known = ", ".join(["excursion", *others, *sorted(self.faults)])
            raise UnsupportedFault(
                f"device {self.device.id!r} ({self.kind}) cannot show {fault.name!r} "
                f"(it can: {known})"
            )

    def start_fault(self, fault: Fault, t: float) -> None:
        self.check_fault(fault)
        if fault.name == "excursion":
            exc = parse_excursion(self.device.id, fault, self.bare)
            self.excursions[exc.field] = attrs.evolve(exc, start=t)
        else:
            self.active[fault.name] = fault
            self.fault_started(fault, t)

    def end_excursion(self, point: str) -> None:
        self.excursions.pop(point, None)

    def end_fault(self, name: str, t: float) -> None:
        if name == "excursion":
            self.excursions.clear()
        elif self.active.pop(name, None) is not None:
            self.fault_ended(name, t)

    def fault_started(self, fault: Fault, t: float) -> None:
        """Kind-specific faults: remember what they need."""

    def fault_ended(self, name: str, t: float) -> None:
        """Kind-specific faults: leave a state that continues smoothly."""


@frozen(eq=False)
class ModelSignal(Signal):
    """A Signal whose value comes from a model: what ModbusSimServer samples, and what an
    Excursion moves (``bare``: the model's own value, without its excursions)."""

    model: Model | None = None
    point: str = ""
    bare: bool = False
    invert: bool = False  # a boolean served inverted (a closed-circuit door contact)

    def value(self, t: float) -> float:
        assert self.model is not None
        v = self.model.value(self.point, t) if self.bare else self.model.sample(self.point, t)
        return float(not v) if self.invert else float(v)

    def trend(self, t: float) -> float:
        return self.value(t)


class BscModel(Model):
    """Steady velocities; sash episodes (BSC) pull the inflow down and raise the alarms."""

    kind = "bsc"
    faults = frozenset({"sash"})
    booleans = frozenset({"fan_on", "sash_alarm", "airflow_alarm"})
    numbers = frozenset({"downflow", "inflow"})
    SASH_INFLOW = 0.34  # m/s with the sash above its certified height
    ALARM_INFLOW = 0.40  # the cabinet's own airflow alarm thresholds
    ALARM_DOWNFLOW = 0.25

    def __init__(self, device: DeviceConfig, seed: int) -> None:
        super().__init__(device, seed)
        self.laf = device.options.get("type") == "laf"
        self.downflow = 0.40 if self.laf else 0.36
        self.inflow = 0.53
        self.sashes = Episodes(stable_seed(seed, "sash"), 2700.0, 30.0, 150.0, 0.5)
        self._noise = {p: self.noise(p, 0.004) for p in ("downflow", "inflow")}

    def check_fault(self, fault: Fault, others: Sequence[str] = ()) -> None:
        if fault.name == "sash" and self.laf:
            raise UnsupportedFault(
                f"device {self.device.id!r} is a laminar-airflow hood (type laf): it has no sash"
            )
        super().check_fault(fault, others)

    def sash_open(self, t: float) -> bool:
        return not self.laf and ("sash" in self.active or self.sashes.active(t) is not None)

    def value(self, point: str, t: float) -> Any:
        if point == "downflow":
            drift = 0.005 * math.sin(2 * math.pi * t / 3600.0)
            return self.downflow + drift + self._noise["downflow"].value(t)
        if point == "inflow":
            level = self.SASH_INFLOW if self.sash_open(t) else self.inflow
            return level + self._noise["inflow"].value(t)
        if point == "fan_on":
            return True
        if point == "sash_alarm":
            return self.sash_open(t)
        if point == "airflow_alarm":
            low = self.sample("downflow", t) < self.ALARM_DOWNFLOW
            if not self.laf:
                low = low or self.sample("inflow", t) < self.ALARM_INFLOW
            return low
        raise KeyError(point)


@define
class _Thermal:
    """The temperature heading for ``target`` from ``start_value`` (a fault's effect)."""

    start: float
    start_value: float
    target: float
    tau: float
    compressor: bool
    door: bool

    def at(self, t: float) -> float:
        return self.target + (self.start_value - self.target) * math.exp(
            -(t - self.start) / self.tau
        )


class ColdStorageModel(Model):
    """Compressor sawtooth plus door bumps; ``compressor`` and ``door_open`` faults warm it."""

    kind = "cold_storage"
    faults = frozenset({"compressor", "door_open"})
    booleans = frozenset({"door_open", "compressor"})
    numbers = frozenset({"temperature"})
    AMBIENT = 22.0
    PULL_DOWN = 0.005  # °C/s once the compressor runs again

    def __init__(self, device: DeviceConfig, seed: int) -> None:
        super().__init__(device, seed)
        self.freezer = device.options.get("type") == "freezer"
        if self.freezer:
            self.low, self.high, self.warm, self.cool = -21.0, -18.0, 1200.0, 600.0
            self.bump_rate, self.door_target, self.fail_tau = 0.06, -2.0, 18000.0
        else:
            self.low, self.high, self.warm, self.cool = 3.0, 5.5, 1080.0, 420.0
            self.bump_rate, self.door_target, self.fail_tau = 0.03, 12.0, 10800.0
        self.phase = (self.warm + self.cool) * _uniform(seed, "phase")
        self.doors = Episodes(stable_seed(seed, "door"), 2400.0, 15.0, 60.0, 0.6)
        self.decay = 600.0
        self._noise = self.noise("temperature", 0.02)
        self.thermal: _Thermal | None = None
        self.recovery: tuple[float, float] | None = None  # (since, from temperature)

    def cycle(self, t: float) -> tuple[float, bool]:
        """The compressor's sawtooth: (temperature, compressor running)."""
        u = (t + self.phase) % (self.warm + self.cool)
        span = self.high - self.low
        if u < self.warm:
            return self.low + span * u / self.warm, False
        return self.high - span * (u - self.warm) / self.cool, True

    def bump(self, t: float) -> float:
        total = 0.0
        for start, end in self.doors.since(t, 6 * self.decay):
            rise = self.bump_rate * (min(t, end) - start)
            total += rise * (math.exp(-(t - end) / self.decay) if t > end else 1.0)
        return total

    def nominal(self, t: float) -> tuple[float, bool, bool]:
        """(temperature without noise, compressor running, door open)."""
        if self.thermal is not None:
            th = self.thermal
            return th.at(t), th.compressor, th.door
        temp, running = self.cycle(t)
        bump = self.bump(t)
        temp += bump
        door = self.doors.active(t) is not None
        if self.recovery is not None:
            since, start = self.recovery
            pulled = start - self.PULL_DOWN * (t - since)
            if pulled > temp:
                return pulled, True, door
            self.recovery = None
        return temp, running or bump > 0.3, door

    def value(self, point: str, t: float) -> Any:
        temp, running, door = self.nominal(t)
        if point == "temperature":
            return temp + self._noise.value(t)
        if point == "compressor":
            return running
        if point == "door_open":
            return door
        raise KeyError(point)

    def fault_started(self, fault: Fault, t: float) -> None:
        now = self.nominal(t)[0]
        if fault.name == "compressor":
            self.thermal = _Thermal(t, now, self.AMBIENT, self.fail_tau, False, False)
        else:  # door_open: the compressor runs flat out against the open door
            self.thermal = _Thermal(t, now, self.door_target, 1200.0, True, True)

    def fault_ended(self, name: str, t: float) -> None:
        if self.thermal is None:
            return
        end = self.thermal.at(t)
        self.thermal = None
        self.recovery = (t, end)


class DoorModel(Model):
    """Openings on a seeded schedule; the interlock is engaged while the other door is open."""

    kind = "door"
    faults = frozenset({"door_open"})
    booleans = frozenset({"open", "interlock"})

    def __init__(self, device: DeviceConfig, seed: int) -> None:
        super().__init__(device, seed)
        self.mine = Episodes(stable_seed(seed, "open"), 300.0, 4.0, 20.0, 0.7)
        self.other = Episodes(stable_seed(seed, "other"), 300.0, 4.0, 20.0, 0.7)

    def signal(self, point: str) -> ModelSignal:
        """``open`` is served as the contact reads: inverted when ``options.invert``."""
        invert = point == "open" and self.device.options.get("invert") is True
        return ModelSignal(model=self, point=point, kind=SignalKind.BOOL, invert=invert)

    def is_open(self, t: float) -> bool:
        if "door_open" in self.active:
            return True
        w = self.mine.active(t)
        # an interlocked door cannot be opened while the other one is open
        return w is not None and self.other.active(w[0]) is None

    def value(self, point: str, t: float) -> Any:
        if point == "open":
            return self.is_open(t)
        if point == "interlock":
            return not self.is_open(t) and self.other.active(t) is not None
        raise KeyError(point)


# --- autoclave ---------------------------------------------------------------------------------

CONDITIONING, EXPOSURE, EXHAUST, DRYING, SHOWN = 600.0, 900.0, 300.0, 900.0, 300.0
T_EXPOSURE = 121.6  # °C, controller set point
P_EXPOSURE = 212.0  # kPa abs, saturated steam at 121.6 °C
P_ATM = 101.3
T_IDLE = 40.0  # jacket-heated chamber at rest
_PULSE_TOPS = (150.0, 170.0, P_EXPOSURE)


def _approach(start: float, end: float, elapsed: float, tau: float) -> float:
    return end + (start - end) * math.exp(-elapsed / tau)


def cycle_profile(u: float) -> tuple[str, float, float]:
    """(phase, temperature °C, pressure kPa abs) ``u`` seconds into a nominal cycle."""
    if u < CONDITIONING:
        pulse, v = divmod(u, 200.0)
        top = _PULSE_TOPS[int(pulse)]
        before = P_ATM if pulse == 0 else _PULSE_TOPS[int(pulse) - 1]
        if v < 100.0:
            pressure = _approach(before, 8.0, v, 20.0)
        else:
            pressure = _approach(8.0, top, v - 100.0, 20.0)
        temperature = T_IDLE + (T_EXPOSURE - T_IDLE) * (u / CONDITIONING) ** 2
        return "conditioning", temperature, pressure
    u -= CONDITIONING
    if u < EXPOSURE:
        wave = math.sin(2 * math.pi * u / 180.0)
        return "exposure", T_EXPOSURE + 0.2 * wave, P_EXPOSURE + 1.0 * wave
    u -= EXPOSURE
    t_exhaust_end = _approach(T_EXPOSURE, 98.0, EXHAUST, 70.0)
    if u < EXHAUST:
        return "exhaust", _approach(T_EXPOSURE, 98.0, u, 70.0), _approach(P_EXPOSURE, P_ATM, u, 45)
    u -= EXHAUST
    t_drying_end = _approach(t_exhaust_end, 85.0, DRYING, 300.0)
    if u < DRYING:
        return "drying", _approach(t_exhaust_end, 85.0, u, 300.0), _approach(P_ATM, 12.0, u, 40.0)
    u -= DRYING
    return "complete", _approach(t_drying_end, 80.0, u, 600.0), _approach(12.0, P_ATM, u, 20.0)


RUN_LENGTH = CONDITIONING + EXPOSURE + EXHAUST + DRYING


@define
class _Cycle:
    """What the simulated controller integrates for one cycle."""

    index: int
    f0: float = 0.0
    exposure_min: float = math.inf
    integrated_to: float = 0.0  # seconds into the cycle
    aborted_at: float | None = None


@frozen
class AutoclaveState:
    phase: str
    temperature: float
    pressure: float  # kPa abs
    f0: float
    cycle_id: str | None
    result: str | None
    start: float | None  # simulated seconds
    end: float | None


class AutoclaveModel(Model):
    """Cycles every ``cycle_every`` simulated seconds, the first at ``first_cycle``.

    F0 is integrated second by second from the (excursion-shifted) chamber temperature; a
    completed cycle passes with F0 >= ``F0_MIN`` and no exposure temperature below
    ``EXPOSURE_MIN``. The ``abort`` fault aborts the running cycle at once, or (when none
    runs) the next one 240 s into conditioning.
    """

    kind = "autoclave"
    faults = frozenset({"abort"})
    numbers = frozenset({"temperature", "pressure", "f0"})
    F0_MIN = 15.0
    EXPOSURE_MIN = 121.0
    ABORT_AT = 240.0

    def __init__(
        self,
        device: DeviceConfig,
        seed: int,
        *,
        first_cycle: float = 120.0,
        cycle_every: float = 5400.0,
    ) -> None:
        super().__init__(device, seed)
        if cycle_every < RUN_LENGTH + SHOWN:
            raise ValueError(f"cycle_every must be at least {RUN_LENGTH + SHOWN:g} s")
        self.first_cycle = first_cycle
        self.cycle_every = cycle_every
        self.prefix = "".join(c for c in device.id.upper() if c.isalnum())[:8] or "AC"
        self.number0 = 100 + int(900 * _uniform(seed, "number"))
        self.cycles: dict[int, _Cycle] = {}
        self._abort_after: int | None = None  # abort the first cycle after this index
        self._t_noise = self.noise("temperature", 0.08)
        self._p_noise = self.noise("pressure", 0.3)

    def cycle_id(self, k: int) -> str:
        return f"{self.prefix}-{self.number0 + k:05d}"

    def _index(self, t: float) -> int:
        return (
            math.floor((t - self.first_cycle) / self.cycle_every) if t >= self.first_cycle else -1
        )

    def _true_temperature(self, u: float, t: float) -> float:
        temp = cycle_profile(u)[1]
        ex = self.excursions.get("temperature")
        return ex.apply(Signal(base=temp), t) if ex is not None else temp

    def _cycle(self, k: int, u: float, t: float) -> _Cycle:
        """Cycle ``k`` integrated up to ``u`` seconds into it (``t``: the matching time)."""
        c = self.cycles.get(k)
        if c is None:
            c = self.cycles[k] = _Cycle(k)
            for old in [i for i in self.cycles if i < k - 2]:
                del self.cycles[old]
            if self._abort_after is not None and k > self._abort_after:
                c.aborted_at, self._abort_after = self.ABORT_AT, None
        stop = min(u, RUN_LENGTH, c.aborted_at if c.aborted_at is not None else math.inf)
        while c.integrated_to + 1.0 <= stop:
            s = c.integrated_to + 0.5
            temp = self._true_temperature(s, t - (u - s))
            c.f0 += 10 ** ((temp - 121.1) / 10.0) / 60.0
            if CONDITIONING <= s < CONDITIONING + EXPOSURE:
                c.exposure_min = min(c.exposure_min, temp)
            c.integrated_to += 1.0
        return c

    def result(self, c: _Cycle) -> str:
        if c.aborted_at is not None:
            return "fail"
        return "pass" if c.f0 >= self.F0_MIN and c.exposure_min >= self.EXPOSURE_MIN else "fail"

    def state(self, t: float) -> AutoclaveState:
        k = self._index(t)
        if k < 0:
            return AutoclaveState("idle", T_IDLE, P_ATM, 0.0, None, None, None, None)
        start = self.first_cycle + k * self.cycle_every
        u = t - start
        c = self._cycle(k, u, t)
        cid = self.cycle_id(k)
        if c.aborted_at is not None and u >= c.aborted_at:
            a = c.aborted_at
            _, t_a, p_a = cycle_profile(a)
            phase = "aborted" if u < a + SHOWN else "idle"
            temp = _approach(t_a, T_IDLE, u - a, 1800.0)
            pressure = _approach(p_a, P_ATM, u - a, 30.0)
            return AutoclaveState(phase, temp, pressure, c.f0, cid, "fail", start, start + a)
        if u < RUN_LENGTH + SHOWN:
            phase, temp, pressure = cycle_profile(u)
            done = phase == "complete"
            end = start + RUN_LENGTH if done else None
            return AutoclaveState(
                phase, temp, pressure, c.f0, cid, self.result(c) if done else None, start, end
            )
        _, t_end, _ = cycle_profile(RUN_LENGTH + SHOWN)
        temp = _approach(t_end, T_IDLE, u - RUN_LENGTH - SHOWN, 1800.0)
        return AutoclaveState(
            "idle", temp, P_ATM, c.f0, cid, self.result(c), start, start + RUN_LENGTH
        )

    def value(self, point: str, t: float) -> Any:
        s = self.state(t)
        if point == "temperature":
            return s.temperature + self._t_noise.value(t)
        if point == "pressure":
            return s.pressure + self._p_noise.value(t)
        if point == "f0":
            return s.f0
        if point in ("phase", "cycle_id", "result"):
            return getattr(s, point)
        if point in ("cycle_start", "cycle_end"):
            return s.start if point == "cycle_start" else s.end
        raise KeyError(point)

    def fault_started(self, fault: Fault, t: float) -> None:
        k = self._index(t)
        if k >= 0:
            u = t - (self.first_cycle + k * self.cycle_every)
            c = self._cycle(k, u, t)
            if u < RUN_LENGTH and c.aborted_at is None:
                c.aborted_at = u
                return
        self._abort_after = k

    def fault_ended(self, name: str, t: float) -> None:
        self._abort_after = None


MODELS: dict[str, Callable[[DeviceConfig, int], Model]] = {
    "bsc": BscModel,
    "cold_storage": ColdStorageModel,
    "door": DoorModel,
    "autoclave": AutoclaveModel,
}


def build_model(device: DeviceConfig, seed: int) -> Model | None:
    """The model of an equipment device (None for other kinds); ``seed`` is the global seed,
    which the device's ``[device.simulate] seed`` replaces."""
    factory = MODELS.get(device.kind)
    if factory is None:
        return None
    own = device.simulate.get("seed") if isinstance(device.simulate, dict) else None
    if isinstance(own, int) and not isinstance(own, bool):
        seed = own
    return factory(device, stable_seed(seed, device.id, "equipment"))


def _own_signals(device: DeviceConfig) -> set[str]:
    """Fields with a ``[device.simulate.<field>]`` table: those follow it, not the model."""
    table = device.simulate if isinstance(device.simulate, dict) else {}
    return {f.name for f in device.fields if isinstance(table.get(f.name), dict)}


# --- Modbus ------------------------------------------------------------------------------------


class EquipmentModbusSim:
    """Every device of the ``"modbus-tcp"`` group on one ``[[modbus]]`` connection.

    One :class:`ModbusSimServer` serves them all. The fields of equipment devices read their
    model (unless a ``[device.simulate.<field>]`` table gives the field a signal of its own);
    generic devices keep their signals and all their faults are the server's. For equipment
    devices ``silent`` and ``exception`` are the server's too, ``excursion`` and the
    kind-specific faults the model's.
    """

    def __init__(
        self,
        connection: ModbusConnection,
        devices: Sequence[DeviceConfig],
        *,
        clock: SimClock | None = None,
        seed: int = 0,
        signals: Mapping[str, Mapping[str, Signal]] | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.clock = clock if clock is not None else SimClock()
        self.models: dict[str, Model] = {}
        merged: dict[str, dict[str, Signal]] = {}
        for d in devices:
            sigs = dict(signals[d.id] if signals is not None else parse_simulate(d, seed=seed))
            model = build_model(d, seed)
            if model is not None:
                self.models[d.id] = model
                own = _own_signals(d)
                sigs.update({f.name: model.signal(f.name) for f in d.fields if f.name not in own})
            merged[d.id] = sigs
        self.server = ModbusSimServer(
            connection, devices, seed=seed, signals=merged, host=host, port=port, clock=self.clock
        )

    @classmethod
    def from_request(cls, req: SimRequest) -> EquipmentModbusSim:
        assert isinstance(req.connection, ModbusConnection)
        return cls(
            req.connection, req.devices, clock=req.clock, seed=req.seed, signals=req.signals,
            host=req.bind,
        )  # fmt: skip

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def describe(self) -> str:
        return self.server.describe()

    # --- Faultable -------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return self.server.device_ids()

    def _model(self, device_id: str, name: str) -> Model | None:
        """The model that handles fault ``name`` of a device (None: the server does)."""
        return None if name in MODBUS_FAULTS else self.models.get(device_id)

    def check_fault(self, device_id: str, fault: Fault) -> None:
        model = self._model(device_id, fault.name)
        if model is None:
            self.server.check_fault(device_id, fault)
        else:
            model.check_fault(fault, MODBUS_FAULTS)

    def start_fault(self, device_id: str, fault: Fault) -> None:
        model = self._model(device_id, fault.name)
        if model is None:
            self.server.start_fault(device_id, fault)
        else:
            model.start_fault(fault, self.clock.now())
        log.info("%s: fault %s started %s", device_id, fault.name, dict(fault.params))

    def end_fault(self, device_id: str, name: str) -> None:
        model = self._model(device_id, name)
        if model is None:
            self.server.end_fault(device_id, name)
        else:
            model.end_fault(name, self.clock.now())
        log.info("%s: fault %s ended", device_id, name)

    def end_excursion(self, device_id: str, field_name: str) -> None:
        model = self.models.get(device_id)
        if model is None:
            self.server.end_excursion(device_id, field_name)
        else:
            model.end_excursion(field_name)


# --- MQTT --------------------------------------------------------------------------------------


@define(eq=False)
class _MqttDevice:
    config: DeviceConfig
    model: Model
    topic: str
    qos: int
    interval: float
    ts_path: tuple[str | int, ...] | None
    paths: dict[str, tuple[str | int, ...]]
    signals: dict[str, Signal]  # fields with a [device.simulate.<field>] table
    bar: bool = False  # autoclave pressure in bar
    next_due: float = 0.0
    silent: bool = False
    malformed: bytes | None = None  # b"": half of the real document


def _iso(t: float) -> str:
    when = dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


class EquipmentMqttSim:
    """Publishes the JSON of ``autoclave`` and MQTT ``cold_storage`` devices on one connection.

    Documents are made from the models at each device's (real) interval and handed, in order,
    to an :class:`MqttJsonPublisher` that has no devices of its own: its store-and-forward
    connection does the sending. ``ts`` and the autoclave's cycle times are real UNIX time.
    Faults: ``silent`` (nothing is sent; the model goes on), ``malformed`` (``payload``, or
    the first half of the real document, instead of each document), and the models' own.
    """

    def __init__(
        self,
        connection: MqttConnection,
        devices: Sequence[DeviceConfig],
        *,
        clock: SimClock | None = None,
        seed: int = 0,
        signals: Mapping[str, Mapping[str, Signal]] | None = None,
        port: int | None = None,
    ) -> None:
        self.clock = clock if clock is not None else SimClock()
        self.publisher = MqttJsonPublisher(connection, [], port=port, clock=self.clock)
        self.devices: dict[str, _MqttDevice] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self.sent = 0  # documents (or garbage) handed to the publisher
        for d in devices:
            model = build_model(d, seed)
            if model is None:
                log.warning("device %s: kind %r has no equipment simulator; skipped", d.id, d.kind)
                continue
            sigs = signals[d.id] if signals is not None else parse_simulate(d, seed=seed)
            self.devices[d.id] = self._device(d, model, sigs)

    def _device(self, d: DeviceConfig, model: Model, sigs: Mapping[str, Signal]) -> _MqttDevice:
        opts = d.options
        ts = opts.get("timestamp_path", "ts")
        try:
            paths = {f.name: parse_path(f.path) for f in d.fields if f.path}
            ts_path = parse_path(ts) if ts else None
            build_document([(p, 0) for p in [*paths.values(), *([ts_path] if ts_path else [])]])
        except ValueError as exc:  # conflicting paths fail here, not in the generator
            raise SimulatorError(f"device {d.id!r}: {exc}") from None
        own = _own_signals(d) if d.kind != "autoclave" else set()
        return _MqttDevice(
            config=d, model=model,
            topic=opts.get("state_topic") or DEFAULT_TOPIC.format(device=d.id),
            qos=int(opts.get("qos", 1)), interval=float(d.interval), ts_path=ts_path,
            paths=paths, signals={n: s for n, s in sigs.items() if n in own},
            bar=opts.get("pressure_unit") == "bar",
        )  # fmt: skip

    @classmethod
    def from_request(cls, req: SimRequest) -> EquipmentMqttSim:
        assert isinstance(req.connection, MqttConnection)
        return cls(req.connection, req.devices, clock=req.clock, seed=req.seed, signals=req.signals)

    def wall(self, simulated: float) -> float:
        """Real UNIX time of a simulated instant (``speed`` compresses the past)."""
        return self.clock.wall() - self.clock.real_seconds(self.clock.now() - simulated)

    # --- documents -------------------------------------------------------------------------

    def document(self, device_id: str, t: float | None = None) -> dict[str, Any]:
        """A device's JSON document at simulated time ``t`` (default: now)."""
        d = self.devices[device_id]
        t = self.clock.now() if t is None else t
        items: list[tuple[tuple[str | int, ...], Any]] = [
            (path, self._value(d, point, t)) for point, path in d.paths.items()
        ]
        if d.ts_path is not None:
            items.append((d.ts_path, round(self.clock.wall(), 3)))
        return build_document(items)

    def _value(self, d: _MqttDevice, point: str, t: float) -> Any:
        sig = d.signals.get(point)
        if sig is not None:
            v = sig.sample(t)
            return round(v, 4) if isinstance(v, float) else v
        v = d.model.sample(point, t)
        if point in ("cycle_start", "cycle_end"):
            return None if v is None else _iso(self.wall(v))
        if point == "pressure" and d.bar:
            return round(v / 100.0, 4)
        return round(v, 3) if isinstance(v, float) else v

    def payload(self, device_id: str) -> bytes | None:
        """What the device sends now: its document, garbage, or (silent) nothing."""
        d = self.devices[device_id]
        text = json.dumps(self.document(device_id), separators=(",", ":"))  # the model goes on
        if d.silent:
            return None
        if d.malformed is not None:
            return d.malformed or text[: max(1, len(text) // 2)].encode()
        return text.encode()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        await self.publisher.start()
        self._task = asyncio.create_task(self._generate(), name="equipment-mqtt-sim")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.publisher.stop()
        for fut in list(self._pending):
            fut.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def describe(self) -> str:
        pub = self.publisher
        ids = ", ".join(self.devices) or "none"
        return f"equipment mqtt {pub.connection.name!r} to {pub.host}:{pub.port}: {ids}"

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        devices = list(self.devices.values())
        for d in devices:
            d.next_due = loop.time()
        while devices:
            now = loop.time()
            for d in devices:
                if d.next_due > now:
                    continue
                d.next_due += d.interval
                if d.next_due <= now:
                    d.next_due = now + d.interval
                payload = self.payload(d.config.id)
                if payload is not None:
                    self._send(d, payload)
            await asyncio.sleep(max(0.0, min(d.next_due for d in devices) - loop.time()))

    def _send(self, d: _MqttDevice, payload: bytes) -> None:
        """Queue in order now (publish_raw enqueues before its first await); the broker's
        acknowledgement is awaited in the background."""
        fut = asyncio.ensure_future(self.publisher.publish_raw(d.topic, payload, qos=d.qos))
        self._pending.add(fut)
        fut.add_done_callback(self._done)
        self.sent += 1

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("equipment publish lost: %s", fut.exception())

    # --- Faultable -------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return list(self.devices)

    def check_fault(self, device_id: str, fault: Fault) -> None:
        d = self.devices.get(device_id)
        if d is None:
            raise KeyError(f"no simulated equipment mqtt device {device_id!r}")
        if fault.name == "silent":
            check_fault_params(device_id, fault, ())
        elif fault.name == "malformed":
            check_fault_params(device_id, fault, ("payload",))
            if not isinstance(fault.params.get("payload", ""), str):
                raise FaultParamError(device_id, fault.name, "payload", "expected a string")
        else:
            d.model.check_fault(fault, MQTT_FAULTS)

    def start_fault(self, device_id: str, fault: Fault) -> None:
        self.check_fault(device_id, fault)
        d = self.devices[device_id]
        if fault.name == "silent":
            d.silent = True
        elif fault.name == "malformed":
            d.malformed = str(fault.params.get("payload", "")).encode()
        else:
            d.model.start_fault(fault, self.clock.now())
        log.info("%s: fault %s started %s", device_id, fault.name, dict(fault.params))

    def end_fault(self, device_id: str, name: str) -> None:
        d = self.devices[device_id]
        if name == "silent":
            d.silent = False
        elif name == "malformed":
            d.malformed = None
        else:
            d.model.end_fault(name, self.clock.now())
        log.info("%s: fault %s ended", device_id, name)

    def end_excursion(self, device_id: str, field_name: str) -> None:
        self.devices[device_id].model.end_excursion(field_name)


# --- registration --------------------------------------------------------------------------------


def modbus_group(req: SimRequest) -> EquipmentModbusSim | EquipmentMqttSim:
    """Factory of the ``"modbus-tcp"`` group when an equipment device comes first in it; a
    cold storage unit on an ``[[mqtt]]`` connection lands here too (same kind, same group)."""
    if isinstance(req.connection, ModbusConnection):
        return EquipmentModbusSim.from_request(req)
    if isinstance(req.connection, MqttConnection):
        return EquipmentMqttSim.from_request(req)
    raise SimulatorError(f"equipment devices need a connection, got {req.connection!r}")


def mqtt_group(req: SimRequest) -> EquipmentMqttSim:
    if not isinstance(req.connection, MqttConnection):
        raise SimulatorError(f"autoclaves need an [[mqtt]] connection, got {req.connection!r}")
    return EquipmentMqttSim.from_request(req)


for _kind in ("bsc", "cold_storage", "door"):
    register_simulator(_kind, modbus_group, group="modbus-tcp")
register_simulator("autoclave", mqtt_group, group="equipment-mqtt")
