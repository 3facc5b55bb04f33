"""Cleanroom equipment kinds: ``bsc``, ``autoclave``, ``cold_storage`` and ``door``.

Each kind has a built-in point map (``Kind.points``): a device that lists no fields gets every
point, listed fields select points and override what they set. The Modbus kinds reuse the
generic :class:`~floorctl.plugins.generic.ModbusDriver` (block reads of the map); the MQTT
kinds reuse the JSON path helpers of the generic plugin. docs/devices.md documents
the register maps, payloads, quality rules and simulator faults.

- ``bsc``: a biosafety cabinet (``type = "bsc"``) or laminar-airflow hood (``"laf"``, no
  inflow, no sash) over Modbus: downflow/inflow velocity, fan, sash and airflow alarm bits.
- ``autoclave``: a steam steriliser's controller publishing JSON over MQTT: cycle phase, chamber
  temperature and pressure, F0, cycle id, result, cycle start and end. A phase machine follows
  the cycles; an aborted or failed cycle is a device-error reading and a DEVICE_ERROR event.
- ``cold_storage``: a refrigerator or freezer over Modbus (register map) or MQTT (JSON):
  temperature with USP <659> limits chosen by ``type``, door open, compressor running.
- ``door``: one door contact (and optionally its interlock) on Modbus discrete inputs.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from attrs import asdict, define, field, frozen

from floorctl import hookimpl
from floorctl.config import Address, DeviceConfig, FieldConfig, Ident
from floorctl.decode import ByteOrder, DataType, RegisterTable
from floorctl.driver import CommandError, DeviceContext, Driver, SubscribedDriver
from floorctl.hubs.mqtt import MqttHub
from floorctl.kinds import Kind, KindRegistry, Problems, Transport
from floorctl.limits import Quantity
from floorctl.model import Event, EventKind, Quality, Reading, Value
from floorctl.plugins.generic import (
    JSON_FIELD_KEYS,
    MODBUS_FIELD_KEYS,
    ModbusDriver,
    MqttJsonDriver,
    load_json_payload,
    lookup,
    parse_path,
    parse_timestamp,
    validate_register_fields,
)

#: per-field keys of the Modbus map kinds: select a point, tune publishing and limits, or move
#: a point of the map (another address, table, type, byte order, scale, sentinels)
MAP_MODBUS_FIELD_KEYS = MODBUS_FIELD_KEYS - {"unit", "quantity"}
#: per-field keys of the MQTT map kinds: select a point, move it in the payload (``path``)
MAP_JSON_FIELD_KEYS = JSON_FIELD_KEYS - {"unit", "quantity"}

ENCODINGS = ("float32", "int16")
#: raw INT16 values that mean "no measurement" (probe open / short circuit) in the maps below
INT16_SENTINELS = (32767.0, -32768.0)
DEFAULT_TOPIC = "equipment/{device}"


def _one_of(value: str, choices: Sequence[str], path: tuple[str | int, ...]) -> Problems:
    if value not in choices:
        yield path, f"must be {' or '.join(repr(c) for c in choices)}, got {value!r}"


def _topic(options: Any, device: DeviceConfig) -> str:
    return options.state_topic or DEFAULT_TOPIC.format(device=device.id)


def _validate_mqtt_options(options: Any) -> Problems:
    topic = options.state_topic
    if topic is not None and (not topic or "#" in topic or "+" in topic):
        yield ("options", "state_topic"), "must be a topic without wildcards"
    if options.qos not in (0, 1, 2):
        yield ("options", "qos"), "must be 0, 1 or 2"
    if options.max_payload < 1:
        yield ("options", "max_payload"), "must be at least 1"
    if options.timestamp_path:
        try:
            parse_path(options.timestamp_path)
        except ValueError as exc:
            yield ("options", "timestamp_path"), str(exc)


def _validate_paths(device: DeviceConfig) -> Problems:
    for j, f in enumerate(device.fields):
        if f.path is None:
            yield ("fields", j, "path"), "required: where the value is in the JSON payload"
            continue
        try:
            parse_path(f.path)
        except ValueError as exc:
            yield ("fields", j, "path"), str(exc)


def _register_point(
    name: str,
    unit: str | None,
    table: RegisterTable,
    address: int,
    *,
    dtype: DataType | None = None,
    byte_order: ByteOrder = ByteOrder.ABCD,
    scale: float = 1.0,
    quantity: Quantity | None = None,
    precision: int | None = None,
    path: str | None = None,
) -> FieldConfig:
    sentinels = INT16_SENTINELS if dtype is DataType.INT16 else ()
    return FieldConfig(
        name=Ident(name),
        unit=unit,
        register=table,
        address=Address(address),
        type=dtype,
        byte_order=byte_order,
        scale=scale,
        sentinels=sentinels,
        quantity=quantity,
        precision=precision,
        path=path,
    )


def _analog_slots(encoding: str) -> tuple[DataType, int]:
    """(type, registers per value) of an analog value in the maps below."""
    return (DataType.INT16, 1) if encoding == "int16" else (DataType.FLOAT32, 2)


# --- bsc -------------------------------------------------------------------------------------


@frozen
class BscOptions:
    """``[device.options]`` of a ``bsc`` device (a biosafety cabinet or laminar-airflow hood)."""

    #: "bsc" (Class II cabinet: downflow and inflow, sash alarm) or "laf" (laminar-airflow
    #: hood: downflow only)
    type: str = "bsc"
    #: velocities as "float32" (two registers, m/s) or "int16" (one register, x velocity_scale)
    encoding: str = "float32"
    byte_order: ByteOrder = ByteOrder.ABCD  # of the FLOAT32 velocities
    velocity_scale: float = (
        0.01  # m/s per count of an INT16 velocity (0.01: the register holds cm/s)
    )
    register: RegisterTable = RegisterTable.INPUT  # table of the velocities: "input" or "holding"
    #: 1 if field addresses you override are written 1-based (the built-in map moves with it)
    address_base: int = 0


def bsc_points(device: DeviceConfig, options: BscOptions) -> list[FieldConfig]:
    """The map: velocities from register 0 of ``options.register``, status on discrete inputs
    0 (fan on), 1 (sash alarm, BSC only), 2 (airflow alarm)."""
    base = options.address_base if options.address_base in (0, 1) else 0
    dtype, width = _analog_slots(options.encoding)
    scale = options.velocity_scale if dtype is DataType.INT16 else 1.0
    table = options.register if not options.register.is_bits else RegisterTable.INPUT
    laf = options.type == "laf"

    def velocity(name: str, slot: int, quantity: Quantity) -> FieldConfig:
        return _register_point(
            name, "m/s", table, base + slot * width, dtype=dtype,
            byte_order=options.byte_order, scale=scale, quantity=quantity, precision=3,
        )  # fmt: skip

    points = [velocity("downflow", 0, Quantity.DOWNFLOW_VELOCITY)]
    if not laf:
        points.append(velocity("inflow", 1, Quantity.INFLOW_VELOCITY))
    points.append(_register_point("fan_on", None, RegisterTable.DISCRETE, base + 0))
    if not laf:
        points.append(_register_point("sash_alarm", None, RegisterTable.DISCRETE, base + 1))
    points.append(_register_point("airflow_alarm", None, RegisterTable.DISCRETE, base + 2))
    return points


def validate_bsc(device: DeviceConfig, options: BscOptions) -> Problems:
    yield from _one_of(options.type, ("bsc", "laf"), ("options", "type"))
    yield from _one_of(options.encoding, ENCODINGS, ("options", "encoding"))
    if not math.isfinite(options.velocity_scale) or options.velocity_scale <= 0:
        yield ("options", "velocity_scale"), "must be a finite number above 0"
    if options.register.is_bits:
        yield ("options", "register"), 'must be "input" or "holding" (velocities are registers)'
    yield from validate_register_fields(device, options)


# --- cold_storage ----------------------------------------------------------------------------

COLD_TYPES = {
    "refrigerator": Quantity.REFRIGERATOR_TEMPERATURE,
    "freezer": Quantity.FREEZER_TEMPERATURE,
}


@frozen
class ColdStorageOptions:
    """``[device.options]`` of a ``cold_storage`` device (via Modbus or MQTT)."""

    #: "refrigerator" (USP <659> 2..8 °C) or "freezer" (-25..-10 °C): decides the limits
    type: str
    # Modbus (via a [[modbus]] connection)
    encoding: str = "float32"  # temperature as "float32" (two registers) or "int16" (scaled)
    byte_order: ByteOrder = ByteOrder.ABCD  # of a FLOAT32 temperature
    temperature_scale: float = 0.1  # °C per count of an INT16 temperature
    register: RegisterTable = RegisterTable.INPUT  # table of the temperature: "input" or "holding"
    address_base: int = 0  # 1 if field addresses you override are written 1-based
    # MQTT (via an [[mqtt]] connection)
    state_topic: str | None = None  # default "equipment/<device id>"
    timestamp_path: str = "ts"  # where the device's own timestamp is; "" if it sends none
    max_payload: int = 65536
    qos: int = 1


def cold_storage_points(device: DeviceConfig, options: ColdStorageOptions) -> list[FieldConfig]:
    """Temperature from register 0; door open and compressor running on discrete inputs 0
    and 1. Each point also has its default JSON path (used when ``via`` is MQTT)."""
    base = options.address_base if options.address_base in (0, 1) else 0
    dtype, _ = _analog_slots(options.encoding)
    table = options.register if not options.register.is_bits else RegisterTable.INPUT
    return [
        _register_point(
            "temperature", "°C", table, base, dtype=dtype, byte_order=options.byte_order,
            scale=options.temperature_scale if dtype is DataType.INT16 else 1.0,
            quantity=COLD_TYPES.get(options.type, Quantity.REFRIGERATOR_TEMPERATURE),
            precision=2, path="temperature",
        ),
        _register_point("door_open", None, RegisterTable.DISCRETE, base, path="door_open"),
        _register_point("compressor", None, RegisterTable.DISCRETE, base + 1, path="compressor"),
    ]  # fmt: skip


def validate_cold_storage(device: DeviceConfig, options: ColdStorageOptions) -> Problems:
    yield from _one_of(options.type, tuple(COLD_TYPES), ("options", "type"))
    yield from _one_of(options.encoding, ENCODINGS, ("options", "encoding"))
    if not math.isfinite(options.temperature_scale) or options.temperature_scale <= 0:
        yield ("options", "temperature_scale"), "must be a finite number above 0"
    if options.register.is_bits:
        yield ("options", "register"), 'must be "input" or "holding" (temperature is a register)'
    yield from _validate_mqtt_options(options)
    # the fields carry both forms: which one is read depends on the connection ``via`` names
    yield from validate_register_fields(device, options)
    yield from _validate_paths(device)


class ColdStorageMqttDriver(MqttJsonDriver):
    """The JSON form: the generic JSON driver on the kind's default topic."""

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(_topic(self.options, self.device), self.options.qos)]


