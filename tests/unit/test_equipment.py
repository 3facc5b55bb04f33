"""Equipment kinds (floorctl/plugins/equipment.py) and their simulator models, without sockets.

Register words and payloads are written from docs/devices.md (not taken from the
simulator): e.g. 0.38 m/s as a big-endian FLOAT32 is 0x3EC2 0x8F5C.
"""

from __future__ import annotations

import json
import math
import struct

import pytest

from floorctl.config import Config, ConfigError, parse_config
from floorctl.decode import ByteOrder, DataType, RegisterTable
from floorctl.driver import CommandError, DeviceContext
from floorctl.hubs.modbus import ModbusDeviceError
from floorctl.limits import Quantity
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.plugins.equipment import (
    AutoclaveDriver,
    ColdStorageMqttDriver,
    CycleSample,
    CycleTracker,
    DoorDriver,
    cold_storage_driver,
    transition_allowed,
)
from floorctl.plugins.generic import ModbusDriver
from simulators.equipment import (
    AutoclaveModel,
    ColdStorageModel,
    Episodes,
    build_model,
)
from simulators.faults import Fault, UnsupportedFault
from simulators.signals import FaultParamError

KINDS = collect_kinds(get_plugin_manager(autoload=False))

HEAD = """
[[mqtt]]
name = "local"
[[modbus]]
name = "bms"
[[room]]
id = "hd-buffer"
iso_class = 7
pressure = "negative"
[[room]]
id = "bsc-1"
iso_class = 5
within = "hd-buffer"
"""


def load(devices: str) -> Config:
    return parse_config((HEAD + devices).encode(), KINDS, env={})


