"""simulators/: Modbus TCP servers and MQTT JSON publishers over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest
from attrs import fields as attrs_fields
from attrs import frozen
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from floorctl.config import Config, FieldConfig, load_config
from floorctl.decode import ByteOrder, DataType, decode_registers
from floorctl.kinds import Kind, KindRegistry, Transport
from simulators.faults import Fault, Faultable, SimClock, UnsupportedFault
from simulators.modbus_device import ModbusSimServer, SimulatorError
from simulators.mqtt_publisher import MqttJsonPublisher, build_document, parse_path
from simulators.serve import SIMULATORS, build_simulators, serve
from simulators.signals import FaultParamError, SimulateConfigError
from tests.helpers import Mosquitto, free_port

pytestmark = pytest.mark.integration

TIMEOUT = 5.0
HOST = "127.0.0.1"


# --- a kinds registry of our own (the generic plugin is not needed) ----------------------


@frozen
class _ModbusOptions:
    address_base: int = 0


@frozen
class _MqttJsonOptions:
    state_topic: str
    timestamp_path: str | None = None
    max_payload: int = 65536
    qos: int = 1


def _kinds() -> KindRegistry:
    all_keys = frozenset(a.name for a in attrs_fields(FieldConfig))
    reg = KindRegistry()
    reg.add(Kind("modbus", lambda ctx: None, Transport.MODBUS, _ModbusOptions, field_keys=all_keys))
    reg.add(
        Kind("mqtt_json", lambda ctx: None, Transport.MQTT, _MqttJsonOptions, field_keys=all_keys)
    )
    reg.add(Kind("door_panel", lambda ctx: None, Transport.NONE, field_keys=all_keys))
    return reg


TOML = """
[[mqtt]]
name = "broker"
host = "127.0.0.1"
port = {mqtt_port}

[[modbus]]
name = "plc"
host = "127.0.0.1"
port = {modbus_port}

[[device]]
id = "ahu-03"
kind = "modbus"
via = "plc"
interval = "100ms"
[[device.fields]]
name = "dp"
unit = "Pa"
register = "holding"
address = 0
type = "FLOAT32"
byte_order = "CDAB"
[[device.fields]]
name = "temp"
unit = "degC"
register = "input"
address = 10
type = "INT16"
scale = 0.1
[[device.fields]]
name = "fan"
register = "coil"
address = 3
[[device.fields]]
name = "noisy"
unit = "Pa"
register = "holding"
address = 2
type = "FLOAT32"
[device.simulate.dp]
base = 12.5
noise = 0
[device.simulate.temp]
base = -21.3
noise = 0
[device.simulate.fan]
base = true

[[device]]
id = "fcu-1"
kind = "modbus"
via = "plc"
unit_id = 2
interval = "100ms"
options = {{ address_base = 1 }}
[[device.fields]]
name = "count"
unit = "counts"
register = "holding"
address = 1
type = "UINT16"
[[device.fields]]
name = "status"
register = "holding"
address = 2
type = "UINT16"
[device.simulate.count]
base = 7
noise = 0
[device.simulate.status]
raw = [0xBEEF]

[[device]]
id = "rh-1"
kind = "mqtt_json"
via = "broker"
interval = "{mqtt_interval}"
options = {{ state_topic = "{topic}", timestamp_path = "meta.ts" }}
[[device.fields]]
name = "temp"
unit = "degC"
path = "temp"
[[device.fields]]
name = "rh"
unit = "%RH"
path = "data.rh"
[[device.fields]]
name = "pc"
unit = "counts/m3"
path = "data.values[1]"
[[device.fields]]
name = "flow"
path = "flow"
scale = 0.1
[device.simulate.temp]
base = 21.5
noise = 0
[device.simulate.flow]
base = 3.0
noise = 0

