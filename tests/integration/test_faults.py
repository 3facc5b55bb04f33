"""Fault tests against the real thing: a broker killed mid-stream, a Modbus device that goes
away and comes back, and device faults served by the simulators."""

from __future__ import annotations

import asyncio
import math
import signal

import pytest

from floorctl.model import Quality
from simulators.modbus_device import ModbusSimServer
from simulators.mqtt_publisher import MqttJsonPublisher
from tests.helpers import free_port

from .floorkit import Watcher, publish, running_floor, wait_until

pytestmark = pytest.mark.integration

STREAM = """
[floor]
id = "faults"

[[mqtt]]
name = "broker"
port = "${PORT}"
client_id = "floorctl-faults-${PORT}"
reconnect_max = "500ms"

[[device]]
id = "logger"
kind = "mqtt_json"
via = "broker"
interval = "20ms"
expire_after = "30s"

[device.options]
state_topic = "gw/logger"
timestamp_path = "ts"

[[device.fields]]
name = "seq"
path = "seq"

[[device.fields]]
name = "t"
unit = "°C"
path = "t"
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_broker_killed_mid_stream_loses_no_qos1_reading(mosquitto_persistent, how) -> None:
    """The daemon reconnects to the same persistent session; every QoS 1 message the device
    published (before, during and after the outage) is ingested exactly as a reading."""
    broker = mosquitto_persistent
    async with running_floor(STREAM, PORT=broker.port) as (floor, seen):
        config = floor.config
        publisher = MqttJsonPublisher(
            config.mqtt[0],
            list(config.devices),
            qos=1,
            client_id=f"sim-{broker.port}",
            reconnect_max=0.5,
        )
        await publisher.start()
        try:
            await wait_until(
                lambda: sum(r.point == "seq" for r in seen) >= 50, what="first readings"
            )
            await asyncio.sleep(
                1.2
            )  # past the broker's 1 s autosave: the daemon's session is on disk
            broker.stop(sig=how)
            await asyncio.sleep(1.0)  # the device keeps sampling into its store-and-forward backlog
            assert publisher.backlog > 0
            broker.start()
            await wait_until(
                lambda: floor.state_hub.connected.is_set(), timeout=15, what="reconnect"
            )
            await asyncio.sleep(1.0)
            generated = publisher.generated
            await publisher.stop(drain=10.0)
            await wait_until(
                lambda: (
                    {int(r.value) for r in seen if r.point == "seq" and r.value is not None}
                    >= set(range(1, generated + 1))
                ),
                timeout=20,
                what="every seq",
            )
        finally:
            if publisher.running:
                await publisher.stop()
        seqs = {int(r.value) for r in seen if r.point == "seq" and r.value is not None}
        assert seqs >= set(range(1, generated + 1)), sorted(set(range(1, generated + 1)) - seqs)[
            :20
        ]
        assert generated > 100
        assert floor.state_hub.counters.dropped == 0
        assert floor.state_hub.counters.connects >= 2


MODBUS = """
[floor]
id = "mb"

[[mqtt]]
name = "broker"
port = "${PORT}"
client_id = "floorctl-mb-${PORT}"

[[modbus]]
name = "plc"
port = "${MPORT}"
timeout = "300ms"
reconnect_max = "500ms"

[[device]]
id = "rm1"
kind = "modbus"
via = "plc"
unit_id = 3
interval = "200ms"
timeout = "150ms"

[[device.fields]]
name = "dp"
unit = "Pa"
register = "input"
address = 0
type = "FLOAT32"
byte_order = "CDAB"

[[device.fields]]
name = "raw"
register = "holding"
address = 10
type = "INT16"
scale = 0.1
sentinels = [32767]

[[device.fields]]
name = "door"
register = "discrete"
address = 0