def problems(devices: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(devices)
    return [f"{p.path}: {p.message}" for p in err.value.problems]


def words(value: float, order: str = ">f") -> list[int]:
    """FLOAT32 -> two big-endian words (ABCD)."""
    raw = struct.pack(order, value)
    return [(raw[0] << 8) | raw[1], (raw[2] << 8) | raw[3]]


# --- point maps and options ----------------------------------------------------------------


def test_bsc_point_map_float32() -> None:
    d = load('[[device]]\nid = "bsc1"\nkind = "bsc"\nvia = "bms"\nroom = "bsc-1"').device("bsc1")
    got = [(f.name, f.unit, f.quantity, f.register, f.address, f.type) for f in d.fields]
    assert got == [
        ("downflow", "m/s", Quantity.DOWNFLOW_VELOCITY, RegisterTable.INPUT, 0, DataType.FLOAT32),
        ("inflow", "m/s", Quantity.INFLOW_VELOCITY, RegisterTable.INPUT, 2, DataType.FLOAT32),
        ("fan_on", None, None, RegisterTable.DISCRETE, 0, None),
        ("sash_alarm", None, None, RegisterTable.DISCRETE, 1, None),
        ("airflow_alarm", None, None, RegisterTable.DISCRETE, 2, None),
    ]


def test_laf_has_no_inflow_nor_sash_and_int16_is_scaled() -> None:
    d = load(
        '[[device]]\nid = "laf1"\nkind = "bsc"\nvia = "bms"\n'
        '[device.options]\ntype = "laf"\nencoding = "int16"\nregister = "holding"\n'
        "address_base = 1"
    ).device("laf1")
    assert [f.name for f in d.fields] == ["downflow", "fan_on", "airflow_alarm"]
    down = d.fields[0]
    assert (down.register, down.address, down.type, down.scale) == (
        RegisterTable.HOLDING, 1, DataType.INT16, 0.01,
    )  # fmt: skip
    assert down.sentinels == (32767.0, -32768.0)
    assert [f.address for f in d.fields[1:]] == [1, 3]  # 1-based: wire 0 and 2


def test_bsc_field_overrides_move_a_point_and_keep_its_quantity() -> None:
    d = load(
        '[[device]]\nid = "b"\nkind = "bsc"\nvia = "bms"\n'
        '[[device.fields]]\nname = "downflow"\naddress = 10\nbyte_order = "CDAB"\n'
        "limits = { alert_low = 0.3 }"
    ).device("b")
    (f,) = d.fields
    assert (f.address, f.byte_order, f.quantity) == (10, ByteOrder.CDAB, Quantity.DOWNFLOW_VELOCITY)


def test_bsc_option_problems() -> None:
    assert problems(
        '[[device]]\nid = "b"\nkind = "bsc"\nvia = "bms"\n[device.options]\n'
        'type = "isolator"\nencoding = "int32"\nvelocity_scale = 0.0\nregister = "coil"'
    ) == [
        "device[b].options.type: must be 'bsc' or 'laf', got 'isolator'",
        "device[b].options.encoding: must be 'float32' or 'int16', got 'int32'",
        "device[b].options.velocity_scale: must be a finite number above 0",
        'device[b].options.register: must be "input" or "holding" (velocities are registers)',
    ]


def test_bsc_fields_take_no_unit_and_name_known_points() -> None:
    assert problems(
        '[[device]]\nid = "b"\nkind = "bsc"\nvia = "bms"\n'
        '[[device.fields]]\nname = "exhaust"\n[[device.fields]]\nname = "downflow"\nunit = "fpm"'
    ) == [
        "device[b].fields[exhaust].name: kind 'bsc' has no point 'exhaust' "
        "(it has: downflow, inflow, fan_on, sash_alarm, airflow_alarm)",
        "device[b].fields[downflow].unit: not a field key of kind 'bsc'",
    ]


@pytest.mark.parametrize(
    ("kind_type", "quantity", "low", "high"),
    [
        ("refrigerator", Quantity.REFRIGERATOR_TEMPERATURE, 2.0, 8.0),
        ("freezer", Quantity.FREEZER_TEMPERATURE, -25.0, -10.0),
    ],
)
def test_cold_storage_type_sets_quantity_and_limits(kind_type, quantity, low, high) -> None:
    from floorctl.limits import resolve_limits

    config = load(
        f'[[device]]\nid = "c"\nkind = "cold_storage"\nvia = "local"\n'
        f'[device.options]\ntype = "{kind_type}"'
    )
    d = config.device("c")
    assert [(f.name, f.path) for f in d.fields] == [
        ("temperature", "temperature"),
        ("door_open", "door_open"),
        ("compressor", "compressor"),
    ]
    assert d.fields[0].quantity is quantity
    limits = resolve_limits(config)[("c", "temperature")]
    assert (limits.action_low.value, limits.action_high.value) == (low, high)


def test_cold_storage_needs_a_type_and_mqtt_has_no_unit_id() -> None:
    assert problems('[[device]]\nid = "c"\nkind = "cold_storage"\nvia = "bms"') == [
        "device[c].options.type: required key is missing"
    ]
    assert problems(
        '[[device]]\nid = "c"\nkind = "cold_storage"\nvia = "local"\nunit_id = 3\n'
        '[device.options]\ntype = "fridge"\nstate_topic = "a/#"'
    ) == [
        "device[c].unit_id: unit_id applies to Modbus devices, not kind 'cold_storage'",
        "device[c].options.type: must be 'refrigerator' or 'freezer', got 'fridge'",
        "device[c].options.state_topic: must be a topic without wildcards",
    ]


def test_door_points_and_problems() -> None:
    d = load(
        '[[device]]\nid = "d"\nkind = "door"\nvia = "bms"\n'
        "[device.options]\nopen_input = 4\ninterlock_input = 5"
    ).device("d")
    assert [(f.name, f.register, f.address) for f in d.fields] == [
        ("open", RegisterTable.DISCRETE, 4),
        ("interlock", RegisterTable.DISCRETE, 5),
    ]
    assert [f.name for f in load('[[device]]\nid = "d"\nkind = "door"\nvia = "bms"').device(
        "d").fields] == ["open"]  # fmt: skip
    assert problems(
        '[[device]]\nid = "d"\nkind = "door"\nvia = "bms"\n'
        '[device.options]\nopen_input = 0\ninterlock_input = 0\nregister = "input"\n'
        "address_base = 1"
    ) == [
        "device[d].options.open_input: must be 1..65535",
        "device[d].options.interlock_input: must be 1..65535",
        "device[d].options.interlock_input: must differ from open_input",
        'device[d].options.register: must be "discrete" or "coil" (door signals are bits)',
    ]


def test_two_equipment_devices_on_one_unit_must_not_overlap() -> None:
    found = problems(
        '[[device]]\nid = "a"\nkind = "door"\nvia = "bms"\nunit_id = 5\n'
        '[[device]]\nid = "b"\nkind = "cold_storage"\nvia = "bms"\nunit_id = 5\n'
        '[device.options]\ntype = "freezer"'
    )
    assert found == [
        "device[b].fields[1].address: discrete registers 0..0 overlap "
        "device[a].fields[0] (0..0) on 'bms' unit 5"
    ]


def test_autoclave_point_map_and_options() -> None:
    d = load(
        '[[device]]\nid = "ac"\nkind = "autoclave"\nvia = "local"\n'
        '[device.options]\npressure_unit = "bar"\n'
        '[[device.fields]]\nname = "phase"\npath = "state.phase"\n'
        '[[device.fields]]\nname = "pressure"'
    ).device("ac")
    assert [(f.name, f.path, f.unit) for f in d.fields] == [
        ("phase", "state.phase", None),
        ("pressure", "pressure", "bar"),
    ]
    assert problems(
        '[[device]]\nid = "ac"\nkind = "autoclave"\nvia = "local"\n'
        '[device.options]\npressure_unit = "psi"\nphase_names = { "STER" = "sterilise" }\n'
        '[[device.fields]]\nname = "phase"\nscale = 2.0'
    ) == [
        "device[ac].options.pressure_unit: must be 'kPa' or 'bar', got 'psi'",
        "device[ac].options.phase_names.STER: must be one of idle, conditioning, exposure, "
        "exhaust, drying, complete, aborted",
        "device[ac].fields[phase].scale: point 'phase' is not a number: no scale or offset",
    ]
    assert problems('[[device]]\nid = "ac"\nkind = "autoclave"\nvia = "bms"') == [
        "device[ac].via: 'bms' is an [[modbus]] connection; kind 'autoclave' needs [[mqtt]]"
    ]


# --- Modbus decoding through the drivers ----------------------------------------------------


class FakeHub:
    """Answers reads from tables of words/bits; records the requests."""

    def __init__(self, tables: dict[RegisterTable, dict[int, int]], error: int | None = None):
        self.tables = tables
        self.error = error
        self.requests: list[tuple[RegisterTable, int, int, int]] = []

    async def read(self, table, address, count, unit):
        self.requests.append((table, address, count, unit))
        if self.error is not None:
            raise ModbusDeviceError(self.error, f"{table} {address}")
        values = self.tables[table]
        out = [values[a] for a in range(address, address + count)]
        return [bool(v) for v in out] if table.is_bits else out


def driver_for(config: Config, device_id: str, hub) -> object:
    d = config.device(device_id)
    ctx = DeviceContext(d, config.device_options[device_id], hub)
    return KINDS.get(d.kind).driver(ctx)  # type: ignore[union-attr]


def values(readings: list[Reading]) -> dict[str, object]:
    return {r.point: r.value for r in readings}


async def test_bsc_decodes_the_documented_float_map_in_two_reads() -> None:
    config = load('[[device]]\nid = "b"\nkind = "bsc"\nvia = "bms"\nunit_id = 7')
    hub = FakeHub(
        {
            RegisterTable.INPUT: dict(enumerate([0x3EC2, 0x8F5C, 0x3F05, 0x1EB8])),
            RegisterTable.DISCRETE: {0: 1, 1: 0, 2: 1},
        }
    )
    drv = driver_for(config, "b", hub)
    assert isinstance(drv, ModbusDriver)
    readings = await drv.poll()
    assert values(readings) == {
        "downflow": 0.38,
        "inflow": 0.52,
        "fan_on": True,
        "sash_alarm": False,
        "airflow_alarm": True,
    }
    assert {r.point: r.unit for r in readings}["inflow"] == "m/s"
    assert sorted(hub.requests) == [
        (RegisterTable.DISCRETE, 0, 3, 7),
        (RegisterTable.INPUT, 0, 4, 7),
    ]


async def test_laf_int16_velocity_and_its_sentinel() -> None:
    config = load(
        '[[device]]\nid = "l"\nkind = "bsc"\nvia = "bms"\n'
        '[device.options]\ntype = "laf"\nencoding = "int16"'
    )
    hub = FakeHub({RegisterTable.INPUT: {0: 41}, RegisterTable.DISCRETE: {0: 1, 1: 0, 2: 0}})
    drv = driver_for(config, "l", hub)
    assert values(await drv.poll())["downflow"] == pytest.approx(0.41)
    hub.tables[RegisterTable.INPUT][0] = 0x7FFF  # 32767: no measurement
    (down,) = [r for r in await drv.poll() if r.point == "downflow"]
    assert (down.quality, down.value, down.detail) == (Quality.BAD, None, "sentinel value 32767")


async def test_cold_storage_modbus_int16_and_cdab_float() -> None:
    config = load(
        '[[device]]\nid = "f"\nkind = "cold_storage"\nvia = "bms"\n'
        '[device.options]\ntype = "freezer"\nencoding = "int16"\n'
        '[[device]]\nid = "r"\nkind = "cold_storage"\nvia = "bms"\nunit_id = 2\n'
        '[device.options]\ntype = "refrigerator"\nbyte_order = "CDAB"'
    )
    hub = FakeHub({RegisterTable.INPUT: {0: (-185) & 0xFFFF}, RegisterTable.DISCRETE: {0: 0, 1: 1}})
    freezer = driver_for(config, "f", hub)
    assert values(await freezer.poll()) == {
        "temperature": -18.5,
        "door_open": False,
        "compressor": True,
    }
    hi, lo = words(4.25)
    hub.tables[RegisterTable.INPUT] = {0: lo, 1: hi}  # CDAB: low word first
    hub.tables[RegisterTable.DISCRETE] = {0: 1, 1: 0}
    assert values(await driver_for(config, "r", hub).poll()) == {
        "temperature": 4.25,
        "door_open": True,
        "compressor": False,
    }


async def test_cold_storage_driver_follows_the_hub_type() -> None:
    from floorctl.config import MqttConnection
    from floorctl.hubs.mqtt import MqttHub

    config = load(
        '[[device]]\nid = "c"\nkind = "cold_storage"\nvia = "local"\n[device.options]\n'
        'type = "freezer"\nstate_topic = "site/freezer-1"'
    )
    ctx = DeviceContext(
        config.device("c"),
        config.device_options["c"],
        MqttHub(MqttConnection(name="local"), "t"),  # type: ignore[arg-type]
    )
    drv = cold_storage_driver(ctx)
    assert isinstance(drv, ColdStorageMqttDriver)
    assert drv.subscriptions() == [("site/freezer-1", 1)]
    doc = {"ts": 1714557600, "temperature": -19.25, "door_open": False, "compressor": True}
    readings = drv.parse("site/freezer-1", json.dumps(doc).encode(), 1714557601.0)
    assert values(readings) == {"temperature": -19.25, "door_open": False, "compressor": True}
    assert {r.source_time for r in readings} == {1714557600.0}
    ctx.hub = None
    assert isinstance(cold_storage_driver(ctx), ModbusDriver)


async def test_door_contact_inverted_and_modbus_exception() -> None:
    config = load(
        '[[device]]\nid = "d"\nkind = "door"\nvia = "bms"\n'
        "[device.options]\nopen_input = 8\ninterlock_input = 9\ninvert = true"
    )
    hub = FakeHub({RegisterTable.DISCRETE: {8: 1, 9: 1}})
    drv = driver_for(config, "d", hub)
    assert isinstance(drv, DoorDriver)
    assert values(await drv.poll()) == {"open": False, "interlock": True}  # 1 = closed
    hub.tables[RegisterTable.DISCRETE][8] = 0
    assert values(await drv.poll())["open"] is True  # a cut wire reads open
    hub.error = 4
    readings = await drv.poll()
    assert {r.quality for r in readings} == {Quality.DEVICE_ERROR}
    assert all(r.value is None for r in readings)


# --- autoclave payloads ---------------------------------------------------------------------

AUTOCLAVE = '[[device]]\nid = "ac-1"\nkind = "autoclave"\nvia = "local"\n'

#: the documented payload (docs/devices.md)
DOC = {
    "ts": "2024-05-01T10:20:00Z",
    "cycle_id": "AC1-00042",
    "phase": "exposure",
    "temperature": 121.43,
    "pressure": 211.6,
    "f0": 6.2,
    "result": None,
    "cycle_start": "2024-05-01T10:00:00Z",
    "cycle_end": None,
}
T0 = 1714557600.0  # 2024-05-01T10:00:00Z


def autoclave(options: str = "", events: list[Event] | None = None) -> AutoclaveDriver:
    config = load(AUTOCLAVE + (f"[device.options]\n{options}" if options else ""))
    sink = events if events is not None else []
    ctx = DeviceContext(
        config.device("ac-1"), config.device_options["ac-1"], None, emit_event=sink.append
    )
    drv = KINDS.get("autoclave").driver(ctx)  # type: ignore[union-attr]
    assert isinstance(drv, AutoclaveDriver)
    return drv


def parse(drv: AutoclaveDriver, doc: dict, received: float = T0 + 1300) -> dict[str, Reading]:
    return {r.point: r for r in drv.parse("t", json.dumps(doc).encode(), received)}


def test_autoclave_documented_payload() -> None:
    drv = autoclave()
    assert drv.subscriptions() == [("equipment/ac-1", 1)]
    got = parse(drv, DOC)
    assert {k: r.value for k, r in got.items()} == {
        "phase": "exposure",
        "temperature": 121.43,
        "pressure": 211.6,
        "f0": 6.2,
        "cycle_id": "AC1-00042",
        "result": None,
        "cycle_start": T0,
        "cycle_end": None,
    }
    assert {r.quality for r in got.values()} == {Quality.GOOD}
    assert {r.source_time for r in got.values()} == {T0 + 1200}
    assert (got["temperature"].unit, got["pressure"].unit, got["f0"].unit) == ("°C", "kPa", "min")


def test_autoclave_phase_codes_bar_and_bad_values() -> None:
    drv = autoclave(
        'pressure_unit = "bar"\nphase_names = { "3" = "exposure", "STERILIZE" = "exposure" }'
    )
    got = parse(drv, {**DOC, "phase": 3, "pressure": 2.116, "result": "PASS"})
    assert (got["phase"].value, got["pressure"].unit, got["result"].value) == (
        "exposure",
        "bar",
        "pass",
    )
    assert parse(drv, {**DOC, "phase": "sterilize"})["phase"].value == "exposure"
    bad = parse(drv, {**DOC, "phase": "heating", "result": "maybe", "f0": "7", "cycle_id": 42})
    assert bad["phase"].quality is Quality.BAD
    assert bad["phase"].detail == "phase: unknown phase 'heating' (map it in options.phase_names)"
    assert bad["result"].detail == "result: expected pass, fail or null, got 'maybe'"
    assert bad["f0"].detail == "f0: expected a number, got str"
    assert bad["cycle_id"].value == "42"  # a numeric cycle counter is fine
    missing = parse(drv, {k: v for k, v in DOC.items() if k != "temperature"})
    assert missing["temperature"].quality is Quality.BAD
    assert missing["pressure"].quality is Quality.GOOD


def test_autoclave_payload_that_is_not_an_object_is_bad_for_every_point() -> None:
    drv = autoclave()
    with pytest.raises(ValueError, match="not an object"):
        drv.parse("t", b"[1, 2]", T0)
    drv._on_message("t", b'{"phase": "exposure", "temperature": 121.')  # via the base class
    batch = drv._queue.get_nowait()
    assert len(batch) == 8 and {r.quality for r in batch} == {Quality.BAD}
    assert drv.ctx.counters.errors == 1


def _cycle_docs() -> list[dict]:
    """One cycle as the controller would publish it, a message a minute or so."""
    base = {**DOC, "cycle_start": None, "f0": 0.0}
    t = T0

    def at(minutes: float, **kw) -> dict:
        return {**base, "ts": t + minutes * 60, **kw}

    start = {"cycle_start": "2024-05-01T10:00:00Z"}
    return [
        at(-5, phase="idle", cycle_id="AC1-00041", result="pass", temperature=40.0),
        at(0, phase="conditioning", **start, temperature=45.0),
        at(10, phase="exposure", **start, temperature=121.3, f0=0.3),
        at(18, phase="exposure", **start, temperature=121.2, f0=9.1),
        at(25, phase="exposure", **start, temperature=121.8, f0=17.0),
        at(27, phase="exhaust", **start, temperature=110.0, f0=17.4),
        at(35, phase="drying", **start, temperature=90.0, f0=17.5),
        at(45, phase="complete", **start, temperature=85.0, f0=17.5, result="pass",
           cycle_end="2024-05-01T10:45:00Z"),
    ]  # fmt: skip


def test_autoclave_follows_a_cycle_and_keeps_its_record() -> None:
    events: list[Event] = []
    drv = autoclave(events=events)
    for doc in _cycle_docs():
        got = parse(drv, doc)
        assert {r.quality for r in got.values()} == {Quality.GOOD}
    # a passed cycle is an event of its own, not a fault
    assert [(e.kind, e.source) for e in events] == [(EventKind.CYCLE, "ac-1")]
    assert events[0].detail.startswith("cycle AC1-00042 complete, result pass")
    (record,) = drv.cycles
    assert record.as_dict() == {
        "cycle_id": "AC1-00042",
        "start": T0,
        "end": T0 + 45 * 60,
        "phase": "complete",
        "result": "pass",
        "f0": 17.5,
        "max_temperature": 121.8,
        "exposure_min_temperature": 121.2,
        "exposure_start": T0 + 600,
        "exposure_end": T0 + 25 * 60,
        "seen_from_start": True,
        "exposure_seconds": 900.0,
    }


async def test_autoclave_cycles_command() -> None:
    drv = autoclave()
    for doc in _cycle_docs()[:4]:
        parse(drv, doc)
    (running,) = json.loads(await drv.command("cycles", {}))
    assert (running["cycle_id"], running["end"], running["phase"]) == (
        "AC1-00042",
        None,
        "exposure",
    )
    with pytest.raises(CommandError):
        await drv.command("cycles", {"n": 3})
    with pytest.raises(CommandError):
        await drv.command("door", {})


def test_aborted_cycle_is_a_device_error_and_an_event() -> None:
    events: list[Event] = []
    drv = autoclave(events=events)
    docs = _cycle_docs()
    for doc in docs[:3]:
        parse(drv, doc)
    got = parse(drv, {**docs[3], "phase": "aborted", "result": "fail"})
    assert (got["phase"].quality, got["phase"].value) == (Quality.DEVICE_ERROR, "aborted")
    assert got["phase"].detail == "cycle AC1-00042 aborted"
    assert (got["result"].quality, got["result"].value) == (Quality.DEVICE_ERROR, "fail")
    assert got["temperature"].quality is Quality.GOOD
    cycle, event = events
    assert (cycle.kind, cycle.detail) == (EventKind.CYCLE, event.detail)
    assert (event.kind, event.source) == (EventKind.DEVICE_ERROR, "ac-1")
    assert event.detail.startswith(
        "cycle AC1-00042 aborted, result fail, start 2024-05-01T10:00:00+00:00, "
        "end 2024-05-01T10:18:00+00:00"
    )
    parse(drv, {**docs[3], "phase": "aborted", "result": "fail"})  # the screen stays: no repeat
    assert len(events) == 2


def test_completed_but_failed_cycle() -> None:
    events: list[Event] = []
    drv = autoclave(events=events)
    docs = _cycle_docs()
    for doc in docs[:-1]:
        parse(drv, doc)
    got = parse(drv, {**docs[-1], "result": "fail", "f0": 12.0})
    assert got["result"].quality is Quality.DEVICE_ERROR and got["phase"].quality is Quality.GOOD
    assert [e.kind for e in events] == [EventKind.CYCLE, EventKind.DEVICE_ERROR]
    event = events[1]
    assert "cycle AC1-00042 complete, result fail" in event.detail and "F0 12.0 min" in event.detail


# --- the cycle tracker ----------------------------------------------------------------------


def run(tracker: CycleTracker, *samples: tuple) -> list[tuple[str, str | None, str | None]]:
    out = []
    for i, (phase, *rest) in enumerate(samples):
        cid = rest[0] if rest else "C1"
        result = rest[1] if len(rest) > 1 else None
        for ch in tracker.update(CycleSample(phase, float(i), cid, result)):
            out.append((ch.kind, ch.record.cycle_id if ch.record else None, ch.detail))
    return [(k, c, d.split(",")[0] if k != "unexpected" else d) for k, c, d in out]


def test_tracker_cycle_start_and_end() -> None:
    t = CycleTracker()
    assert run(
        t, ("idle",), ("conditioning",), ("exposure",), ("exhaust",), ("drying",),
        ("complete", "C1", "pass"), ("idle", "C1", "pass"),
    ) == [
        ("started", "C1", "cycle C1 conditioning"),
        ("ended", "C1", "cycle C1 complete"),
    ]  # fmt: skip
    assert t.current is None and t.closing is None


def test_tracker_waits_for_a_late_result() -> None:
    t = CycleTracker()
    changes = run(t, ("idle",), ("conditioning",), ("drying",), ("complete",), ("complete",))
    assert changes == [
        ("started", "C1", "cycle C1 conditioning"),
        ("unexpected", "C1", "phase conditioning -> drying"),
    ]
    assert t.closing is not None and t.closing.cycle_id == "C1"
    ended = t.update(CycleSample("complete", 9.0, "C1", "pass"))
    assert [(c.kind, c.record.result) for c in ended] == [("ended", "pass")]
    t2 = CycleTracker()
    run(t2, ("idle",), ("conditioning",), ("complete",))
    ended = t2.update(CycleSample("idle", 9.0, "C1", None))
    assert [c.detail.endswith("(no result reported)") for c in ended] == [True]


def test_tracker_first_seen_mid_cycle_and_after_the_end() -> None:
    t = CycleTracker()
    assert run(t, ("complete", "C0", "pass"), ("idle", "C0", "pass")) == []
    t = CycleTracker()
    t.update(CycleSample("exposure", 5.0, "C1", start=1.0))
    assert t.current is not None
    assert (t.current.start, t.current.seen_from_start) == (1.0, False)


def test_tracker_reports_unexpected_transitions_and_id_changes() -> None:
    t = CycleTracker()
    changes = run(
        t, ("idle",), ("conditioning",), ("exposure",), ("conditioning",),
        ("exposure", "C2"),
    )  # fmt: skip
    assert changes == [
        ("started", "C1", "cycle C1 conditioning"),
        ("unexpected", "C1", "phase exposure -> conditioning"),
        ("ended", "C1", "cycle C1 conditioning"),
        ("started", "C2", "cycle C2 exposure"),
    ]
    t = CycleTracker()
    assert run(t, ("idle",), ("conditioning",), ("idle",))[-1] == (
        "ended", "C1", "cycle C1 idle",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("idle", "conditioning", True),
        ("conditioning", "exposure", True),
        ("exposure", "exposure", True),
        ("drying", "complete", True),
        ("exhaust", "aborted", True),
        ("complete", "conditioning", True),
        ("aborted", "idle", True),
        ("idle", "exposure", False),
        ("exposure", "conditioning", False),
        ("complete", "aborted", False),
        ("idle", "aborted", False),
    ],
)
def test_transitions(old: str, new: str, ok: bool) -> None:
    assert transition_allowed(old, new) is ok