[[device]]
id = "door-1"
kind = "door_panel"
[[device.fields]]
name = "open"
"""


def _config(
    tmp_path: Path,
    *,
    modbus_port: int | None = None,
    mqtt_port: int = 1,
    mqtt_interval: str = "100ms",
    topic: str | None = None,
) -> Config:
    path = tmp_path / "devices.toml"
    path.write_text(
        TOML.format(
            modbus_port=modbus_port or free_port(),
            mqtt_port=mqtt_port,
            mqtt_interval=mqtt_interval,
            topic=topic or f"sim/{uuid.uuid4().hex[:8]}/rh-1",
        )
    )
    return load_config(path, _kinds())


def _modbus_sim(cfg: Config, **kw) -> ModbusSimServer:
    conn = cfg.modbus[0]
    return ModbusSimServer(conn, [d for d in cfg.devices if d.kind == "modbus"], **kw)


def _publisher(cfg: Config, **kw) -> MqttJsonPublisher:
    return MqttJsonPublisher(cfg.mqtt[0], [d for d in cfg.devices if d.kind == "mqtt_json"], **kw)


@contextlib.asynccontextmanager
async def _modbus_client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=1, retries=0)
    try:
        assert await client.connect(), f"cannot connect to {HOST}:{port}"
        yield client
    finally:
        client.close()


async def _read_float(client: AsyncModbusTcpClient, address: int, unit: int = 1) -> object:
    rr = await client.read_holding_registers(address, count=2, device_id=unit)
    assert not rr.isError(), rr
    return decode_registers(rr.registers, DataType.FLOAT32, ByteOrder.CDAB)


async def _until(condition: Callable[[], bool], poll: float = 0.02) -> None:
    """Wait until ``condition()`` is true (callers bound the wait with asyncio.timeout)."""
    while not condition():  # noqa: ASYNC110 - polling counters, no event to wait on
        await asyncio.sleep(poll)


# --- Modbus -------------------------------------------------------------------------------


async def test_modbus_registers_decode_to_the_signal_values(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            assert sim.port == cfg.modbus[0].port
            assert (await _read_float(client, 0)).value == 12.5  # FLOAT32 CDAB

            rr = await client.read_input_registers(10, count=1, device_id=1)  # INT16, scale 0.1
            assert rr.registers == [(-213) & 0xFFFF]
            temp = decode_registers(rr.registers, DataType.INT16, scale=0.1)
            assert temp.value == pytest.approx(-21.3)

            rr = await client.read_coils(3, count=1, device_id=1)
            assert rr.bits[0] is True

            # default signal of a Pa field: around 15 with noise
            rr = await client.read_holding_registers(2, count=2, device_id=1)
            noisy = decode_registers(rr.registers, DataType.FLOAT32, ByteOrder.ABCD).value
            assert 12 < noisy < 18

            # unit 2, address_base = 1: configured address 1 is wire address 0
            rr = await client.read_holding_registers(0, count=2, device_id=2)
            assert rr.registers == [7, 0xBEEF]  # UINT16 count, then the raw-mode word


async def test_modbus_unconfigured_addresses_are_illegal(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            for rr in (
                await client.read_holding_registers(4, count=1, device_id=1),  # past the fields
                await client.read_holding_registers(0, count=5, device_id=1),  # runs past
                await client.read_input_registers(0, count=1, device_id=1),  # gap before 10
                await client.read_coils(2, count=1, device_id=1),  # same word as coil 3
                await client.read_discrete_inputs(0, count=1, device_id=1),  # unused table
                await client.read_input_registers(0, count=1, device_id=2),  # unused table
            ):
                assert rr.isError() and rr.exception_code == 2, rr


async def test_modbus_values_refresh_at_the_interval(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            seen = set()
            for _ in range(6):
                rr = await client.read_holding_registers(2, count=2, device_id=1)
                seen.add(tuple(rr.registers))
                await asyncio.sleep(0.11)
            assert len(seen) >= 4  # noisy field changes every 100 ms
            assert sim.writes >= 5 * 4  # whole update: 4 runs (3 for ahu-03, 1 for fcu-1)


async def test_modbus_stop_and_restart_on_the_same_port(tmp_path):
    cfg = _config(tmp_path)
    sim = _modbus_sim(cfg, port=0)  # 0: pick a free port, keep it for restarts
    async with asyncio.timeout(TIMEOUT):
        await sim.start()
        try:
            port = sim.port
            assert port != 0
            async with _modbus_client(port) as client:
                assert (await _read_float(client, 0)).value == 12.5
                await sim.stop()
                assert not sim.running
                with pytest.raises(ModbusException):
                    await client.read_holding_registers(0, count=2, device_id=1)
            refused = AsyncModbusTcpClient(HOST, port=port, timeout=0.5, retries=0)
            assert not await refused.connect()
            refused.close()

            await sim.start()
            assert sim.port == port
            async with _modbus_client(port) as client:
                assert (await _read_float(client, 0)).value == 12.5
        finally:
            await sim.stop()


async def test_modbus_port_in_use_is_a_clear_error(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT), _modbus_sim(cfg) as first:
        second = _modbus_sim(cfg, port=first.port)
        with pytest.raises(SimulatorError, match=r"cannot listen on 127\.0\.0\.1:"):
            await second.start()
        assert not second.running


async def test_modbus_set_value_pins_nan_and_release_restores(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            sim.set_value("ahu-03", "dp", math.nan)
            await sim.flush()
            bad = await _read_float(client, 0)
            assert bad.value is None and bad.detail == "NaN"
            await asyncio.sleep(0.25)  # the updater keeps the pin
            assert (await _read_float(client, 0)).detail == "NaN"

            sim.set_value("ahu-03", "temp", -3276.8)  # a sentinel-like raw -32768
            sim.set_raw("fcu-1", "count", [0xFFFF])
            sim.set_value("ahu-03", "fan", False)
            await sim.flush()
            rr = await client.read_input_registers(10, count=1, device_id=1)
            assert rr.registers == [0x8000]
            rr = await client.read_holding_registers(0, count=1, device_id=2)
            assert rr.registers == [0xFFFF]
            assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is False

            with pytest.raises(ValueError, match="NaN"):
                sim.set_value("ahu-03", "temp", math.nan)  # INT16 cannot hold NaN
            with pytest.raises(ValueError):
                sim.set_raw("ahu-03", "dp", [1])  # FLOAT32 needs 2 words
            with pytest.raises(KeyError):
                sim.set_value("ahu-03", "nope", 1.0)

            sim.release("ahu-03")
            sim.release("fcu-1", "count")
            await sim.flush()
            assert (await _read_float(client, 0)).value == 12.5
            assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is True
            rr = await client.read_holding_registers(0, count=1, device_id=2)
            assert rr.registers == [7]


async def test_modbus_set_fault_exception_and_delay(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            sim.set_fault("fcu-1", exception=4)
            rr = await client.read_holding_registers(0, count=1, device_id=2)
            assert rr.isError() and rr.exception_code == 4
            assert not (await client.read_holding_registers(0, count=2, device_id=1)).isError()
            await asyncio.sleep(0.15)  # the updater's own writes still work while faulted
            sim.set_fault("fcu-1")
            rr = await client.read_holding_registers(0, count=1, device_id=2)
            assert rr.registers == [7]

            sim.set_fault("ahu-03", delay=0.3)
            start = time.monotonic()
            rr = await client.read_holding_registers(0, count=2, device_id=1)
            assert not rr.isError() and time.monotonic() - start >= 0.3
            sim.set_fault("ahu-03")


async def test_modbus_many_units_on_one_server(tmp_path):
    """250 unit ids x 2 devices (500 devices) on one server: build, serve, update."""
    lines = [
        '[[mqtt]]\nname = "broker"\n',
        f'[[modbus]]\nname = "plc"\nhost = "127.0.0.1"\nport = {free_port()}\n',
    ]
    for i in range(500):
        unit, base = 1 + i // 2, 100 * (i % 2)
        lines.append(
            f'[[device]]\nid = "d{i}"\nkind = "modbus"\nvia = "plc"\nunit_id = {unit}\n'
            'interval = "1s"\n'
            + "".join(
                f'[[device.fields]]\nname = "f{j}"\nunit = "Pa"\nregister = "holding"\n'
                f'address = {base + 2 * j}\ntype = "FLOAT32"\n'
                for j in range(8)
            )
            + f'[[device.fields]]\nname = "run"\nregister = "coil"\naddress = {base}\n'
        )
    path = tmp_path / "many.toml"
    path.write_text("\n".join(lines))
    cfg = load_config(path, _kinds())
    async with asyncio.timeout(20):
        t0 = time.perf_counter()
        sim = _modbus_sim(cfg)
        await sim.start()
        try:
            started = time.perf_counter() - t0
            t1 = time.perf_counter()
            await sim.flush()
            tick = time.perf_counter() - t1
            assert len(sim.units) == 250 and len(sim.devices) == 500
            async with _modbus_client(sim.port) as client:
                for unit in (1, 125, 250):
                    rr = await client.read_holding_registers(100, count=16, device_id=unit)
                    assert not rr.isError(), rr
            logging.getLogger(__name__).info("500 devices: start %.3fs, tick %.3fs", started, tick)
            assert started < 5 and tick < 2  # generous: measured ~0.35 s and ~0.06 s
        finally:
            await sim.stop()


# --- MQTT ---------------------------------------------------------------------------------


def test_json_paths_build_nested_objects_and_lists():
    doc = build_document(
        [
            (parse_path("temp"), 21.5),
            (parse_path("data.rh"), 45.1),
            (parse_path("data.values[1]"), 3),
            (parse_path("data.values[0].x"), True),
            (parse_path("meta.ts"), 1.5),
        ],
        seq=7,
    )
    assert doc == {
        "seq": 7,
        "temp": 21.5,
        "data": {"rh": 45.1, "values": [{"x": True}, 3]},
        "meta": {"ts": 1.5},
    }
    with pytest.raises(ValueError):
        build_document([(parse_path("a"), 1), (parse_path("a.b"), 2)])
    with pytest.raises(ValueError):
        parse_path("[0]")
    with pytest.raises(ValueError):
        parse_path("a..b")


def _subscriber(broker: Mosquitto, identifier: str, **kw) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=identifier, **kw)


async def test_mqtt_payloads_carry_fields_seq_and_timestamp(tmp_path, mosquitto):
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=mosquitto.port, topic=topic)
    async with asyncio.timeout(TIMEOUT):
        async with _subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(topic, qos=1)
            async with _publisher(cfg) as pub:
                docs = []
                async for message in sub.messages:
                    assert message.qos == 1
                    docs.append(json.loads(message.payload))
                    if len(docs) == 3:
                        break
                await pub.publish_raw(topic, b"{not json")
                async for message in sub.messages:
                    assert message.payload == b"{not json"
                    break
                assert pub.raw_published == 1
    assert [d["seq"] for d in docs] == [1, 2, 3]
    now = time.time()
    for d in docs:
        assert d["temp"] == 21.5
        assert d["flow"] == pytest.approx(30.0)  # the daemon reads raw * scale 0.1 = 3.0
        assert 40 < d["data"]["rh"] < 50
        assert d["data"]["values"][0] is None
        assert isinstance(d["data"]["values"][1], int) and d["data"]["values"][1] >= 0
        assert now - 5 < d["meta"]["ts"] <= now
    assert docs[0]["meta"]["ts"] < docs[2]["meta"]["ts"]


async def test_mqtt_set_value_pins_a_json_value(tmp_path, mosquitto):
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=mosquitto.port, topic=topic)
    pub = _publisher(cfg)
    pub.set_value("rh-1", "temp", None)
    pub.set_value("rh-1", "rh", math.nan)
    async with asyncio.timeout(TIMEOUT):
        async with _subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(topic, qos=1)
            async with pub:
                async for message in sub.messages:
                    text = message.payload.decode()
                    break
    assert '"temp":null' in text and '"rh":NaN' in text


async def test_mqtt_store_and_forward_across_a_broker_outage(tmp_path, mosquitto_persistent):
    broker = mosquitto_persistent  # the subscriber's session must survive the restart
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=broker.port, topic=topic, mqtt_interval="50ms")
    received: list[int] = []
    sub_id = f"sub-{uuid.uuid4().hex[:6]}"
    subscribed = asyncio.Event()

    async def subscriber() -> None:
        while True:
            try:
                async with _subscriber(broker, sub_id, clean_session=False) as sub:
                    if not subscribed.is_set():
                        await sub.subscribe(topic, qos=1)
                        subscribed.set()
                    async for message in sub.messages:
                        received.append(json.loads(message.payload)["seq"])
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async with asyncio.timeout(15):
        sub_task = asyncio.create_task(subscriber())
        try:
            await subscribed.wait()
            pub = _publisher(cfg, reconnect_max=0.5)
            await pub.start()
            try:
                await _until(lambda: pub.published >= 5)
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(2.0)
                assert not pub.connected
                # ~40 samples generated while the broker was down, all kept
                assert pub.backlog >= 10 and pub.dropped == 0
                at_restart = pub.generated
                await asyncio.to_thread(broker.start)
                await _until(lambda: pub.published >= at_restart + 5)
            finally:
                await pub.stop(drain=3.0)
            n = pub.generated
            assert pub.published == n and pub.backlog == 0 and pub.dropped == 0
            assert pub.connects >= 2
            await _until(lambda: set(received) == set(range(1, n + 1)))
        finally:
            sub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sub_task
    assert n > at_restart


async def test_mqtt_backlog_is_bounded_and_counts_overflow(tmp_path):
    cfg = _config(tmp_path, mqtt_port=free_port(), mqtt_interval="10ms")  # nobody listens
    pub = _publisher(cfg, max_backlog=5, reconnect_max=0.2)
    async with asyncio.timeout(TIMEOUT):
        await pub.start()
        try:
            await _until(lambda: pub.generated >= 20)
        finally:
            await pub.stop()
    assert pub.backlog == 5
    assert pub.dropped == pub.generated - 5
    assert pub.published == 0 and not pub.connected


# --- serve --------------------------------------------------------------------------------


async def test_serve_runs_everything_until_stop(tmp_path, mosquitto, caplog):
    caplog.set_level(logging.INFO, logger="floorctl.simulators")
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=mosquitto.port, topic=topic)
    stop = asyncio.Event()
    running: list = []
    async with asyncio.timeout(TIMEOUT):
        async with _subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(topic, qos=1)
            task = asyncio.create_task(serve(cfg, seed=3, stop=stop, started=running.extend))
            async for message in sub.messages:
                assert json.loads(message.payload)["seq"] == 1
                break
            async with _modbus_client(cfg.modbus[0].port) as client:
                assert (await _read_float(client, 0)).value == 12.5
            stop.set()
            await task
    assert {type(s) for s in running} == {ModbusSimServer, MqttJsonPublisher}
    assert not any(s.running for s in running)
    text = caplog.text
    assert "door-1: no simulator for kind 'door_panel'; skipped" in text
    assert f"modbus 'plc' on 127.0.0.1:{cfg.modbus[0].port}: 2 device(s)" in text
    assert f"mqtt 'broker' to 127.0.0.1:{mosquitto.port}: 1 device(s): rh-1" in text


async def test_serve_reports_bad_simulate_tables_before_starting(tmp_path):
    path = tmp_path / "devices.toml"
    cfg_text = TOML.format(modbus_port=free_port(), mqtt_port=1, mqtt_interval="1s", topic="t")
    path.write_text(cfg_text.replace("base = 12.5\nnoise = 0", 'base = 12.5\nnoise = "lots"'))
    cfg = load_config(path, _kinds())
    with pytest.raises(SimulateConfigError, match=r"device\[ahu-03\]\.simulate\.dp\.noise"):
        await serve(cfg, stop=asyncio.Event())


def test_registry_groups_kinds_per_connection(tmp_path):
    assert {"modbus", "mqtt_json"} <= set(SIMULATORS)
    cfg = _config(tmp_path)
    sims = build_simulators(cfg, seed=1)
    assert len(sims) == 2
    (modbus,) = [s for s in sims if isinstance(s, ModbusSimServer)]
    assert set(modbus.devices) == {"ahu-03", "fcu-1"} and set(modbus.units) == {1, 2}


# --- faults (Faultable) -------------------------------------------------------------------


class _Clock(SimClock):
    """Simulated time set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_modbus_excursion_ramps_in_simulated_time_and_ends(tmp_path):
    cfg = _config(tmp_path)
    clock = _Clock()
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg, clock=clock) as sim, _modbus_client(sim.port) as client:
            assert isinstance(sim, Faultable) and sim.device_ids() == ["ahu-03", "fcu-1"]
            clock.t = 100.0
            sim.start_fault("ahu-03", Fault("excursion", {"field": "dp", "to": 2.5, "ramp": "1m"}))
            sim.start_fault("ahu-03", Fault("excursion", {"field": "fan", "to": False}))
            sim.start_fault("fcu-1", Fault("excursion", {"field": "count", "by": 3}))
            await sim.flush()
            assert (await _read_float(client, 0)).value == 12.5  # ramp starts at the signal
            assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is False
            assert (await client.read_holding_registers(0, count=1, device_id=2)).registers == [10]
            clock.t = 130.0
            await sim.flush()
            assert (await _read_float(client, 0)).value == pytest.approx(7.5)  # half way
            clock.t = 400.0
            await sim.flush()
            assert (await _read_float(client, 0)).value == 2.5
            sim.end_excursion("ahu-03", "dp")  # one field ends, the other goes on
            await sim.flush()
            assert (await _read_float(client, 0)).value == 12.5
            assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is False
            sim.end_fault("ahu-03", "excursion")
            sim.end_fault("fcu-1", "excursion")
            await sim.flush()
            assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is True
            assert (await client.read_holding_registers(0, count=1, device_id=2)).registers == [7]


