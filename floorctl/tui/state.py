"""The terminal's picture of the floor: pure state, updated from ``(topic, payload)`` pairs.

No Textual here. :meth:`FloorState.apply` takes every message of the daemon's state topics
(docs/mqtt.md) and marks what changed; the app redraws from :meth:`FloorState.take_changes` at
most a few times a second, however fast messages arrive. Derived views (a room's tile, the
alarm lists) are computed on demand from the configuration and the latest documents.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from attrs import define, field, frozen

from floorctl.config import Config, RoomConfig
from floorctl.limits import Quantity

#: ISA-18.2 / IEC 62682 names of the alarm states (docs/alarms.md)
STATE_NAMES: Mapping[str, str] = {
    "normal": "Normal",
    "unack": "Unacknowledged",
    "acked": "Acknowledged",
    "rtn-unack": "Returned to normal, unacknowledged",
    "latched-unack": "Latched, unacknowledged",
    "latched-ack": "Latched, acknowledged",
    "shelved": "Shelved",
    "suppressed": "Suppressed by design",
    "out-of-service": "Out of service",
    "cannot-evaluate": "Cannot evaluate (input lost)",
}
#: ISA-18.2's active set: these count as a room's active alarms
ACTIVE_STATES = frozenset({"unack", "acked", "rtn-unack", "latched-unack", "latched-ack"})
#: not shown to the operator: each gets its own list
HIDDEN_STATES = ("shelved", "suppressed", "out-of-service")
PRIORITY_RANK: Mapping[str | None, int] = {"high": 0, "medium": 1, "low": 2}
#: device states in which its points' values are not current
DEAD_DEVICE_STATES = frozenset({"comm-loss", "error", "disabled"})
#: the live samples kept per watched point (an hour at 1 Hz)
LIVE_SAMPLES = 3600

TOPIC_KINDS = ("points", "alarms", "devices", "rooms", "daemon", "stats", "events")


@frozen
class PointValue:
    """A point's last published state (``<prefix>/point/<device>/<point>``)."""

    device: str
    point: str
    value: Any
    unit: str | None
    quality: str
    receive_time: float | None
    detail: str | None = None

    @property
    def number(self) -> float | None:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        return float(v)


@frozen
class Alarm:
    """An alarm point's published state (``<prefix>/alarm/<device>/<point>``)."""

    device: str
    point: str
    room: str | None
    quantity: str | None
    state: str
    severity: str | None
    value: float | None
    last: Mapping[str, Any] | None
    time: float

    @property
    def id(self) -> str:
        return f"{self.device}/{self.point}"

    @property
    def priority(self) -> str | None:
        return None if self.last is None else self.last.get("priority")

    @property
    def since(self) -> float:
        """When the last transition happened (the publish time after a reconnect)."""
        t = None if self.last is None else self.last.get("time")
        return float(t) if isinstance(t, int | float) else self.time

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, self.state)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def sort_key(self) -> tuple[int, float, str]:
        """Priority (high first), then time (newest first)."""
        return (PRIORITY_RANK.get(self.priority, 3), -self.since, self.id)


@frozen
class DeviceStatus:
    """A device's published status (``<prefix>/device/<device>/status``)."""

    device: str
    name: str
    kind: str
    room: str | None
    via: str | None
    state: str
    since: float | None
    counters: Mapping[str, Any]
    time: float

    @property
    def last_reading_time(self) -> float | None:
        t = self.counters.get("last_reading_time")
        return float(t) if isinstance(t, int | float) else None


@frozen
class Reading:
    """One value of a tile: what it is, formatted, and whether it is current."""

    label: str
    text: str
    stale: bool
    quality: str | None = None


@frozen
class RoomView:
    """What a room's tile shows."""

    id: str
    name: str
    iso_class: str
    status: str  # ok, alert, action, no-data, out-of-service, unknown (nothing published yet)
    active_alarms: int
    readings: tuple[Reading, ...]
    units: tuple[RoomView, ...] = ()