# --- simulator models -----------------------------------------------------------------------


def sim_device(devices: str, device_id: str):
    return load(devices).device(device_id)


AC_DEVICE = AUTOCLAVE


def test_autoclave_model_runs_a_passing_cycle() -> None:
    model = build_model(sim_device(AC_DEVICE, "ac-1"), seed=3)
    assert isinstance(model, AutoclaveModel)
    phases: list[str] = []
    for t in range(0, 3400, 20):
        phase = model.value("phase", t)
        if not phases or phases[-1] != phase:
            phases.append(phase)
        if phase == "exposure":
            assert 121.0 <= model.state(t).temperature <= 122.0
            assert 205 <= model.state(t).pressure <= 215
    assert phases == ["idle", "conditioning", "exposure", "exhaust", "drying", "complete", "idle"]
    final = model.state(3400)
    assert 15.0 <= final.f0 <= 20.0
    assert final.result == "pass"
    assert final.start == 120.0 and final.end == 120.0 + 2700.0
    assert final.cycle_id == model.cycle_id(0) and final.cycle_id.startswith("AC1-")
    assert model.state(120.0 + 5400 + 1).cycle_id == model.cycle_id(1)


def test_autoclave_model_abort_and_temperature_excursion() -> None:
    model = build_model(sim_device(AC_DEVICE, "ac-1"), seed=3)
    assert isinstance(model, AutoclaveModel)
    model.state(1000)  # mid exposure
    model.start_fault(Fault("abort"), 1000)
    s = model.state(1100)
    assert (s.phase, s.result, s.end) == ("aborted", "fail", 1000.0)
    assert model.state(1000 + 400).phase == "idle"
    model.end_fault("abort", 1500)
    # idle: the next cycle aborts 240 s into conditioning
    model.start_fault(Fault("abort"), 3000)
    start = 120.0 + 5400
    assert model.state(start + 200).phase == "conditioning"
    assert model.state(start + 300).phase == "aborted"
    # a cooler chamber during exposure: F0 short, the cycle fails
    cool = build_model(sim_device(AC_DEVICE, "ac-1"), seed=3)
    assert isinstance(cool, AutoclaveModel)
    cool.state(700)
    cool.start_fault(Fault("excursion", {"field": "temperature", "by": -2.0}), 700)
    assert cool.sample("temperature", 800) == pytest.approx(
        cool.state(800).temperature - 2.0, abs=0.5
    )
    end = cool.state(3200)
    assert end.result == "fail" and end.f0 < 15.0


