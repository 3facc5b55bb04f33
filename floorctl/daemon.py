"""The floor supervisor: every hub and device under one TaskGroup.

A device or hub failing never takes the floor down: each device task catches what its driver
raises, counts it, backs off and starts the driver again. Stale detection runs over every point
and device: no value within ``max(3 x interval, expire_after)`` makes the point stale and the
device comm-lost (an event), and the next reading is a recovery (an event too).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiomqtt
import attrs
import pluggy
from attrs import define, field

from floorctl import __version__, batches
from floorctl.alarms import actions
from floorctl.alarms.engine import (
    ActionRefused,
    AlarmEngine,
    AlarmPointConfig,
    Key,
    Priority,
    Severity,
    Transition,
)
from floorctl.alarms.states import AlarmState, InvalidTransition
from floorctl.commands import (
    BadRequest,
    CommandRequest,
    Signer,
    Status,
    parse_document,
    parse_request,
    reply,
)
from floorctl.config import Config, DeviceConfig, ModbusConnection, MqttConnection
from floorctl.driver import CommandError, DeviceContext, DeviceUnavailable, Driver
from floorctl.hubs.modbus import ModbusHub
from floorctl.hubs.mqtt import MqttHub, NotConnected
from floorctl.kinds import KindRegistry
from floorctl.limits import Quantity, resolve_limits
from floorctl.model import SCHEMA_VERSION, Event, EventKind, Quality, Reading
from floorctl.pluginmanager import isolated_calls
from floorctl.plugins.notify import NotifyPlugin
from floorctl.publisher import StatePublisher, Topics, dumps
from floorctl.store.db import Actual
from floorctl.store.users import (
    AuthError,
    Disabled,
    Locked,
    PermissionDenied,
    UnknownUser,
    Users,
    WrongSecret,
)
from floorctl.store.writer import StoreWriter

log = logging.getLogger("floorctl.daemon")

ReadingSink = Callable[[Reading], None]

#: The point of each device's communication alarm (``<prefix>/alarm/<device>/_comm``): field
#: names cannot start with "_", so it never collides with a real point.
COMM_POINT = "_comm"
#: Alarm states are saved at every transition and, for the slower changes in between (timers,
#: the N-of-M window), every this many seconds.
SNAPSHOT_INTERVAL = 10.0


#: read-only requests on <prefix>/request/<kind> (docs/mqtt.md, Queries)
QUERIES = ("history", "audit", "batch-record")
HISTORY_MAX_BUCKETS = 1000
AUDIT_MAX_ENTRIES = 500


class Refused(Exception):
    """A signed request refused; ``reason`` is the reply's code (docs/mqtt.md)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeviceState:
    STARTING = "starting"
    ONLINE = "online"
    COMM_LOSS = "comm-loss"
    ERROR = "error"  # the driver itself failed; restarting with backoff
    DISABLED = "disabled"


@define(eq=False)
class DeviceRuntime:
    config: DeviceConfig
    ctx: DeviceContext
    driver: Driver | None = None
    state: str = DeviceState.STARTING
    state_since: float = field(factory=time.time)
    last_seen: float | None = None  # monotonic time of the last reading of any point
    started: float = field(factory=time.monotonic)


def hub_client_id(config: Config, conn: MqttConnection) -> str:
    return conn.client_id or f"floorctl-{config.floor.id}-{conn.name}"