@define
class FloorState:
    """The floor as the daemon last published it, plus what changed since the last redraw."""

    config: Config
    points: dict[tuple[str, str], PointValue] = field(factory=dict)
    alarms: dict[tuple[str, str], Alarm] = field(factory=dict)
    devices: dict[str, DeviceStatus] = field(factory=dict)
    rooms: dict[str, dict[str, Any]] = field(factory=dict)
    daemon: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    events: deque[dict[str, Any]] = field(factory=lambda: deque(maxlen=500))
    #: messages applied, and those that were not understood (bad JSON, unknown topic)
    applied: int = 0
    ignored: int = 0
    #: kinds changed since :meth:`take_changes` (see TOPIC_KINDS)
    changed: set[str] = field(factory=set)
    #: watched points (the selected room's): live (time, value) samples for the sparklines
    live: dict[tuple[str, str], deque[tuple[float, float]]] = field(factory=dict)
    _prefix: str = ""
    _device_room: dict[str, str | None] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._prefix = self.config.floor.prefix + "/"
        self._device_room = {d.id: d.room for d in self.config.devices}

    # --- updates ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self.changed)

    def take_changes(self) -> frozenset[str]:
        out = frozenset(self.changed)
        self.changed.clear()
        return out

    def apply_all(self, messages: Iterable[tuple[str, Any]]) -> None:
        for topic, payload in messages:
            self.apply(topic, payload)

    def apply(self, topic: str, payload: Any) -> None:
        """One message of the state topics. Anything not understood is counted and dropped:
        a terminal never fails on what a broker delivers."""
        if not topic.startswith(self._prefix):
            self.ignored += 1
            return
        parts = topic[len(self._prefix) :].split("/")
        if payload is not None and not isinstance(payload, dict):
            self.ignored += 1
            return
        try:
            kind = self._apply(parts, payload)
        except (KeyError, TypeError, ValueError):
            kind = None
        if kind is None:
            self.ignored += 1
            return
        self.applied += 1
        self.changed.add(kind)

    def _apply(self, parts: list[str], doc: dict[str, Any] | None) -> str | None:
        match parts:
            case ["point", device, point]:
                key = (device, point)
                if doc is None:
                    self.points.pop(key, None)
                    return "points"
                pv = PointValue(
                    device,
                    point,
                    doc.get("value"),
                    doc.get("unit"),
                    str(doc.get("quality") or "bad"),
                    _time(doc.get("receive_time")),
                    doc.get("detail"),
                )
                self.points[key] = pv
                samples = self.live.get(key)
                n = pv.number
                if samples is not None and n is not None and pv.quality == "good":
                    t = pv.receive_time or 0.0
                    if not samples or t >= samples[-1][0]:
                        samples.append((t, n))
                return "points"
            case ["alarm", device, point]:
                key = (device, point)
                if doc is None:
                    self.alarms.pop(key, None)
                    return "alarms"
                last = doc.get("last")
                value = doc.get("value")
                self.alarms[key] = Alarm(
                    device,
                    point,
                    doc.get("room") or self._device_room.get(device),
                    doc.get("quantity"),
                    str(doc["state"]),
                    doc.get("severity"),
                    float(value) if isinstance(value, int | float) else None,
                    last if isinstance(last, dict) else None,
                    _time(doc.get("time")) or 0.0,
                )
                return "alarms"
            case ["device", device, "status"]:
                if doc is None:
                    self.devices.pop(device, None)
                    return "devices"
                counters = doc.get("counters")
                self.devices[device] = DeviceStatus(
                    device,
                    str(doc.get("name") or ""),
                    str(doc.get("kind") or ""),
                    doc.get("room"),
                    doc.get("via"),
                    str(doc["state"]),
                    _time(doc.get("since")),
                    counters if isinstance(counters, dict) else {},
                    _time(doc.get("time")) or 0.0,
                )
                return "devices"
            case ["room", room, "status"]:
                if doc is None:
                    self.rooms.pop(room, None)
                else:
                    self.rooms[room] = doc
                return "rooms"
            case ["status"]:
                self.daemon = doc
                return "daemon"
            case ["stats"]:
                self.stats = doc
                return "stats"
            case ["events"]:
                if doc is not None:
                    self.events.append(doc)
                return "events"
        return None

    # --- live samples for sparklines ---------------------------------------------------------

    def watch(self, keys: Iterable[tuple[str, str]]) -> None:
        """Keep live samples of these points (and only these) from now on."""
        wanted = set(keys)
        for key in list(self.live):
            if key not in wanted:
                del self.live[key]
        for key in wanted:
            if key not in self.live:
                self.live[key] = deque(maxlen=LIVE_SAMPLES)
                pv = self.points.get(key)
                if pv is not None and pv.number is not None and pv.quality == "good":
                    self.live[key].append((pv.receive_time or 0.0, pv.number))

    def series(
        self,
        key: tuple[str, str],
        history: Iterable[tuple[float, float]],
        since: float,
        until: float,
        buckets: int,
    ) -> list[float]:
        """Averages per bucket of ``[since, until)``: the history query's buckets (start, avg)
        and this terminal's live samples merged; empty buckets are left out (a gap shows as
        a shorter line, never as a made-up value)."""
        width = (until - since) / buckets
        sums = [0.0] * buckets
        counts = [0] * buckets

        def bucket(t: float) -> int:  # tolerant of float error at bucket edges
            return math.floor((t - since) / width + 1e-6)

        for start, avg in history:
            i = bucket(start)
            if 0 <= i < buckets:
                sums[i] += avg
                counts[i] += 1
        samples = self.live.get(key, ())
        times = [t for t, _ in samples]
        first = bisect.bisect_left(times, since)
        filled = {i for i in range(buckets) if counts[i]}
        for t, v in list(samples)[first:]:
            i = bucket(t)
            if 0 <= i < buckets and i not in filled:
                sums[i] += v
                counts[i] += 1
        return [sums[i] / counts[i] for i in range(buckets) if counts[i]]

    # --- derived views -----------------------------------------------------------------------

    def is_stale(self, key: tuple[str, str]) -> bool:
        """Not current: published as not good, or its device lost contact."""
        pv = self.points.get(key)
        if pv is None or pv.quality != "good":
            return True
        dev = self.devices.get(key[0])
        return dev is not None and dev.state in DEAD_DEVICE_STATES

    def room_points(self, room: str, quantity: Quantity) -> list[tuple[str, str]]:
        return [
            (d.id, f.name)
            for d in self.config.devices
            if d.room == room and d.enabled
            for f in d.fields
            if f.quantity is quantity
        ]

    def room_status(self, room: str) -> str:
        doc = self.rooms.get(room)
        return str(doc.get("status")) if doc else "unknown"

    def active_alarms(self, room: str) -> int:
        return sum(1 for a in self.alarms.values() if a.room == room and a.active)

    def room_view(self, room: RoomConfig) -> RoomView:
        readings: list[Reading] = []
        for quantity, label in _TILE_QUANTITIES:
            for key in self.room_points(room.id, quantity):
                readings.append(self._reading(key, label, quantity, room))
        units = tuple(self.room_view(u) for u in self.config.rooms if u.within == room.id)
        return RoomView(
            room.id,
            room.name or room.id,
            _iso(room),
            self.room_status(room.id),
            self.active_alarms(room.id),
            tuple(readings),
            units,
        )

    def _reading(
        self, key: tuple[str, str], label: str, quantity: Quantity, room: RoomConfig
    ) -> Reading:
        pv = self.points.get(key)
        if quantity is Quantity.DIFFERENTIAL_PRESSURE and room.pressure_reference:
            label = f"{label} vs {room.pressure_reference}"
        if pv is None:
            return Reading(label, "no data", True, None)
        stale = self.is_stale(key)
        n = pv.number
        if n is None:
            text = "-"
        elif quantity is Quantity.DIFFERENTIAL_PRESSURE:
            text = f"{n:+.1f}"
        elif quantity in (Quantity.PARTICLES_0_5, Quantity.PARTICLES_5_0):
            text = f"{n:,.0f}"
        elif quantity in (Quantity.DOWNFLOW_VELOCITY, Quantity.INFLOW_VELOCITY):
            text = f"{n:.2f}"
        else:
            text = f"{n:.1f}"
        if pv.unit:
            text = f"{text} {pv.unit}"
        if stale:
            dev = self.devices.get(key[0])
            why = dev.state if dev is not None and dev.state in DEAD_DEVICE_STATES else pv.quality
            text = f"{text} STALE ({why})" if why != "good" else f"{text} STALE"
        return Reading(label, text, stale, pv.quality)

    def sorted_alarms(self, states: Iterable[str] | None = None) -> list[Alarm]:
        """Alarms not in ``normal`` (or in ``states``), by priority then time."""
        wanted = None if states is None else set(states)
        rows = [
            a
            for a in self.alarms.values()
            if (a.state in wanted if wanted is not None else a.state != "normal")
        ]
        return sorted(rows, key=Alarm.sort_key)

    def shown_alarms(self) -> list[Alarm]:
        return [a for a in self.sorted_alarms() if a.state not in HIDDEN_STATES]

    def iter_room_tiles(self) -> Iterator[RoomView]:
        """Top-level rooms (ISO 5 units appear inside their room's tile)."""
        for room in self.config.rooms:
            if room.within is None:
                yield self.room_view(room)


_TILE_QUANTITIES = (
    (Quantity.DIFFERENTIAL_PRESSURE, "dP"),
    (Quantity.TEMPERATURE, "T"),
    (Quantity.HUMIDITY, "RH"),
    (Quantity.PARTICLES_0_5, "≥0.5µm"),
    (Quantity.PARTICLES_5_0, "≥5.0µm"),
    (Quantity.DOWNFLOW_VELOCITY, "downflow"),
    (Quantity.INFLOW_VELOCITY, "inflow"),
)


def _iso(room: RoomConfig) -> str:
    return str(room.iso_class)


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