def cold_storage_driver(ctx: DeviceContext) -> Driver:
    """Modbus or MQTT, by the type of the hub ``via`` names."""
    if isinstance(ctx.hub, MqttHub):
        return ColdStorageMqttDriver(ctx)
    return ModbusDriver(ctx)


# --- door ------------------------------------------------------------------------------------


@frozen
class DoorOptions:
    """``[device.options]`` of a ``door`` device: one door, its contact and interlock."""

    open_input: int = 0  # address of the door contact
    interlock_input: int | None = None  # address of the interlock signal; none: no interlock point
    #: false: the contact reads 1 when the door is open; true: 1 when it is closed (a
    #: closed-circuit contact, so a cut wire reads "open")
    invert: bool = False
    register: RegisterTable = RegisterTable.DISCRETE  # "discrete" (inputs) or "coil"
    address_base: int = 0  # 1 if open_input / interlock_input are written 1-based


def door_points(device: DeviceConfig, options: DoorOptions) -> list[FieldConfig]:
    table = options.register if options.register.is_bits else RegisterTable.DISCRETE
    points = [_register_point("open", None, table, max(options.open_input, 0))]
    if options.interlock_input is not None and options.interlock_input != options.open_input:
        points.append(_register_point("interlock", None, table, max(options.interlock_input, 0)))
    return points


