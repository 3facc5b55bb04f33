"""Unit tests of the environmental kinds (modbus_thp, particle_counter, mqtt_env) and their
simulators. Register words come from the protocol documents (domain.md §5.3, §5.4), and the
particle counter's driver is tested against a fake written from the Lighthouse register map,
not against our simulator."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from floorctl.config import ConfigError, parse_config
from floorctl.decode import RegisterTable, decode_registers, encode_registers
from floorctl.driver import DeviceContext
from floorctl.hubs.modbus import ModbusDeviceError
from floorctl.limits import Quantity, resolve_limits
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.plugins.environment import (
    BackfillTracker,
    MqttEnvDriver,
    ParticleCounterDriver,
    RegisterCheckError,
    ThpDriver,
    counts_since,
    iso,
    parse_record,
    register_check_problem,
    size_counts,
)
from simulators.environment import (
    BACKGROUND,
    CounterSim,
    DoorSignal,
    EnvironmentModbusServer,
    Episodes,
    door_factor,
)
from simulators.faults import Fault, UnsupportedFault
from simulators.serve import build_simulators
from simulators.signals import FaultParamError, Signal

KINDS = collect_kinds(get_plugin_manager(autoload=False))

FLOOR = """
[[mqtt]]
name = "local"
[[modbus]]
name = "bms"
[[room]]
id = "ante"
iso_class = 8
pressure = "positive"
[[room]]
id = "buffer"
iso_class = 7
pressure = "positive"
pressure_reference = "ante"
[[room]]
id = "hd-buffer"
iso_class = 7
pressure = "negative"
pressure_reference = "ante"
[[room]]
id = "hood-1"
iso_class = 5
within = "buffer"
"""


def load(devices: str, env: dict[str, str] | None = None):
    return parse_config((FLOOR + devices).encode(), KINDS, env=env or {})


def problems(devices: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(devices)
    return [p.format() for p in err.value.problems]


def context(config, device_id: str, hub: Any, events: list[Event] | None = None) -> DeviceContext:
    return DeviceContext(
        device=config.device(device_id),
        options=config.device_options[device_id],
        hub=hub,
        emit_event=(events if events is not None else []).append,
    )


def by_point(readings: list[Reading]) -> dict[str, Reading]:
    return {r.point: r for r in readings}


# --- config: points, quantities, default limits ---------------------------------------------

DEVICES = """
[[device]]
id = "thp-ante"
kind = "modbus_thp"
via = "bms"
unit_id = 1
room = "ante"

[[device]]
id = "thp-hd"
kind = "modbus_thp"
via = "bms"
unit_id = 2
room = "hd-buffer"

[[device]]
id = "pc-hood"
kind = "particle_counter"
via = "bms"
unit_id = 3
room = "hood-1"
interval = "5s"
expire_after = "2m"
[device.options]
sample_time = "60s"

[[device]]
id = "pc-buffer"
kind = "particle_counter"
via = "bms"
unit_id = 4
room = "buffer"
expire_after = "2m"

[[device]]
id = "logger"
kind = "mqtt_env"
via = "local"
room = "buffer"
interval = "1m"
[device.options]
state_topic = "site/logger-1"
"""


def test_every_point_has_its_unit_and_quantity_so_default_limits_apply() -> None:
    config = load(DEVICES)
    thp = config.device("thp-ante")
    assert [(f.name, f.unit, f.quantity) for f in thp.fields] == [
        ("t", "°C", Quantity.TEMPERATURE),
        ("rh", "%RH", Quantity.HUMIDITY),
        ("dp", "Pa", Quantity.DIFFERENTIAL_PRESSURE),
    ]
    pc = config.device("pc-hood")
    assert [(f.name, f.unit, f.quantity) for f in pc.fields] == [
        ("counts_0_5", "counts/m³", Quantity.PARTICLES_0_5),
        ("counts_5_0", "counts/m³", Quantity.PARTICLES_5_0),
        ("counts_0_5_ft3", "counts/ft³", None),
        ("counts_5_0_ft3", "counts/ft³", None),
        ("raw_0_5", "counts", None),
        ("raw_5_0", "counts", None),
        ("volume", "L", None),
    ]
    logger = config.device("logger")
    assert [(f.name, f.unit, f.path, f.quantity) for f in logger.fields] == [
        ("t", "°C", "t", Quantity.TEMPERATURE),
        ("rh", "%RH", "rh", Quantity.HUMIDITY),
    ]
    limits = resolve_limits(config)
    assert limits[("thp-ante", "dp")].action_low.value == 5.0  # positive room
    hd = limits[("thp-hd", "dp")]
    assert (hd.action_low.value, hd.action_high.value) == (-7.5, -2.5)  # two-sided HD band
    assert limits[("thp-hd", "t")].action_high.value == 20.0
    assert limits[("thp-hd", "rh")].action_high.value == 60.0
    assert limits[("pc-hood", "counts_0_5")].action_high.value == 3_520
    assert limits[("pc-hood", "counts_5_0")].action_high.value == 29
    assert limits[("pc-buffer", "counts_0_5")].action_high.value == 352_000
    assert limits[("logger", "t")].action_high.value == 20.0
    assert ("pc-hood", "counts_0_5_ft3") not in limits  # no second set of alarms per ft³


def test_thp_point_map_follows_the_options() -> None:
    config = load(
        """
