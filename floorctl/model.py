"""Values that cross task boundaries: readings, qualities, events.

Everything here is frozen; change a value with ``attrs.evolve``.
"""

from __future__ import annotations

import enum
import math
import time

from attrs import field, frozen

#: Version of every JSON payload floorctl publishes (docs/mqtt.md).
SCHEMA_VERSION = 1

Value = float | int | bool | str | None


class Quality(enum.StrEnum):
    """Quality of a reading, as published on the state topics."""

    GOOD = "good"
    STALE = "stale"  # no fresh value within the device's expiry window
    BAD = "bad"  # the input could not be turned into a value (payload, register, NaN, sentinel)
    DEVICE_ERROR = "device-error"  # the device itself reported a fault or an exception
    UNCERTAIN = "uncertain"  # a real value, not fit for a record (a balance's dynamic weight)

    @property
    def usable(self) -> bool:
        return self is Quality.GOOD


@frozen
class Reading:
    """One value of one point of one device.

    ``source_time`` is the device's own timestamp where it sends one, else None;
    ``receive_time`` is when floorctl got it (UNIX seconds, UTC).
    """

    device: str
    point: str
    value: Value
    quality: Quality
    receive_time: float = field(factory=time.time)
    source_time: float | None = None
    unit: str | None = None
    detail: str | None = None  # why the quality is not good, for people
    #: sent late from a device's buffer (store-and-forward): source_time says when it was true
    historical: bool = False

    @classmethod
    def bad(
        cls,
        device: str,
        point: str,
        detail: str,
        *,
        unit: str | None = None,
        quality: Quality = Quality.BAD,
        receive_time: float | None = None,
    ) -> Reading:
        return cls(
            device=device,
            point=point,
            value=None,
            quality=quality,
            receive_time=time.time() if receive_time is None else receive_time,
            unit=unit,
            detail=detail,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.device, self.point)

    def as_payload(self) -> dict[str, object]:
        """The JSON body of this reading's state topic (docs/mqtt.md)."""
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        return {
            "v": SCHEMA_VERSION,
            "device": self.device,
            "point": self.point,
            "value": value,
            "unit": self.unit,
            "quality": self.quality.value,
            "source_time": self.source_time,
            "receive_time": self.receive_time,
            "detail": self.detail,
            "historical": self.historical,
        }


class EventKind(enum.StrEnum):
    COMM_LOSS = "comm-loss"
    COMM_RESTORED = "comm-restored"
    DEVICE_ERROR = "device-error"
    HUB_DOWN = "hub-down"
    HUB_UP = "hub-up"
    QUEUE_OVERFLOW = "queue-overflow"
    DATA_GAP = "data-gap"  # a device's buffered samples filled (part of) an outage: detail says
    COMMAND = "command"  # a device command was run (or refused)
    CYCLE = "cycle"  # a process cycle (an autoclave run) ended: detail names it and its result
    DAEMON_START = "daemon-start"
    DAEMON_STOP = "daemon-stop"


@frozen
class Event:
    """Something that happened on the floor that is not a value: comm loss, recovery, overflow."""

    kind: EventKind
    source: str  # device id or connection name or "daemon"
    detail: str = ""
    time: float = field(factory=time.time)

    def as_payload(self) -> dict[str, object]:
        return {
            "v": SCHEMA_VERSION,
            "kind": self.kind.value,
            "source": self.source,
            "detail": self.detail,
            "time": self.time,
        }