def test_model_fault_checks() -> None:
    model = build_model(sim_device(AC_DEVICE, "ac-1"), seed=0)
    assert model is not None
    with pytest.raises(UnsupportedFault, match="it can: excursion, silent, malformed, abort"):
        model.check_fault(Fault("sash"), ("silent", "malformed"))
    with pytest.raises(FaultParamError, match="not a field of this device"):
        model.check_fault(Fault("excursion", {"field": "phase", "to": 1.0}))
    with pytest.raises(FaultParamError, match="unknown parameter"):
        model.check_fault(Fault("abort", {"when": "now"}))
    laf = build_model(
        sim_device(
            '[[device]]\nid = "l"\nkind = "bsc"\nvia = "bms"\n[device.options]\ntype = "laf"', "l"
        ),
        seed=0,
    )
    assert laf is not None
    with pytest.raises(UnsupportedFault, match="no sash"):
        laf.check_fault(Fault("sash"))


def test_fridge_sawtooth_door_bumps_and_compressor_failure() -> None:
    d = sim_device(
        '[[device]]\nid = "r"\nkind = "cold_storage"\nvia = "bms"\n'
        '[device.options]\ntype = "refrigerator"',
        "r",
    )
    model = build_model(d, seed=1)
    assert isinstance(model, ColdStorageModel)
    temps = [model.value("temperature", t) for t in range(0, 86400, 30)]
    assert 2.8 <= min(temps) and max(temps) <= 7.5  # inside 2..8 for a day
    assert max(temps) > 5.5  # door openings bump above the sawtooth's top
    running = [model.value("compressor", t) for t in range(0, 3600, 30)]
    assert True in running and False in running
    model.start_fault(Fault("compressor"), 40000)
    assert model.value("compressor", 40060) is False
    assert model.value("temperature", 40000 + 3600) > 8.0  # out of range within the hour
    model.end_fault("compressor", 43600)
    assert model.value("compressor", 43610) is True
    hot = model.value("temperature", 43610)
    assert hot > model.value("temperature", 44200) > 2.0  # pulls down again


