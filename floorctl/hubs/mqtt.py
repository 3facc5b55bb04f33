"""One aiomqtt client per ``[[mqtt]]`` connection.

- Reconnects with capped exponential backoff (aiomqtt's ``while True: try: async with``
  pattern); the first failure of an outage is logged as a warning, the rest at debug.
- Subscriptions live in a table and are replayed on every connect.
- A will marks the floor offline if the daemon dies; a birth message marks it online.
- Persistent session (``clean_session = false``) and QoS 1 for device data, so messages
  published while we reconnect are queued by the broker for us.
- The incoming queue is bounded (``max_queued_incoming``); overflow is counted and reported as
  an event, never silent (aiomqtt itself only logs it).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt
from attrs import define, field

from floorctl.aio import reraise_cancel
from floorctl.config import MqttConnection
from floorctl.model import Event, EventKind

log = logging.getLogger("floorctl.mqtt")

Handler = Callable[[str, bytes], None]

#: paho's outgoing queue per connection (messages queued but not yet written or acknowledged)
MAX_QUEUED_OUTGOING = 5000


@define
class MqttCounters:
    received: int = 0
    dispatched: int = 0
    unmatched: int = 0
    dropped: int = 0  # incoming messages discarded because the queue was full
    published: int = 0
    publish_errors: int = 0
    connects: int = 0
    disconnects: int = 0
    handler_errors: int = 0

    def as_payload(self) -> dict[str, int]:
        return {
            "received": self.received,
            "dispatched": self.dispatched,
            "unmatched": self.unmatched,
            "dropped": self.dropped,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "handler_errors": self.handler_errors,
        }


class _CountingQueue(asyncio.Queue):  # type: ignore[type-arg]
    """aiomqtt's incoming queue, counting what a full queue discards."""

    hub: MqttHub

    def put_nowait(self, item: Any) -> None:
        try:
            super().put_nowait(item)
        except asyncio.QueueFull:
            self.hub._overflow()


def tls_parameters(conn: MqttConnection) -> aiomqtt.TLSParameters | None:
    if not conn.tls:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=conn.ca_file,
        certfile=conn.cert_file,
        keyfile=conn.key_file,
        cert_reqs=ssl.CERT_NONE if conn.tls_insecure else ssl.CERT_REQUIRED,
    )


def make_client(
    conn: MqttConnection, *, identifier: str | None = None, **kwargs: Any
) -> aiomqtt.Client:
    """An aiomqtt client for a configured connection (address, credentials, TLS, keepalive).
    The daemon's hubs and short-lived clients (``floorctl device``, the terminal UI) share it."""
    return aiomqtt.Client(
        conn.host,
        int(conn.port),
        username=conn.username,
        password=conn.password,
        identifier=identifier,
        keepalive=max(int(conn.keepalive), 1),
        tls_params=tls_parameters(conn),
        tls_insecure=conn.tls_insecure if conn.tls else None,
        timeout=10,
        **kwargs,
    )


def filter_levels(topic_filter: str) -> tuple[str, ...]:
    """A topic filter split into its levels, once, for :func:`filter_matches` (a shared
    subscription's ``$share/<group>/`` prefix is dropped)."""
    levels = topic_filter.split("/")
    if levels[0] == "$share" and len(levels) > 2:
        levels = levels[2:]
    return tuple(levels)


def filter_matches(levels: tuple[str, ...], topic_levels: list[str]) -> bool:
    """Whether a topic (split at ``/``) matches a filter (:func:`filter_levels`), as MQTT
    3.1.1 section 4.7 says: ``+`` is one level (possibly empty), ``#`` the parent level and
    any below it, and a filter that starts with a wildcard does not match a ``$`` topic.

    A loop, not ``aiomqtt.Topic.matches``: that validates the filter and builds a recursive
    closure (a function and a cell in a reference cycle) on every call. At 5,000 readings/s
    the daemon's wildcard dispatch left about 2,300 such cycles a second for the collector
    (docs/performance.md, Alarms)."""
    if topic_levels[0][:1] == "$" and levels[0] in ("+", "#"):
        return False
    n = len(topic_levels)
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= n or (level != "+" and level != topic_levels[i]):
            return False
    return len(levels) == n