[device.simulate.dp]
base = 12.5
noise = 0.0
"""


async def test_modbus_device_stopped_and_restarted(mosquitto) -> None:
    mport = free_port()
    async with (
        Watcher(mosquitto.port, "floorctl/mb/#") as w,
        running_floor(MODBUS, PORT=mosquitto.port, MPORT=mport) as (floor, seen),
    ):
        sim = ModbusSimServer(floor.config.modbus[0], list(floor.config.devices))
        await sim.start()
        try:
            await wait_until(lambda: floor.devices["rm1"].state == "online", what="online")
            dp = next(r for r in reversed(seen) if r.point == "dp")
            assert dp.quality is Quality.GOOD and dp.value == pytest.approx(12.5)
            door = next(r for r in reversed(seen) if r.point == "door")
            assert door.value is False and door.quality is Quality.GOOD

            await sim.stop()  # the device goes away: comm-loss after 3 x 200 ms, points stale
            await w.wait_for(
                lambda m: any(
                    t == "floorctl/mb/events" and b["kind"] == "comm-loss" for t, b, _ in m
                )
            )
            await w.wait_for(
                lambda m: any(
                    t == "floorctl/mb/point/rm1/dp" and b["quality"] == "stale" for t, b, _ in m
                )
            )
            assert floor.devices["rm1"].ctx.counters.errors > 0
            assert floor.hubs["plc"].counters.failures > 0

            await sim.start()  # it comes back on the same port: recovery, good values again
            await w.wait_for(
                lambda m: any(
                    t == "floorctl/mb/events" and b["kind"] == "comm-restored" for t, b, _ in m
                ),
                timeout=10,
            )
            await w.wait_for(lambda m: w.on("floorctl/mb/point/rm1/dp")[-1]["quality"] == "good")
        finally:
            await sim.stop()


async def test_modbus_register_faults_become_bad_quality(mosquitto) -> None:
    mport = free_port()
    async with running_floor(MODBUS, PORT=mosquitto.port, MPORT=mport) as (floor, seen):
        sim = ModbusSimServer(floor.config.modbus[0], list(floor.config.devices))
        await sim.start()
        try:
            await wait_until(lambda: floor.devices["rm1"].state == "online", what="online")

            def last(point: str):
                return next(r for r in reversed(seen) if r.point == point)

            sim.set_value("rm1", "dp", math.nan)
            await sim.flush()
            await wait_until(lambda: last("dp").quality is Quality.BAD, what="NaN -> bad")
            assert last("dp").value is None and last("dp").detail == "NaN"

            sim.set_raw("rm1", "raw", [32767])
            await sim.flush()
            await wait_until(lambda: last("raw").quality is Quality.BAD, what="sentinel -> bad")
            assert "sentinel" in (last("raw").detail or "")

            sim.set_value("rm1", "raw", -12.3)
            await sim.flush()
            await wait_until(lambda: last("raw").quality is Quality.GOOD, what="negative scaled")
            assert last("raw").value == pytest.approx(-12.3)

            sim.set_fault("rm1", exception=4)  # the device answers with "server device failure"
            await wait_until(
                lambda: last("dp").quality is Quality.DEVICE_ERROR, what="device-error"
            )
            assert "Modbus exception 4" in (last("dp").detail or "")
            assert floor.devices["rm1"].state == "online"  # it answers: not a comm loss
            sim.set_fault("rm1")
            sim.release("rm1")
            await wait_until(lambda: last("dp").quality is Quality.GOOD, what="recovered")
        finally:
            await sim.stop()


async def test_subscriptions_replayed_when_the_broker_lost_every_session(mosquitto) -> None:
    """A broker without persistence forgets the daemon's session on restart: the hub's own
    subscription table is what brings device data back, and the birth message is repeated."""
    async with running_floor(STREAM, PORT=mosquitto.port) as (floor, seen):
        await publish(mosquitto.port, "gw/logger", b'{"seq": 1, "t": 20.0}')
        await wait_until(lambda: any(r.point == "seq" and r.value == 1 for r in seen), what="seq 1")
        mosquitto.restart(signal.SIGKILL)
        await wait_until(
            lambda: floor.state_hub.counters.connects >= 2, timeout=15, what="reconnect"
        )
        await asyncio.sleep(0.3)
        await publish(mosquitto.port, "gw/logger", b'{"seq": 2, "t": 20.5}')
        await wait_until(lambda: any(r.point == "seq" and r.value == 2 for r in seen), what="seq 2")
        async with Watcher(mosquitto.port, "floorctl/faults/status") as w:
            await w.wait_for(lambda m: bool(m) and m[-1][1]["state"] == "online")


def _busy_floor(n: int) -> str:
    devices = "".join(
        f"""