def validate_door(device: DeviceConfig, options: DoorOptions) -> Problems:
    if not options.register.is_bits:
        yield ("options", "register"), 'must be "discrete" or "coil" (door signals are bits)'
    for key in ("open_input", "interlock_input"):
        value = getattr(options, key)
        if value is not None and not options.address_base <= value <= 65535:
            yield ("options", key), f"must be {options.address_base}..65535"
    if options.interlock_input is not None and options.interlock_input == options.open_input:
        yield ("options", "interlock_input"), "must differ from open_input"
    if options.address_base not in (0, 1):
        yield ("options", "address_base"), "must be 0 or 1"
    # the fields come from the options alone (a door field can only be named)


class DoorDriver(ModbusDriver):
    """Reads the contact bits; ``invert`` turns a closed-circuit contact into ``open``."""

    async def poll(self) -> list[Reading]:
        readings = await super().poll()
        if not self.ctx.options.invert:
            return readings
        return [
            _evolve_value(r, not r.value)
            if r.point == "open" and r.quality is Quality.GOOD and isinstance(r.value, bool)
            else r
            for r in readings
        ]


def _evolve_value(r: Reading, value: Value) -> Reading:
    return Reading(
        r.device, r.point, value, r.quality, r.receive_time, r.source_time, r.unit, r.detail
    )