async def test_modbus_silent_and_exception_faults_hit_only_their_device(tmp_path):
    cfg = _config(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim:
            client = AsyncModbusTcpClient(HOST, port=sim.port, timeout=0.3, retries=0)
            assert await client.connect()
            try:
                sim.start_fault("fcu-1", Fault("silent"))
                start = time.monotonic()
                with pytest.raises(ModbusException, match="No response"):
                    await client.read_holding_registers(0, count=1, device_id=2)
                assert time.monotonic() - start >= 0.29  # nothing came back: a timeout
                if not client.connected:
                    assert await client.connect()
                assert (await _read_float(client, 0)).value == 12.5  # ahu-03 still answers
                sim.end_fault("fcu-1", "silent")
                rr = await client.read_holding_registers(0, count=1, device_id=2)
                assert rr.registers == [7]

                sim.start_fault("ahu-03", Fault("exception", {"code": 6}))
                rr = await client.read_holding_registers(0, count=2, device_id=1)
                assert rr.isError() and rr.exception_code == 6
                rr = await client.read_input_registers(10, count=1, device_id=1)
                assert rr.isError() and rr.exception_code == 6
                sim.end_fault("ahu-03", "exception")
                sim.start_fault("fcu-1", Fault("exception"))  # default code 4
                assert (await _read_float(client, 0)).value == 12.5
                rr = await client.read_holding_registers(0, count=1, device_id=2)
                assert rr.isError() and rr.exception_code == 4
            finally:
                client.close()


SHARED_UNIT = """
[[mqtt]]
name = "broker"

[[modbus]]
name = "plc"
host = "127.0.0.1"
port = {port}

[[device]]
id = "a"
kind = "modbus"
via = "plc"
[[device.fields]]
name = "x"
register = "holding"
address = 0
[device.simulate.x]
base = 1

[[device]]
id = "b"
kind = "modbus"
via = "plc"
[[device.fields]]
name = "y"
register = "holding"
address = 5
[device.simulate.y]
base = 2
"""


async def test_modbus_faults_are_per_device_on_a_shared_unit(tmp_path):
    path = tmp_path / "shared.toml"
    path.write_text(SHARED_UNIT.format(port=free_port()))
    cfg = load_config(path, _kinds())
    async with asyncio.timeout(TIMEOUT):
        async with _modbus_sim(cfg) as sim, _modbus_client(sim.port) as client:
            assert len(sim.units) == 1
            sim.start_fault("b", Fault("exception", {"code": 2}))
            assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [1]
            rr = await client.read_holding_registers(5, count=1, device_id=1)
            assert rr.isError() and rr.exception_code == 2


def test_modbus_check_fault_names_the_device_and_the_parameter(tmp_path):
    sim = _modbus_sim(_config(tmp_path))
    cases = [
        (Fault("malformed"), UnsupportedFault, r"device 'ahu-03' \(modbus\) cannot show "
         r"'malformed' \(it can: excursion, silent, exception\)"),
        (Fault("exception", {"code": 9}), FaultParamError,
         r"device 'ahu-03': exception\.code: expected a Modbus exception code \(1, 2, 3, 4, 5"),
        (Fault("exception", {"cod": 4}), FaultParamError,
         r"device 'ahu-03': exception\.cod: unknown parameter \(expected code\)"),
        (Fault("silent", {"for": "1m"}), FaultParamError, r"silent\.for: unknown parameter"),
        (Fault("excursion", {"field": "temp", "to": math.nan}), FaultParamError,
         r"excursion\.to: field 'temp' \(INT16\) cannot hold nan"),
        (Fault("excursion", {"field": "dp", "to": "x"}), FaultParamError, r"excursion\.to: "),
    ]  # fmt: skip
    for fault, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            sim.check_fault("ahu-03", fault)
    with pytest.raises(KeyError):
        sim.check_fault("nope", Fault("silent"))
    sim.check_fault("ahu-03", Fault("excursion", {"field": "dp", "to": math.nan}))  # FLOAT32


async def _messages(sub: aiomqtt.Client, n: int) -> list[bytes]:
    out = []
    async for message in sub.messages:
        out.append(bytes(message.payload))
        if len(out) == n:
            return out
    return out


def _kind_of(payload: bytes) -> str:
    try:
        doc = json.loads(payload)
    except UnicodeDecodeError:
        return "not-utf8"
    except ValueError:
        return "truncated"
    return "err-values" if doc.get("temp") == "ERR" else "sample"


async def test_mqtt_malformed_silent_and_excursion(tmp_path, mosquitto):
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=mosquitto.port, topic=topic, mqtt_interval="20ms")
    async with asyncio.timeout(TIMEOUT):
        async with _subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(topic, qos=1)
            async with _publisher(cfg, seed=3) as pub:
                first = json.loads((await _messages(sub, 1))[0])
                assert first["seq"] == 1

                pub.start_fault("rh-1", Fault("excursion", {"field": "temp", "to": 30}))
                pub.start_fault("rh-1", Fault("excursion", {"field": "flow", "by": 2}))
                docs = [json.loads(m) for m in await _messages(sub, 3)]
                assert docs[-1]["temp"] == 30.0 and docs[-1]["flow"] == pytest.approx(50.0)
                pub.end_fault("rh-1", "excursion")

                pub.start_fault("rh-1", Fault("malformed", {"payload": "<html>502</html>"}))
                msgs = await _messages(sub, 20)
                assert b"<html>502</html>" in msgs
                pub.start_fault("rh-1", Fault("malformed"))  # the built-in garbage
                msgs = await _messages(sub, 30)
                kinds = {_kind_of(m) for m in msgs[-24:]}
                assert kinds == {"not-utf8", "truncated", "err-values"}, msgs[-24:]
                pub.end_fault("rh-1", "malformed")
                assert pub.devices["rh-1"].garbage >= 24

                msgs = await _messages(sub, 10)  # flush the garbage still queued
                pub.start_fault("rh-1", Fault("silent"))
                await asyncio.sleep(0.05)
                generated = pub.generated
                seq = pub.devices["rh-1"].seq
                await asyncio.sleep(0.3)
                assert pub.generated == generated and pub.devices["rh-1"].seq == seq
                pub.end_fault("rh-1", "silent")
                async for message in sub.messages:
                    if _kind_of(bytes(message.payload)) == "sample":
                        doc = json.loads(message.payload)
                        if doc["seq"] > seq:
                            assert doc["seq"] == seq + 1  # nothing made while silent
                            assert doc["temp"] == 21.5
                            break


