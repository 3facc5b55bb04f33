"""devices.toml -> frozen attrs classes.

tomllib parses, ``${VAR}`` / ``${VAR:-default}`` are expanded from the environment, cattrs
structures each table into the classes below with strict hooks (a string is never silently
turned into a number), then cross-references are checked. Every problem is collected and
reported at once, each with its key path and, where one can be found, its line number.
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cattrs
from attrs import evolve, field, frozen
from attrs import fields as attrs_fields
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from floorctl.decode import ByteOrder, DataType, RegisterTable, find_overlaps, register_count
from floorctl.kinds import KindRegistry, Transport
from floorctl.limits import (
    LIMIT_KEYS,
    LimitConfig,
    PressureRegime,
    Quantity,
    check_order,
    resolve_limits,
)

PathT = tuple[str | int, ...]

# --- constrained scalar types ----------------------------------------------------------------
# Each is a plain int/float/str at run time; the cattrs hook for it checks the range, so an
# error lands on the exact key that is wrong.


class Duration(float):
    """Seconds, written in devices.toml as "500ms", "5s", "1m30s", "2h"."""

    def __repr__(self) -> str:
        return format_duration(self)


class Port(int):
    pass


class UnitId(int):
    pass


class Address(int):
    pass


class PositiveInt(int):
    pass


class Ident(str):
    """An id or name that is safe in an MQTT topic and a log line."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_duration(text: str) -> Duration:
    s = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(
            f'bad duration {text!r}: use a number and a unit, e.g. "500ms", "5s", "1m"'
        )
    return Duration(total)


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# --- the configuration classes ------------------------------------------------------------


class IsoClass(enum.Enum):
    ISO5 = 5
    ISO7 = 7
    ISO8 = 8
    UNCLASSIFIED = "unclassified"

    def __str__(self) -> str:
        return "unclassified" if self is IsoClass.UNCLASSIFIED else f"ISO {self.value}"


@frozen
class FloorConfig:
    """The ``[floor]`` table: the identity and publishing of the whole floor."""

    id: Ident = Ident("floor")
    name: str = ""
    state_via: Ident | None = None  # the [[mqtt]] connection the live floor is published on
    topic_prefix: str | None = None  # default "floorctl/<id>"
    republish: Duration = Duration(60.0)  # every point is published at least this often
    #: ordinary point updates go out in rounds this far apart (the latest value of each point
    #: that moved); quality changes never wait
    point_interval: Duration = Duration(0.5)
    #: QoS of ordinary point-state messages; quality changes, alarms and statuses are QoS 1
    point_qos: int = 0
    stats_interval: Duration = Duration(10.0)
    #: SQLite file of the floor's records (readings, events, alarms, audit trail); relative to
    #: devices.toml's folder; none: nothing is recorded
    store: str | None = None
    #: raw readings are kept this long, then rolled up to 1-minute min/avg/max
    raw_retention: Duration = Duration(90 * 86400.0)
    #: the site's alarm settings per quantity: [floor.alarms.differential_pressure]
    #: (docs/alarms.md); they replace the shipped defaults key by key
    alarms: dict[Quantity, dict[str, Any]] = field(factory=dict)

    @property
    def prefix(self) -> str:
        return self.topic_prefix or f"floorctl/{self.id}"

    def store_path(self, config_path: str | None) -> Path | None:
        if not self.store:
            return None
        path = Path(self.store)
        if not path.is_absolute() and config_path:
            path = Path(config_path).resolve().parent / path
        return path


@frozen
class MqttConnection:
    name: Ident
    host: str = "127.0.0.1"
    port: Port = Port(1883)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    keepalive: Duration = Duration(30.0)
    clean_session: bool = False  # persistent session: QoS 1 data queued while we reconnect
    max_queued_incoming: PositiveInt = PositiveInt(10000)
    reconnect_max: Duration = Duration(30.0)

    def __repr__(self) -> str:  # never print a password
        return f"MqttConnection(name={self.name!r}, host={self.host!r}, port={self.port})"


@frozen
class ModbusConnection:
    name: Ident
    host: str = "127.0.0.1"
    port: Port = Port(502)
    timeout: Duration = Duration(1.0)
    reconnect_max: Duration = Duration(30.0)


@frozen
class RoomConfig:
    id: Ident
    name: str = ""
    iso_class: IsoClass = IsoClass.UNCLASSIFIED
    #: positive, negative (hazardous drugs: a two-sided band) or neutral; decides the
    #: default differential-pressure limits
    pressure: PressureRegime | None = None
    pressure_reference: Ident | None = None
    #: the room an ISO 5 unit (a hood, an isolator) stands in
    within: Ident | None = None
    #: overrides of the default limits, per quantity: [room.limits.temperature]
    limits: dict[Quantity, LimitConfig] = field(factory=dict)


