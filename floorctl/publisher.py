"""Publishes the live floor on MQTT (topic layout: docs/mqtt.md).

Point state is published by exception and coalesced per point: a reading only marks its point
dirty (when it moved beyond the field's deadband, or the point has not been published for
``republish``); the publishing task sends the *latest* value of each dirty point. However many
readings arrive while a publish is in flight, a point costs one message, so publishing never
limits ingest. Quality changes (good -> stale, bad -> good, ...) are never coalesced: each goes
out, in order, ahead of ordinary updates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from attrs import define, field

from floorctl.hubs.mqtt import MqttHub, NotConnected
from floorctl.model import Quality, Reading

log = logging.getLogger("floorctl.publish")

#: point messages handed to the MQTT client per loop turn
WINDOW = 20
#: seconds between two rounds of ordinary updates (see StatePublisher.run); ``[floor]
#: point_interval`` sets it for the daemon
PACE = 0.5
#: a round of ordinary updates is spread over this share of the interval
SPREAD = 0.5
#: QoS of quality changes, which are never coalesced: a terminal must not miss a good -> stale
URGENT_QOS = 1


def dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class Topics:
    """The topic layout, in one place (docs/mqtt.md)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.status = f"{prefix}/status"
        self.stats = f"{prefix}/stats"
        self.events = f"{prefix}/events"

    def point(self, device: str, point: str) -> str:
        return f"{self.prefix}/point/{device}/{point}"

    def device_status(self, device: str) -> str:
        return f"{self.prefix}/device/{device}/status"

    def alarm(self, device: str, point: str) -> str:
        return f"{self.prefix}/alarm/{device}/{point}"

    def room_status(self, room: str) -> str:
        return f"{self.prefix}/room/{room}/status"

    def command(self, device: str) -> str:
        return f"{self.prefix}/command/{device}"

    def request(self, kind: str) -> str:
        return f"{self.prefix}/request/{kind}"

    def alarm_request(self, device: str, point: str) -> str:
        return f"{self.prefix}/request/alarm/{device}/{point}"

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}/reply/{request_id}"


@define
class _Published:
    value: Any
    quality: Quality
    at: float  # monotonic


@define
class PublisherCounters:
    offered: int = 0  # readings seen
    published: int = 0  # point messages sent
    coalesced: int = 0  # readings superseded before they were sent
    suppressed: int = 0  # readings within the deadband, not sent
    urgent: int = 0  # quality changes sent ahead of ordinary updates
    errors: int = 0

    def as_payload(self) -> dict[str, int]:
        return {
            "offered": self.offered,
            "published": self.published,
            "coalesced": self.coalesced,
            "suppressed": self.suppressed,
            "urgent": self.urgent,
            "errors": self.errors,
        }


