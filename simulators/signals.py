"""Seeded signal models for simulated device fields.

A :class:`Signal` is a pure function of time: ``value(t)`` for ``t`` seconds since the
simulator started. Noise is drawn from a counter-based generator keyed by (seed, t), so the
same seed and the same ``t`` always give the same value, in any call order.

devices.toml::

    [device.simulate]            # optional
    seed = 7                     # optional; default: the global seed (``floorctl simulate --seed``)

    [device.simulate.dp]         # one table per field name, all keys optional
    base = 12.5                  # value at t = 0 (number, or true/false for a boolean field)
    noise = 0.3                  # gaussian standard deviation
    drift = 0.5                  # units per hour
    period = 600                 # seconds; sine of ``amplitude`` around the trend
    amplitude = 1.0
    min = 0                      # clamps, applied last
    max = 100
    steps = [{ at = 60, to = 5.0 }, { at = 120, by = -1.0 }]
    raw = [0x7FC0, 0x0000]       # Modbus only: serve these register words verbatim

Fields without a table get a default chosen from their unit (:func:`default_signal`).

An :class:`Excursion` (the ``excursion`` fault of a scenario) moves one field's value on top
of its signal; :func:`parse_excursion` and :class:`FaultParamError` are shared by every
simulator that supports it.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

from floorctl.config import DeviceConfig, FieldConfig, parse_duration
from floorctl.config import describe_value as _describe
from floorctl.decode import DataType
from simulators.faults import Fault

__all__ = [
    "FIELD_KEYS",
    "Excursion",
    "FaultParamError",
    "Signal",
    "SignalKind",
    "SimulateConfigError",
    "Step",
    "check_fault_params",
    "default_signal",
    "fault_seconds",
    "field_seed",
    "parse_excursion",
    "parse_simulate",
    "stable_seed",
]

#: keys of a ``[device.simulate.<field>]`` table
FIELD_KEYS = ("base", "noise", "drift", "steps", "period", "amplitude", "min", "max", "raw")
_STEP_KEYS = ("at", "to", "by")
_U64 = 2**64


class SignalKind(enum.StrEnum):
    """What :meth:`Signal.sample` returns."""

    FLOAT = "float"
    INT = "int"  # counts: rounded, never negative unless min says so
    BOOL = "bool"


@frozen
class Step:
    """At ``at`` seconds the trend jumps to ``to``, or moves by ``by``."""

    at: float
    to: float | None = None
    by: float | None = None


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (sha256 of their text; stable across runs and machines)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def field_seed(seed: int, device_id: str, field_name: str) -> int:
    """The seed of one field: global (or device) seed + device id + field name."""
    return stable_seed(seed, device_id, field_name)


def _gauss(seed: int, t: float) -> float:
    """A standard normal deviate that depends only on (seed, t)."""
    digest = hashlib.blake2b(struct.pack("<Qd", seed % _U64, t), digest_size=16).digest()
    a, b = struct.unpack("<QQ", digest)
    u1 = (a + 1) / (_U64 + 1)  # (0, 1]
    u2 = b / _U64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@frozen
class Signal:
    """``base + drift * t/3600 + steps + amplitude * sin(2πt/period) + noise``, clamped."""

    base: float = 1.0
    noise: float = 0.0
    drift: float = 0.0  # units per hour
    steps: tuple[Step, ...] = ()
    period: float | None = None
    amplitude: float = 0.0
    min: float | None = None
    max: float | None = None
    kind: SignalKind = SignalKind.FLOAT
    seed: int = 0
    raw: tuple[int, ...] | None = None  # Modbus: serve these words verbatim

    def trend(self, t: float) -> float:
        """The noiseless value at ``t`` (base, drift, steps; no sine, no clamps)."""
        per_second = self.drift / 3600.0
        offset = 0.0
        for step in self.steps:  # sorted by ``at``
            if step.at > t:
                break
            if step.to is not None:
                offset = step.to - (self.base + per_second * step.at)
            elif step.by is not None:
                offset += step.by
        return self.base + per_second * t + offset

    def value(self, t: float) -> float:
        """The value at ``t`` seconds since start (booleans give 0.0 or 1.0)."""
        v = self.trend(t)
        if self.kind is SignalKind.BOOL:
            return 1.0 if v >= 0.5 else 0.0
        if self.period and self.amplitude:
            v += self.amplitude * math.sin(2.0 * math.pi * t / self.period)
        if self.noise:
            v += self.noise * _gauss(self.seed, t)
        if self.min is not None and v < self.min:
            v = self.min
        if self.max is not None and v > self.max:
            v = self.max
        return v

    def sample(self, t: float) -> float | int | bool:
        """``value(t)`` typed by ``kind``: a float, a rounded int, or a bool."""
        v = self.value(t)
        if self.kind is SignalKind.BOOL:
            return v >= 0.5
        if self.kind is SignalKind.INT:
            return round(v)
        return v


# --- defaults -----------------------------------------------------------------------------

_DEFAULTS: dict[str, dict[str, Any]] = {
    "pa": {"base": 15.0, "noise": 0.3},
    "°c": {"base": 20.0, "noise": 0.05},
    "degc": {"base": 20.0, "noise": 0.05},
    "c": {"base": 20.0, "noise": 0.05},
    "%rh": {"base": 45.0, "noise": 0.3},
    "%": {"base": 45.0, "noise": 0.3},
    "counts/m3": {"base": 3.0, "noise": 2.0, "min": 0.0, "kind": SignalKind.INT},
    "counts/m³": {"base": 3.0, "noise": 2.0, "min": 0.0, "kind": SignalKind.INT},
    "counts/ft3": {"base": 1.0, "noise": 1.0, "min": 0.0, "kind": SignalKind.INT},
    "counts": {"base": 3.0, "noise": 2.0, "min": 0.0, "kind": SignalKind.INT},
}
_GENERIC: dict[str, Any] = {"base": 1.0, "noise": 0.01}


def is_boolean_field(f: FieldConfig) -> bool:
    """Coils, discrete inputs, BOOL registers and fields with unit "bool"."""
    unit = (f.unit or "").strip().lower()
    return (
        (f.register is not None and f.register.is_bits)
        or f.type is DataType.BOOL
        or unit in ("bool", "boolean")
    )


def _defaults_for(f: FieldConfig) -> dict[str, Any]:
    if is_boolean_field(f):
        return {"base": 0.0, "kind": SignalKind.BOOL}
    return dict(_DEFAULTS.get((f.unit or "").strip().lower(), _GENERIC))


def default_signal(f: FieldConfig, seed: int = 0) -> Signal:
    """The signal of a field that has no ``[device.simulate.<field>]`` table."""
    return Signal(seed=seed, **_defaults_for(f))


# --- parsing ------------------------------------------------------------------------------


class SimulateConfigError(ValueError):
    """A ``[device.simulate]`` table is wrong; ``problems`` are (key path, message) pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{path}: {msg}" for path, msg in self.problems))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Parser:
    def __init__(self, device: DeviceConfig) -> None:
        self.device = device
        self.prefix = f"device[{device.id}].simulate"
        self.problems: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append((f"{self.prefix}{path}", message))

    def number(
        self, spec: Mapping[str, Any], key: str, path: str, *, finite: bool = True
    ) -> float | None:
        if key not in spec:
            return None
        value = spec[key]
        if not _is_number(value):
            self.error(f"{path}.{key}", f"expected a number, got {_describe(value)}")
            return None
        if finite and not math.isfinite(value):
            self.error(f"{path}.{key}", "must be finite")
            return None
        return float(value)

    def level(self, spec: Mapping[str, Any], key: str, path: str, boolean: bool) -> float | None:
        """A number, or (for a boolean field) true/false."""
        if boolean and key in spec:
            value = spec[key]
            if isinstance(value, bool):
                return 1.0 if value else 0.0
            if not _is_number(value):
                self.error(f"{path}.{key}", f"expected true or false, got {_describe(value)}")
                return None
        return self.number(spec, key, path)

    def steps(self, value: object, path: str, boolean: bool) -> tuple[Step, ...]:
        if not isinstance(value, list):
            self.error(
                path,
                f"expected an array of {{at, to}} or {{at, by}} tables, got {_describe(value)}",
            )
            return ()
        out: list[Step] = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(item, dict):
                self.error(where, f"expected a table {{at = ..., to = ...}}, got {_describe(item)}")
                continue
            for key in item:
                if key not in _STEP_KEYS:
                    self.error(f"{where}.{key}", "unknown key (expected at, to or by)")
            if "at" not in item:
                self.error(f"{where}.at", "required (seconds since start)")
            at = self.number(item, "at", where)
            if at is not None and at < 0:
                self.error(f"{where}.at", "must be 0 or more")
            if ("to" in item) == ("by" in item):
                self.error(where, "give exactly one of to or by")
                continue
            to = self.level(item, "to", where, boolean) if "to" in item else None
            by = None
            if "by" in item:
                if boolean:
                    self.error(f"{where}.by", "not valid for a boolean field (use to = true/false)")
                    continue
                by = self.number(item, "by", where)
            if at is not None and (to is not None or by is not None):
                out.append(Step(at=at, to=to, by=by))
        return tuple(sorted(out, key=lambda s: s.at))

    def raw(self, value: object, path: str, f: FieldConfig) -> tuple[int, ...] | None:
        if f.register is None:
            self.error(path, "raw applies to Modbus register fields only")
            return None
        if not isinstance(value, list) or not value:
            self.error(
                path, f"expected a non-empty array of register words, got {_describe(value)}"
            )
            return None
        words: list[int] = []
        top = 1 if f.register.is_bits else 0xFFFF
        for i, word in enumerate(value):
            if isinstance(word, bool) and f.register.is_bits:
                word = int(word)
            if isinstance(word, bool) or not isinstance(word, int) or not 0 <= word <= top:
                self.error(f"{path}[{i}]", f"expected an integer 0..{top}, got {_describe(word)}")
                return None
            words.append(word)
        if len(words) != f.count:
            self.error(
                path, f"{f.register} field {f.name!r} needs {f.count} word(s), got {len(words)}"
            )
            return None
        return tuple(words)

    def field(self, f: FieldConfig, spec: object, seed: int) -> Signal:
        path = f".{f.name}"
        params = _defaults_for(f)
        boolean = params.get("kind") is SignalKind.BOOL
        if not isinstance(spec, dict):
            self.error(path, f"expected a table [device.simulate.{f.name}], got {_describe(spec)}")
            return Signal(seed=seed, **params)
        for key in spec:
            if key not in FIELD_KEYS:
                self.error(
                    f"{path}.{key}", f"unknown key (expected one of {', '.join(FIELD_KEYS)})"
                )
        if boolean:
            for key in ("noise", "drift", "period", "amplitude", "min", "max"):
                if key in spec:
                    self.error(
                        f"{path}.{key}", "not valid for a boolean field (use base and steps)"
                    )
        else:
            for key in ("noise", "drift", "amplitude", "min", "max"):
                value = self.number(spec, key, path)
                if value is not None:
                    params[key] = value
            period = self.number(spec, "period", path)
            if period is not None:
                if period <= 0:
                    self.error(f"{path}.period", "must be more than 0 seconds")
                else:
                    params["period"] = period
            if params.get("noise", 0.0) < 0:
                self.error(f"{path}.noise", "must be 0 or more")
            lo, hi = params.get("min"), params.get("max")
            if lo is not None and hi is not None and lo > hi:
                key = "min" if "min" in spec else "max"
                self.error(f"{path}.{key}", f"min ({lo:g}) is above max ({hi:g})")
            if "amplitude" in spec and "period" not in spec:
                self.error(f"{path}.amplitude", "needs a period")
        base = self.level(spec, "base", path, boolean)
        if base is not None:
            params["base"] = base
        if "steps" in spec:
            params["steps"] = self.steps(spec["steps"], f"{path}.steps", boolean)
        if "raw" in spec:
            params["raw"] = self.raw(spec["raw"], f"{path}.raw", f)
        return Signal(seed=seed, **params)

    def parse(self, seed: int) -> dict[str, Signal]:
        table = self.device.simulate
        if not isinstance(table, dict):
            self.error("", f"expected a table, got {_describe(table)}")
            table = {}
        fields = {f.name: f for f in self.device.fields}
        if "seed" in table:
            value = table["seed"]
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(".seed", f"expected an integer, got {_describe(value)}")
            else:
                seed = value
        for key in table:
            if key != "seed" and key not in fields:
                known = ", ".join(sorted(fields)) or "none"
                self.error(f".{key}", f"unknown field (fields of this device: {known}; or seed)")
        signals: dict[str, Signal] = {}
        for name, f in fields.items():
            fseed = field_seed(seed, self.device.id, name)
            if name in table:
                signals[name] = self.field(f, table[name], fseed)
            else:
                signals[name] = default_signal(f, fseed)
        return signals


