"""Simulated MQTT JSON publishers: every ``mqtt_json`` device of one ``[[mqtt]]`` connection.

Behaves like a store-and-forward gateway: samples are generated at each device's interval
whether or not the broker is reachable, queued in a bounded backlog (oldest dropped and
counted when full), and sent in order, QoS 1 by default, over one connection that
reconnects itself with capped exponential backoff. A sample leaves the backlog only when
the broker has acknowledged it; a publish that failed is sent again after reconnecting
(at-least-once: a subscriber can see a duplicate ``seq``, never a gap while nothing was
dropped).

Samples are taken at each device's real interval, with values at the simulated time of the
shared :class:`~simulators.faults.SimClock` and real UNIX timestamps (``clock.wall()``).

Faults (:class:`~simulators.faults.Faultable`), per device:

- ``excursion``: a field moves ``to`` a level or ``by`` an offset (engineering units, as the
  daemon reads them), optionally over ``ramp`` simulated seconds.
- ``silent``: the device produces nothing (a hung sensor): no samples are made, none are
  buffered, ``seq`` does not advance; publishing resumes when the fault ends.
- ``malformed``: at each sample time a garbage message goes out instead of the sample:
  ``payload`` (a string, sent as UTF-8) or, by default, one of a truncated JSON document,
  bytes that are not UTF-8, or a document whose values are all the string ``"ERR"``
  (chosen from the seed).
- ``backfill``: the device keeps sampling but holds its samples (a logger that lost its
  network); when the fault ends it sends them all at once, each with its own timestamp. Needs
  ``options.timestamp_path``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiomqtt
import attrs
from attrs import define, field

from floorctl.config import DeviceConfig, MqttConnection
from floorctl.plugins.generic import parse_path as parse_json_path
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.modbus_device import SimulatorError
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

__all__ = ["MqttJsonPublisher", "build_document", "parse_path", "put_path"]

log = logging.getLogger("floorctl.simulators.mqtt")
_PAHO_LOG = logging.getLogger("floorctl.simulators.mqtt.client")

PathT = tuple[str | int, ...]
_NO_PIN = object()


def parse_path(path: str) -> PathT:
    """``data.values[2].t`` -> ``("data", "values", 2, "t")``: the daemon's own parser, plus
    the publisher's rule that a payload is a JSON object (so a path starts with a key)."""
    parts = parse_json_path(path)
    if isinstance(parts[0], int):
        raise ValueError(f"bad path {path!r}: the payload is a JSON object, so start with a key")
    return parts


def put_path(doc: dict[str, Any], path: PathT, value: Any) -> None:
    """Set ``value`` at ``path`` in ``doc``, creating objects and lists (padded with null)."""
    node: Any = doc
    for i, part in enumerate(path):
        last = i == len(path) - 1
        child: Any = value if last else ([] if isinstance(path[i + 1], int) else {})
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(
                    f"path {path!r}: [{part}] needs a list, found {type(node).__name__}"
                )
            node.extend([None] * (part + 1 - len(node)))
            if last or node[part] is None:
                node[part] = child
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ValueError(
                    f"path {path!r}: {part!r} needs an object, found {type(node).__name__}"
                )
            if last:
                node[part] = child
            node = node.setdefault(part, child)


def build_document(items: Sequence[tuple[PathT, Any]], seq: int | None = None) -> dict[str, Any]:
    """A payload object: ``"seq"`` first (if given), then each value at its path."""
    doc: dict[str, Any] = {} if seq is None else {"seq": seq}
    for path, value in items:
        put_path(doc, path, value)
    return doc


@define(eq=False)
class _Field:
    name: str
    path: PathT
    signal: Signal
    scale: float
    offset: float
    pin: Any = _NO_PIN
    excursion: Excursion | None = None

    def value(self, t: float) -> Any:
        if self.pin is not _NO_PIN:
            return self.pin
        s = self.signal
        v = s.value(t) if self.excursion is None else self.excursion.apply(s, t)
        if s.kind is SignalKind.BOOL:
            return v >= 0.5
        raw = (v - self.offset) / self.scale  # the daemon computes raw * scale + offset
        if s.kind is SignalKind.INT:
            return round(raw)
        return round(raw, 4)