# --- autoclave: phases and the cycle tracker -------------------------------------------------

#: a steam cycle's phases, in order; "aborted" can follow any running phase
PHASES = ("idle", "conditioning", "exposure", "exhaust", "drying", "complete", "aborted")
RUNNING = frozenset({"conditioning", "exposure", "exhaust", "drying"})
ENDED = frozenset({"complete", "aborted"})
RESULTS = ("pass", "fail")
_NEXT = {
    "idle": {"conditioning"},
    "conditioning": {"exposure", "aborted"},
    "exposure": {"exhaust", "aborted"},
    "exhaust": {"drying", "aborted"},
    "drying": {"complete", "aborted"},
    "complete": {"idle", "conditioning"},
    "aborted": {"idle", "conditioning"},
}


def transition_allowed(old: str, new: str) -> bool:
    """True for staying in a phase and for the steps of a cycle (idle -> conditioning ->
    exposure -> exhaust -> drying -> complete -> idle; any running phase -> aborted)."""
    return new == old or new in _NEXT.get(old, set())


@frozen
class CycleSample:
    """What one autoclave message says about the cycle (None: not in the message)."""

    phase: str
    at: float  # the device's timestamp, else the receive time
    cycle_id: str | None = None
    result: str | None = None
    f0: float | None = None
    temperature: float | None = None
    start: float | None = None  # the cycle's start as the device reports it
    end: float | None = None