[[device]]
id = "d{i}"
kind = "modbus"
via = "plc"
unit_id = {i}
interval = "20ms"
timeout = "15ms"
[[device.fields]]
name = "v"
register = "input"
address = 0
type = "FLOAT32"
"""
        for i in range(1, n + 1)
    )
    return f"""
[floor]
id = "busy"
[[mqtt]]
name = "broker"
port = "${{PORT}}"
client_id = "floorctl-busy-${{PORT}}"
[[modbus]]
name = "plc"
port = "${{MPORT}}"
timeout = "15ms"
{devices}"""


@pytest.mark.slow
async def test_a_busy_floor_stops_within_a_second(mosquitto) -> None:
    """Python 3.11's wait_for (inside pymodbus and aiomqtt) can swallow a cancellation; the
    hubs re-raise it, so SIGTERM never hangs under polling load."""
    from floorctl.daemon import Floor

    from .floorkit import make_config

    mport = free_port()
    text = _busy_floor(30)
    config, pm, kinds = make_config(text, PORT=mosquitto.port, MPORT=mport)
    sim = ModbusSimServer(config.modbus[0], list(config.devices))
    await sim.start()
    try:
        for _ in range(6):
            floor = Floor(config, pm, kinds)
            task = asyncio.create_task(floor.run())
            await wait_until(
                lambda f=floor: sum(r.ctx.counters.polls for r in f.devices.values()) > 300
            )
            started = asyncio.get_running_loop().time()
            floor.stop()
            await asyncio.wait_for(task, 5)
            assert asyncio.get_running_loop().time() - started < 1.0
    finally:
        await sim.stop()


NEIGHBOURS = """
[floor]
id = "nb"
[[mqtt]]
name = "broker"
port = "${PORT}"
client_id = "floorctl-nb-${PORT}"
[[modbus]]
name = "plc"
port = "${MPORT}"
timeout = "200ms"
[[device]]
id = "quiet"
kind = "modbus"
via = "plc"
unit_id = 1
interval = "300ms"
timeout = "250ms"
[[device.fields]]
name = "v"
register = "input"
address = 0
type = "FLOAT32"
[[device]]
id = "busy"
kind = "modbus"
via = "plc"
unit_id = 2
interval = "300ms"
timeout = "250ms"
[[device.fields]]
name = "v"
register = "input"
address = 0
type = "FLOAT32"
"""


async def test_a_silent_unit_does_not_starve_its_neighbours(mosquitto) -> None:
    """One unit stops answering on a shared gateway: it goes comm-loss, the unit next to it
    keeps reading (the connection stays; only the silent unit's requests time out)."""
    from simulators.faults import Fault

    mport = free_port()
    async with running_floor(NEIGHBOURS, PORT=mosquitto.port, MPORT=mport) as (floor, seen):
        sim = ModbusSimServer(floor.config.modbus[0], list(floor.config.devices))
        await sim.start()
        try:
            await wait_until(lambda: floor.devices["busy"].state == "online", what="online")
            sim.start_fault("quiet", Fault("silent"))
            await wait_until(
                lambda: floor.devices["quiet"].state == "comm-loss", timeout=10, what="quiet lost"
            )
            before = sum(1 for r in seen if r.device == "busy")
            await asyncio.sleep(2.0)
            got = sum(1 for r in seen if r.device == "busy" and r.quality is Quality.GOOD)
            assert sum(1 for r in seen if r.device == "busy") - before >= 5  # ~6 polls in 2 s
            assert floor.devices["busy"].state == "online"
            assert got > 0
            assert floor.hubs["plc"].counters.disconnects == 0
            sim.end_fault("quiet", "silent")
            await wait_until(
                lambda: floor.devices["quiet"].state == "online", timeout=10, what="back"
            )
        finally:
            await sim.stop()