[[device]]
id = "thp"
kind = "modbus_thp"
via = "bms"
[device.options]
address_base = 0
register = "input"
t_address = 10
rh_address = 12
dp_address = 20
byte_order = "ABCD"
[[device.fields]]
name = "dp"
scale = 0.001
"""
    )
    (dp,) = config.device("thp").fields
    assert (dp.register, dp.address, dp.type, dp.byte_order, dp.scale) == (
        RegisterTable.INPUT,
        20,
        "FLOAT32",
        "ABCD",
        0.001,
    )


def test_config_problems_of_the_environmental_kinds() -> None:
    found = problems(
        """
[[device]]
id = "thp"
kind = "modbus_thp"
via = "bms"
[device.options]
test_register = 0

[[device]]
id = "pc"
kind = "particle_counter"
via = "bms"
unit_id = 9
interval = "5s"
[device.options]
channel_sizes = [0.3, 0.5, 1.0]
sample_time = "60s"
bins = "binned"

[[device.fields]]
name = "counts_0_5"
unit = "counts/ft3"

[[device]]
id = "log"
kind = "mqtt_env"
via = "local"
[device.options]
state_topic = "a/#"
"""
    )
    text = "\n".join(found)
    assert "device[thp].options.test_register: must be at least 1 (address_base = 1)" in text
    assert "device[pc].options.bins: binned not in literal" in text
    assert "device[pc].fields[counts_0_5].unit: not a field key of kind 'particle_counter'" in text
    assert "device[log].options.state_topic: must be a topic without wildcards" in text
    found = problems(
        """
