"""Generic device kinds: ``modbus`` (a register map in the config) and ``mqtt_json``.

Built in, but registered through the same ``floorctl_register_kinds`` hook as any plugin.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

from attrs import frozen

from floorctl import hookimpl
from floorctl.config import DeviceConfig, FieldConfig
from floorctl.decode import DataType, FieldDecoder, ReadBlock, plan_reads
from floorctl.driver import DeviceContext, PolledDriver, SubscribedDriver
from floorctl.hubs.modbus import ModbusDeviceError
from floorctl.kinds import Kind, KindRegistry, Problems, Transport
from floorctl.model import Quality, Reading

# --- modbus ----------------------------------------------------------------------------------

MODBUS_FIELD_KEYS = frozenset(
    {
        "name",
        "unit",
        "register",
        "address",
        "type",
        "byte_order",
        "scale",
        "offset",
        "sentinels",
        "deadband",
        "precision",
        "quantity",
        "limits",
    }
)


@frozen
class ModbusOptions:
    #: 1 if the register map is written 1-based (as many device manuals do); 0 = wire addresses
    address_base: int = 0


def validate_register_fields(device: DeviceConfig, options: Any) -> Problems:
    """Checks shared by every kind whose fields are Modbus registers."""
    base = getattr(options, "address_base", 0)
    if base not in (0, 1):
        yield ("options", "address_base"), "must be 0 or 1"
    if not device.fields:
        yield ("fields",), "a Modbus device needs at least one [[device.fields]] entry"
    for j, f in enumerate(device.fields):
        if f.register is None:
            yield ("fields", j, "register"), "required: one of holding, input, coil, discrete"
        if f.address is None:
            yield ("fields", j, "address"), "required"
        elif f.address < base:
            yield ("fields", j, "address"), f"must be at least {base} (address_base = {base})"
        if f.register is not None and not f.register.is_bits and f.type is None:
            yield (
                ("fields", j, "type"),
                "required for registers: INT16, UINT16, INT32, UINT32, FLOAT32 or FLOAT64",
            )
        if f.sentinels and f.type in (
            DataType.INT16,
            DataType.UINT16,
            DataType.INT32,
            DataType.UINT32,
        ):
            lo, hi = _int_range(f.type)
            for s in f.sentinels:
                if not (lo <= s <= hi) or s != int(s):
                    yield ("fields", j, "sentinels"), f"{s:g} cannot occur in a {f.type} register"


def _int_range(dtype: DataType) -> tuple[int, int]:
    return {
        DataType.INT16: (-(2**15), 2**15 - 1),
        DataType.UINT16: (0, 2**16 - 1),
        DataType.INT32: (-(2**31), 2**31 - 1),
        DataType.UINT32: (0, 2**32 - 1),
    }[dtype]


class ModbusDriver(PolledDriver):
    """Polls a register map: contiguous registers grouped into reads of at most 125 words."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        base = ctx.options.address_base if ctx.options is not None else 0
        fields = [f for f in ctx.device.fields if f.register is not None and f.address is not None]
        blocks = plan_reads([(f.register, int(f.address) - base, f.count) for f in fields])  # type: ignore[misc]
        # each block with its fields, each field's offset inside the block and its decoder
        # (prepared once: decoding is the hot path of every poll)
        self._plan: list[tuple[ReadBlock, list[tuple[FieldConfig, int, FieldDecoder]]]] = [
            (
                b,
                [
                    (
                        fields[m],
                        int(fields[m].address) - base - b.address,  # type: ignore[arg-type]
                        _decoder(fields[m], b.table.is_bits),
                    )
                    for m in b.members
                ],
            )
            for b in blocks
        ]
        self._unit = ctx.device.modbus_unit

    async def poll(self) -> list[Reading]:
        hub = self.ctx.hub
        out: list[Reading] = []
        device_id = self.device.id
        for block, members in self._plan:
            try:
                data = await hub.read(block.table, block.address, block.count, self._unit)
            except ModbusDeviceError as exc:
                # the device answered: it is alive but refuses this block
                self.ctx.counters.error(str(exc))
                now = time.time()
                out.extend(
                    Reading.bad(
                        device_id,
                        f.name,
                        str(exc),
                        unit=f.unit,
                        quality=Quality.DEVICE_ERROR,
                        receive_time=now,
                    )
                    for f, _, _ in members
                )
                continue
            now = time.time()
            for f, offset, decode in members:
                value, quality, detail = decode(data[offset : offset + f.count])
                out.append(Reading(device_id, f.name, value, quality, now, None, f.unit, detail))
        return out


def _decoder(f: FieldConfig, bits: bool) -> FieldDecoder:
    return FieldDecoder(
        f.type,
        f.byte_order,
        scale=f.scale,
        offset=f.offset,
        sentinels=f.sentinels,
        precision=f.precision,
        bits=bits,
    )


# --- mqtt_json -------------------------------------------------------------------------------

JSON_FIELD_KEYS = frozenset(
    {"name", "unit", "path", "scale", "offset", "deadband", "precision", "quantity", "limits"}
)


