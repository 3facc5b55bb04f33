"""The daemon against a real mosquitto: live state, bad device input, staleness, overflow."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess

import pytest

from floorctl.model import Quality

from .floorkit import Watcher, publish, running_floor, wait_until

pytestmark = pytest.mark.integration

FLOOR = """
[floor]
id = "t1"
republish = "1m"
stats_interval = "500ms"

[[mqtt]]
name = "broker"
port = "${PORT}"
client_id = "floorctl-test-${PORT}"
max_queued_incoming = "${QUEUE:-10000}"

[[room]]
id = "buffer"
iso_class = 7

[[device]]
id = "th1"
kind = "mqtt_json"
via = "broker"
room = "buffer"
interval = "${INTERVAL:-10s}"

[device.options]
state_topic = "gw/th1"
timestamp_path = "ts"
max_payload = 4096

[[device.fields]]
name = "t"
unit = "°C"
path = "s.t"

[[device.fields]]
name = "rh"
unit = "%RH"
path = "s.rh"
"""


async def test_live_state_on_state_topics(mosquitto) -> None:
    async with (
        Watcher(mosquitto.port, "floorctl/t1/#") as w,
        running_floor(FLOOR, PORT=mosquitto.port),
    ):
        await publish(
            mosquitto.port,
            "gw/th1",
            json.dumps({"ts": 1_800_000_000, "s": {"t": 19.5, "rh": 41.0}}),
        )
        await w.wait_for(lambda m: any(t == "floorctl/t1/point/th1/rh" for t, _, _ in m))
        t = w.on("floorctl/t1/point/th1/t")[-1]
        assert t["v"] == 1
        assert (t["value"], t["unit"], t["quality"], t["source_time"]) == (
            19.5,
            "°C",
            "good",
            1_800_000_000,
        )
        status = w.on("floorctl/t1/status")[-1]
        assert status["state"] == "online" and status["v"] == 1
        await w.wait_for(
            lambda m: any(
                t == "floorctl/t1/device/th1/status" and b["state"] == "online" for t, b, _ in m
            )
        )
        await w.wait_for(lambda m: any(t == "floorctl/t1/stats" for t, _, _ in m))
        assert w.on("floorctl/t1/stats")[-1]["readings"] >= 2
    # a clean stop publishes offline itself (retained)
    async with Watcher(mosquitto.port, "floorctl/t1/status") as w2:
        await w2.wait_for(lambda m: bool(m))
        assert w2.messages[-1][1]["state"] == "offline"
        assert w2.messages[-1][2] is True  # retained


BAD_PAYLOADS = [
    (b"{not json", "JSONDecodeError"),
    (b'{"s": {"t": "warm", "rh": 40}}', "expected a number, got str"),
    (b'{"s": {"t": NaN, "rh": 40}}', "NaN"),
    (b'{"s": {"t": Infinity, "rh": 40}}', "infinite"),
    (b'{"s": {"rh": 40}}', "no key 't'"),
    (b"\xff\xfe\x00garbage", "UnicodeDecodeError"),
    (b'{"s": {"t": 1, "rh": 2}, "pad": "' + b"x" * 1_000_000 + b'"}', "exceeds max_payload"),
    (b"[]", "no key 's'"),
    (b"", "JSONDecodeError"),
]


async def test_bad_device_input_becomes_bad_quality(mosquitto) -> None:
    async with running_floor(FLOOR, PORT=mosquitto.port) as (floor, seen):
        rt = floor.devices["th1"]
        for payload, why in BAD_PAYLOADS:
            before = len(seen)
            await publish(mosquitto.port, "gw/th1", payload)
            await wait_until(
                lambda b=before: len(seen) >= b + 2, what=f"readings for {payload[:30]!r}"
            )
            t = next(r for r in seen[before:] if r.point == "t")
            assert t.quality is Quality.BAD, payload[:40]
            assert t.value is None
            assert why in (t.detail or ""), (why, t.detail)
        assert rt.ctx.counters.bad >= len(BAD_PAYLOADS)
        assert rt.ctx.counters.errors >= 4  # undecodable messages count as errors too
        # the daemon is alive and still ingests good values
        await publish(mosquitto.port, "gw/th1", b'{"s": {"t": 20.0, "rh": 45.0}}')
        await wait_until(lambda: seen[-1].quality is Quality.GOOD and seen[-1].point == "rh")
        assert floor.bad_total >= len(BAD_PAYLOADS)


async def test_comm_loss_then_recovery(mosquitto) -> None:
    async with (
        Watcher(mosquitto.port, "floorctl/t1/#") as w,
        running_floor(FLOOR, PORT=mosquitto.port, INTERVAL="200ms") as (floor, _),
    ):
        await publish(mosquitto.port, "gw/th1", b'{"s": {"t": 20.0, "rh": 45.0}}')
        # nothing more arrives: after 3 x 200 ms the point is stale and the device comm-lost
        await w.wait_for(
            lambda m: any(t == "floorctl/t1/events" and b["kind"] == "comm-loss" for t, b, _ in m)
        )
        await w.wait_for(
            lambda m: any(
                t == "floorctl/t1/point/th1/t" and b["quality"] == "stale" for t, b, _ in m
            )
        )
        stale = [b for b in w.on("floorctl/t1/point/th1/t") if b["quality"] == "stale"][-1]
        assert stale["value"] == 20.0  # the last value is kept, marked stale
        assert floor.devices["th1"].state == "comm-loss"
        await publish(mosquitto.port, "gw/th1", b'{"s": {"t": 21.0, "rh": 45.0}}')
        await w.wait_for(
            lambda m: any(
                t == "floorctl/t1/events" and b["kind"] == "comm-restored" for t, b, _ in m
            )
        )
        await w.wait_for(lambda m: w.on("floorctl/t1/point/th1/t")[-1]["quality"] == "good")
        assert w.on("floorctl/t1/point/th1/t")[-1]["value"] == 21.0


async def test_incoming_overflow_is_counted_never_silent(mosquitto) -> None:
    n = 20_000
    async with (
        Watcher(mosquitto.port, "floorctl/t1/events") as w,
        running_floor(FLOOR, PORT=mosquitto.port, QUEUE=20) as (floor, _),
    ):
        hub = floor.state_hub
        lines = "\n".join(json.dumps({"s": {"t": i, "rh": 1}}) for i in range(n)) + "\n"
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub",
            "-p",
            str(mosquitto.port),
            "-q",
            "0",
            "-t",
            "gw/th1",
            "-l",
            stdin=subprocess.PIPE,
        )
        await proc.communicate(lines.encode())
        # every message is either ingested or counted as dropped
        await wait_until(
            lambda: hub.counters.received + hub.counters.dropped >= n,
            timeout=30,
            what="all messages accounted for",
        )
        assert hub.counters.dropped > 0
        assert hub.counters.received + hub.counters.dropped == n
        await w.wait_for(lambda m: any(b["kind"] == "queue-overflow" for _, b, _ in m))
        assert floor.stats()["hubs"]["broker"]["dropped"] == hub.counters.dropped


def test_nan_is_never_published_as_a_number() -> None:
    from floorctl.model import Reading

    r = Reading("d", "p", math.nan, Quality.BAD)
    assert r.as_payload()["value"] is None


async def test_a_failing_plugin_does_not_starve_the_others(mosquitto) -> None:
    from floorctl import hookimpl

    class Broken:
        @hookimpl
        def floorctl_on_reading(self, reading) -> None:
            raise RuntimeError("plugin bug")

        @hookimpl
        def floorctl_on_event(self, event) -> None:
            raise RuntimeError("plugin bug")

    class Recorder:
        def __init__(self) -> None:
            self.readings: list = []
            self.events: list = []

        @hookimpl
        def floorctl_on_reading(self, reading) -> None:
            self.readings.append(reading)

        @hookimpl
        def floorctl_on_event(self, event) -> None:
            self.events.append(event)

    rec = Recorder()
    async with running_floor(
        FLOOR, plugins=[Broken(), rec], PORT=mosquitto.port, INTERVAL="200ms"
    ) as (floor, _):
        await publish(mosquitto.port, "gw/th1", b'{"s": {"t": 20.0, "rh": 45.0}}')
        await wait_until(
            lambda: any(r.quality is Quality.STALE for r in rec.readings), what="stale"
        )
        await wait_until(lambda: any(e.kind == "comm-loss" for e in rec.events), what="comm-loss")
        assert [r.value for r in rec.readings if r.quality is Quality.GOOD] == [20.0, 45.0]
        assert floor.hook_errors >= 3