[[device]]
id = "pc"
kind = "particle_counter"
via = "bms"
interval = "5s"
[device.options]
channel_sizes = [0.3, 0.5, 1.0]
sample_time = "60s"
"""
    )
    assert any("channel_sizes: needs a channel of 5 µm" in p for p in found)
    assert any(
        "device[pc].expire_after: counts arrive once per sample (sample_time 60s): set "
        "expire_after to at least 65s" in p
        for p in found
    )


# --- modbus_thp: register words from the Vaisala documents --------------------------------


class FakeRegisters:
    """A Modbus device as a dict of (table, wire address) -> word."""

    def __init__(self, words: dict[tuple[RegisterTable, int], int]) -> None:
        self.words = words
        self.reads: list[tuple[RegisterTable, int, int]] = []

    async def read(self, table: RegisterTable, address: int, count: int, unit: int) -> list[int]:
        self.reads.append((table, address, count))
        try:
            return [self.words[(table, a)] for a in range(address, address + count)]
        except KeyError:
            raise ModbusDeviceError(2, f"{table} {address}..{address + count - 1}") from None


def thp_words(
    rh: list[int], t: list[int], dp: list[int], test: list[int] | None
) -> dict[tuple[RegisterTable, int], int]:
    h = RegisterTable.HOLDING
    words = {(h, 0): rh[0], (h, 1): rh[1], (h, 2): t[0], (h, 3): t[1], (h, 4): dp[0], (h, 5): dp[1]}
    if test is not None:
        words |= {(h, 7937): test[0], (h, 7938): test[1]}
    return words


THP = """
[[device]]
id = "thp-ante"
kind = "modbus_thp"
via = "bms"
room = "ante"
"""
#: Vaisala's example: 30.56 %RH = 0x41F47AE1, least significant word first
RH_30_56 = [0x7AE1, 0x41F4]
#: the float test register: -123.45 = 0xC2F6E666, least significant word first
TEST_CDAB = [0xE666, 0xC2F6]


async def test_vaisala_example_words_read_30_56_with_the_default_byte_order() -> None:
    config = load(THP)
    t = encode_registers(19.25, "FLOAT32", "CDAB")
    dp = encode_registers(-4.5, "FLOAT32", "CDAB")
    hub = FakeRegisters(thp_words(RH_30_56, t, dp, TEST_CDAB))
    driver = ThpDriver(context(config, "thp-ante", hub))
    await driver.start()  # the test register reads -123.45: no error
    readings = by_point(await driver.poll())
    assert readings["rh"].value == pytest.approx(30.56, abs=1e-5)
    assert (readings["rh"].unit, readings["rh"].quality) == ("%RH", Quality.GOOD)
    assert readings["t"].value == pytest.approx(19.25)
    assert readings["dp"].value == pytest.approx(-4.5)
    assert hub.reads[0] == (RegisterTable.HOLDING, 7937, 2)  # register 7938, 1-based
    # the same words read big-endian give a plausible-looking wrong number: why the check exists
    wrong = decode_registers(RH_30_56, "FLOAT32", "ABCD").value
    assert wrong is not None and not math.isclose(wrong, 30.56, abs_tol=1)


def test_test_register_words_pass_in_their_own_order_only() -> None:
    opts = load(THP).device_options["thp-ante"]
    assert register_check_problem("thp-ante", TEST_CDAB, opts) is None
    message = register_check_problem("thp-ante", list(reversed(TEST_CDAB)), opts)
    assert message == (
        "device 'thp-ante': test register 7938 (holding, wire address 7937) reads -2.72435e+23 "
        "as CDAB (words 0xC2F6 0xE666), expected -123.45: misconfigured byte order: the words "
        'read -123.45 as ABCD; set byte_order = "ABCD" in [device.options] (a gateway that '
        "swaps words does this). No readings are taken until the check passes."
    )
    other = register_check_problem("thp-ante", [0, 0], opts)
    assert other is not None
    assert "reads 0 as CDAB (words 0x0000 0x0000), expected -123.45 in no byte order" in other


async def test_test_register_mismatch_stops_the_device_at_start() -> None:
    config = load(THP)
    words = thp_words(RH_30_56, RH_30_56, RH_30_56, list(reversed(TEST_CDAB)))
    events: list[Event] = []
    driver = ThpDriver(context(config, "thp-ante", FakeRegisters(words), events))
    with pytest.raises(RegisterCheckError, match=r"device 'thp-ante'.*byte_order = \"ABCD\""):
        await driver.start()
    assert [e.kind for e in events] == [EventKind.DEVICE_ERROR]
    assert "-2.72435e+23" in events[0].detail


async def test_missing_test_register_says_how_to_skip_the_check() -> None:
    config = load(THP)
    driver = ThpDriver(context(config, "thp-ante", FakeRegisters(thp_words(*[RH_30_56] * 3, None))))
    with pytest.raises(RegisterCheckError, match="check_test_register = false"):
        await driver.start()
    config = load(THP + "[device.options]\ncheck_test_register = false\n")
    driver = ThpDriver(context(config, "thp-ante", FakeRegisters(thp_words(*[RH_30_56] * 3, None))))
    await driver.start()
    assert {r.quality for r in await driver.poll()} == {Quality.GOOD}


async def test_status_register_fault_makes_readings_device_error() -> None:
    config = load(THP + "[device.options]\nstatus_register = 513\n")
    words = thp_words(RH_30_56, RH_30_56, RH_30_56, TEST_CDAB)
    words[(RegisterTable.HOLDING, 512)] = 1  # HMT330 register 0513: 1 = no errors
    hub = FakeRegisters(words)
    driver = ThpDriver(context(config, "thp-ante", hub))
    assert {r.quality for r in await driver.poll()} == {Quality.GOOD}
    words[(RegisterTable.HOLDING, 512)] = 0
    readings = await driver.poll()
    assert {r.quality for r in readings} == {Quality.DEVICE_ERROR}
    assert readings[0].detail == (
        "transmitter reports a fault (status register 513 = 0, 1 = no errors)"
    )
    assert readings[0].value == pytest.approx(30.56, abs=1e-5)  # the value is kept, flagged


# --- particle_counter: register words from the Lighthouse map ------------------------------


def u32(value: int) -> list[int]:
    return [value >> 16, value & 0xFFFF]


def test_counts_are_uint32_high_word_first() -> None:
    # 30001-30002 timestamp, 30003-30004 sample time, 30005-30006 location,
    # 30007-30008 data status, 30009.. channels
    words = [0x6553, 0xF100, 0, 60, 0, 7, 0, 0b1001]
    words += [0x0001, 0x86A0, 0x0000, 0x2710, 0, 0x01F4, 0, 3]
    rec = parse_record(words, 4)
    assert rec.time == 1_700_000_000
    assert (rec.sample_time, rec.location) == (60, 7)
    assert rec.channels == (100_000, 10_000, 500, 3)
    assert rec.faults == [
        "laser alert (record status bit 0)",
        "instrument service / malfunction (record status bit 3)",
    ]
    with pytest.raises(ValueError, match="16 registers"):
        parse_record(words[:12], 4)


def test_running_totals_difference_with_wrap_around_and_reset() -> None:
    assert counts_since(1_500, 1_000) == 500
    assert counts_since(1_000, None) == 1_000  # no previous total: counts since the start
    assert counts_since(5, 2**32 - 10) == 15  # UINT32 wrapped
    assert counts_since(40, 1_000_000) == 40  # the counter restarted its totals


def test_cumulative_and_differential_bins() -> None:
    sizes = (0.3, 0.5, 1.0, 5.0)
    assert size_counts((900, 400, 100, 3), sizes, "cumulative") == (400, 3)
    assert size_counts((500, 300, 97, 3), sizes, "differential") == (400, 3)


class FakeLighthouse:
    """A Lighthouse REMOTE counter as domain.md §5.3 describes its registers."""

    def __init__(self, *, running: bool = False, capacity: int = 10_000) -> None:
        self.holding = [0] * 36
        self.holding[22] = 100  # 1.00 CFM
        self.holding[32:34] = u32(60)
        self.running = running
        self.new_data = False
        self.records: list[list[int]] = []
        self.capacity = capacity
        self.index = 0xFFFF
        self.writes: list[tuple[int, int]] = []
        self.record_reads = 0
        self.status_extra = 0

    def add(self, ts: int, channels: list[int], *, sample: int = 60, status: int = 0) -> None:
        words = u32(ts) + u32(sample) + u32(1) + u32(status)
        for c in [*channels, *[0] * (8 - len(channels))]:
            words += u32(c)
        self.records.append(words)
        del self.records[: -self.capacity]
        self.new_data = True

    async def read(self, table: RegisterTable, address: int, count: int, unit: int) -> list[int]:
        if table is RegisterTable.HOLDING:
            h = list(self.holding)
            h[2] = (3 if self.running else 0) | (4 if self.new_data else 0) | self.status_extra
            h[23] = len(self.records)
            h[24] = self.index
            return h[address : address + count]
        assert table is RegisterTable.INPUT
        if self.index == 0xFFFF:
            rec = self.records[-1]
        else:
            rec = self.records[self.index]
        self.new_data = False
        if address == 0 and count > 2:
            self.record_reads += 1
        return rec[address : address + count]

    async def write_register(self, address: int, value: int, unit: int) -> None:
        self.writes.append((address, value))
        if address == 1:
            self.running = {11: True, 12: False}.get(value, self.running)
        elif address == 24:
            if value != 0xFFFF and value >= len(self.records):
                raise ModbusDeviceError(3, f"write holding 24 value {value}")
            self.index = value
        else:
            self.holding[address] = value


COUNTER = """
[[device]]
id = "pc"
kind = "particle_counter"
via = "bms"
room = "buffer"
interval = "10s"
expire_after = "2m"
"""


def counter(
    fake: FakeLighthouse, options: str = "", events: list[Event] | None = None
) -> ParticleCounterDriver:
    config = load(COUNTER + ("[device.options]\n" + options if options else ""))
    return ParticleCounterDriver(context(config, "pc", fake, events))


async def test_start_starts_the_counter_and_takes_the_newest_record_as_baseline() -> None:
    fake = FakeLighthouse()
    fake.add(1_700_000_000, [900, 400, 100, 3])
    driver = counter(fake, 'sample_time = "60s"\n')
    await driver.start()
    assert fake.writes == [(1, 11), (24, 0)]  # sample time already 60: not written
    assert fake.running
    assert await driver.poll() == []  # the baseline record is not published
    once = by_point(await driver.read_once(1.0))  # but `floorctl run --once` shows it
    assert (once["raw_0_5"].value, once["raw_0_5"].source_time) == (400, 1_700_000_000.0)
    driver = counter(FakeLighthouse(running=True), 'sample_time = "100s"\nauto_start = false\n')
    await driver.start()
    assert driver.ctx.hub.writes == [(32, 0), (33, 100), (1, 4)]  # function 06, then "save"


async def test_each_record_is_read_once_and_converted_per_m3_and_per_ft3(monkeypatch) -> None:
    fake = FakeLighthouse(running=True)
    driver = counter(fake)
    await driver.start()
    monkeypatch.setattr("time.time", lambda: 1_700_000_065.0)
    fake.add(1_700_000_060, [250_000, 100_000, 20_000, 300])
    readings = by_point(await driver.poll())
    # 1.00 CFM x 60 s = 1 ft³ = 0.028316846592 m³
    assert readings["volume"].value == pytest.approx(28.316846592)
    assert readings["counts_0_5_ft3"].value == pytest.approx(100_000)
    assert readings["counts_0_5"].value == pytest.approx(100_000 / 0.028316846592)
    assert readings["counts_5_0"].value == pytest.approx(300 / 0.028316846592)
    assert (readings["raw_0_5"].value, readings["raw_5_0"].value) == (100_000, 300)
    assert {r.source_time for r in readings.values()} == {1_700_000_060.0}
    assert {r.quality for r in readings.values()} == {Quality.GOOD}
    assert not any(r.historical for r in readings.values())
    assert await driver.poll() == []  # same record count: nothing read, nothing counted twice
    assert fake.record_reads == 1


async def test_fault_bits_make_the_record_device_error_and_name_the_fault(monkeypatch) -> None:
    events: list[Event] = []
    fake = FakeLighthouse(running=True)
    driver = counter(fake, events=events)
    await driver.start()
    monkeypatch.setattr("time.time", lambda: 1_700_000_065.0)
    fake.add(1_700_000_060, [10, 5, 1, 0], status=0b10)  # flow alert
    readings = await driver.poll()
    assert {r.quality for r in readings} == {Quality.DEVICE_ERROR}
    assert readings[0].detail == "flow alert (record status bit 1)"
    assert [e.detail for e in events] == ["new fault: flow alert (record status bit 1)"]
    fake.status_extra = 1 << 3  # device status: DEVICE ERROR, no new record
    readings = await driver.poll()
    assert {(r.quality, r.value) for r in readings} == {(Quality.DEVICE_ERROR, None)}
    assert readings[0].detail == "device error (status bit 3)"
    fake.status_extra = 0
    fake.running = False
    readings = await driver.poll()
    assert readings[0].detail == "counter is not sampling (status RUNNING bit clear)"


async def test_records_buffered_during_an_outage_are_historical_with_one_gap_event(
    monkeypatch,
) -> None:
    events: list[Event] = []
    fake = FakeLighthouse(running=True)
    driver = counter(fake, events=events)
    await driver.start()
    t0 = 1_700_000_000
    monkeypatch.setattr("time.time", lambda: t0 + 65.0)
    fake.add(t0 + 60, [10, 5, 1, 0])
    assert len(await driver.poll()) == 7
    for k in range(2, 7):  # five samples while the daemon could not reach the counter
        fake.add(t0 + 60 * k, [10 + k, 5, 1, 0])
    monkeypatch.setattr("time.time", lambda: t0 + 365.0)
    readings = [r for r in await driver.poll() if r.point == "raw_0_5"]
    assert [(r.source_time - t0, r.historical) for r in readings] == [
        (120.0, True),
        (180.0, True),
        (240.0, True),
        (300.0, False),  # within 2 x interval + sample time of now: live
        (360.0, False),
    ]
    (gap,) = [e for e in events if e.kind is EventKind.DATA_GAP]
    assert gap.detail.startswith(
        f"data gap {iso(t0 + 60)} to {iso(t0 + 300)} (240.0 s): 3 buffered sample(s) arrived "
        f"late ({iso(t0 + 120)} .. {iso(t0 + 240)}), 3 expected at 60 s"
    )


async def test_a_cleared_buffer_and_a_full_rolling_buffer_lose_and_repeat_nothing(
    monkeypatch,
) -> None:
    fake = FakeLighthouse(running=True, capacity=8)
    driver = counter(fake, "max_records_per_poll = 3\n")
    t0 = 1_700_000_000
    for k in range(8):
        fake.add(t0 + 60 * k, [k, k, 0, 0])
    await driver.start()
    monkeypatch.setattr("time.time", lambda: t0 + 60 * 10.0)
    for k in range(8, 12):  # the buffer is full: the record count stays 8, NEW DATA is set
        fake.add(t0 + 60 * k, [k, k, 0, 0])
    taken: list[int] = []
    for _ in range(3):
        taken += [r.value for r in await driver.poll() if r.point == "raw_0_5"]
    assert taken == [8, 9, 10, 11]
    fake.records.clear()  # command 3, clear the data buffer, by someone at the counter
    fake.add(t0 + 60 * 12, [12, 12, 0, 0])
    fake.add(t0 + 60 * 13, [13, 13, 0, 0])
    taken = [r.value for r in await driver.poll() if r.point == "raw_0_5"]
    assert taken == [12, 13]
    assert await driver.poll() == []
    assert driver.duplicates == 0


async def test_running_totals_mode_counts_the_difference_across_a_wrap(monkeypatch) -> None:
    fake = FakeLighthouse(running=True)
    top = 2**32 - 100
    fake.add(1_700_000_000, [top, top, 0, 0])
    driver = counter(fake, 'count_mode = "running_total"\n')
    await driver.start()
    monkeypatch.setattr("time.time", lambda: 1_700_000_065.0)
    fake.add(1_700_000_060, [top + 50, top + 50, 0, 0])
    fake.add(1_700_000_120, [20, 20, 0, 0])  # wrapped: 50 + 20 more
    raw = [r.value for r in await driver.poll() if r.point == "raw_0_5"]
    assert raw == [50, 70]


async def test_start_sampling_command_and_write_function_16() -> None:
    class Multi(FakeLighthouse):
        async def write_registers(self, address: int, values: list[int], unit: int) -> None:
            for i, v in enumerate(values):
                await self.write_register(address + i, v, unit)
            self.writes.append((-16, address))

    fake = Multi(running=True)
    driver = counter(fake, "write_function = 16\n")
    assert await driver.command("stop_sampling", {}) == "command 12 sent"
    assert fake.writes == [(1, 12), (-16, 1)] and not fake.running


# --- late samples, gaps and duplicates (a fake clock) ---------------------------------------


def test_backfill_after_an_outage_gives_one_gap_with_its_window() -> None:
    tracker = BackfillTracker(late_after=20.0, interval=10.0)
    assert tracker.observe(100.0, 100.5) == tracker.observe(110.0, 110.5)  # live, no gap
    # outage from 110 to 180: the logger buffers 120..170, then sends it all at 180.2
    verdicts = [tracker.observe(t, 180.2) for t in (120.0, 130.0, 140.0, 150.0, 160.0)]
    assert all(v.historical for v in verdicts)
    assert tracker.observe(170.0, 180.3).gap is not None  # within 20 s: live, completes it
    assert tracker.pending == 0
    assert tracker.observe(180.0, 180.4).gap is None


def test_gap_window_counts_and_expected() -> None:
    tracker = BackfillTracker(late_after=20.0, interval=10.0)
    tracker.observe(100.0, 100.1)
    for t in (110.0, 130.0, 120.0, 140.0):  # out of order inside the backlog
        assert tracker.observe(t, 200.0).historical
    assert tracker.observe(120.0, 200.0).duplicate  # sent twice (QoS 1 redelivery)
    # 150..180 never come: the backlog does not reach the live samples, so the gap is
    # reported once no late sample has arrived for late_after
    assert tracker.observe(190.0, 200.1).gap is None
    gap = tracker.observe(205.0, 220.5).gap
    assert gap is not None and tracker.duplicates == 1
    assert (gap.start, gap.end, gap.late, gap.first_late, gap.last_late) == (
        100.0,
        190.0,
        4,
        110.0,
        140.0,
    )
    assert gap.expected == 8  # 110..180: the logger lost 150..180
    assert gap.describe() == (
        "data gap 1970-01-01T00:01:40.000Z to 1970-01-01T00:03:10.000Z (90.0 s): 4 buffered "
        "sample(s) arrived late (1970-01-01T00:01:50.000Z .. 1970-01-01T00:02:20.000Z), "
        "8 expected at 10 s; 1 duplicate(s) ignored"
    )


def test_a_backlog_trickling_in_beside_live_samples_is_still_one_gap() -> None:
    tracker = BackfillTracker(late_after=20.0, interval=10.0)
    tracker.observe(100.0, 100.1)
    gaps = []
    received = 200.0
    backlog = [110.0, 120.0, 130.0, 140.0, 150.0, 160.0, 170.0, 180.0, 190.0]
    live = 200.0
    while backlog:  # two old samples per live one, oldest first
        for _ in range(2):
            if backlog:
                assert tracker.observe(backlog.pop(0), received).historical
        v = tracker.observe(live, received + 0.1)
        assert not v.historical
        gaps.append(v.gap)
        live += 10.0
        received += 10.0
    found = [g for g in gaps if g is not None]
    assert len(found) == 1
    assert (found[0].start, found[0].end, found[0].late) == (100.0, 200.0, 9)


def test_an_incomplete_backlog_is_reported_once_it_goes_quiet() -> None:
    tracker = BackfillTracker(late_after=20.0, interval=10.0)
    tracker.observe(100.0, 100.1)
    tracker.observe(110.0, 300.0)  # one old sample, the rest was lost
    assert tracker.observe(300.0, 300.1).gap is None  # maybe more is coming
    gap = tracker.observe(310.0, 320.1).gap  # 20 s without a late sample: report
    assert gap is not None and (gap.start, gap.end, gap.late) == (100.0, 300.0, 1)


def test_live_samples_out_of_order_are_not_historical_and_never_dropped() -> None:
    tracker = BackfillTracker(late_after=20.0, interval=10.0)
    assert not tracker.observe(110.0, 111.0).historical
    v = tracker.observe(100.0, 111.2)  # older than the last one, but within the tolerance
    assert not (v.historical or v.duplicate) and v.gap is None
    assert tracker.observe(500.0, 111.3).ahead  # a logger clock far ahead


# --- mqtt_env ---------------------------------------------------------------------------------

LOGGER = """
[[device]]
id = "logger"
kind = "mqtt_env"
via = "local"
room = "buffer"
interval = "10s"
[device.options]
state_topic = "site/logger-1"
"""


def test_mqtt_env_samples_live_late_duplicate_and_without_timestamp() -> None:
    events: list[Event] = []
    config = load(LOGGER)
    driver = MqttEnvDriver(context(config, "logger", None, events))

    def msg(ts: object, t: float = 19.0, rh: float = 41.0) -> bytes:
        doc: dict[str, object] = {"t": t, "rh": rh}
        if ts is not None:
            doc["ts"] = ts
        return json.dumps(doc).encode()

    t0 = 1_700_000_000.0
    live = by_point(driver.parse("site/logger-1", msg(t0), t0 + 0.2))
    assert live["t"].value == 19.0 and live["t"].source_time == t0
    assert not live["t"].historical and live["rh"].unit == "%RH"
    late = driver.parse("site/logger-1", msg(int(t0 + 10) * 1000, t=19.5), t0 + 50)  # in ms
    assert [(r.point, r.historical, r.source_time) for r in late] == [
        ("t", True, t0 + 10),
        ("rh", True, t0 + 10),
    ]
    assert driver.parse("site/logger-1", msg(t0 + 10, t=99.0), t0 + 50.1) == []  # duplicate
    assert driver.duplicates == 1
    for k in (30, 20):  # the rest of the logger's buffer, out of order
        assert all(r.historical for r in driver.parse("site/logger-1", msg(t0 + k), t0 + 50.1))
    assert events == []
    driver.parse("site/logger-1", msg(iso(t0 + 40)), t0 + 50.2)  # ISO 8601, within 20 s: live
    (gap,) = events
    assert gap.kind is EventKind.DATA_GAP and gap.source == "logger"
    assert gap.detail == (
        f"data gap {iso(t0)} to {iso(t0 + 40)} (40.0 s): 3 buffered sample(s) arrived late "
        f"({iso(t0 + 10)} .. {iso(t0 + 30)}), 3 expected at 10 s; 1 duplicate(s) ignored"
    )
    untimed = driver.parse("site/logger-1", msg(None), t0 + 60)
    assert {r.quality for r in untimed} == {Quality.UNCERTAIN}
    assert untimed[0].value == 19.0 and untimed[0].source_time is None
    assert "no sample timestamp at 'ts'" in (untimed[0].detail or "")


# --- simulators -------------------------------------------------------------------------------


class FakeClock:
    """SimClock's interface with time set by the test."""

    def __init__(self, wall: float = 1_700_000_000.0, speed: float = 1.0) -> None:
        self.t = wall
        self.speed = speed
        self.start = wall

    def now(self) -> float:
        return (self.t - self.start) * self.speed

    def wall(self) -> float:
        return self.t