@define
class CycleRecord:
    """One sterilisation cycle as floorctl saw it: what QA links to the loads it sterilised.

    Times are UNIX seconds (UTC): the device's own where its messages carry them.
    """

    cycle_id: str | None
    start: float | None
    end: float | None = None
    phase: str = "conditioning"  # the last phase seen: complete or aborted once ended
    result: str | None = None
    f0: float | None = None  # min, the last value of the cycle
    max_temperature: float | None = None  # °C, over the messages seen
    exposure_min_temperature: float | None = None  # °C, lowest during exposure
    exposure_start: float | None = None  # first exposure message
    exposure_end: float | None = None  # last exposure message
    #: False when floorctl first saw the cycle after it had started (restart, outage)
    seen_from_start: bool = True

    @property
    def exposure_seconds(self) -> float | None:
        if self.exposure_start is None or self.exposure_end is None:
            return None
        return self.exposure_end - self.exposure_start

    def add(self, s: CycleSample) -> None:
        if self.cycle_id is None and s.cycle_id is not None:
            self.cycle_id = s.cycle_id
        if s.start is not None:
            self.start = s.start
        self.phase = s.phase
        if s.f0 is not None:
            self.f0 = s.f0
        if s.temperature is not None:
            t = s.temperature
            top = self.max_temperature
            self.max_temperature = t if top is None else max(t, top)
            if s.phase == "exposure":
                low = self.exposure_min_temperature
                self.exposure_min_temperature = t if low is None else min(t, low)
        if s.phase == "exposure":
            if self.exposure_start is None:
                self.exposure_start = s.at
            self.exposure_end = s.at

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exposure_seconds": self.exposure_seconds}

    def describe(self) -> str:
        parts = [
            f"cycle {self.cycle_id or '?'} {self.phase}",
            f"result {self.result or 'unknown'}",
            f"start {_iso(self.start)}{'' if self.seen_from_start else ' (seen late)'}",
            f"end {_iso(self.end)}",
        ]
        if self.f0 is not None:
            parts.append(f"F0 {self.f0:.1f} min")
        if self.exposure_seconds is not None:
            parts.append(f"exposure {self.exposure_seconds / 60:.1f} min")
        if self.exposure_min_temperature is not None:
            parts.append(f"exposure min {self.exposure_min_temperature:.1f} °C")
        return ", ".join(parts)


def _iso(t: float | None) -> str:
    if t is None:
        return "?"
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


@frozen
class CycleChange:
    """What an update found: a cycle ``started``, ``ended``, or an ``unexpected`` transition."""

    kind: str
    record: CycleRecord | None
    detail: str


@define
class CycleTracker:
    """Follows one autoclave's phases; pure logic, fed one sample per message.

    A cycle starts at the first running phase (or when the cycle id changes while running)
    and ends at ``complete`` or ``aborted``. An end whose result is not in the message yet
    waits for the next message of that cycle; it is reported without a result when the next
    phase comes without one. A cycle that ended before floorctl first saw the device is
    never reported (the device's ``complete`` screen after a restart is not a new cycle).
    """

    phase: str | None = None
    current: CycleRecord | None = None
    closing: CycleRecord | None = None  # complete, waiting for its result

    def update(self, s: CycleSample) -> list[CycleChange]:
        out: list[CycleChange] = []
        prev = self.phase
        if self.closing is not None:
            c = self.closing
            same = s.cycle_id is None or s.cycle_id == c.cycle_id
            if s.result is not None and same:
                c.result = s.result
                out.append(self._ended(c))
            elif s.phase not in ENDED or not same:
                out.append(self._ended(c, "no result reported"))
        if prev is not None and not transition_allowed(prev, s.phase):
            out.append(CycleChange("unexpected", self.current, f"phase {prev} -> {s.phase}"))
        cur = self.current
        if (
            cur is not None
            and s.phase in RUNNING
            and None not in (s.cycle_id, cur.cycle_id)
            and s.cycle_id != cur.cycle_id
        ):
            cur.end = s.at
            out.append(self._ended(cur, "no end phase seen"))
            cur = None
        if s.phase in RUNNING:
            if cur is None:
                cur = CycleRecord(
                    cycle_id=s.cycle_id,
                    start=s.start if s.start is not None else s.at,
                    seen_from_start=prev is not None and prev not in RUNNING,
                )
                self.current = cur
                cur.add(s)
                out.append(CycleChange("started", cur, cur.describe()))
            else:
                cur.add(s)
        elif cur is not None:
            cur.add(s)
            cur.end = s.end if s.end is not None else s.at
            if s.phase == "aborted":
                cur.result = s.result or "fail"  # an aborted cycle never passes
                out.append(self._ended(cur))
            elif s.phase == "complete" and s.result is None:
                self.current, self.closing = None, cur
            elif s.phase == "complete":
                cur.result = s.result
                out.append(self._ended(cur))
            else:  # idle, with no end phase seen
                out.append(self._ended(cur, "no end phase seen"))
        self.phase = s.phase
        return out

    def _ended(self, record: CycleRecord, note: str = "") -> CycleChange:
        if self.closing is record:
            self.closing = None
        if self.current is record:
            self.current = None
        return CycleChange("ended", record, record.describe() + (f" ({note})" if note else ""))


