"""Helpers for integration tests: run a Floor in-process, watch MQTT topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiomqtt

from floorctl.config import Config, parse_config
from floorctl.daemon import Floor
from floorctl.model import Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.store.db import Store
from floorctl.store.users import ScryptParams, Users

#: user id -> (printed name, role, PIN): the people of the signed-request tests
PEOPLE = {
    "tech": ("Terry Tech", "technician", "1111"),
    "sup": ("Sam Supervisor", "supervisor", "2222"),
    "qa": ("Quinn QA", "qa", "3333"),
    "plan": ("Pat Planner", "planner", "4444"),
}


#: an ante room and a positive ISO 7 buffer room against it (action below 5 Pa, alert below 10)
ANTE_AND_BUFFER = """
[[room]]
id = "ante"
iso_class = 8
pressure = "positive"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
pressure_reference = "ante"
"""


def dp_monitor(device: str, room: str = "buffer") -> str:
    """An mqtt_json differential-pressure monitor on connection "b", topic gw/<device>,
    alarms without delays, never stale within a test."""
    return f"""
[[device]]
id = "{device}"
kind = "mqtt_json"
via = "b"
room = "{room}"
interval = "300ms"
expire_after = "1h"
[device.options]
state_topic = "gw/{device}"
[[device.fields]]
name = "dp"
unit = "Pa"
path = "dp"
quantity = "differential_pressure"
alarm = {{ alert_on_delay = "0s", action_on_delay = "0s", off_delay = "0s" }}
"""


def make_users(db: Any) -> None:
    """An admin and PEOPLE in the store at ``db`` (cheap scrypt), ready to sign."""
    with Store(db) as store:
        users = Users(store, params=ScryptParams(n=2**10))
        admin = users.add("admin", "Ada Admin", "admin", "9999", by=None)
        for uid, (name, role, pin) in PEOPLE.items():
            users.add(uid, name, role, "0000", by=admin)
            users.set_secret(uid, pin, by=users.authenticate(uid, "0000"))


def signer(user: str, comment: str = "", secret: str | None = None) -> dict[str, str]:
    """The signature fields of a request document for one of PEOPLE."""
    return {"user": user, "secret": secret or PEOPLE[user][2], "comment": comment}


def make_config(text: str, **env: object) -> tuple[Config, Any, Any]:
    pm = get_plugin_manager(autoload=False)
    kinds = collect_kinds(pm)
    config = parse_config(text.encode(), kinds, env={k: str(v) for k, v in env.items()})
    return config, pm, kinds


@contextlib.asynccontextmanager
async def running_floor(
    text: str, *, plugins: Iterable[object] = (), **env: object
) -> AsyncIterator[tuple[Floor, list[Reading]]]:
    """A Floor running in this event loop; yields it and the list of every reading it ingests."""
    pm = get_plugin_manager(autoload=False, plugins=plugins)
    kinds = collect_kinds(pm)
    config = parse_config(text.encode(), kinds, env={k: str(v) for k, v in env.items()})
    seen: list[Reading] = []
    floor = Floor(config, pm, kinds, sinks=[seen.append])
    task = asyncio.create_task(floor.run())
    try:
        await floor.state_hub.wait_connected(10)
        yield floor, seen
    finally:
        floor.stop()
        await asyncio.wait_for(task, 5)


class Watcher:
    """Subscribes to a topic filter and keeps every message (topic, JSON or bytes, retain)."""

    def __init__(self, port: int, topic: str = "#", *, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.topic = topic
        self.messages: list[tuple[str, Any, bool]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(self.host, self.port) as client:
            await client.subscribe(self.topic, qos=1)
            self._ready.set()
            async for m in client.messages:
                payload = (
                    bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else m.payload
                )
                try:
                    body: Any = json.loads(payload)
                except (ValueError, TypeError):
                    body = payload
                self.messages.append((m.topic.value, body, m.retain))

    def on(self, topic: str) -> list[Any]:
        return [body for t, body, _ in self.messages if t == topic]

    async def wait_for(
        self, predicate: Callable[[list[tuple[str, Any, bool]]], bool], timeout: float = 10.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            if time.monotonic() > deadline:
                tail = "\n".join(f"{t} {b}" for t, b, _ in self.messages[-15:])
                raise AssertionError(f"timed out waiting; last messages:\n{tail}")
            await asyncio.sleep(0.02)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def publish(
    port: int, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, payload, qos=qos, retain=retain)