def parse_simulate(device: DeviceConfig, *, seed: int = 0) -> dict[str, Signal]:
    """One :class:`Signal` per field of ``device``, from its ``[device.simulate]`` table.

    ``seed`` is the global seed; the table's own ``seed`` replaces it for this device.
    Raises :class:`SimulateConfigError` naming the key path of every problem.
    """
    parser = _Parser(device)
    signals = parser.parse(seed)
    if parser.problems:
        raise SimulateConfigError(parser.problems)
    return signals


def parse_all(devices: Iterable[DeviceConfig], *, seed: int = 0) -> dict[str, dict[str, Signal]]:
    """:func:`parse_simulate` for many devices, reporting every device's problems at once."""
    out: dict[str, dict[str, Signal]] = {}
    problems: list[tuple[str, str]] = []
    for device in devices:
        try:
            out[device.id] = parse_simulate(device, seed=seed)
        except SimulateConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SimulateConfigError(problems)
    return out


# --- fault parameters and excursions ------------------------------------------------------


class FaultParamError(ValueError):
    """A fault cannot be applied as asked; ``param`` names the parameter at fault (or None)."""

    def __init__(self, device_id: str, fault: str, param: str | None, reason: str) -> None:
        self.device_id = device_id
        self.fault = fault
        self.param = param
        self.reason = reason
        where = f"{fault}.{param}" if param else fault
        super().__init__(f"device {device_id!r}: {where}: {reason}")