# --- autoclave: kind and driver --------------------------------------------------------------

PRESSURE_UNITS = ("kPa", "bar")


@frozen
class AutoclaveOptions:
    """``[device.options]`` of an ``autoclave`` device: its controller's JSON messages."""

    state_topic: str | None = None  # default "equipment/<device id>"
    timestamp_path: str = "ts"  # where the controller's timestamp is; "" if it sends none
    #: unit of the absolute chamber pressure the controller sends: "kPa" or "bar"
    pressure_unit: str = "kPa"
    #: the controller's own phase words or numeric codes -> floorctl phases, e.g.
    #: { "STERILIZE" = "exposure", "3" = "exposure" }; matched without regard to case
    phase_names: dict[str, str] = field(factory=dict)
    max_payload: int = 65536
    qos: int = 1


#: (point, default path, unit, is a number)
_AUTOCLAVE_MAP: tuple[tuple[str, str, str | None, bool], ...] = (
    ("phase", "phase", None, False),
    ("temperature", "temperature", "°C", True),
    ("pressure", "pressure", "kPa", True),
    ("f0", "f0", "min", True),
    ("cycle_id", "cycle_id", None, False),
    ("result", "result", None, False),
    ("cycle_start", "cycle_start", None, False),
    ("cycle_end", "cycle_end", None, False),
)
_NUMERIC = frozenset(name for name, _, _, numeric in _AUTOCLAVE_MAP if numeric)


def _precision(point: str, pressure_unit: str) -> int | None:
    if point == "pressure":
        return 3 if pressure_unit == "bar" else 1
    return 2 if point in ("temperature", "f0") else None


def autoclave_points(device: DeviceConfig, options: AutoclaveOptions) -> list[FieldConfig]:
    pressure_unit = options.pressure_unit if options.pressure_unit in PRESSURE_UNITS else "kPa"
    return [
        FieldConfig(
            name=Ident(name),
            unit=pressure_unit if name == "pressure" else unit,
            path=path,
            precision=_precision(name, pressure_unit),
        )
        for name, path, unit, _ in _AUTOCLAVE_MAP
    ]


def validate_autoclave(device: DeviceConfig, options: AutoclaveOptions) -> Problems:
    yield from _one_of(options.pressure_unit, PRESSURE_UNITS, ("options", "pressure_unit"))
    for word, phase in options.phase_names.items():
        if phase not in PHASES:
            yield ("options", "phase_names", word), f"must be one of {', '.join(PHASES)}"
    yield from _validate_mqtt_options(options)
    yield from _validate_paths(device)
    for j, f in enumerate(device.fields):
        if f.name not in _NUMERIC and (f.scale != 1.0 or f.offset != 0.0):
            yield ("fields", j, "scale"), f"point {f.name!r} is not a number: no scale or offset"