def test_freezer_range_and_excursion_on_a_boolean() -> None:
    d = sim_device(
        '[[device]]\nid = "f"\nkind = "cold_storage"\nvia = "bms"\n'
        '[device.options]\ntype = "freezer"',
        "f",
    )
    model = build_model(d, seed=2)
    assert model is not None
    temps = [model.value("temperature", t) for t in range(0, 20000, 30)]
    assert -21.5 <= min(temps) and max(temps) <= -10.0
    model.start_fault(Fault("excursion", {"field": "door_open", "to": True}), 100)
    assert model.sample("door_open", 101) is True
    model.end_excursion("door_open")
    assert model.sample("door_open", 101) is model.value("door_open", 101)


def test_episodes_are_seeded() -> None:
    a = Episodes(7, 300.0, 4.0, 20.0, 0.7)
    assert [a.window(k) for k in range(20)] == [
        Episodes(7, 300.0, 4.0, 20.0, 0.7).window(k) for k in range(20)
    ]
    assert [a.window(k) for k in range(20)] != [
        Episodes(8, 300.0, 4.0, 20.0, 0.7).window(k) for k in range(20)
    ]
    for k in range(50):
        w = a.window(k)
        if w is not None:
            assert k * 300 <= w[0] < w[1] <= (k + 1) * 300 and 4.0 <= w[1] - w[0] <= 20.0
            assert a.active((w[0] + w[1]) / 2) == w
    assert sum(a.window(k) is not None for k in range(1000)) == pytest.approx(700, abs=60)
    assert not math.isnan(sum(w[0] for w in a.since(3000.0, 1000.0)))