@frozen
class FieldConfig:
    """One point of a device. Which keys apply depends on the device's kind."""

    name: Ident
    unit: str | None = None
    # register-based kinds
    register: RegisterTable | None = None
    address: Address | None = None
    type: DataType | None = None
    byte_order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0
    sentinels: tuple[float, ...] = ()
    # JSON-based kinds
    path: str | None = None
    # publishing
    deadband: float = 0.0
    precision: int | None = None
    # limits: what the point measures (decides the defaults) and per-point overrides
    quantity: Quantity | None = None
    limits: LimitConfig | None = None
    #: this point's alarm settings (docs/alarms.md): alarm = { action_on_delay = "2m" }
    alarm: dict[str, Any] | None = None

    @property
    def count(self) -> int:
        if self.register is not None and self.register.is_bits:
            return 1
        return register_count(self.type or DataType.UINT16)


@frozen
class DeviceConfig:
    id: Ident
    kind: str
    via: Ident | None = None
    name: str = ""
    room: Ident | None = None
    interval: Duration = Duration(10.0)
    timeout: Duration | None = None  # default: half the interval, at most 5 s
    expire_after: Duration | None = None
    unit_id: UnitId | None = None
    enabled: bool = True
    fields: tuple[FieldConfig, ...] = ()
    #: raw; structured by the kind's options class into Config.device_options
    options: dict[str, Any] = field(factory=dict)
    #: read by simulators/ only
    simulate: dict[str, Any] = field(factory=dict)

    @property
    def request_timeout(self) -> float:
        return float(self.timeout) if self.timeout is not None else min(self.interval / 2, 5.0)

    @property
    def stale_after(self) -> float:
        """No value within this long means stale (and a comm-loss event)."""
        return max(3 * float(self.interval), float(self.expire_after or 0.0))

    @property
    def modbus_unit(self) -> int:
        return 1 if self.unit_id is None else int(self.unit_id)

    def get_field(self, name: str) -> FieldConfig | None:
        return next((f for f in self.fields if f.name == name), None)


class NotifyKind(enum.Enum):
    FILE = "file"  # append one JSON line per transition
    COMMAND = "command"  # run a program, the transition as JSON on its stdin


class AlarmPriority(enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@frozen
class NotifyConfig:
    """A ``[[notify]]`` table: one notification target for alarm transitions (docs/alarms.md,
    Notifications). Served by the built-in ``notify`` plugin through ``floorctl_on_alarm``."""

    name: Ident
    kind: NotifyKind
    path: str | None = None  # kind = "file": relative to devices.toml's folder
    command: tuple[str, ...] = ()  # kind = "command": argv, no shell
    #: the alarm states that notify: a transition INTO one of them (default: annunciations)
    states: tuple[str, ...] = ("unack",)
    min_priority: AlarmPriority = AlarmPriority.LOW
    rooms: tuple[Ident, ...] = ()  # only these rooms' alarms (default: all)
    timeout: Duration = Duration(10.0)  # kind = "command": killed after this long

    def file_path(self, config_path: str | None) -> Path | None:
        if not self.path:
            return None
        path = Path(self.path)
        if not path.is_absolute() and config_path:
            path = Path(config_path).resolve().parent / path
        return path


@frozen
class Config:
    floor: FloorConfig
    mqtt: tuple[MqttConnection, ...]
    modbus: tuple[ModbusConnection, ...]
    rooms: tuple[RoomConfig, ...]
    devices: tuple[DeviceConfig, ...]
    device_options: Mapping[str, Any]  # device id -> structured options object
    path: str | None = None
    sha256: str = ""
    notify: tuple[NotifyConfig, ...] = ()

    def connection(self, name: str | None) -> MqttConnection | ModbusConnection | None:
        for conn in (*self.mqtt, *self.modbus):
            if conn.name == name:
                return conn
        return None

    def device(self, device_id: str) -> DeviceConfig | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def room(self, room_id: str | None) -> RoomConfig | None:
        return next((r for r in self.rooms if r.id == room_id), None)

    @property
    def state_connection(self) -> MqttConnection:
        conn = self.connection(self.floor.state_via) if self.floor.state_via else None
        if isinstance(conn, MqttConnection):
            return conn
        return self.mqtt[0]


# --- problems -----------------------------------------------------------------------------


@frozen
class Problem:
    path: str
    message: str
    line: int | None = None

    def format(self, filename: str | None = None) -> str:
        where = filename or "devices.toml"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem], filename: str | None = None) -> None:
        self.problems = problems
        self.filename = filename
        super().__init__("\n".join(p.format(filename) for p in problems))


# --- strict cattrs converter ----------------------------------------------------------------


class _Expanded(str):
    """A string produced by ${VAR} expansion: may stand for a number or a boolean."""