class AutoclaveDriver(SubscribedDriver):
    """Parses the controller's JSON; follows its cycles with a :class:`CycleTracker`."""

    commands = {"cycles": "the cycles seen since floorctl started (id, start, end, result, F0)"}

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: AutoclaveOptions = ctx.options
        self._fields = [(f, parse_path(f.path)) for f in ctx.device.fields if f.path]
        ts = self.options.timestamp_path
        self._ts_path = parse_path(ts) if ts else None
        self._phase_names = {k.lower(): v for k, v in self.options.phase_names.items()}
        self.tracker = CycleTracker()
        #: ended cycles, newest last
        self.cycles: collections.deque[CycleRecord] = collections.deque(maxlen=100)

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(_topic(self.options, self.device), self.options.qos)]

    async def command(self, name: str, args: Mapping[str, Any]) -> str:
        if name != "cycles":
            return await super().command(name, args)
        if args:
            raise CommandError("cycles takes no arguments")
        records = [*self.cycles, *([self.tracker.current] if self.tracker.current else [])]
        return json.dumps([r.as_dict() for r in records])

    # --- parsing --------------------------------------------------------------------------

    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        doc = load_json_payload(payload, self.options.max_payload)
        if not isinstance(doc, dict):
            raise ValueError(f"payload is a JSON {type(doc).__name__}, not an object")
        source_time = None
        if self._ts_path is not None:
            try:
                source_time = parse_timestamp(lookup(doc, self._ts_path))
            except (LookupError, ValueError, OverflowError) as exc:
                self.ctx.counters.error(f"{topic}: timestamp: {exc}")
        readings = [self._reading(f, path, doc, source_time, received) for f, path in self._fields]
        by_point = {r.point: r for r in readings}
        phase = by_point.get("phase")
        if phase is not None and phase.quality is Quality.GOOD:
            self._follow(by_point, source_time if source_time is not None else received)
        return [self._judge(r, by_point) for r in readings]

    def _reading(
        self,
        f: FieldConfig,
        path: tuple[str | int, ...],
        doc: Any,
        source_time: float | None,
        received: float,
    ) -> Reading:
        device_id = self.device.id
        try:
            raw = lookup(doc, path)
            value = self._convert(f, raw)
        except (LookupError, ValueError, OverflowError) as exc:
            return Reading.bad(
                device_id, f.name, f"{f.path}: {exc}", unit=f.unit, receive_time=received
            )
        return Reading(device_id, f.name, value, Quality.GOOD, received, source_time, f.unit)

    def _convert(self, f: FieldConfig, raw: Any) -> Value:
        """One raw JSON value -> the point's value; ValueError says why it cannot be."""
        name = f.name
        if name in _NUMERIC:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                kind = "null" if raw is None else type(raw).__name__
                raise ValueError(f"expected a number, got {kind}")
            value = raw * f.scale + f.offset if (f.scale != 1.0 or f.offset != 0.0) else raw
            if not math.isfinite(value):
                raise ValueError("NaN" if math.isnan(value) else "infinite")
            return round(value, f.precision) if f.precision is not None else value
        if name == "phase":
            return self.phase_of(raw)
        if raw is None:  # no cycle yet, no verdict yet, not ended yet
            return None
        if name == "cycle_id":
            if isinstance(raw, bool) or not isinstance(raw, str | int):
                raise ValueError(f"expected a string, got {type(raw).__name__}")
            return str(raw)
        if name == "result":
            word = raw.lower() if isinstance(raw, str) else raw
            if word not in RESULTS:
                raise ValueError(f"expected pass, fail or null, got {raw!r}")
            return word
        if name in ("cycle_start", "cycle_end"):
            return parse_timestamp(raw)
        raise ValueError(f"no point {name!r}")  # pragma: no cover - the map is closed

    def phase_of(self, raw: Any) -> str:
        """A controller's phase word or code -> one of PHASES, or ValueError."""
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ValueError(f"phase must be a string or a code, got {type(raw).__name__}")
        word = str(raw).strip().lower()
        phase = self._phase_names.get(word, word)
        if phase not in PHASES:
            raise ValueError(f"unknown phase {raw!r} (map it in options.phase_names)")
        return phase

    def _judge(self, r: Reading, by_point: Mapping[str, Reading]) -> Reading:
        """An aborted phase and a failed result are faults the device reports."""
        if r.quality is not Quality.GOOD:
            return r
        cycle = by_point.get("cycle_id")
        name = f"cycle {cycle.value}" if cycle is not None and cycle.value else "the cycle"
        if r.point == "phase" and r.value == "aborted":
            return _with_quality(r, Quality.DEVICE_ERROR, f"{name} aborted")
        if r.point == "result" and r.value == "fail":
            return _with_quality(r, Quality.DEVICE_ERROR, f"{name} failed")
        return r

    # --- cycles ---------------------------------------------------------------------------

    def _follow(self, by_point: Mapping[str, Reading], at: float) -> None:
        def good(point: str) -> Any:
            r = by_point.get(point)
            return r.value if r is not None and r.quality is Quality.GOOD else None

        sample = CycleSample(
            phase=str(by_point["phase"].value),
            at=at,
            cycle_id=good("cycle_id"),
            result=good("result"),
            f0=good("f0"),
            temperature=good("temperature"),
            start=good("cycle_start"),
            end=good("cycle_end"),
        )
        for change in self.tracker.update(sample):
            self._report(change)

    def _report(self, change: CycleChange) -> None:
        device_id = self.device.id
        if change.kind == "started":
            self.ctx.log.info("%s: %s", device_id, change.detail)
        elif change.kind == "unexpected":
            self.ctx.log.warning("%s: unexpected %s", device_id, change.detail)
        elif change.kind == "ended" and change.record is not None:
            record = change.record
            self.cycles.append(record)
            # every finished cycle is an event (QA links it to the loads it sterilised);
            # an aborted or failed one is a device error too
            self.ctx.emit_event(Event(EventKind.CYCLE, device_id, change.detail))
            if record.phase == "aborted" or record.result == "fail":
                self.ctx.emit_event(Event(EventKind.DEVICE_ERROR, device_id, change.detail))
            self.ctx.log.info("%s: %s", device_id, change.detail)