def test_counter_sim_records_follow_the_register_map() -> None:
    clock = FakeClock()
    sim = CounterSim("pc", seed=1, clock=clock, sample_time=60)  # type: ignore[arg-type]
    assert sim.holding_words(clock.t)[23] == 0 and not sim.running
    assert sim.write(1, [11], clock.t) is None  # instrument start
    clock.t += 179.0
    words = sim.holding_words(clock.t)
    assert words[2] & 0b11 == 0b11 and words[2] & 0b100  # RUNNING, SAMPLING, NEW DATA
    assert words[23] == 2  # two samples done, the third runs
    assert (words[26] << 16 | words[27]) == round(clock.t)
    assert sim.write(24, [0], clock.t) is None
    rec = parse_record(sim.input_words(clock.t), 4)
    assert rec.time == 1_700_000_060 and rec.sample_time == 60
    assert rec.channels[0] >= rec.channels[1] >= rec.channels[2] >= rec.channels[3]  # >= size
    sim.record_read()
    assert not sim.holding_words(clock.t)[2] & 0b100
    assert sim.write(24, [5], clock.t) == 3  # no such record: illegal data value
    assert sim.write(23, [0], clock.t) == 2  # read-only: illegal data address
    sim.write(1, [12], clock.t)  # stop
    clock.t += 600
    assert sim.holding_words(clock.t)[23] == 2