class NotConnected(aiomqtt.MqttError):
    """Publishing while the connection is down (an MqttError, so the reconnect loop handles it)."""


@define(eq=False)
class MqttHub:
    conn: MqttConnection
    client_id: str
    on_event: Callable[[Event], None] = lambda event: None
    will: aiomqtt.Will | None = None
    #: coroutines run after every (re)connect, before subscriptions are replayed (birth messages)
    on_connect: list[Callable[[MqttHub], Awaitable[None]]] = field(factory=list)
    counters: MqttCounters = field(factory=MqttCounters)
    connected: asyncio.Event = field(factory=asyncio.Event)
    _exact: dict[str, list[Handler]] = field(factory=dict)
    _wildcard: dict[str, list[Handler]] = field(factory=dict)
    _wildcard_levels: dict[str, tuple[str, ...]] = field(factory=dict)
    _qos: dict[str, int] = field(factory=dict)
    _client: aiomqtt.Client | None = None
    _overflow_reported_at: float = 0.0
    _down_since: float | None = None

    @property
    def name(self) -> str:
        return self.conn.name

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, topic_filter: str, qos: int, handler: Handler) -> None:
        """Add a handler for a topic filter; it is subscribed now if connected, and on every
        reconnect. Handlers are called on the event loop and must not block."""
        if "+" in topic_filter or "#" in topic_filter:
            table = self._wildcard
            self._wildcard_levels[topic_filter] = filter_levels(topic_filter)
        else:
            table = self._exact
        table.setdefault(topic_filter, []).append(handler)
        self._qos[topic_filter] = max(qos, self._qos.get(topic_filter, 0))
        if self._client is not None and self.connected.is_set():
            asyncio.get_running_loop().create_task(self._subscribe_now([topic_filter]))

    def unsubscribe(self, topic_filter: str, handler: Handler) -> None:
        for table in (self._exact, self._wildcard):
            handlers = table.get(topic_filter)
            if handlers and handler in handlers:
                handlers.remove(handler)
                if not handlers:
                    del table[topic_filter]
                    self._qos.pop(topic_filter, None)
                    self._wildcard_levels.pop(topic_filter, None)

    async def _subscribe_now(self, filters: list[str]) -> None:
        client = self._client
        if client is None or not filters:
            return
        try:
            # one SUBSCRIBE per 100 filters keeps the packet small
            for i in range(0, len(filters), 100):
                chunk = filters[i : i + 100]
                await client.subscribe([(f, self._qos.get(f, 1)) for f in chunk])
        except aiomqtt.MqttError as exc:
            log.debug("mqtt %s: subscribe failed (%s); replayed on reconnect", self.name, exc)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        self.counters.received += 1
        handlers = self._exact.get(topic)
        matched = False
        if handlers:
            matched = True
            self._call(handlers, topic, payload)
        if self._wildcard:
            levels = topic.split("/")
            compiled = self._wildcard_levels
            for filt, hs in list(self._wildcard.items()):
                if filter_matches(compiled[filt], levels):
                    matched = True
                    self._call(hs, topic, payload)
        if matched:
            self.counters.dispatched += 1
        else:
            self.counters.unmatched += 1

    def _call(self, handlers: list[Handler], topic: str, payload: bytes) -> None:
        for handler in list(handlers):
            try:
                handler(topic, payload)
            except Exception:  # a handler bug must not stop the connection
                self.counters.handler_errors += 1
                log.exception("mqtt %s: handler for %s failed", self.name, topic)

    def _overflow(self) -> None:
        self.counters.dropped += 1
        now = time.monotonic()
        if now - self._overflow_reported_at >= 1.0:  # one event per second of overflow at most
            self._overflow_reported_at = now
            log.warning(
                "mqtt %s: incoming queue full (max_queued_incoming=%d): %d messages dropped so far",
                self.name,
                self.conn.max_queued_incoming,
                self.counters.dropped,
            )
            self.on_event(
                Event(
                    EventKind.QUEUE_OVERFLOW,
                    self.name,
                    f"incoming queue full; {self.counters.dropped} messages dropped so far",
                )
            )

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False
    ) -> None:
        client = self._client  # set only while a session is up (birth hooks publish before
        if client is None:  # `connected` is set, so that they go out first)
            raise NotConnected(f"mqtt {self.name}: not connected")
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
            reraise_cancel()  # aiomqtt's wait_for can swallow a cancellation on 3.11
        except aiomqtt.MqttError as exc:
            self.counters.publish_errors += 1
            raise NotConnected(f"mqtt {self.name}: publish failed: {exc}") from exc
        self.counters.published += 1

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Queue a message with paho and return at once (paho sends it, and at QoS 1 resends it
        until acknowledged, while this connection lasts). For high-volume state publishing:
        awaiting each PUBACK through aiomqtt costs a future and several loop turns per message.
        Raises NotConnected when there is no connection or paho's outgoing queue
        (``max_queued_outgoing``) is full: the caller keeps the message and tries later.
        The caller must republish what matters after a reconnect (the publisher resyncs).
        """
        client = self._client
        if client is None:
            raise NotConnected(f"mqtt {self.name}: not connected")
        info = client._client.publish(topic, payload, qos, retain)  # the paho client aiomqtt wraps
        if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
            self.counters.publish_errors += 1
            raise NotConnected(
                f"mqtt {self.name}: publish refused: {paho_mqtt.error_string(info.rc)}"
            )
        self.counters.published += 1

    # --- the connection loop -------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        c = self.conn
        client = make_client(
            c,
            identifier=self.client_id,
            clean_session=c.clean_session,
            will=self.will,
            queue_type=type("HubQueue", (_CountingQueue,), {"hub": self}),
            max_queued_incoming_messages=int(c.max_queued_incoming),
            # bounds publish_nowait: beyond this paho refuses, and the publisher backs off
            max_queued_outgoing_messages=MAX_QUEUED_OUTGOING,
            # paho lets only 20 QoS 1 publishes await their PUBACK by default and queues the
            # rest in order: an alarm then waits behind a whole round of point state
            # (benchmarks/alarms.py measured p99 1.2 s at 5k readings/s; docs/performance.md)
            max_inflight_messages=MAX_QUEUED_OUTGOING,
            logger=logging.getLogger(f"floorctl.mqtt.{self.name}.aiomqtt"),
        )
        # the state publisher keeps a window of publishes in flight on purpose: aiomqtt would
        # otherwise log a warning for nearly every publish above 10 pending
        client.pending_calls_threshold = 1000
        return client

    async def run(self) -> None:
        """Connect, replay subscriptions, dispatch messages; reconnect forever."""
        backoff = 0.25
        while True:
            try:
                async with self._make_client() as client:
                    self._client = client
                    self.counters.connects += 1
                    backoff = 0.25
                    for hook in list(self.on_connect):
                        await hook(self)
                    await self._subscribe_now(list(self._qos))
                    self.connected.set()
                    if self._down_since is not None:
                        log.warning(
                            "mqtt %s: reconnected to %s:%s after %.1fs",
                            self.name,
                            self.conn.host,
                            self.conn.port,
                            time.monotonic() - self._down_since,
                        )
                        self.on_event(Event(EventKind.HUB_UP, self.name, "reconnected"))
                    else:
                        log.info(
                            "mqtt %s: connected to %s:%s", self.name, self.conn.host, self.conn.port
                        )
                    self._down_since = None
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = b"" if payload is None else str(payload).encode()
                        self._dispatch(message.topic.value, bytes(payload))
            except aiomqtt.MqttError as exc:
                self._went_down(str(exc))
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, float(self.conn.reconnect_max))

    def _went_down(self, why: str) -> None:
        self.counters.disconnects += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "mqtt %s: connection to %s:%s lost: %s",
                self.name,
                self.conn.host,
                self.conn.port,
                why,
            )
            self.on_event(Event(EventKind.HUB_DOWN, self.name, why))
        else:
            log.debug("mqtt %s: still down: %s", self.name, why)

    async def wait_connected(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.connected.wait()