async def test_mqtt_backfill_sends_the_held_samples_at_once(tmp_path, mosquitto):
    topic = f"sim/{uuid.uuid4().hex[:8]}/rh-1"
    cfg = _config(tmp_path, mqtt_port=mosquitto.port, topic=topic, mqtt_interval="50ms")
    async with asyncio.timeout(TIMEOUT):
        async with _subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:6]}") as sub:
            await sub.subscribe(topic, qos=1)
            async with _publisher(cfg) as pub:
                await _messages(sub, 1)
                pub.start_fault("rh-1", Fault("backfill"))
                start = time.time()
                await asyncio.sleep(0.5)
                received_during = 0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        received_during = len(await _messages(sub, 100))
                ended = time.time()
                pub.end_fault("rh-1", "backfill")
                docs = [json.loads(m) for m in await _messages(sub, 8)]
    assert received_during <= 1  # at most one in flight when the fault started
    late = [d for d in docs if start - 0.06 <= d["meta"]["ts"] < ended - 0.1]
    assert len(late) >= 6  # ~10 samples held for 0.5 s, each with its own timestamp
    assert [d["seq"] for d in docs] == sorted(d["seq"] for d in docs)


def test_mqtt_check_fault(tmp_path):
    pub = _publisher(_config(tmp_path))
    pub.check_fault("rh-1", Fault("backfill"))
    with pytest.raises(UnsupportedFault, match=r"'rh-1' \(mqtt_json\) cannot show 'exception'"):
        pub.check_fault("rh-1", Fault("exception"))
    with pytest.raises(FaultParamError, match=r"malformed\.payload: expected a string"):
        pub.check_fault("rh-1", Fault("malformed", {"payload": 5}))
    with pytest.raises(FaultParamError, match=r"excursion\.field: string 'nope' is not a field"):
        pub.check_fault("rh-1", Fault("excursion", {"field": "nope", "to": 1}))
    path = tmp_path / "nots.toml"
    path.write_text(
        TOML.format(modbus_port=1, mqtt_port=1, mqtt_interval="1s", topic="t").replace(
            ', timestamp_path = "meta.ts"', ""
        )
    )
    no_ts = _publisher(load_config(path, _kinds()))
    with pytest.raises(UnsupportedFault, match="carry no timestamp"):
        no_ts.check_fault("rh-1", Fault("backfill"))


async def test_one_clock_for_every_simulator_of_a_serve(tmp_path, mosquitto):
    cfg = _config(tmp_path, mqtt_port=mosquitto.port)
    clock = SimClock(speed=60)
    assert {id(s.clock) for s in build_simulators(cfg, clock=clock)} == {id(clock)}
    running: list = []
    stop = asyncio.Event()
    with pytest.raises(ValueError, match="speed"):
        await serve(cfg, stop=stop, speed=0)
    async with asyncio.timeout(TIMEOUT):
        task = asyncio.create_task(serve(cfg, stop=stop, speed=3600, started=running.extend))
        await _until(lambda: bool(running))
        (modbus,) = [s for s in running if isinstance(s, ModbusSimServer)]
        (mqtt,) = [s for s in running if isinstance(s, MqttJsonPublisher)]
        assert modbus.clock is mqtt.clock and modbus.clock.speed == 3600
        await asyncio.sleep(0.1)
        assert modbus.elapsed() >= 360  # an hour per real second
        stop.set()
        await task