def test_counter_sim_counts_sit_at_the_rooms_background_and_faults_set_bits() -> None:
    clock = FakeClock()
    sim = CounterSim("pc", seed=3, clock=clock, background=lambda t: BACKGROUND[7])  # type: ignore[arg-type]
    sim.start(clock.t)
    clock.t += 60 * 40
    sim.advance(clock.t)
    per_m3 = [r.channels[1] / 0.028316846592 for r in sim.records]
    assert len(per_m3) == 40
    mean = sum(per_m3) / len(per_m3)
    assert BACKGROUND[7] * 0.7 < mean < BACKGROUND[7] * 15  # background, maybe a burst
    assert max(per_m3) < 352_000  # below the ISO 7 class limit
    sim.faults |= {"laser", "service"}
    clock.t += 60
    sim.advance(clock.t)
    assert sim.records[-1].status == 0b1001 and sim.records[-1].channels[1] == 0
    assert sim.status_word() & (1 << 3)


def test_door_opening_dips_the_pressure_and_it_recovers() -> None:
    assert door_factor(5.0, 10.0, 40.0, 0.1) == 1.0
    assert door_factor(20.0, 10.0, 40.0, 0.1) == pytest.approx(0.1 + 0.9 * math.exp(-5), rel=1e-9)
    assert door_factor(40.0 + 6.0, 10.0, 40.0, 0.1) == pytest.approx(1 - 0.9 * math.exp(-1), 0.01)
    assert door_factor(40.0 + 60.0, 10.0, 40.0, 0.1) > 0.9999
    door = DoorSignal(Signal(base=15.0), None)
    door.open(100.0, 0.2)
    assert door.value(130.0) == pytest.approx(3.0, abs=0.01)
    door.close(130.0)
    assert door.value(200.0) == pytest.approx(15.0, abs=0.01)
    episodes = Episodes(7, mean_gap=1200.0, length=(8.0, 30.0), levels=(0.1, 0.3))
    again = Episodes(7, mean_gap=1200.0, length=(8.0, 30.0), levels=(0.1, 0.3))
    assert episodes.latest(50_000.0) == again.latest(50_000.0) is not None


