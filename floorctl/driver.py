"""The driver side of a device kind.

A driver is an async object built by ``Kind.driver(ctx)`` for one configured device. The daemon
calls ``await driver.start()``, then iterates ``driver.readings()`` (an async iterator of lists
of readings) for as long as the floor runs, and finally ``await driver.stop()``. Commands
(tare, zero, ...) arrive through ``await driver.command(name, args)``.

Two bases cover most devices:

- ``PolledDriver``: implement ``async poll() -> list[Reading]``; the base runs a fixed-rate
  schedule (no drift, missed ticks skipped and counted), applies the device's timeout and
  records poll-start jitter.
- ``SubscribedDriver``: implement ``subscriptions()`` and ``parse(topic, payload, received)``;
  the base subscribes through the MQTT hub and yields whatever parse returns. A parse that
  raises becomes a bad-quality reading per field and a counter, never a crash.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import define, field

from floorctl.model import Event, Quality, Reading

if TYPE_CHECKING:
    from floorctl.config import DeviceConfig, RoomConfig


class DeviceUnavailable(Exception):
    """The device could not be reached (connection refused, timeout, hub down)."""


class CommandError(Exception):
    """A command was refused; the message says why."""


@define
class DeviceCounters:
    """Per-device counters, published on the device status topic."""

    readings: int = 0
    bad: int = 0  # readings whose quality is not good
    errors: int = 0  # polls or messages that failed outright
    polls: int = 0
    overruns: int = 0  # scheduled polls skipped because the previous one ran late
    last_error: str | None = None
    last_error_time: float | None = None
    last_reading_time: float | None = None
    jitter: collections.deque[float] = field(factory=lambda: collections.deque(maxlen=2048))

    def error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        self.last_error_time = time.time()

    def as_payload(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "bad": self.bad,
            "errors": self.errors,
            "polls": self.polls,
            "overruns": self.overruns,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "last_reading_time": self.last_reading_time,
        }


@define
class DeviceContext:
    """What a driver gets: its configuration, its connection's hub, counters and a logger."""

    device: DeviceConfig
    options: Any
    hub: Any  # MqttHub, ModbusHub or None, by the kind's transport
    counters: DeviceCounters = field(factory=DeviceCounters)
    room: RoomConfig | None = None
    log: logging.Logger = field(factory=lambda: logging.getLogger("floorctl.device"))
    #: report a floor event (a data gap a backfill filled, a device fault): the daemon
    #: publishes it on <prefix>/events and passes it to floorctl_on_event
    emit_event: Callable[[Event], None] = lambda event: None

    def bad_readings(
        self, detail: str, quality: Quality = Quality.BAD, *, receive_time: float | None = None
    ) -> list[Reading]:
        """One reading of the given bad quality for every field of the device."""
        now = time.time() if receive_time is None else receive_time
        return [
            Reading.bad(
                self.device.id, f.name, detail, unit=f.unit, quality=quality, receive_time=now
            )
            for f in self.device.fields
        ]


class Driver(abc.ABC):
    """Base of every driver. ``commands`` maps command names to one-line descriptions."""

    commands: ClassVar[Mapping[str, str]] = {}

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx

    @property
    def device(self) -> DeviceConfig:
        return self.ctx.device

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (subscribe, check a test register). Raise DeviceUnavailable to retry later."""

    @abc.abstractmethod
    def readings(self) -> AsyncIterator[list[Reading]]:
        """Yield batches of readings for as long as the floor runs."""

    async def read_once(self, timeout: float) -> list[Reading]:
        """One round of readings, for ``floorctl run --once``."""
        async with asyncio.timeout(timeout):
            async for batch in self.readings():
                if batch:
                    return batch
        return []

    async def command(self, name: str, args: Mapping[str, Any]) -> str:
        """Run a device command; return a human-readable result or raise CommandError."""
        raise CommandError(f"device {self.device.id!r} has no command {name!r}")

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what start() took."""


def phase_offset(device_id: str, interval: float) -> float:
    """A stable offset in [0, interval) so that devices with one interval do not poll at once."""
    return (zlib.crc32(device_id.encode()) % 10_000) / 10_000 * interval


class PolledDriver(Driver):
    """A driver that asks the device for values every ``interval``."""

    @abc.abstractmethod
    async def poll(self) -> list[Reading]:
        """Read the device once. Raise DeviceUnavailable when it cannot be reached."""

    async def _poll_guarded(self) -> list[Reading]:
        counters = self.ctx.counters
        counters.polls += 1
        try:
            async with asyncio.timeout(self.device.request_timeout):
                return await self.poll()
        except TimeoutError:
            counters.error(f"no answer within {self.device.request_timeout:g}s")
        except DeviceUnavailable as exc:
            counters.error(str(exc))
        return []

    async def read_once(self, timeout: float) -> list[Reading]:
        async with asyncio.timeout(timeout):
            return await self._poll_guarded()

    async def readings(self) -> AsyncIterator[list[Reading]]:
        loop = asyncio.get_running_loop()
        interval = float(self.device.interval)
        counters = self.ctx.counters
        next_start = loop.time() + phase_offset(self.device.id, interval)
        while True:
            delay = next_start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            counters.jitter.append(loop.time() - next_start)
            batch = await self._poll_guarded()
            if batch:
                yield batch
            next_start += interval
            behind = loop.time() - next_start
            if behind > 0:  # skip the ticks we missed instead of bursting to catch up
                skipped = int(behind // interval) + 1
                counters.overruns += skipped
                next_start += skipped * interval


class SubscribedDriver(Driver):
    """A driver whose device pushes messages to MQTT topics."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self._queue: asyncio.Queue[list[Reading]] = asyncio.Queue()

    @abc.abstractmethod
    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS) pairs to subscribe to."""

    @abc.abstractmethod
    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        """Turn one message into readings. May raise: that becomes bad-quality readings."""

    async def start(self) -> None:
        for topic, qos in self.subscriptions():
            self.ctx.hub.subscribe(topic, qos, self._on_message)

    async def stop(self) -> None:
        for topic, _ in self.subscriptions():
            self.ctx.hub.unsubscribe(topic, self._on_message)

    def _on_message(self, topic: str, payload: bytes) -> None:
        received = time.time()
        try:
            batch = self.parse(topic, payload, received)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.ctx.counters.error(f"{topic}: {detail}")
            batch = self.ctx.bad_readings(detail[:200], receive_time=received)
        self._queue.put_nowait(batch)

    async def readings(self) -> AsyncIterator[list[Reading]]:
        queue = self._queue
        while True:
            batch = await queue.get()
            while not queue.empty():  # drain what arrived meanwhile: one wake-up, one batch
                batch = batch + queue.get_nowait()
            yield batch