def describe_value(value: object) -> str:
    """How a problem message names a TOML value: 'string \'x\'', 'number 5', 'a table'."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, _Expanded):
        try:
            return int(value)
        except ValueError:
            raise ValueError(
                f"expected an integer, got {describe_value(str(value))} (from ${{...}})"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {describe_value(value)}")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, _Expanded):
        try:
            return float(value)
        except ValueError:
            raise ValueError(
                f"expected a number, got {describe_value(str(value))} (from ${{...}})"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {describe_value(value)}")
    return float(value)


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {describe_value(value)}")
    return str(value)


def _strict_bool(value: object, _: type) -> bool:
    if isinstance(value, _Expanded) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {describe_value(value)}")
    return value


def _ranged(cls: type, lo: int, hi: int, what: str):
    def hook(value: object, _: type) -> int:
        n = _strict_int(value, int)
        if not lo <= n <= hi:
            raise ValueError(f"{what} must be {lo}..{hi}, got {n}")
        return cls(n)

    return hook


def _duration(value: object, _: type) -> Duration:
    if isinstance(value, bool) or not isinstance(value, str):
        raise TypeError(f'expected a duration string such as "5s", got {describe_value(value)}')
    return parse_duration(value)


def _ident(value: object, _: type) -> Ident:
    s = _strict_str(value, str)
    if not _IDENT.fullmatch(s):
        raise ValueError(
            f"{s!r} is not a valid id: use letters, digits, '_', '-', '.', at most 64 "
            "characters, starting with a letter or digit (ids appear in MQTT topics)"
        )
    return Ident(s)


def _enum(cls: type[enum.Enum], describe: str):
    choices = ", ".join(str(m.value) for m in cls)

    def hook(value: object, _: type) -> enum.Enum:
        if isinstance(value, str) and not isinstance(value, bool):
            for member in cls:
                if isinstance(member.value, str) and member.value.lower() == value.lower():
                    return member
        if isinstance(value, int) and not isinstance(value, bool):
            for member in cls:
                if member.value == value:
                    return member
        raise ValueError(f"{describe} must be one of {choices}; got {describe_value(value)}")

    return hook


def _plain_table(value: object, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {describe_value(value)}")
    return value


def make_converter() -> cattrs.Converter:
    """The strict converter used for devices.toml and for every kind's options class."""
    c = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    c.register_structure_hook(int, _strict_int)
    c.register_structure_hook(float, _strict_float)
    c.register_structure_hook(str, _strict_str)
    c.register_structure_hook(bool, _strict_bool)
    c.register_structure_hook(Duration, _duration)
    c.register_structure_hook(Port, _ranged(Port, 1, 65535, "port"))
    c.register_structure_hook(UnitId, _ranged(UnitId, 0, 255, "unit id"))
    c.register_structure_hook(Address, _ranged(Address, 0, 65535, "address"))
    c.register_structure_hook(PositiveInt, _ranged(PositiveInt, 1, 10_000_000, "value"))
    c.register_structure_hook(Ident, _ident)
    c.register_structure_hook(DataType, _enum(DataType, "type"))
    c.register_structure_hook(ByteOrder, _enum(ByteOrder, "byte_order"))
    c.register_structure_hook(RegisterTable, _enum(RegisterTable, "register"))
    c.register_structure_hook(IsoClass, _enum(IsoClass, "iso_class"))
    c.register_structure_hook(PressureRegime, _enum(PressureRegime, "pressure"))
    c.register_structure_hook(Quantity, _enum(Quantity, "quantity"))
    c.register_structure_hook(NotifyKind, _enum(NotifyKind, "kind"))
    c.register_structure_hook(AlarmPriority, _enum(AlarmPriority, "min_priority"))
    c.register_structure_hook_func(lambda t: t == dict[str, Any], _plain_table)
    return c


CONVERTER = make_converter()

#: keys that were moved elsewhere: the error says where
MOVED_KEYS: dict[tuple[str, str], str] = {
    ("MqttConnection", "qos"): "unknown key: the QoS of point state is [floor] point_qos now",
}