@define(eq=False)
class StatePublisher:
    hub: MqttHub
    topics: Topics
    republish: float = 60.0
    deadbands: Mapping[tuple[str, str], float] = field(factory=dict)
    #: QoS of ordinary updates: 0 by default, as Sparkplug's NDATA / DDATA. Point state is
    #: retained latest-value state; the next round, ``republish`` and the resync after every
    #: reconnect correct a lost message, and at QoS 1 each message costs a PUBACK to handle
    qos: int = 0
    #: seconds between rounds of ordinary (coalesced) updates; quality changes never wait
    pace: float = PACE
    counters: PublisherCounters = field(factory=PublisherCounters)
    _latest: dict[tuple[str, str], Reading] = field(factory=dict)
    _published: dict[tuple[str, str], _Published] = field(factory=dict)
    _quality: dict[tuple[str, str], Quality] = field(factory=dict)  # last offered quality
    _dirty: dict[tuple[str, str], None] = field(factory=dict)  # an ordered set
    _urgent: collections.deque[Reading] = field(factory=collections.deque)
    _wake: asyncio.Event = field(factory=asyncio.Event)
    _urgent_wake: asyncio.Event = field(factory=asyncio.Event)  # cuts a round's pause short

    def offer(self, reading: Reading) -> None:
        """Take a reading; never blocks. Historical (backfilled) readings are not live state:
        they go to the other sinks and hooks, never over a point's current retained value."""
        self.counters.offered += 1
        if reading.historical:
            return
        key = (reading.device, reading.point)
        self._latest[key] = reading
        if self._quality.get(key) is not reading.quality:
            # a quality transition: queued as it is, never coalesced away
            self._quality[key] = reading.quality
            self._urgent.append(reading)
            self._wake.set()
            self._urgent_wake.set()
            return
        last = self._published.get(key)
        if key in self._dirty:
            self.counters.coalesced += 1
            return
        if (
            last is None
            or self._moved(key, last.value, reading.value)
            or (time.monotonic() - last.at >= self.republish)
        ):
            self._dirty[key] = None
            self._wake.set()
        else:
            self.counters.suppressed += 1

    def _moved(self, key: tuple[str, str], old: Any, new: Any) -> bool:
        if (
            isinstance(new, int | float)
            and isinstance(old, int | float)
            and not isinstance(new, bool)
        ):
            return abs(new - old) > self.deadbands.get(key, 0.0)
        return new != old

    def due_for_republish(self) -> int:
        """Mark points not published for ``republish`` seconds dirty; return how many."""
        now = time.monotonic()
        n = 0
        for key, last in self._published.items():
            if now - last.at >= self.republish and key not in self._dirty:
                self._dirty[key] = None
                n += 1
        if n:
            self._wake.set()
        return n

    @property
    def backlog(self) -> int:
        """Point messages waiting to be handed to the MQTT client."""
        return len(self._urgent) + len(self._dirty)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        heartbeat = loop.create_task(self._heartbeat())
        next_round = 0.0
        timer: asyncio.TimerHandle | None = None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.hub.connected.wait()
                try:
                    await self._drain_urgent()  # quality changes: at once, each one
                    if not self._dirty:
                        continue
                    wait = next_round - loop.time()
                    if wait > 0:
                        # ordinary updates go out in rounds: what arrives meanwhile replaces
                        # the pending value of its point (coalescing), so a fast point costs
                        # one message per round, however fast it updates
                        if timer is None or timer.cancelled() or timer.when() < loop.time():
                            timer = loop.call_later(wait, self._wake.set)
                        continue
                    next_round = loop.time() + self.pace
                    await self._drain_dirty()
                except NotConnected as exc:
                    log.debug("state publishing paused: %s", exc)
                    self._wake.set()
                    await asyncio.sleep(0.2)
        finally:
            heartbeat.cancel()
            if timer is not None:
                timer.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(max(self.republish / 4, 0.5))
            self.due_for_republish()

    async def _drain_urgent(self) -> None:
        self._urgent_wake.clear()
        while self._urgent:
            batch = [self._urgent.popleft() for _ in range(min(WINDOW, len(self._urgent)))]
            await self._send(batch, requeue_urgent=True, qos=max(self.qos, URGENT_QOS))
            self.counters.urgent += len(batch)

    async def _drain_dirty(self) -> None:
        """One round: the points dirty now, in windows spread over ``SPREAD`` of the interval.
        A burst of a whole round would sit in front of an alarm published meanwhile (in paho's
        queue, the socket and the broker); spread out, at most a window does. A point that
        moves again after its window waits for the next round."""
        keys = list(self._dirty)
        windows = -(-len(keys) // WINDOW)
        gap = self.pace * SPREAD / windows if windows > 1 else 0.0
        for start in range(0, len(keys), WINDOW):
            if start and gap:
                with contextlib.suppress(TimeoutError):  # a quality change does not wait
                    await asyncio.wait_for(self._urgent_wake.wait(), gap)
            window = [k for k in keys[start : start + WINDOW] if k in self._dirty]
            for k in window:
                del self._dirty[k]
            await self._send([self._latest[k] for k in window], requeue_urgent=False, qos=self.qos)
            await self._drain_urgent()  # a quality change that came meanwhile goes first

    async def _send(self, batch: list[Reading], *, requeue_urgent: bool, qos: int) -> None:
        """Hand a batch to paho's queue (no await per message). On a refusal (no connection,
        queue full) the rest of the batch is kept, in order, for the next round."""
        publish = self.hub.publish_nowait
        point = self.topics.point
        now = time.monotonic()
        for i, r in enumerate(batch):
            try:
                publish(point(r.device, r.point), dumps(r.as_payload()), qos=qos, retain=True)
            except NotConnected:
                failed = batch[i:]
                self.counters.errors += 1
                if requeue_urgent:
                    self._urgent.extendleft(reversed(failed))
                else:
                    for f in failed:
                        self._dirty[f.key] = None
                raise
            self.counters.published += 1
            self._published[r.key] = _Published(r.value, r.quality, now)
        await asyncio.sleep(0)  # let paho write what was queued before the next window

    def resync(self) -> None:
        """After a (re)connect: publish every point's latest reading again. A broker that
        restarted without persistence has lost the retained state."""
        for key in self._latest:
            self._dirty[key] = None
        if self._latest:
            self._wake.set()