@define(eq=False)
class _Device:
    id: str
    topic: str
    qos: int
    interval: float
    fields: dict[str, _Field]
    ts_path: PathT | None
    seq: int = 0
    next_due: float = 0.0
    silent: bool = False
    malformed: bytes | None = None  # while malformed: the payload, or b"" and builtin_garbage
    builtin_garbage: bool = False
    held: list[_Message] | None = None  # backfill: samples kept until the fault ends
    garbage: int = 0  # malformed messages made


@define(eq=False)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    done: asyncio.Future[None] | None = field(default=None)  # set for publish_raw

    @property
    def is_sample(self) -> bool:
        return self.done is None


class MqttJsonPublisher:
    """Publishes every mqtt_json device of one connection, store-and-forward.

    :param connection: the ``[[mqtt]]`` connection (host, port, username/password, TLS).
    :param devices: the devices to publish (``via`` = this connection).
    :param seed: global seed for the signals (a device's ``simulate.seed`` wins).
    :param signals: precomputed ``{device id: {field: Signal}}`` (default: parsed here).
    :param qos: QoS of every sample; default: the device's ``options.qos``, else 1.
    :param max_backlog: samples kept while the broker is unreachable; the oldest is dropped
        (and counted in ``dropped``) when full.
    :param window: publishes in flight at once (awaited in order).
    :param reconnect_min, reconnect_max: backoff between connection attempts, doubling.
    :param clock: the simulation's clock: signals at ``clock.now()``, timestamps ``clock.wall()``.
    """

    #: the faults :meth:`start_fault` knows
    FAULTS = ("excursion", "silent", "malformed", "backfill")

    def __init__(
        self,
        connection: MqttConnection,
        devices: Sequence[DeviceConfig],
        *,
        seed: int = 0,
        signals: Mapping[str, Mapping[str, Signal]] | None = None,
        qos: int | None = None,
        max_backlog: int = 10_000,
        window: int = 100,
        reconnect_min: float = 0.1,
        reconnect_max: float = 2.0,
        publish_timeout: float = 10.0,
        client_id: str | None = None,
        host: str | None = None,
        port: int | None = None,
        clock: SimClock | None = None,
    ) -> None:
        if max_backlog < 1 or window < 1:
            raise ValueError("max_backlog and window must be at least 1")
        if qos not in (None, 0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        self.connection = connection
        self.host = host if host is not None else connection.host
        self.port = int(port if port is not None else connection.port)
        self.max_backlog = max_backlog
        self.window = min(window, max_backlog)
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.publish_timeout = publish_timeout
        self.client_id = client_id or f"floorctl-sim-{connection.name}-{uuid.uuid4().hex[:8]}"
        self.clock = clock if clock is not None else SimClock()
        self.seed = seed
        # counters
        self.generated = 0  # device messages made (samples, and garbage while malformed)
        self.published = 0  # device messages the broker acknowledged
        self.dropped = 0  # samples lost to backlog overflow
        self.raw_published = 0  # publish_raw messages acknowledged
        self.failures = 0  # publishes that raised (and were queued again)
        self.connects = 0
        self.connected = False
        self._queue: collections.deque[_Message] = collections.deque()
        self._inflight: collections.deque[_Message] = collections.deque()
        self._ready = asyncio.Event()
        self._generator: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self.devices: dict[str, _Device] = {}
        for d in devices:
            sigs = signals[d.id] if signals is not None else parse_simulate(d, seed=seed)
            self.devices[d.id] = self._device(d, sigs, qos)

    def _device(self, d: DeviceConfig, signals: Mapping[str, Signal], qos: int | None) -> _Device:
        opts = d.options
        topic = opts.get("state_topic")
        if not isinstance(topic, str) or not topic:
            raise SimulatorError(f"device {d.id!r}: options.state_topic is required")
        dev_qos = qos if qos is not None else int(opts.get("qos", 1))
        try:
            ts = opts.get("timestamp_path")
            ts_path = parse_path(ts) if ts else None
            # a field at path "seq" reads the simulator's own sequence number (a logger's
            # message counter); any other path under "seq" would collide with it
            fields = {
                f.name: _Field(f.name, parse_path(f.path), signals[f.name], f.scale, f.offset)
                for f in d.fields
                if f.path and parse_path(f.path) != ("seq",)
            }
            items = [(f.path, 0) for f in fields.values()]
            if ts_path:
                items.append((ts_path, 0.0))
            if any(p[0] == "seq" for p, _ in items):
                raise ValueError('"seq" is the simulator\'s sequence number')
            build_document(items, 1)  # conflicting paths fail here, not in the generator
        except ValueError as exc:
            raise SimulatorError(f"device {d.id!r}: {exc}") from None
        return _Device(d.id, topic, dev_qos, float(d.interval), fields, ts_path)

    # --- counters -----------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Messages not yet acknowledged by the broker (queued + in flight)."""
        return len(self._queue) + len(self._inflight)

    @property
    def running(self) -> bool:
        return self._sender is not None

    def elapsed(self) -> float:
        """Simulated seconds: the time the signals are sampled at."""
        return self.clock.now()

    def stats(self) -> dict[str, int]:
        return {
            "generated": self.generated, "published": self.published, "backlog": self.backlog,
            "dropped": self.dropped, "raw_published": self.raw_published,
            "failures": self.failures, "connects": self.connects,
        }  # fmt: skip

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start generating samples and (re)connecting to the broker."""
        if self._sender is not None:
            return
        self._sender = asyncio.create_task(
            self._send_loop(), name=f"mqtt-sim-send-{self.connection.name}"
        )
        self._generator = asyncio.create_task(
            self._generate(), name=f"mqtt-sim-gen-{self.connection.name}"
        )

    async def stop(self, *, drain: float = 0.0) -> None:
        """Stop generating; wait up to ``drain`` seconds for the backlog to be sent; disconnect.

        The backlog is kept: ``start()`` again sends it.
        """
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await generator
        if drain > 0 and self._sender is not None:
            deadline = time.monotonic() + drain
            while self.backlog and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for m in list(self._queue) + list(self._inflight):
            if m.done is not None and not m.done.done():
                m.done.set_exception(
                    SimulatorError("publisher stopped before the message was sent")
                )
        self._queue = collections.deque(m for m in self._queue if m.is_sample)

    async def __aenter__(self) -> MqttJsonPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- samples ------------------------------------------------------------------------

    def sample(self, device_id: str, t: float | None = None) -> dict[str, Any]:
        """The next payload of a device as an object (advances its ``seq``)."""
        d = self.devices[device_id]
        if t is None:
            t = self.elapsed()
        d.seq += 1
        doc = build_document([(f.path, f.value(t)) for f in d.fields.values()], d.seq)
        if d.ts_path is not None:
            put_path(doc, d.ts_path, round(self.clock.wall(), 3))
        return doc

    def _enqueue(self, message: _Message) -> None:
        if self.backlog >= self.max_backlog:
            if self._queue:
                self._lose(self._queue.popleft())
            elif message.is_sample:  # everything is in flight
                self._lose(message)
                return
        self._queue.append(message)
        self._ready.set()

    def _lose(self, m: _Message) -> None:
        if m.done is None:
            self.dropped += 1
        elif not m.done.done():
            m.done.set_exception(SimulatorError("dropped: backlog full"))

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        devices = list(self.devices.values())
        now = loop.time()
        for d in devices:
            d.next_due = now
        while devices:
            now = loop.time()
            t = self.elapsed()
            for d in devices:
                if d.next_due > now:
                    continue
                self._produce(d, t)
                d.next_due += d.interval
                if d.next_due <= now:
                    d.next_due = now + d.interval
            await asyncio.sleep(max(0.0, min(d.next_due for d in devices) - loop.time()))

    def _produce(self, d: _Device, t: float) -> None:
        """One sample time of one device: a sample, garbage, a held sample, or nothing."""
        if d.silent:
            return
        if d.malformed is not None:
            payload = self._garbage(d, t) if d.builtin_garbage else (d.malformed or b"")
            d.garbage += 1
            self.generated += 1
            self._enqueue(_Message(d.topic, payload, d.qos))
            return
        doc = self.sample(d.id, t)
        message = _Message(d.topic, json.dumps(doc, separators=(",", ":")).encode(), d.qos)
        self.generated += 1
        if d.held is not None:
            d.held.append(message)
        else:
            self._enqueue(message)

    def _garbage(self, d: _Device, t: float) -> bytes:
        """A built-in malformed message, chosen from (seed, device, count)."""
        choice = stable_seed(self.seed, d.id, d.garbage) % 3
        if choice == 0:  # cut off mid-document
            text = json.dumps(self.sample(d.id, t), separators=(",", ":"))
            return text[: max(1, len(text) // 2)].encode()
        if choice == 1:  # not UTF-8
            return b"\xff\xfe\x00\x00garbage\x80"
        doc = build_document([(f.path, "ERR") for f in d.fields.values()], d.seq)
        return json.dumps(doc, separators=(",", ":")).encode()

    # --- sending ------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        c = self.connection
        tls: dict[str, Any] = {}
        if c.tls:
            tls["tls_params"] = aiomqtt.TLSParameters(
                ca_certs=c.ca_file, certfile=c.cert_file, keyfile=c.key_file
            )
            tls["tls_insecure"] = c.tls_insecure
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            clean_session=True,
            username=c.username,
            password=c.password,
            keepalive=max(1, int(c.keepalive)),
            timeout=self.publish_timeout,
            max_inflight_messages=self.window,
            logger=_PAHO_LOG,
            **tls,
        )

    async def _send_loop(self) -> None:
        delay = self.reconnect_min
        while True:
            try:
                async with self._client() as client:
                    self.connected = True
                    self.connects += 1
                    delay = self.reconnect_min
                    log.info(
                        "mqtt simulator %r connected to %s:%d (backlog %d)",
                        self.connection.name,
                        self.host,
                        self.port,
                        self.backlog,
                    )
                    client.pending_calls_threshold = self.window + 10
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("mqtt simulator %r lost the broker: %s", self.connection.name, exc)
                else:
                    log.debug("mqtt simulator %r cannot connect: %s", self.connection.name, exc)
            except Exception:  # a bug must not end store-and-forward silently
                log.exception("mqtt simulator %r: unexpected error", self.connection.name)
            finally:
                self.connected = False
                if self._inflight:  # not acknowledged: send again, first, in order
                    self._queue.extendleft(reversed(self._inflight))
                    self._inflight.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    async def _drain(self, client: aiomqtt.Client) -> None:
        watch = asyncio.ensure_future(_watch(client))
        watch.add_done_callback(_retrieve)
        try:
            while True:
                if not self._queue:
                    self._ready.clear()
                    ready = asyncio.ensure_future(self._ready.wait())
                    try:
                        await asyncio.wait({ready, watch}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        ready.cancel()
                    _raise_if_done(watch)
                    continue
                batch = [self._queue.popleft() for _ in range(min(self.window, len(self._queue)))]
                self._inflight.extend(batch)
                tasks = [
                    asyncio.ensure_future(
                        client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                    )
                    for m in batch
                ]
                try:
                    for m, task in zip(batch, tasks, strict=True):
                        if not task.done():
                            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
                        if not task.done():
                            _raise_if_done(watch)
                        try:
                            task.result()
                        except aiomqtt.MqttError:
                            self.failures += 1
                            raise
                        self._inflight.popleft()
                        self._acked(m)
                finally:
                    for task in tasks:
                        if not task.done():
                            task.cancel()
                        task.add_done_callback(_retrieve)
        finally:
            watch.cancel()

    def _acked(self, m: _Message) -> None:
        if m.done is None:
            self.published += 1
            return
        self.raw_published += 1
        if not m.done.done():
            m.done.set_result(None)

    # --- fault injection ----------------------------------------------------------------

    async def publish_raw(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Publish arbitrary bytes (malformed JSON, ...) in order with the samples.

        Returns once the broker has acknowledged it (QoS > 0) or it was handed over (QoS 0).
        """
        if self._sender is None:
            raise SimulatorError("publisher is not running: await start() first")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Message(topic, bytes(payload), qos, retain, done))
        await done

    def set_value(self, device_id: str, field_name: str, value: Any) -> None:
        """Pin a field's JSON value as published (any JSON value; NaN gives the non-JSON
        token ``NaN``, like some real gateways). Not scaled."""
        f = self._field(device_id, field_name)
        json.dumps(value)  # TypeError now rather than in the generator
        f.pin = value

    def release(self, device_id: str, field_name: str | None = None) -> None:
        """Undo :meth:`set_value` for one field, or every field of the device."""
        d = self.devices[device_id]
        for f in [self._field(device_id, field_name)] if field_name else d.fields.values():
            f.pin = _NO_PIN

    def _field(self, device_id: str, field_name: str) -> _Field:
        d = self.devices.get(device_id)
        if d is None:
            raise KeyError(f"no simulated mqtt_json device {device_id!r}")
        f = d.fields.get(field_name)
        if f is None:
            raise KeyError(f"device {device_id!r} has no field {field_name!r}")
        return f

    # --- Faultable --------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return list(self.devices)

    def check_fault(self, device_id: str, fault: Fault) -> None:
        """Raise UnsupportedFault or FaultParamError (a ValueError) if ``fault`` cannot start."""
        self._parse_fault(device_id, fault)

    def _parse_fault(self, device_id: str, fault: Fault) -> Excursion | bytes | None:
        d = self.devices.get(device_id)
        if d is None:
            raise KeyError(f"no simulated mqtt_json device {device_id!r}")
        if fault.name == "excursion":
            return parse_excursion(
                device_id, fault, {name: f.signal for name, f in d.fields.items()}
            )
        if fault.name == "malformed":
            check_fault_params(device_id, fault, ("payload",))
            payload = fault.params.get("payload")
            if payload is not None and not isinstance(payload, str):
                raise FaultParamError(
                    device_id, fault.name, "payload", f"expected a string, got {payload!r}"
                )
            return None if payload is None else payload.encode()
        if fault.name == "silent":
            check_fault_params(device_id, fault, ())
            return None
        if fault.name == "backfill":
            check_fault_params(device_id, fault, ())
            if d.ts_path is None:
                raise UnsupportedFault(
                    f"device {device_id!r} (mqtt_json) cannot backfill: its samples carry no "
                    "timestamp (set options.timestamp_path)"
                )
            return None
        raise UnsupportedFault(
            f"device {device_id!r} (mqtt_json) cannot show {fault.name!r} "
            f"(it can: {', '.join(self.FAULTS)})"
        )

    def start_fault(self, device_id: str, fault: Fault) -> None:
        parsed = self._parse_fault(device_id, fault)
        d = self.devices[device_id]
        if isinstance(parsed, Excursion):
            d.fields[parsed.field].excursion = attrs.evolve(parsed, start=self.clock.now())
        elif fault.name == "malformed":
            d.builtin_garbage = parsed is None
            d.malformed = b"" if parsed is None else parsed  # type: ignore[assignment]
        elif fault.name == "silent":
            d.silent = True
        elif d.held is None:  # backfill
            d.held = []

    def end_excursion(self, device_id: str, field_name: str) -> None:
        """End the excursion of one field (others of the device go on)."""
        d = self.devices[device_id]
        item = d.fields.get(field_name)
        if item is not None:
            item.excursion = None

    def end_fault(self, device_id: str, name: str) -> None:
        """End a fault (``excursion`` ends the excursions of every field of the device;
        ``backfill`` sends the held samples, oldest first)."""
        d = self.devices[device_id]
        if name == "excursion":
            for f in d.fields.values():
                f.excursion = None
        elif name == "malformed":
            d.malformed = None
        elif name == "silent":
            d.silent = False
        elif name == "backfill":
            held, d.held = d.held or [], None
            for message in held:
                self._enqueue(message)
            if held:
                log.info("device %s: backfill of %d held sample(s)", device_id, len(held))
        else:
            raise UnsupportedFault(f"device {device_id!r} (mqtt_json) has no fault {name!r}")

    def describe(self) -> str:
        ids = ", ".join(self.devices) or "none"
        return (
            f"mqtt {self.connection.name!r} to {self.host}:{self.port}: "
            f"{len(self.devices)} device(s): {ids}"
        )


async def _watch(client: aiomqtt.Client) -> None:
    """Returns or raises when the client disconnects (we subscribe to nothing)."""
    async for _ in client.messages:
        pass


def _raise_if_done(watch: asyncio.Future[None]) -> None:
    if watch.done():
        if not watch.cancelled() and watch.exception() is not None:
            raise aiomqtt.MqttError(f"disconnected: {watch.exception()}")
        raise aiomqtt.MqttError("disconnected")


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's exception as retrieved (no 'never retrieved' warnings)."""
    if not task.cancelled():
        task.exception()