SIM_FLOOR = """
[[device]]
id = "rm-generic"
kind = "modbus"
via = "bms"
unit_id = 1
[[device.fields]]
name = "x"
register = "input"
address = 0
type = "INT16"

[[device]]
id = "thp"
kind = "modbus_thp"
via = "bms"
unit_id = 2
room = "hd-buffer"

[[device]]
id = "pc"
kind = "particle_counter"
via = "bms"
unit_id = 3
room = "hood-1"
expire_after = "2m"
"""


def test_one_server_for_the_connection_whichever_device_comes_first() -> None:
    config = load(SIM_FLOOR)
    (sim,) = build_simulators(config)
    assert isinstance(sim, EnvironmentModbusServer)
    assert set(sim.device_ids()) == {"rm-generic", "thp", "pc"}
    dp = sim.devices["thp"].slots["dp"].signal
    assert isinstance(dp, DoorSignal) and dp.base == -5.0  # a negative HD room's cascade
    sim.check_fault("thp", Fault("door_open", {"residual": 0.2}))
    sim.check_fault("pc", Fault("laser"))
    sim.check_fault("pc", Fault("excursion", {"field": "counts_0_5", "to": 5_000.0}))
    sim.check_fault("rm-generic", Fault("exception", {"code": 4}))
    with pytest.raises(UnsupportedFault, match=r"particle_counter.*door_open"):
        sim.check_fault("pc", Fault("door_open"))
    with pytest.raises(UnsupportedFault):
        sim.check_fault("thp", Fault("laser"))
    with pytest.raises(FaultParamError, match="residual"):
        sim.check_fault("thp", Fault("door_open", {"residual": 2}))
    with pytest.raises(FaultParamError, match="field"):
        sim.check_fault("pc", Fault("excursion", {"field": "volume", "to": 1.0}))
    with pytest.raises(UnsupportedFault):
        sim.check_fault("rm-generic", Fault("laser"))