def structure_errors(exc: BaseException, path: PathT = ()) -> Iterator[tuple[PathT, str]]:
    """Flatten a cattrs validation error into (key path, message) pairs."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                yield from structure_errors(sub, (*path, note.name))
            elif isinstance(note, IterableValidationNote):
                yield from structure_errors(sub, (*path, note.index))
            else:
                yield from structure_errors(sub, path)
        for sub in without:
            yield from structure_errors(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            moved = MOVED_KEYS.get((getattr(exc.cl, "__name__", ""), key))
            yield (*path, key), moved or "unknown key"
    elif isinstance(exc, KeyError):
        yield path, "required key is missing"
    else:
        msg = str(exc)
        if isinstance(exc, TypeError) and "expected" not in msg:
            msg = f"wrong type ({msg})"
        yield path, msg


def structure_options(cls: type, raw: dict[str, Any]) -> tuple[Any, list[tuple[PathT, str]]]:
    """Structure a kind's ``[device.options]`` with the strict converter.

    On failure the errors come back with an object built from the keys that were fine (or
    None), so that the kind's own validation still runs on the rest.
    """
    return structure_pruned(cls, raw)


def structure_pruned(
    cls: type, raw: dict[str, Any], kept: dict[PathT, list[int]] | None = None
) -> tuple[Any, list[tuple[PathT, str]]]:
    """Structure ``raw``; on failure report every error, then retry without the values that
    failed, so that later checks still see the rest. A bad key inside an array element is
    left out of that element, which keeps its index; an element that is not a table, or whose
    required key failed, is dropped, and ``kept[(key,)]`` lists the file indices of the
    elements left."""
    try:
        return CONVERTER.structure(raw, cls), []
    except Exception as exc:  # every failure is a problem to report
        errors = list(structure_errors(exc))
    if any(not p for p, _ in errors):
        return None, errors
    drop: dict[str, set[int]] = defaultdict(set)
    for p, _ in errors:
        if _is_element(raw, p):
            drop[str(p[0])].add(int(p[1]))
    pruned = _without(raw, [p for p, _ in errors if not _is_element(raw, p)])
    for attempt in range(2):
        left = {k: [i for i in range(len(pruned[k])) if i not in idxs] for k, idxs in drop.items()}
        try:
            obj = CONVERTER.structure(
                {**pruned, **{k: [pruned[k][i] for i in ix] for k, ix in left.items()}}, cls
            )
        except Exception as exc:  # a required key failed
            again = [p for p, _ in structure_errors(exc)]
            if attempt or not all(
                len(p) > 1 and isinstance(p[1], int) and isinstance(pruned.get(p[0]), list)
                for p in again
            ):
                return None, errors
            for p in again:  # drop those elements (p[1] counts the elements left)
                key = str(p[0])
                drop[key].add(left.get(key, range(len(pruned[key])))[p[1]])
            continue
        if kept is not None:
            kept.update({(k,): ix for k, ix in left.items()})
        return obj, errors
    return None, errors


def _is_element(raw: dict[str, Any], p: PathT) -> bool:
    """``p`` names an array element that is not a table, or a whole element."""
    if len(p) < 2 or not isinstance(p[1], int) or not isinstance(raw.get(p[0]), list):
        return False
    return len(p) == 2 or not isinstance(raw[p[0]][p[1]], dict)


_DROP = object()


def _without(raw: Any, paths: Iterable[PathT]) -> Any:
    """A copy of ``raw`` without the values at ``paths``."""

    def mark(node: Any, p: PathT) -> Any:
        if not p:
            return _DROP
        head, rest = p[0], p[1:]
        if isinstance(node, dict) and head in node:
            return {**node, head: mark(node[head], rest)}
        if isinstance(node, list) and isinstance(head, int) and head < len(node):
            return [mark(v, rest) if i == head else v for i, v in enumerate(node)]
        return node

    def sweep(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: sweep(v) for k, v in node.items() if v is not _DROP}
        if isinstance(node, list):
            return [sweep(v) for v in node if v is not _DROP]
        return node

    for p in paths:
        raw = mark(raw, p)
    return sweep(raw)


# --- ${VAR} expansion ----------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(
    data: Any, env: Mapping[str, str], path: PathT = ()
) -> tuple[Any, list[tuple[PathT, str]]]:
    problems: list[tuple[PathT, str]] = []

    def walk(node: Any, p: PathT) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*p, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*p, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:

            def sub(m: re.Match[str]) -> str:
                name, default = m.group(1), m.group(2)
                if env.get(name):
                    return env[name]
                if default is not None:
                    return default  # unset or empty, as in the shell
                if name in env:
                    return ""
                problems.append((p, f"environment variable {name} is not set"))
                return ""

            return _Expanded(_VAR.sub(sub, node))
        return node

    return walk(data, path), problems


# --- line numbers --------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*(?:\.\s*[A-Za-z0-9_\-\"]+\s*)*=")


def line_index(text: str) -> dict[PathT, int]:
    """Map table and key paths (with array indices) to the line they are written on."""
    index: dict[PathT, int] = {}
    counts: dict[PathT, int] = defaultdict(int)
    current: PathT = ()
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            names = [n.strip().strip("\"'") for n in m.group(2).split(".")]
            is_array = m.group(1) == "[["
            path: PathT = ()
            for depth, name in enumerate(names):
                path = (*path, name)
                last = depth == len(names) - 1
                if last and is_array:
                    index.setdefault(path, lineno)  # [[devices]] -> ("devices",)
                    counts[path] += 1
                    path = (*path, counts[path] - 1)
                    # a new array element restarts the counts of the arrays nested in it
                    for key in [k for k in counts if k[: len(path)] == path and len(k) > len(path)]:
                        del counts[key]
                elif not last and path in counts:
                    path = (*path, counts[path] - 1)
            current = path
            index.setdefault(current, lineno)
            continue
        m = _KEY.match(line)
        if m:
            index.setdefault((*current, m.group(1).strip('"')), lineno)
    return index


def _find_line(index: Mapping[PathT, int], path: PathT) -> int | None:
    for n in range(len(path), 0, -1):
        if path[:n] in index:
            return index[path[:n]]
    return None


# --- loading -------------------------------------------------------------------------------

_SECTIONS: dict[str, tuple[type, bool]] = {
    # key: (class, is an array of tables)
    "floor": (FloorConfig, False),
    "mqtt": (MqttConnection, True),
    "modbus": (ModbusConnection, True),
    "room": (RoomConfig, True),
    "device": (DeviceConfig, True),
    "notify": (NotifyConfig, True),
}


class _Collector:
    def __init__(self, raw: dict[str, Any], index: Mapping[PathT, int]) -> None:
        self.raw = raw
        self.index = index
        self.items: list[tuple[PathT, str]] = []
        # paths whose value failed (structuring, ${VAR}): nothing more is said about them
        self.failed: set[PathT] = set()
        # array path -> file indices of the elements that were structured
        self.kept: dict[PathT, list[int]] = {}

    def raw_path(self, path: PathT) -> PathT:
        """Indices into structured arrays (some elements dropped) -> indices in the file."""
        out = list(path)
        for n in range(1, len(out)):
            kept = self.kept.get(tuple(out[:n]))
            if kept is not None and isinstance(out[n], int) and out[n] < len(kept):
                out[n] = kept[out[n]]
        return tuple(out)

    def add(self, path: PathT, message: str) -> None:
        path = self.raw_path(path)
        if path not in self.failed:
            self.items.append((path, message))

    def extend(self, prefix: PathT, problems: Iterable[tuple[PathT, str]]) -> None:
        for path, message in problems:
            self.add((*prefix, *path), message)

    def pretty(self, path: PathT) -> str:
        """device.3.fields.1.type -> device[ahu-03].fields[dp].type"""
        out: list[str] = []
        node: Any = self.raw
        for part in path:
            if isinstance(part, int):
                label: object = part
                item = node[part] if isinstance(node, list) and part < len(node) else None
                if isinstance(item, dict):
                    ident = item.get("id", item.get("name"))
                    if isinstance(ident, str) and ident:
                        label = ident
                out.append(f"[{label}]")
                node = item
            else:
                out.append(f".{part}" if out else str(part))
                node = node.get(part) if isinstance(node, dict) else None
        return "".join(out)

    def problems(self) -> list[Problem]:
        seen: set[tuple[str, str]] = set()
        result = []
        for path, message in self.items:
            pretty = self.pretty(path)
            if (pretty, message) in seen:
                continue
            seen.add((pretty, message))
            result.append(Problem(pretty, message, _find_line(self.index, path)))
        return sorted(result, key=lambda p: (p.line or 0, p.path))


def load_config(
    path: str | os.PathLike[str],
    kinds: KindRegistry,
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read and check a devices.toml; raise ConfigError listing every problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [Problem("", f"cannot read file: {exc.strerror or exc}")], str(p)
        ) from None
    return parse_config(data, kinds, env=env, filename=str(p))


def parse_config(
    data: bytes,
    kinds: KindRegistry,
    *,
    env: Mapping[str, str] | None = None,
    filename: str | None = None,
) -> Config:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")], filename
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(
            [Problem("", f"TOML syntax error: {msg}", int(m.group(1)) if m else None)], filename
        ) from None

    problems = _Collector(raw, line_index(text))
    expanded, env_problems = expand_env(raw, os.environ if env is None else env)
    problems.extend((), env_problems)
    problems.failed.update(p for p, _ in env_problems)

    sections: dict[str, Any] = {}
    for key in expanded:
        if key not in _SECTIONS:
            problems.add((key,), f"unknown section (expected one of {', '.join(_SECTIONS)})")
    for key, (cls, is_array) in _SECTIONS.items():
        value = expanded.get(key)
        if not is_array:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                problems.add((key,), f"must be a table [{key}]")
                value = {}
            sections[key] = _structure_one(cls, value, (key,), problems) or cls()
            continue
        items = []
        if value is None:
            value = []
        if not isinstance(value, list):
            problems.add((key,), f"must be an array of tables [[{key}]]")
            value = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                problems.add((key, i), f"must be a table, got {describe_value(item)}")
                continue
            obj = _structure_one(cls, item, (key, i), problems)
            items.append((i, obj))
        sections[key] = items

    device_options = _check(sections, kinds, problems, expanded)
    found = problems.problems()
    if found:
        raise ConfigError(found, filename)
    config = Config(
        floor=sections["floor"],
        mqtt=tuple(o for _, o in sections["mqtt"] if o),
        modbus=tuple(o for _, o in sections["modbus"] if o),
        rooms=tuple(o for _, o in sections["room"] if o),
        devices=tuple(o for _, o in sections["device"] if o),
        device_options=device_options,
        path=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        notify=tuple(o for _, o in sections["notify"] if o),
    )
    _check_resolved_limits(config, kinds, sections, problems)
    found = problems.problems()
    if found:
        raise ConfigError(found, filename)
    return config


def _check_resolved_limits(
    config: Config, kinds: KindRegistry, sections: dict[str, Any], problems: _Collector
) -> None:
    """Overrides are checked alone in _check; here the layers together (a room override of one
    limit can cross a default it inherits). Reported at the most specific override."""
    device_index = {d.id: i for i, d in sections["device"] if d}
    room_index = {r.id: i for i, r in sections["room"] if r}
    for (device_id, point), pl in resolve_limits(config, kinds).items():
        why = check_order({k: pl.get(k).value for k in LIMIT_KEYS})
        if not why:
            continue
        d = config.device(device_id)
        room = config.room(d.room) if d is not None else None
        assert d is not None
        i = device_index[device_id]
        j = next(j for j, ff in enumerate(d.fields) if ff.name == point)
        path: PathT = ("device", i, "fields", j)
        if d.fields[j].limits is not None:
            path = (*path, "limits")
        elif room is not None and pl.quantity in room.limits:
            path = ("room", room_index[room.id], "limits", pl.quantity.value)
        problems.add(path, f"with the limits {device_id}/{point} inherits: {why}")


def _structure_one(cls: type, raw: dict[str, Any], path: PathT, problems: _Collector) -> Any:
    kept: dict[PathT, list[int]] = {}
    obj, errors = structure_pruned(cls, raw, kept)
    problems.extend(path, errors)
    problems.failed.update((*path, *p) for p, _ in errors)
    problems.kept.update({(*path, *k): v for k, v in kept.items()})
    return obj


def _duplicates(items: Iterable[tuple[PathT, str]], what: str, problems: _Collector) -> None:
    first: dict[str, PathT] = {}
    for path, ident in items:
        if ident in first:
            first_path = problems.raw_path(first[ident])
            line = _find_line(problems.index, first_path)
            where = f"line {line}" if line is not None else problems.pretty(first_path)
            problems.add(path, f"duplicate {what} {ident!r} (first defined on {where})")
        else:
            first[ident] = path


_ALARM_STATES = (
    "normal", "unack", "acked", "rtn-unack", "latched-unack", "latched-ack", "shelved",
    "suppressed", "out-of-service", "cannot-evaluate",
)  # fmt: skip


def _check_notify(sections: dict[str, Any], problems: _Collector, expanded: dict[str, Any]) -> None:
    targets = [(i, n) for i, n in sections["notify"] if n]
    _duplicates([(("notify", i, "name"), n.name) for i, n in targets], "notify name", problems)
    room_ids = {r.id for _, r in sections["room"] if r} | set(_raw_ids(expanded, "room", "id"))
    for i, n in targets:
        if n.kind is NotifyKind.FILE:
            if not n.path:
                problems.add(("notify", i), 'kind = "file" needs path (the file to append to)')
            if n.command:
                problems.add(("notify", i, "command"), 'only for kind = "command"')
        else:
            if not n.command or not n.command[0]:
                problems.add(
                    ("notify", i),
                    'kind = "command" needs command = ["program", "arg", ...] (no shell)',
                )
            if n.path:
                problems.add(("notify", i, "path"), 'only for kind = "file"')
        for j, state in enumerate(n.states):
            if state not in _ALARM_STATES:
                problems.add(
                    ("notify", i, "states", j),
                    f"{state!r} is not an alarm state ({', '.join(_ALARM_STATES)})",
                )
        for j, room in enumerate(n.rooms):
            if room not in room_ids:
                problems.add(("notify", i, "rooms", j), f"no [[room]] with id {room!r}")


def _check(
    sections: dict[str, Any], kinds: KindRegistry, problems: _Collector, expanded: dict[str, Any]
) -> dict[str, Any]:
    floor: FloorConfig = sections["floor"]
    mqtt = [(i, c) for i, c in sections["mqtt"] if c]
    modbus = [(i, c) for i, c in sections["modbus"] if c]
    rooms = [(i, r) for i, r in sections["room"] if r]
    devices = [(i, d) for i, d in sections["device"] if d]
    _check_notify(sections, problems, expanded)

    _duplicates(
        [(("mqtt", i, "name"), c.name) for i, c in mqtt]
        + [(("modbus", i, "name"), c.name) for i, c in modbus],
        "connection name",
        problems,
    )
    _duplicates([(("room", i, "id"), r.id) for i, r in rooms], "room id", problems)
    _duplicates([(("device", i, "id"), d.id) for i, d in devices], "device id", problems)

    # Names come from the raw tables too, so one bad [[mqtt]] key does not make every
    # device that uses it report "unknown connection" as well.
    conns: dict[str, Transport] = {n: Transport.MQTT for n in _raw_ids(expanded, "mqtt", "name")}
    conns.update({n: Transport.MODBUS for n in _raw_ids(expanded, "modbus", "name")})
    room_ids = {r.id for _, r in rooms} | set(_raw_ids(expanded, "room", "id"))

    for i, c in mqtt:
        if (c.cert_file is None) != (c.key_file is None):
            problems.add(("mqtt", i), "cert_file and key_file go together")
        if not c.tls and (c.ca_file or c.cert_file or c.tls_insecure):
            problems.add(("mqtt", i, "tls"), "TLS settings are given but tls = false")
        raw_password = _raw_get(problems.raw, ("mqtt", i, "password"))
        if isinstance(raw_password, str) and raw_password and "${" not in raw_password:
            problems.add(
                ("mqtt", i, "password"),
                'write the password as "${VARIABLE}": secrets never live in devices.toml',
            )

    if not mqtt and not _raw_ids(expanded, "mqtt", "name"):
        problems.add(
            (), "no [[mqtt]] connection: the live floor is published on MQTT, so one is needed"
        )
    if floor.state_via is not None and conns.get(floor.state_via) is not Transport.MQTT:
        problems.add(
            ("floor", "state_via"),
            f"{floor.state_via!r} is not an [[mqtt]] connection"
            + (f" (known: {', '.join(sorted(c.name for _, c in mqtt))})" if mqtt else ""),
        )
    if floor.point_qos not in (0, 1, 2):
        problems.add(("floor", "point_qos"), f"must be 0, 1 or 2, got {floor.point_qos}")
    limit = Duration(min(floor.republish, 60.0))
    if not 0 <= floor.point_interval <= limit:
        problems.add(
            ("floor", "point_interval"),
            f"must be from 0s to {limit!r} (republish, and at most 1m),"
            f" got {floor.point_interval!r}",
        )
    if floor.topic_prefix is not None and (
        not floor.topic_prefix
        or any(ch in floor.topic_prefix for ch in "+#")
        or floor.topic_prefix.endswith("/")
    ):
        problems.add(
            ("floor", "topic_prefix"), "must be a topic without wildcards or a trailing '/'"
        )

    for i, r in rooms:
        if r.pressure_reference is not None:
            if r.pressure_reference == r.id:
                problems.add(
                    ("room", i, "pressure_reference"), "a room cannot be its own pressure reference"
                )
            elif r.pressure_reference not in room_ids:
                problems.add(
                    ("room", i, "pressure_reference"), f"unknown room {r.pressure_reference!r}"
                )

    for quantity, settings in floor.alarms.items():
        if why := alarm_settings_problem(settings):
            problems.add(("floor", "alarms", quantity.value), why)

    rooms_by_id = {r.id: r for _, r in rooms}
    for i, r in rooms:
        if r.within is not None:
            if r.within == r.id:
                problems.add(("room", i, "within"), "a room cannot stand within itself")
            elif r.within not in room_ids:
                problems.add(("room", i, "within"), f"unknown room {r.within!r}")
            elif (outer := rooms_by_id.get(r.within)) is not None and outer.within is not None:
                problems.add(
                    ("room", i, "within"),
                    f"{r.within!r} stands within {outer.within!r} itself: one level only "
                    "(an ISO 5 unit within a room)",
                )
        for quantity, table in r.limits.items():
            why = check_order(dict(table.items()))
            if why:
                problems.add(("room", i, "limits", quantity.value), why)

    device_options: dict[str, Any] = {}
    merged: dict[int, DeviceConfig] = {}  # devices completed from their kind's point map
    # (via, unit, table) -> [(device index, field index, start, count)] for overlap checks
    register_users: dict[tuple[str, int, RegisterTable], list[tuple[int, int, int, int]]] = (
        defaultdict(list)
    )
    for i, d in devices:
        base: PathT = ("device", i)
        kind = kinds.get(d.kind)
        if kind is None:
            problems.add(
                (*base, "kind"),
                f"unknown kind {d.kind!r} (known: {', '.join(kinds.names()) or 'none'}; "
                "see `floorctl plugins`)",
            )
        if d.room is not None and d.room not in room_ids:
            problems.add((*base, "room"), f"unknown room {d.room!r}")
        if d.interval <= 0:
            problems.add((*base, "interval"), "must be longer than 0s")
        if d.timeout is not None and d.timeout >= d.interval:
            problems.add(
                (*base, "timeout"),
                f"timeout ({format_duration(d.timeout)}) must be shorter than interval "
                f"({format_duration(d.interval)})",
            )
        if d.via is not None and d.via not in conns:
            problems.add(
                (*base, "via"),
                f"unknown connection {d.via!r} (known: {', '.join(sorted(conns)) or 'none'})",
            )
        _duplicates(
            [((*base, "fields", j, "name"), f.name) for j, f in enumerate(d.fields)],
            "field name",
            problems,
        )
        if kind is not None:
            if kind.transport is Transport.NONE:
                if d.via is not None:
                    problems.add(
                        (*base, "via"), f"kind {d.kind!r} opens its own connection; remove via"
                    )
            elif d.via is None:
                problems.add(
                    (*base, "via"),
                    f"kind {d.kind!r} needs an {_needs(kind.transports)} connection",
                )
            elif d.via in conns and conns[d.via] not in kind.transports:
                problems.add(
                    (*base, "via"),
                    f"{d.via!r} is an [[{conns[d.via]}]] connection; "
                    f"kind {d.kind!r} needs {_needs(kind.transports)}",
                )
            if d.unit_id is not None and (
                Transport.MODBUS not in kind.transports
                or (d.via in conns and conns[d.via] is not Transport.MODBUS)
            ):
                problems.add(
                    (*base, "unit_id"), f"unit_id applies to Modbus devices, not kind {d.kind!r}"
                )
            for j, f in enumerate(d.fields):
                for key in _set_field_keys(f):
                    if key not in kind.field_keys and key not in UNIVERSAL_FIELD_KEYS:
                        problems.add(
                            (*base, "fields", j, key), f"not a field key of kind {d.kind!r}"
                        )
            options = _structure_one(kind.options, d.options, (*base, "options"), problems)
            if options is not None and kind.points is not None:
                d = _merge_points(d, kind.name, kind.points(d, options), base, problems)
                merged[i] = d
            if options is not None:
                device_options[d.id] = options
                if kind.validate is not None:
                    try:
                        problems.extend(base, kind.validate(d, options))
                    except Exception as exc:
                        problems.add(base, f"kind {d.kind!r} failed to validate: {exc!r}")
        # register fields: well-formed, and no two reads of one register
        regs = [
            (j, f)
            for j, f in enumerate(d.fields)
            if f.register is not None and f.address is not None
        ]
        for j, f in regs:
            if (
                f.register is not None
                and f.register.is_bits
                and f.type not in (None, DataType.BOOL)
            ):
                problems.add(
                    (*base, "fields", j, "type"), f"{f.register} values are single bits (BOOL)"
                )
            if f.register is not None and not f.register.is_bits and f.type is DataType.BOOL:
                problems.add(
                    (*base, "fields", j, "type"), 'BOOL needs register = "coil" or "discrete"'
                )
            if f.address is not None and f.address + f.count > 65536:
                problems.add((*base, "fields", j, "address"), "register range runs past 65535")
            if (
                d.via is not None
                and conns.get(d.via) is Transport.MODBUS
                and f.register is not None
            ):
                register_users[(d.via, d.modbus_unit, f.register)].append(
                    (i, j, int(f.address), f.count)
                )
        for j, f in enumerate(d.fields):
            if not math.isfinite(f.scale) or f.scale == 0:
                problems.add((*base, "fields", j, "scale"), "must be a finite, non-zero number")
            if f.deadband < 0:
                problems.add((*base, "fields", j, "deadband"), "must be 0 or more")
            if f.limits is not None and (why := check_order(dict(f.limits.items()))):
                problems.add((*base, "fields", j, "limits"), why)
            if f.alarm is not None and (why := alarm_settings_problem(f.alarm)):
                problems.add((*base, "fields", j, "alarm"), why)

    if merged:
        sections["device"] = [(i, merged.get(i, d)) for i, d in sections["device"]]
    for (via, unit, table), users in register_users.items():
        items = [(table, start, count) for _, _, start, count in users]
        for a, b in find_overlaps(items):
            di, fj, start, count = users[a]
            dk, fl, start2, count2 = users[b]
            other = problems.pretty(problems.raw_path(("device", di, "fields", fj)))
            problems.add(
                ("device", dk, "fields", fl, "address"),
                f"{table} registers {start2}..{start2 + count2 - 1} overlap "
                f"{other} ({start}..{start + count - 1}) "
                f"on {via!r} unit {unit}",
            )
    return device_options


#: field keys every kind accepts, whatever its own field_keys say
UNIVERSAL_FIELD_KEYS = frozenset({"alarm"})


def alarm_settings_problem(settings: Mapping[str, Any]) -> str | None:
    """Why a table of alarm settings is wrong (unknown key, bad value), or None."""
    from floorctl.alarms.engine import check_settings

    try:
        check_settings(settings)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _needs(transports: frozenset[Transport]) -> str:
    return " or ".join(f"[[{t}]]" for t in sorted(transports))


def _merge_points(
    d: DeviceConfig,
    kind_name: str,
    points: Iterable[FieldConfig],
    base: PathT,
    problems: _Collector,
) -> DeviceConfig:
    """Complete a device from its kind's point map: no fields listed means every point; a
    listed field must name a point and overrides the keys it sets."""
    by_name = {p.name: p for p in points}
    if not d.fields:
        return evolve(d, fields=tuple(by_name.values()))
    fields = []
    for j, f in enumerate(d.fields):
        point = by_name.get(f.name)
        if point is None:
            problems.add(
                (*base, "fields", j, "name"),
                f"kind {kind_name!r} has no point {f.name!r} (it has: {', '.join(by_name)})",
            )
            continue
        fields.append(evolve(point, **{k: getattr(f, k) for k in _set_field_keys(f)}))
    return evolve(d, fields=tuple(fields))


def _raw_ids(raw: Any, section: str, key: str) -> list[str]:
    items = raw.get(section) if isinstance(raw, dict) else None
    if not isinstance(items, list):
        return []
    return [i[key] for i in items if isinstance(i, dict) and isinstance(i.get(key), str)]


def _raw_get(raw: Any, path: PathT) -> Any:
    node = raw
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def _set_field_keys(f: FieldConfig) -> Iterator[str]:
    """Keys of a field that differ from their defaults (i.e. that were written)."""
    defaults = FieldConfig(name=f.name)
    for a in attrs_fields(FieldConfig):
        if getattr(f, a.name) != getattr(defaults, a.name):
            yield a.name