def fault_seconds(value: object) -> float:
    """Seconds from a number (>= 0) or a duration string ("30s", "2m"); ValueError if neither."""
    if isinstance(value, str):
        return float(parse_duration(value))
    if not _is_number(value) or not math.isfinite(value) or value < 0:  # type: ignore[operator]
        raise ValueError(
            f'expected a duration ("30s", "2m") or seconds >= 0, got {_describe(value)}'
        )
    return float(value)  # type: ignore[arg-type]


def check_fault_params(device_id: str, fault: Fault, allowed: Iterable[str]) -> None:
    """Raise :class:`FaultParamError` for the first parameter not in ``allowed``."""
    allowed = tuple(allowed)
    for key in fault.params:
        if key not in allowed:
            expected = f"expected {', '.join(allowed)}" if allowed else "it takes no parameters"
            raise FaultParamError(device_id, fault.name, key, f"unknown parameter ({expected})")


@frozen
class Excursion:
    """One field moved ``to`` a level or ``by`` an offset, over ``ramp`` simulated seconds.

    ``to`` moves the signal's trend: noise and the sine stay on top of the new level (a noisy
    sensor stays noisy). Booleans switch to ``to`` at once.
    """

    field: str
    to: float | None = None
    by: float | None = None
    ramp: float = 0.0
    start: float = 0.0  # simulated time the excursion began

    def progress(self, t: float) -> float:
        """0 at ``start``, 1 once ``ramp`` seconds have passed."""
        if self.ramp <= 0:
            return 1.0
        return min(1.0, max(0.0, (t - self.start) / self.ramp))

    def apply(self, signal: Signal, t: float) -> float:
        """The field's value at ``t`` with this excursion on top of ``signal``."""
        if signal.kind is SignalKind.BOOL:
            return 1.0 if self.to else 0.0
        value = signal.value(t)
        if self.by is not None:
            return value + self.by * self.progress(t)
        assert self.to is not None
        if not math.isfinite(self.to):  # NaN/inf: a broken sensor, no ramp
            return self.to
        return value + (self.to - signal.trend(t)) * self.progress(t)