@frozen
class MqttJsonOptions:
    state_topic: str
    timestamp_path: str | None = None
    max_payload: int = 65536
    qos: int = 1


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(path: str) -> tuple[str | int, ...]:
    """``data.values[2].t`` -> ("data", "values", 2, "t")."""
    parts: list[str | int] = []
    pos = 0
    for m in _PATH_TOKEN.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            raise ValueError(f"bad path {path!r}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or pos != len(path):
        raise ValueError(f"bad path {path!r}: use dotted keys and [index], e.g. data.values[0]")
    return tuple(parts)


def lookup(doc: Any, path: tuple[str | int, ...]) -> Any:
    node = doc
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise LookupError(f"no element [{part}]")
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                raise LookupError(f"no key {part!r}")
            node = node[part]
    return node


def validate_json(device: DeviceConfig, options: MqttJsonOptions) -> Problems:
    if not options.state_topic or "#" in options.state_topic or "+" in options.state_topic:
        yield ("options", "state_topic"), "must be a topic without wildcards"
    if options.qos not in (0, 1, 2):
        yield ("options", "qos"), "must be 0, 1 or 2"
    if options.max_payload < 1:
        yield ("options", "max_payload"), "must be at least 1"
    if options.timestamp_path is not None:
        try:
            parse_path(options.timestamp_path)
        except ValueError as exc:
            yield ("options", "timestamp_path"), str(exc)
    if not device.fields:
        yield ("fields",), "an mqtt_json device needs at least one [[device.fields]] entry"
    for j, f in enumerate(device.fields):
        if f.path is None:
            yield ("fields", j, "path"), "required: where the value is in the JSON payload"
        else:
            try:
                parse_path(f.path)
            except ValueError as exc:
                yield ("fields", j, "path"), str(exc)


def load_json_payload(payload: bytes, max_payload: int) -> Any:
    """A device message's JSON document. Raises (ValueError, UnicodeDecodeError, a JSON
    error) on an oversized, non-UTF-8 or malformed payload: SubscribedDriver turns that into
    bad-quality readings and a counter."""
    if len(payload) > max_payload:
        raise ValueError(f"payload of {len(payload)} bytes exceeds max_payload {max_payload}")
    return json.loads(payload.decode("utf-8"))


def parse_timestamp(value: Any) -> float:
    """UNIX seconds or milliseconds, or an ISO 8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError("timestamp is a boolean")
    if isinstance(value, int | float):
        t = float(value)
        if not math.isfinite(t):
            raise ValueError("timestamp is not finite")
        return t / 1000.0 if t > 1e11 else t
    if isinstance(value, str):
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.timestamp()
    raise ValueError(f"timestamp has type {type(value).__name__}")


class MqttJsonDriver(SubscribedDriver):
    """JSON payloads on one topic, a value path per field, an optional source timestamp."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: MqttJsonOptions = ctx.options
        self._fields = [(f, parse_path(f.path)) for f in ctx.device.fields if f.path]
        self._ts_path = (
            parse_path(self.options.timestamp_path) if self.options.timestamp_path else None
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.options.state_topic, self.options.qos)]

    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        doc = load_json_payload(payload, self.options.max_payload)
        source_time = None
        if self._ts_path is not None:
            try:
                source_time = parse_timestamp(lookup(doc, self._ts_path))
            except (LookupError, ValueError) as exc:
                self.ctx.counters.error(f"{topic}: timestamp: {exc}")
        return list(self._values(doc, source_time, received))

    def _values(self, doc: Any, source_time: float | None, received: float) -> Iterator[Reading]:
        device_id = self.device.id
        for f, path in self._fields:
            try:
                raw = lookup(doc, path)
            except LookupError as exc:
                yield Reading.bad(
                    device_id, f.name, f"{f.path}: {exc}", unit=f.unit, receive_time=received
                )
                continue
            if isinstance(raw, bool):
                yield Reading(device_id, f.name, raw, Quality.GOOD, received, source_time, f.unit)
                continue
            if not isinstance(raw, int | float):
                kind = "null" if raw is None else type(raw).__name__
                yield Reading.bad(
                    device_id,
                    f.name,
                    f"{f.path}: expected a number, got {kind}",
                    unit=f.unit,
                    receive_time=received,
                )
                continue
            value = raw * f.scale + f.offset if (f.scale != 1.0 or f.offset != 0.0) else raw
            if isinstance(value, float) and not math.isfinite(value):
                yield Reading.bad(
                    device_id,
                    f.name,
                    f"{f.path}: {'NaN' if math.isnan(value) else 'infinite'}",
                    unit=f.unit,
                    receive_time=received,
                )
                continue
            if f.precision is not None:
                value = round(value, f.precision)
            yield Reading(device_id, f.name, value, Quality.GOOD, received, source_time, f.unit)


@hookimpl
def floorctl_register_kinds(registry: KindRegistry) -> None:
    registry.add(
        Kind(
            name="modbus",
            driver=ModbusDriver,
            transport=Transport.MODBUS,
            options=ModbusOptions,
            description="Modbus TCP device described by a register map in devices.toml",
            validate=validate_register_fields,
            field_keys=MODBUS_FIELD_KEYS,
        )
    )
    registry.add(
        Kind(
            name="mqtt_json",
            driver=MqttJsonDriver,
            transport=Transport.MQTT,
            options=MqttJsonOptions,
            description="device or gateway publishing JSON on an MQTT topic",
            validate=validate_json,
            field_keys=JSON_FIELD_KEYS,
        )
    )