def test_a_counter_needs_a_unit_id_of_its_own() -> None:
    config = load(SIM_FLOOR.replace("unit_id = 3", "unit_id = 1"))
    with pytest.raises(Exception, match="give the counter a unit id of its own"):
        build_simulators(config)


def test_excursions_move_the_served_values() -> None:
    config = load(SIM_FLOOR)
    (sim,) = build_simulators(config)
    assert isinstance(sim, EnvironmentModbusServer)
    dp = sim.devices["thp"].slots["dp"]
    sim.start_fault("thp", Fault("excursion", {"field": "dp", "to": -12.0}))
    words = dp.words(sim.clock.now())
    assert decode_registers(words, "FLOAT32", "CDAB").value == pytest.approx(-12.0, abs=1.0)
    sim.end_fault("thp", "excursion")
    assert decode_registers(dp.words(sim.clock.now()), "FLOAT32", "CDAB").value > -8.0
    counter = sim.counters["pc"]
    quiet = counter.concentration(10.0)[0]
    assert quiet < 3_520  # an ISO 5 hood
    sim.start_fault("pc", Fault("excursion", {"field": "counts_0_5", "to": 50_000.0}))
    c05, c50 = counter.concentration(10.0)
    assert c05 == pytest.approx(50_000.0) and c50 >= 50_000.0 * 0.1**2.08 * 0.99
    sim.start_fault("pc", Fault("flow"))
    assert counter.holding_words(sim.clock.wall())[22] == 80  # flow register: 0.80 CFM
    sim.end_fault("pc", "flow")
    sim.end_fault("pc", "excursion")
    assert counter.concentration(10.0)[0] == pytest.approx(quiet)