EXCURSION_PARAMS = ("field", "to", "by", "ramp")


def parse_excursion(device_id: str, fault: Fault, signals: Mapping[str, Signal]) -> Excursion:
    """Check an ``excursion`` fault's params against a device's fields (``signals``).

    Raises :class:`FaultParamError` naming the device and the parameter.
    """
    params = fault.params

    def bad(param: str | None, reason: str) -> FaultParamError:
        return FaultParamError(device_id, fault.name, param, reason)

    check_fault_params(device_id, fault, EXCURSION_PARAMS)
    name = params.get("field")
    if name is None:
        raise bad("field", "required (the field to move)")
    if not isinstance(name, str) or name not in signals:
        known = ", ".join(signals) or "none"
        raise bad("field", f"{_describe(name)} is not a field of this device (fields: {known})")
    signal = signals[name]
    if ("to" in params) == ("by" in params):
        raise bad(None, "give exactly one of to or by")
    ramp = 0.0
    if "ramp" in params:
        try:
            ramp = fault_seconds(params["ramp"])
        except ValueError as exc:
            raise bad("ramp", str(exc)) from None
    if signal.kind is SignalKind.BOOL:
        if "by" in params:
            raise bad("by", f"field {name!r} is boolean: use to = true or false")
        if not isinstance(params["to"], bool):
            got = _describe(params["to"])
            raise bad("to", f"field {name!r} is boolean: expected true or false, got {got}")
        if ramp:
            raise bad("ramp", f"field {name!r} is boolean: it cannot ramp")
        return Excursion(name, to=1.0 if params["to"] else 0.0)
    if "by" in params:
        by = params["by"]
        if not _is_number(by) or not math.isfinite(by):
            raise bad("by", f"expected a finite number, got {_describe(by)}")
        if signal.raw is not None:
            raise bad("by", f"field {name!r} serves raw register words: use to")
        return Excursion(name, by=float(by), ramp=ramp)
    to = params["to"]
    if not _is_number(to):
        raise bad("to", f"expected a number, got {_describe(to)}")
    return Excursion(name, to=float(to), ramp=ramp)