def _with_quality(r: Reading, quality: Quality, detail: str) -> Reading:
    return Reading(
        r.device, r.point, r.value, quality, r.receive_time, r.source_time, r.unit, detail
    )


# --- registration ----------------------------------------------------------------------------


def kinds() -> Iterator[Kind]:
    yield Kind(
        name="bsc",
        driver=ModbusDriver,
        transport=Transport.MODBUS,
        options=BscOptions,
        description="biosafety cabinet or laminar-airflow hood: air velocities, fan, alarms",
        validate=validate_bsc,
        field_keys=MAP_MODBUS_FIELD_KEYS,
        points=bsc_points,
    )
    yield Kind(
        name="autoclave",
        driver=AutoclaveDriver,
        transport=Transport.MQTT,
        options=AutoclaveOptions,
        description="steam steriliser: cycle phase, temperature, pressure, F0, id and result",
        validate=validate_autoclave,
        field_keys=MAP_JSON_FIELD_KEYS,
        points=autoclave_points,
    )
    yield Kind(
        name="cold_storage",
        driver=cold_storage_driver,
        transport=Transport.MODBUS,
        alt_transports=frozenset({Transport.MQTT}),
        options=ColdStorageOptions,
        description="refrigerator or freezer: temperature, door, compressor (Modbus or MQTT)",
        validate=validate_cold_storage,
        field_keys=MAP_MODBUS_FIELD_KEYS | MAP_JSON_FIELD_KEYS,
        points=cold_storage_points,
    )
    yield Kind(
        name="door",
        driver=DoorDriver,
        transport=Transport.MODBUS,
        options=DoorOptions,
        description="one door contact and its interlock on Modbus discrete inputs",
        validate=validate_door,
        field_keys=frozenset({"name"}),
        points=door_points,
    )


@hookimpl
def floorctl_register_kinds(registry: KindRegistry) -> None:
    for kind in kinds():
        registry.add(kind)