class Floor:
    """Runs one floor: hubs, devices, stale detection, state publishing."""

    def __init__(
        self,
        config: Config,
        pm: pluggy.PluginManager,
        kinds: KindRegistry,
        *,
        sinks: list[ReadingSink] | None = None,
        publish: bool = True,
        alarm_defaults: Mapping[Quantity, Mapping[str, object]] | None = None,
        alarm_overrides: Mapping[tuple[str, str], Mapping[str, object]] | None = None,
    ) -> None:
        self.config = config
        self.pm = pm
        self.kinds = kinds
        self.sinks = list(sinks or [])
        self.topics = Topics(config.floor.prefix)
        self.started_at = time.time()
        self.readings_total = 0
        self.bad_total = 0
        self.hook_errors = 0
        # the floor's [[notify]] targets: the built-in notify plugin, through the same hook
        self.notify: NotifyPlugin | None = None
        if config.notify:
            self.notify = NotifyPlugin(config)
            pm.register(self.notify, name=f"notify-{config.floor.id}-{id(self):x}")
        self._on_alarm = isolated_calls(pm, "floorctl_on_alarm")
        self._on_reading = isolated_calls(pm, "floorctl_on_reading")
        self._on_event = isolated_calls(pm, "floorctl_on_event")
        self.hubs: dict[str, MqttHub | ModbusHub] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._point_seen: dict[tuple[str, str], float] = {}  # monotonic time of last reading
        self._point_last: dict[tuple[str, str], Reading] = {}
        self._stale: set[tuple[str, str]] = set()
        self._stopping = asyncio.Event()

        state_conn = config.state_connection
        for conn in config.mqtt:
            will = None
            if publish and conn is state_conn:
                will = aiomqtt.Will(
                    self.topics.status, dumps(self._status("offline")), qos=1, retain=True
                )
            hub = MqttHub(conn, hub_client_id(config, conn), on_event=self.emit_event, will=will)
            self.hubs[conn.name] = hub
        for mconn in config.modbus:
            self.hubs[mconn.name] = ModbusHub(mconn, on_event=self.emit_event)
        self.state_hub: MqttHub = self.hubs[state_conn.name]  # type: ignore[assignment]
        self.publisher: StatePublisher | None = None
        if publish:
            self.state_hub.on_connect.append(self._birth)
            # device commands arrive as requests on <prefix>/command/<device>
            self.state_hub.subscribe(self.topics.command("+"), 1, self._on_command)
            # signed operator actions on alarms on <prefix>/request/alarm/<device>/<point>
            self.state_hub.subscribe(self.topics.alarm_request("+", "+"), 1, self._on_alarm_request)
            # read-only queries of the records (a terminal's trend lines and audit view)
            for kind in QUERIES:
                self.state_hub.subscribe(self.topics.request(kind), 1, self._on_query)
            # signed actual start / end of batch operations
            self.state_hub.subscribe(self.topics.request("actual"), 1, self._on_actual)
            deadbands = {(d.id, f.name): f.deadband for d in config.devices for f in d.fields}
            self.publisher = StatePublisher(
                self.state_hub,
                self.topics,
                republish=float(config.floor.republish),
                deadbands=deadbands,
                qos=config.floor.point_qos,
                pace=float(config.floor.point_interval),
            )
            self.sinks.append(self.publisher.offer)

        # alarms: one engine over every point with limits (defaults by quantity, then the
        # given overrides); the daemon is the only writer of alarm state
        self.limits = resolve_limits(config, kinds)
        # devices.toml's settings, then the caller's (tests): per quantity, then per point
        defaults: dict[Quantity, dict[str, object]] = {
            q: dict(v) for q, v in config.floor.alarms.items()
        }
        for q, v in (alarm_defaults or {}).items():
            defaults.setdefault(Quantity(q), {}).update(v)
        overrides: dict[tuple[str, str], dict[str, object]] = {
            (d.id, f.name): dict(f.alarm)
            for d in config.devices
            for f in d.fields
            if f.alarm and (d.id, f.name) in self.limits
        }
        for key, v in (alarm_overrides or {}).items():
            overrides.setdefault(key, {}).update(v)
        self.alarms = AlarmEngine.from_limits(self.limits, defaults=defaults, overrides=overrides)
        # each device's communication loss is an alarm of its own (high priority, no delay:
        # the device's stale window is the delay)
        for d in config.devices:
            if d.enabled:
                self.alarms.add(
                    AlarmPointConfig(
                        device=d.id,
                        point=COMM_POINT,
                        action_high=0.5,
                        action_priority=Priority.HIGH,
                    )
                )
        #: devices.toml's configuration of each alarm point, before signed limit changes
        self._base_alarm_configs = {k: p.config for k, p in self.alarms.points.items()}
        #: signed limit changes in force, per point (kept in the store)
        self.alarm_settings: dict[Key, dict[str, Any]] = {}
        self._saved_snapshots: dict[Key, dict[str, Any]] = {}
        self.alarm_errors = 0
        self.alarms_restored = 0
        self.room_status: dict[str, str] = {}
        self._room_points: dict[str, list[tuple[str, str]]] = {}
        for d in config.devices:
            for f in d.fields:
                if d.room is not None and (d.id, f.name) in self.alarms.points:
                    self._room_points.setdefault(d.room, []).append((d.id, f.name))

        # records: a writer thread owns the SQLite store (none configured: nothing recorded)
        self.store: StoreWriter | None = None
        store_path = config.floor.store_path(config.path)
        if store_path is not None:
            self.store = StoreWriter(store_path, raw_retention_s=float(config.floor.raw_retention))
            self.sinks.append(self.store.reading)

        self.devices: dict[str, DeviceRuntime] = {}
        for d in config.devices:
            ctx = DeviceContext(
                device=d,
                options=config.device_options.get(d.id),
                hub=self.hubs.get(d.via) if d.via else None,
                room=config.room(d.room),
                log=logging.getLogger(f"floorctl.device.{d.id}"),
                emit_event=self.emit_event,
            )
            rt = DeviceRuntime(d, ctx)
            if not d.enabled:
                rt.state = DeviceState.DISABLED
            self.devices[d.id] = rt

    # --- payloads ----------------------------------------------------------------------------

    def _status(self, state: str) -> dict[str, Any]:
        return {
            "v": SCHEMA_VERSION,
            "state": state,
            "floor": self.config.floor.id,
            "version": __version__,
            "pid": os.getpid(),
            "since": self.started_at,
            "config_sha256": self.config.sha256,
            "time": time.time(),
        }

    def _device_status(self, rt: DeviceRuntime) -> dict[str, Any]:
        d = rt.config
        return {
            "v": SCHEMA_VERSION,
            "device": d.id,
            "name": d.name,
            "kind": d.kind,
            "room": d.room,
            "via": d.via,
            "state": rt.state,
            "since": rt.state_since,
            "interval": float(d.interval),
            "stale_after": d.stale_after,
            "counters": rt.ctx.counters.as_payload(),
            # what the driver knows about the device itself (a balance's serial number)
            "driver": _driver_status(rt.driver),
            "time": time.time(),
        }

    def stats(self) -> dict[str, Any]:
        hubs = {name: hub.counters.as_payload() for name, hub in self.hubs.items()}
        return {
            "v": SCHEMA_VERSION,
            "readings": self.readings_total,
            "bad": self.bad_total,
            "hook_errors": self.hook_errors,
            "stale_points": len(self._stale),
            "devices": {
                s: sum(1 for r in self.devices.values() if r.state == s)
                for s in (
                    DeviceState.ONLINE,
                    DeviceState.COMM_LOSS,
                    DeviceState.STARTING,
                    DeviceState.ERROR,
                    DeviceState.DISABLED,
                )
            },
            "hubs": hubs,
            "publisher": self.publisher.counters.as_payload() if self.publisher else None,
            "publish_backlog": self.publisher.backlog if self.publisher else 0,
            "notify": self.notify.counters() if self.notify else {},
            "time": time.time(),
        }

    async def _birth(self, hub: MqttHub) -> None:
        await hub.publish(self.topics.status, dumps(self._status("online")), qos=1, retain=True)
        if self.publisher is not None:
            self.publisher.resync()  # the broker may have lost the retained point state
            for device, point in self.alarms.points:
                self._publish_alarm(device, point, None)
            for room in self.config.rooms:
                self._update_room(room.id, force=True)
        for rt in self.devices.values():
            await hub.publish(
                self.topics.device_status(rt.config.id),
                dumps(self._device_status(rt)),
                qos=1,
                retain=True,
            )

    # --- ingest ------------------------------------------------------------------------------

    def ingest(self, device: DeviceRuntime, batch: list[Reading]) -> None:
        """Every reading of every device passes here: counters, staleness, sinks, hooks."""
        now = time.monotonic()
        device.last_seen = now
        counters = device.ctx.counters
        if device.state != DeviceState.ONLINE:
            self._set_state(device, DeviceState.ONLINE)
        for r in batch:
            key = (r.device, r.point)
            self.readings_total += 1
            counters.readings += 1
            if r.quality is not Quality.GOOD:
                self.bad_total += 1
                counters.bad += 1
            counters.last_reading_time = r.receive_time
            self._point_seen[key] = now
            self._point_last[key] = r
            self._stale.discard(key)
            self._fan_out(r)

    def _fan_out(self, r: Reading) -> None:
        """Hand a reading to every sink, every floorctl_on_reading implementation and the
        alarm engine."""
        for sink in self.sinks:
            sink(r)
        if r.key in self.alarms.points:
            self._alarm_transitions(self.alarms.feed(r, time.time()))
        for plugin, fn, argnames in self._on_reading:
            try:
                fn(*(r for _ in argnames))
            except Exception:  # a plugin bug never stops ingest, nor the other plugins
                self.hook_errors += 1
                log.exception("floorctl_on_reading of plugin %s failed", plugin)

    def emit_event(self, event: Event) -> None:
        self._events.put_nowait(event)

    def _set_state(self, rt: DeviceRuntime, state: str, detail: str = "") -> None:
        old = rt.state
        rt.state = state
        rt.state_since = time.time()
        if state == DeviceState.COMM_LOSS:
            self.emit_event(Event(EventKind.COMM_LOSS, rt.config.id, detail))
        elif state == DeviceState.ONLINE and old == DeviceState.COMM_LOSS:
            self.emit_event(Event(EventKind.COMM_RESTORED, rt.config.id, "readings again"))
        self._publish_soon(self.topics.device_status(rt.config.id), self._device_status(rt))
        key = (rt.config.id, COMM_POINT)
        if key in self.alarms.points:
            lost = state in (DeviceState.COMM_LOSS, DeviceState.ERROR)
            flag = Reading(
                rt.config.id, COMM_POINT, 1.0 if lost else 0.0, Quality.GOOD, detail=detail or None
            )
            self._alarm_transitions(self.alarms.feed(flag, time.time()))

    def _publish_soon(self, topic: str, payload: dict[str, Any], *, retain: bool = True) -> None:
        if self.publisher is None:
            return
        asyncio.get_running_loop().create_task(self._publish_quietly(topic, payload, retain))

    async def _publish_quietly(self, topic: str, payload: dict[str, Any], retain: bool) -> None:
        try:
            await self.state_hub.publish(topic, dumps(payload), qos=1, retain=retain)
        except NotConnected:
            pass  # device status is republished in full on every (re)connect

    # --- alarms ------------------------------------------------------------------------------

    def _alarm_transitions(
        self, transitions: list[Transition], *, signed_seq: int | None = None
    ) -> None:
        """Record each transition with the point's new saved state, publish the state at once
        (never coalesced), tell plugins, and update the status of the rooms concerned.
        ``signed_seq``: the audit entry of the signed operator action that caused the
        transitions carrying a user."""
        rooms: set[str] = set()
        for t in transitions:
            if self.store is not None:
                self.store.alarm(t, audit_seq=signed_seq if t.user else None)
                self._save_alarm_state(t.key, t.time)
            log.info(
                "alarm %s/%s: %s -> %s (%s)", t.device, t.point, t.from_state, t.to_state, t.cause
            )
            self._publish_alarm(t.device, t.point, t)
            for plugin, fn, argnames in self._on_alarm:
                try:
                    fn(*(t for _ in argnames))
                except Exception:  # a notification bug never stops the alarm engine
                    self.alarm_errors += 1
                    log.exception("floorctl_on_alarm of plugin %s failed", plugin)
            room = self.config.device(t.device).room if self.config.device(t.device) else None
            if room is not None:
                rooms.add(room)
        for room in rooms:
            self._update_room(room)

    def alarm_payload(
        self, device: str, point: str, last: Transition | None = None
    ) -> dict[str, Any]:
        p = self.alarms.point(device, point)
        pl = self.limits.get((device, point))
        return {
            "v": SCHEMA_VERSION,
            "device": device,
            "point": point,
            "room": self.config.device(device).room if self.config.device(device) else None,
            "quantity": pl.quantity.value if pl else None,
            "state": p.state.value,
            "severity": p.severity.value if p.severity else None,
            "value": p.value,
            "shelf": None if p.shelf is None else attrs.asdict(p.shelf),
            "last": last.as_payload() if last is not None else None,
            "time": time.time(),
        }

    def _publish_alarm(self, device: str, point: str, last: Transition | None) -> None:
        if self.publisher is None:
            return
        try:
            self.state_hub.publish_nowait(
                self.topics.alarm(device, point),
                dumps(self.alarm_payload(device, point, last)),
                qos=1,
                retain=True,
            )
        except NotConnected:
            pass  # every alarm state is republished on (re)connect

    def room_state(self, room: str) -> str:
        """ok, alert, action, no-data (a point cannot be evaluated: never 'ok'), or
        out-of-service (every alarm point of the room is)."""
        points = [self.alarms.points[k] for k in self._room_points.get(room, [])]
        shown = [p for p in points if p.state.annunciated]
        if points and not shown and all(p.state is AlarmState.OUT_OF_SERVICE for p in points):
            return "out-of-service"
        severities = {p.severity for p in shown if p.state.active}
        if Severity.ACTION in severities:
            return "action"
        if Severity.ALERT in severities:
            return "alert"
        if any(p.state is AlarmState.CANNOT_EVALUATE for p in shown):
            return "no-data"
        return "ok"

    def _update_room(self, room: str, *, force: bool = False) -> None:
        status = self.room_state(room)
        if not force and self.room_status.get(room) == status:
            return
        self.room_status[room] = status
        if self.publisher is None:
            return
        payload = {"v": SCHEMA_VERSION, "room": room, "status": status, "time": time.time()}
        try:
            self.state_hub.publish_nowait(
                self.topics.room_status(room), dumps(payload), qos=1, retain=True
            )
        except NotConnected:
            pass  # republished on (re)connect

    async def _alarm_ticks(self) -> None:
        """Delays, shelving expiry and re-alarm run on time even when no reading comes; the
        alarm states are saved every SNAPSHOT_INTERVAL."""
        next_save = time.monotonic() + SNAPSHOT_INTERVAL
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            self._alarm_transitions(self.alarms.tick(now))
            if self.store is not None and time.monotonic() >= next_save:
                next_save = time.monotonic() + SNAPSHOT_INTERVAL
                for key in self.alarms.points:
                    self._save_alarm_state(key, now)

    def _save_alarm_state(self, key: Key, now: float) -> None:
        """Queue the point's state for the store if it changed since it was last saved."""
        assert self.store is not None
        p = self.alarms.points[key]
        snap = p.snapshot()
        if self._saved_snapshots.get(key) == snap:
            return
        self._saved_snapshots[key] = snap
        self.store.alarm_state(f"{key[0]}/{key[1]}", p.state.value, snap, now)

    def restore_alarms(
        self,
        states: Mapping[str, tuple[str, dict[str, Any], float]],
        settings: Mapping[str, tuple[dict[str, Any], int, float]],
        now: float,
    ) -> int:
        """Take up the saved alarm states and signed limit changes (the store's) after a
        restart. Points no longer configured are skipped (logged). Returns how many states
        were restored."""
        for name, (values, seq, _t) in settings.items():
            key = _alarm_key(name)
            p = self.alarms.points.get(key)
            if p is None:
                log.warning("limit change (audit %d) for %s: no such alarm point now", seq, name)
                continue
            try:
                p.replace_config(actions.config_with(self._base_alarm_configs[key], values))
            except ValueError as exc:
                log.error("limit change (audit %d) for %s no longer applies: %s", seq, name, exc)
                continue
            self.alarm_settings[key] = dict(values)
        restored = 0
        for name, (_state, snap, _t) in states.items():
            key = _alarm_key(name)
            p = self.alarms.points.get(key)
            if p is None:
                log.warning("saved alarm state of %s: no such alarm point now", name)
                continue
            try:
                p.restore(snap, now)
            except ValueError as exc:
                self.alarm_errors += 1
                log.error("%s; the alarm starts afresh", exc)
                continue
            self._saved_snapshots[key] = p.snapshot()
            restored += 1
        self.alarms_restored = restored
        return restored

    # --- signed requests ---------------------------------------------------------------------

    async def _signed(
        self,
        spec: actions.ActionSpec,
        signer: Signer,
        *,
        action: str,
        target: str,
        old_value: Any = None,
        new_value: Any = None,
        now: float,
    ) -> tuple[int, str, str]:
        """Authenticate (both components), check the role, and record the action with its
        signature, in the writer thread. Returns (audit seq, role, printed name); raises
        Refused with the reply's code. Failures are audited by the user store."""
        if self.store is None:
            raise Refused(
                "no-store",
                "this floor keeps no records ([floor] store is not set): signed requests "
                "cannot be recorded, so none are accepted",
            )

        def sign(store: Any, _trail: Any) -> tuple[int, str, str]:
            users = Users(store)
            entry, _sig = users.signed_action(
                signer.user,
                signer.secret,
                spec.meaning,
                action=action,
                target=target,
                comment=signer.comment or None,
                old_value=old_value,
                new_value=new_value,
                roles=spec.roles,
                now=now,
            )
            user = users.get(signer.user)
            assert user is not None
            return entry.seq, user.role.value, user.printed_name

        try:
            return await asyncio.wrap_future(self.store.submit(sign))
        except (UnknownUser, WrongSecret) as exc:
            detail = str(exc) if isinstance(exc, WrongSecret) else "unknown user"
            raise Refused("auth", f"signature refused: {detail}") from None
        except Locked as exc:
            raise Refused("locked", f"signature refused: {exc}") from None
        except Disabled as exc:
            raise Refused("disabled", f"signature refused: {exc}") from None
        except PermissionDenied as exc:
            raise Refused("role", f"not permitted: {exc}") from None
        except AuthError as exc:
            raise Refused("auth", f"signature refused: {exc}") from None

    async def _durable(self) -> None:
        """Wait until everything queued for the store so far is committed."""
        if self.store is not None:
            await asyncio.wrap_future(self.store.submit(lambda _s, _t: None))

    async def _refuse_bad(self, exc: BadRequest, what: str, device: str = "", **extra: Any) -> None:
        """A malformed request: logged, and refused in a reply when it named an id."""
        log.warning("%s refused: %s", what, exc)
        if exc.request_id is not None:
            await self._reply(
                reply(
                    exc.request_id,
                    device,
                    None,
                    Status.REFUSED,
                    error=str(exc),
                    reason="bad-request",
                    **extra,
                )
            )

    def _on_query(self, topic: str, payload: bytes) -> None:
        kind = topic.rsplit("/", 1)[-1]
        asyncio.get_running_loop().create_task(self._run_query(kind, payload))

    async def _run_query(self, kind: str, payload: bytes) -> None:
        try:
            doc, request_id = parse_document(payload)
        except BadRequest as exc:
            await self._refuse_bad(exc, f"{kind} query", query=kind)
            return
        try:
            if self.store is None:
                raise Refused("no-store", "this floor keeps no records ([floor] store is not set)")
            handler = {
                "history": self._history,
                "audit": self._audit,
                "batch-record": self._batch_record,
            }[kind]
            result = await handler(doc)
            device = result.pop("device", "")
            answer = reply(request_id, device, None, Status.DONE, query=kind, **result)
        except Refused as exc:
            answer = reply(
                request_id, "", None, Status.REFUSED, error=str(exc), reason=exc.reason, query=kind
            )
        except Exception as exc:  # a store problem is a failed query, never a dead daemon
            log.exception("%s query failed", kind)
            answer = reply(request_id, "", None, Status.FAILED, error=str(exc), query=kind)
        await self._reply(answer)

    async def _history(self, doc: dict[str, Any]) -> dict[str, Any]:
        device, point = doc.get("device"), doc.get("point")
        dev = self.config.device(device) if isinstance(device, str) else None
        if dev is None or dev.get_field(point) is None:
            raise Refused("bad-request", f"no point {device}/{point}")
        now = time.time()
        try:
            since = float(doc.get("since", now - 3600.0))
            until = float(doc.get("until", now))
            buckets = int(doc.get("buckets", 120))
        except (TypeError, ValueError) as exc:
            raise Refused("bad-request", f"since, until, buckets: numbers ({exc})") from None
        if not (until > since and 1 <= buckets <= HISTORY_MAX_BUCKETS):
            raise Refused(
                "bad-request",
                f"until must be after since, and 1 <= buckets <= {HISTORY_MAX_BUCKETS}",
            )
        assert self.store is not None
        series = await asyncio.wrap_future(
            self.store.submit(lambda s, _t: s.series(device, point, since, until, buckets))
        )
        return {
            "device": device,
            "point": point,
            "since": since,
            "until": until,
            "series": [list(row) for row in series],
        }

    async def _batch_record(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The batch environmental record (docs/batch-record.md) of ``batch`` from the plan and
        schedule files named (paths on the daemon's machine)."""
        from floorctl import batchrecord
        from floorctl.scheduler import ScheduleFileError, read_schedule
        from floorctl.scheduler.plan import PlanError, load_plan

        batch, plan, sched = doc.get("batch"), doc.get("plan"), doc.get("schedule")
        if not all(isinstance(x, str) and x for x in (batch, plan, sched)):
            raise Refused("bad-request", "batch, plan and schedule: required (strings)")

        def make(store: Any, _trail: Any) -> dict[str, Any]:
            try:
                problem = load_plan(plan, floor=self.config.path)
                schedule = read_schedule(sched)
                rec = batchrecord.gather(
                    batch, config=self.config, problem=problem, schedule=schedule,
                    store=store, limits=self.limits, now=time.time(),
                )  # fmt: skip
            except (PlanError, ScheduleFileError, batchrecord.RecordError, OSError) as exc:
                raise Refused("bad-request", str(exc)) from None
            return {
                "batch": batch,
                "clean": rec.clean,
                "record": json.loads(batchrecord.to_json(rec)),
                "markdown": batchrecord.to_markdown(rec),
            }

        assert self.store is not None
        return await asyncio.wrap_future(self.store.submit(make))

    async def _audit(self, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            limit = int(doc.get("limit", 100))
        except (TypeError, ValueError):
            raise Refused("bad-request", "limit: a number") from None
        if not 1 <= limit <= AUDIT_MAX_ENTRIES:
            raise Refused("bad-request", f"limit: 1 to {AUDIT_MAX_ENTRIES}")
        verify = bool(doc.get("verify", False))

        def read(_s: Any, trail: Any) -> dict[str, Any]:
            head = trail.head()
            first = max(0, head.seq - limit) if head else 0
            out: dict[str, Any] = {"entries": [attrs.asdict(e) for e in trail.entries(first)][::-1]}
            if verify:
                result = trail.verify()
                out["verify"] = {**attrs.asdict(result), "describe": result.describe()}
            return out

        assert self.store is not None
        return await asyncio.wrap_future(self.store.submit(read))

    def _on_actual(self, topic: str, payload: bytes) -> None:
        asyncio.get_running_loop().create_task(self._run_actual(payload))

    async def _run_actual(self, payload: bytes) -> None:
        try:
            req = batches.parse_actual_request(payload)
        except BadRequest as exc:
            await self._refuse_bad(exc, "actual")
            return
        await self._reply(await self.record_actual(req))

    async def record_actual(self, req: batches.ActualRequest) -> dict[str, Any]:
        """Check a technician's actual start or end against what is recorded, sign and record
        it; the reply says accepted or why not."""

        def answer(status: str, **kw: Any) -> dict[str, Any]:
            return reply(
                req.id, "", None, status, batch=req.batch, operation=req.operation,
                event=req.event, **kw,
            )  # fmt: skip

        if self.store is None:
            return answer(
                Status.REFUSED,
                reason="no-store",
                error="this floor keeps no records ([floor] store is not set)",
            )
        now = time.time()
        recorded = await asyncio.wrap_future(self.store.submit(lambda s, _t: s.actuals(req.batch)))
        try:
            when, previous = batches.check_actual(req, recorded, now)
        except batches.ActualRefused as exc:
            return answer(Status.REFUSED, reason="state", error=str(exc))
        target = f"batch:{req.batch}/{req.operation}"
        try:
            seq, _role, _name = await self._signed(
                batches.RECORD_ACTUAL,
                req.signer,
                action=f"batch.{req.event}",
                target=target,
                old_value=None if previous is None else batches.iso(previous.time),
                new_value={"time": batches.iso(when)},
                now=now,
            )
        except Refused as exc:
            return answer(Status.REFUSED, reason=exc.reason, error=str(exc))
        actual = Actual(
            req.batch, req.operation, req.event, when, now, req.signer.user,
            req.signer.comment or None, seq,
        )  # fmt: skip
        await asyncio.wrap_future(self.store.submit(lambda s, _t: s.record_actual(actual)))
        return answer(
            Status.ACCEPTED,
            result=f"{req.event} {batches.iso(when)}"
            + (f" (corrects {batches.iso(previous.time)})" if previous else ""),
            time=when,
            audit_seq=seq,
        )

    def _on_alarm_request(self, topic: str, payload: bytes) -> None:
        device, point = topic.split("/")[-2:]
        asyncio.get_running_loop().create_task(self._run_alarm_request(device, point, payload))

    async def _run_alarm_request(self, device: str, point: str, payload: bytes) -> None:
        try:
            req = actions.parse_alarm_request(device, point, payload)
        except BadRequest as exc:
            await self._refuse_bad(exc, f"alarm request for {device}/{point}", device, point=point)
            return
        await self._reply(await self.alarm_action(req))

    async def alarm_action(self, req: actions.AlarmRequest) -> dict[str, Any]:
        """Check, sign, record and apply one operator action on an alarm; the reply document
        says accepted (with the new state) or refused and exactly why."""

        def answer(status: str, **kw: Any) -> dict[str, Any]:
            return reply(req.id, req.device, None, status, point=req.point, action=req.action, **kw)

        p = self.alarms.points.get((req.device, req.point))
        if p is None:
            return answer(
                Status.REFUSED,
                reason="bad-request",
                error=f"no alarm point {req.device}/{req.point}",
            )
        old = p.state
        config = None
        try:
            if req.action == "set-limits":
                changes = actions.limit_settings(p, req.args)
                merged = {**self.alarm_settings.get(p.key, {}), **changes}
                config = actions.config_with(self._base_alarm_configs[p.key], merged)
            trial = actions.dry_run(p, req, time.time(), config=config)
        except InvalidTransition as exc:
            return answer(Status.REFUSED, reason="state", error=str(exc))
        except (ActionRefused, ValueError) as exc:
            return answer(Status.REFUSED, reason="argument", error=str(exc))
        expected = trial[-1].to_state if trial else old
        if req.action == "set-limits":
            assert config is not None
            old_value: Any = {k: _jsonable(getattr(p.config, k)) for k in changes}
            new_value: Any = changes
        else:
            old_value = old.value
            new_value = {"state": expected.value, **req.args}
        now = time.time()
        try:
            seq, role, _name = await self._signed(
                actions.ACTIONS[req.action],
                req.signer,
                action=f"alarm.{req.action}",
                target=req.target,
                old_value=old_value,
                new_value=new_value,
                now=now,
            )
        except Refused as exc:
            log.warning("alarm %s/%s: %s refused: %s", req.device, req.point, req.action, exc)
            return answer(Status.REFUSED, reason=exc.reason, error=str(exc))
        try:
            transitions = actions.apply(p, req, time.time(), role=role, config=config)
        except (ActionRefused, InvalidTransition) as exc:
            # signed, but the alarm moved on while the signature was checked: say so, on record
            assert self.store is not None
            self.store.audit(
                user_id=req.signer.user,
                printed_name=_name,
                action=f"alarm.{req.action}.not-applied",
                target=req.target,
                reason=f"signed as audit entry {seq}, then refused: {exc}",
            )
            await self._durable()
            return answer(
                Status.REFUSED,
                reason="state",
                error=f"{exc} (the alarm changed while the signature was checked)",
            )
        if req.action == "set-limits":
            self.alarm_settings[p.key] = merged
            assert self.store is not None
            self.store.call(
                lambda s, _t, n=f"{req.device}/{req.point}", m=merged: s.set_alarm_settings(
                    n, m, seq, now
                )
            )
            self._save_alarm_state(p.key, now)
        self._alarm_transitions(transitions, signed_seq=seq)
        await self._durable()  # acknowledged means on disk
        return answer(
            Status.ACCEPTED,
            result=f"{old.value} -> {p.state.value}",
            state=p.state.value,
            audit_seq=seq,
        )

    # --- commands ----------------------------------------------------------------------------

    COMMAND_TIMEOUT = 15.0

    def _on_command(self, topic: str, payload: bytes) -> None:
        device = topic.rsplit("/", 1)[-1]
        asyncio.get_running_loop().create_task(self._run_command(device, payload))

    async def _run_command(self, device_id: str, payload: bytes) -> None:
        try:
            req = parse_request(device_id, payload)
        except BadRequest as exc:
            log.warning("command for %s refused: %s", device_id, exc)
            if exc.request_id is not None:
                await self._reply(
                    reply(exc.request_id, device_id, None, Status.REFUSED, error=str(exc))
                )
            return
        answer = await self.signed_command(req)
        self.emit_event(
            Event(
                EventKind.COMMAND,
                device_id,
                f"{req.command}: {answer['status']}"
                + (f": {answer['result']}" if answer["result"] else "")
                + (f": {answer['error']}" if answer["error"] else ""),
            )
        )
        await self._reply(answer)

    async def signed_command(self, req: CommandRequest) -> dict[str, Any]:
        """A device command from a client: signed (user, password or PIN, role), recorded in
        the audit trail, run, and its outcome recorded too."""
        if req.signer is None:
            return reply(
                req.id,
                req.device,
                req.command,
                Status.REFUSED,
                reason="bad-request",
                error="user and secret: required (device commands are signed)",
            )
        if req.device not in self.devices:
            return await self.run_command(req)  # refused without a signature: no such device
        target = f"device:{req.device}"
        try:
            seq, _role, name = await self._signed(
                actions.DEVICE_COMMAND,
                req.signer,
                action="device.command",
                target=target,
                new_value={"command": req.command, "args": req.args},
                now=time.time(),
            )
        except Refused as exc:
            log.warning("command %s for %s refused: %s", req.command, req.device, exc)
            return reply(
                req.id, req.device, req.command, Status.REFUSED, reason=exc.reason, error=str(exc)
            )
        answer = await self.run_command(req)
        assert self.store is not None
        self.store.audit(
            user_id=req.signer.user,
            printed_name=name,
            action=f"device.command.{answer['status']}",
            target=target,
            new_value={"command": req.command, "result": answer["result"]},
            reason=answer["error"] or f"signed as audit entry {seq}",
        )
        await self._durable()
        return {**answer, "audit_seq": seq}

    async def run_command(self, req: CommandRequest) -> dict[str, Any]:
        """Run one command through the device's driver; the reply document says how it went."""
        rt = self.devices.get(req.device)
        if rt is None:
            return reply(
                req.id, req.device, req.command, Status.REFUSED, error=f"no device {req.device!r}"
            )
        driver = rt.driver
        commands = getattr(driver, "commands", {}) if driver is not None else {}
        if driver is None or rt.state in (DeviceState.DISABLED, DeviceState.STARTING):
            return reply(
                req.id,
                req.device,
                req.command,
                Status.REFUSED,
                error=f"device {req.device!r} is {rt.state}, not running",
            )
        if req.command not in commands:
            known = ", ".join(sorted(commands)) or "none"
            return reply(
                req.id,
                req.device,
                req.command,
                Status.REFUSED,
                error=f"device {req.device!r} has no command {req.command!r} (it has: {known})",
            )
        try:
            async with asyncio.timeout(self.COMMAND_TIMEOUT):
                result = await driver.command(req.command, req.args)
        except CommandError as exc:
            return reply(req.id, req.device, req.command, Status.FAILED, error=str(exc))
        except TimeoutError:
            return reply(
                req.id,
                req.device,
                req.command,
                Status.FAILED,
                error=f"no answer within {self.COMMAND_TIMEOUT:g}s",
            )
        except Exception as exc:  # a driver bug is a failed command, never a dead daemon
            log.exception("device %s: command %s failed", req.device, req.command)
            return reply(
                req.id, req.device, req.command, Status.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
        return reply(req.id, req.device, req.command, Status.DONE, result=result)

    async def _reply(self, answer: dict[str, Any]) -> None:
        try:
            await self.state_hub.publish(self.topics.reply(answer["id"]), dumps(answer), qos=1)
        except NotConnected:
            log.warning("reply to command %s lost: broker unreachable", answer["id"])

    # --- tasks -------------------------------------------------------------------------------

    async def _run_device(self, rt: DeviceRuntime) -> None:
        kind = self.kinds.get(rt.config.kind)
        assert kind is not None  # checked by the config loader
        backoff = 1.0
        while True:
            driver: Driver | None = None
            try:
                driver = kind.driver(rt.ctx)
                rt.driver = driver
                await driver.start()
                backoff = 1.0
                async for batch in driver.readings():
                    self.ingest(rt, batch)
                raise RuntimeError("driver stopped yielding readings")
            except asyncio.CancelledError:
                raise
            except DeviceUnavailable as exc:
                rt.ctx.counters.error(str(exc))
            except Exception as exc:  # a driver bug never takes the floor down
                rt.ctx.counters.error(f"{type(exc).__name__}: {exc}")
                log.exception(
                    "device %s: driver failed; restarting in %.0fs", rt.config.id, backoff
                )
                if rt.state != DeviceState.COMM_LOSS:
                    self._set_state(rt, DeviceState.ERROR, str(exc))
            finally:
                if driver is not None:
                    try:
                        await driver.stop()
                    except Exception:
                        log.debug("device %s: stop failed", rt.config.id, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    async def _watch_stale(self) -> None:
        """Mark points stale and devices comm-lost when values stop arriving."""
        while True:
            await asyncio.sleep(0.25)
            self.check_stale(time.monotonic())

    def check_stale(self, now: float) -> None:
        for rt in self.devices.values():
            if rt.state == DeviceState.DISABLED:
                continue
            limit = rt.config.stale_after
            last = rt.last_seen if rt.last_seen is not None else rt.started
            # a device whose driver cannot start (a failed test-register check) stays "error":
            # its points still go stale below, but it is not a communication loss
            if now - last > limit and rt.state not in (DeviceState.COMM_LOSS, DeviceState.ERROR):
                age = f"no reading for {now - last:.1f}s (limit {limit:g}s)"
                self._set_state(rt, DeviceState.COMM_LOSS, age)
            for f in rt.config.fields:
                key = (rt.config.id, f.name)
                seen = self._point_seen.get(key, rt.started)
                if key not in self._stale and now - seen > limit:
                    self._stale.add(key)
                    prev = self._point_last.get(key)
                    stale = Reading(
                        rt.config.id,
                        f.name,
                        prev.value if prev else None,
                        Quality.STALE,
                        source_time=prev.source_time if prev else None,
                        unit=f.unit,
                        detail=f"no value for {now - seen:.1f}s",
                    )
                    self._point_last[key] = stale
                    self._fan_out(stale)

    async def _dispatch_events(self) -> None:
        while True:
            event = await self._events.get()
            log.info("event %s %s %s", event.kind, event.source, event.detail)
            if self.store is not None:
                self.store.event(event)
            for plugin, fn, argnames in self._on_event:
                try:
                    fn(*(event for _ in argnames))
                except Exception:  # one plugin must not stop the others
                    self.hook_errors += 1
                    log.exception("floorctl_on_event of plugin %s failed", plugin)
            if self.publisher is None:
                continue
            # Events are facts (comm loss during a broker outage is exactly the one that
            # matters): wait for the broker and keep their order rather than drop them.
            while True:
                await self.state_hub.connected.wait()
                try:
                    await self.state_hub.publish(
                        self.topics.events, dumps(event.as_payload()), qos=1
                    )
                    break
                except NotConnected:
                    await asyncio.sleep(0.2)

    async def _publish_stats(self) -> None:
        while True:
            await asyncio.sleep(float(self.config.floor.stats_interval))
            if self.publisher is None:
                continue
            try:
                await self.state_hub.publish(
                    self.topics.stats, dumps(self.stats()), qos=0, retain=True
                )
                for rt in self.devices.values():
                    await self.state_hub.publish(
                        self.topics.device_status(rt.config.id),
                        dumps(self._device_status(rt)),
                        qos=0,
                        retain=True,
                    )
            except NotConnected:
                pass

    async def _guard(self, factory: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a floor-wide task; if it ever fails, log it and start it again."""
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting it in 1s", what)
                await asyncio.sleep(1.0)

    async def run(self) -> None:
        """Run until ``stop()`` is called (or a signal arrives, if installed)."""
        self.emit_event(Event(EventKind.DAEMON_START, "daemon", f"floorctl {__version__}"))
        if self.store is not None:
            self.store.start()
            saved = await asyncio.wrap_future(
                self.store.submit(lambda s, _t: (s.alarm_states(), s.alarm_settings()))
            )
            restored = self.restore_alarms(*saved, now=time.time())
            self.store.audit(
                user_id="system",
                printed_name="floorctl daemon",
                action="config.load",
                target=self.config.path or "devices.toml",
                new_value={
                    "floor": self.config.floor.id,
                    "devices": len(self.config.devices),
                    "alarm_states_restored": restored,
                    "limit_changes_in_force": len(self.alarm_settings),
                },
                config_hash=self.config.sha256,
            )
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._guard(hub.run, f"hub {name}"), name=f"hub {name}")
                    for name, hub in self.hubs.items()
                ]
                if self.publisher is not None:
                    tasks.append(tg.create_task(self._guard(self.publisher.run, "publisher")))
                tasks.append(tg.create_task(self._guard(self._dispatch_events, "events")))
                tasks.append(tg.create_task(self._guard(self._watch_stale, "stale detection")))
                tasks.append(tg.create_task(self._guard(self._alarm_ticks, "alarm timers")))
                tasks.append(tg.create_task(self._guard(self._publish_stats, "stats")))
                for rt in self.devices.values():
                    if rt.state != DeviceState.DISABLED:
                        rt.started = time.monotonic()
                        tasks.append(
                            tg.create_task(self._run_device(rt), name=f"device {rt.config.id}")
                        )
                await self._stopping.wait()
                await self._say_goodbye()
                for t in tasks:
                    t.cancel()
        finally:
            for hub in self.hubs.values():
                if isinstance(hub, ModbusHub):
                    hub.close()
            if self.store is not None:
                await asyncio.to_thread(self.store.close)  # writes what is still queued
            if self.notify is not None:
                await asyncio.to_thread(self.notify.close)  # delivers what is still queued
                self.pm.unregister(self.notify)

    async def _say_goodbye(self) -> None:
        """A clean stop publishes "offline" itself (the will fires only on a crash)."""
        if self.publisher is None or not self.state_hub.connected.is_set():
            return
        try:
            async with asyncio.timeout(1.0):
                await self.state_hub.publish(
                    self.topics.status, dumps(self._status("offline")), qos=1, retain=True
                )
        except (TimeoutError, NotConnected):
            log.warning("could not publish the offline status before stopping")

    def stop(self) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)


def _alarm_key(name: str) -> Key:
    device, _, point = name.partition("/")
    return device, point


def _jsonable(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _driver_status(driver: Driver | None) -> dict[str, Any] | None:
    status = getattr(driver, "status", None)
    if not callable(status):
        return None
    try:
        result = status()
    except Exception:  # a driver bug must not break status publishing
        log.exception("driver status failed")
        return None
    return result if isinstance(result, dict) else None


def connection_summary(conn: MqttConnection | ModbusConnection) -> str:
    kind = "mqtt" if isinstance(conn, MqttConnection) else "modbus"
    return f"{kind} {conn.name} {conn.host}:{conn.port}"
