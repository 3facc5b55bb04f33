"""Environmental monitoring kinds: ``modbus_thp``, ``particle_counter`` and ``mqtt_env``.

- ``modbus_thp``: a temperature / RH / differential-pressure transmitter read over Modbus
  as a FLOAT32 point map (Vaisala-style: least significant word first, byte order CDAB) with
  a test-register check at start-up (register 7938 reads -123.45 when the byte order is right).
- ``particle_counter``: a Lighthouse-style remote particle counter: command register, record
  buffer selected by a record index, one record per sample with its own Unix timestamp and
  raw counts per size channel (UINT32, high word first). Counts become particles per m³ and
  per ft³ from the sample volume (flow x sample time); fault bits become device-error.
- ``mqtt_env``: a wireless T/RH logger that publishes timestamped JSON and, after an outage,
  sends what it buffered (store-and-forward): late samples are historical readings and one
  ``data-gap`` event describes the outage they fill.

Built in, registered through the same ``floorctl_register_kinds`` hook as any plugin.
Reference: docs/devices.md (register maps, options, quality rules).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import datetime as dt
import itertools
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from attrs import define, evolve, field, frozen

from floorctl import hookimpl
from floorctl.config import Address, DeviceConfig, Duration, FieldConfig, Ident, PositiveInt
from floorctl.decode import (
    ByteOrder,
    DataType,
    RegisterTable,
    decode_registers,
    register_count,
)
from floorctl.driver import CommandError, DeviceContext, DeviceUnavailable, PolledDriver
from floorctl.hubs.modbus import ModbusDeviceError
from floorctl.kinds import Kind, KindRegistry, Problems, Transport
from floorctl.limits import Quantity
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.plugins.generic import (
    JSON_FIELD_KEYS,
    MODBUS_FIELD_KEYS,
    ModbusDriver,
    MqttJsonDriver,
    load_json_payload,
    lookup,
    parse_timestamp,
    validate_json,
    validate_register_fields,
)

__all__ = [
    "BackfillTracker",
    "CounterError",
    "CounterOptions",
    "CounterStatus",
    "Gap",
    "MqttEnvDriver",
    "MqttEnvOptions",
    "ParticleCounterDriver",
    "Record",
    "RegisterCheckError",
    "ThpDriver",
    "ThpOptions",
    "counts_since",
    "iso",
    "parse_record",
    "register_check_problem",
]

M3_PER_FT3 = 0.028316846592


def iso(t: float) -> str:
    """UNIX seconds as an ISO 8601 UTC time with milliseconds, e.g. 2025-01-01T10:00:00.000Z."""
    when = dt.datetime.fromtimestamp(t, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- late samples and the gaps they fill (shared by mqtt_env and particle_counter) -----------


@frozen
class Gap:
    """An outage that late (buffered) samples filled: between the last live sample before
    them (``start``; None if there was none) and the first live sample after them (``end``)."""

    start: float | None
    end: float
    late: int  # samples that arrived late, i.e. historical
    first_late: float
    last_late: float
    interval: float  # the device's sample interval, for ``expected``
    duplicates: int = 0  # samples ignored as already seen while the gap was being filled

    @property
    def expected(self) -> int | None:
        """Samples the interval implies strictly between ``start`` and ``end``."""
        if self.start is None or self.interval <= 0:
            return None
        return max(0, round((self.end - self.start) / self.interval) - 1)

    def describe(self) -> str:
        begin = iso(self.start) if self.start is not None else f"before {iso(self.first_late)}"
        length = f" ({self.end - self.start:.1f} s)" if self.start is not None else ""
        text = (
            f"data gap {begin} to {iso(self.end)}{length}: {self.late} buffered sample(s) "
            f"arrived late ({iso(self.first_late)} .. {iso(self.last_late)})"
        )
        if self.expected is not None:
            text += f", {self.expected} expected at {self.interval:g} s"
        if self.duplicates:
            text += f"; {self.duplicates} duplicate(s) ignored"
        return text


@frozen
class Verdict:
    """What :meth:`BackfillTracker.observe` says about one sample."""

    historical: bool = False
    duplicate: bool = False
    ahead: bool = False  # timestamped further in the future than late_after: a clock problem
    gap: Gap | None = None  # this (live) sample completes the backfill of an outage


@define
class BackfillTracker:
    """Classifies timestamped samples as they arrive: live, late (historical) or duplicate,
    and reports ONE :class:`Gap` per outage once its late samples have arrived.

    A sample is late when its timestamp is older than ``received - late_after``. Late samples
    are collected; the gap is reported at a live sample when the late ones reach up to the
    first live sample after them (within 1.5 intervals: the buffer was sent in full), or when
    no late sample has arrived for ``late_after`` seconds (the buffer was incomplete). Pure:
    times come in as arguments, so tests drive it with a fake clock.
    """

    late_after: float
    interval: float
    remember: int = 10_000  # timestamps kept for duplicate detection
    duplicates: int = 0
    _seen: set[float] = field(factory=set)
    _seen_order: collections.deque[float] = field(factory=collections.deque)
    _live: list[float] = field(factory=list)  # sorted live sample times (the newest 4096)
    _late: int = 0
    _first_late: float | None = None
    _last_late: float | None = None
    _late_arrival: float = 0.0  # receive time of the newest late sample
    _dups_at_late: int = 0

    def observe(self, t: float, received: float) -> Verdict:
        key = round(t, 6)
        if key in self._seen:
            self.duplicates += 1
            return Verdict(duplicate=True)
        self._seen.add(key)
        self._seen_order.append(key)
        while len(self._seen_order) > self.remember:
            self._seen.discard(self._seen_order.popleft())
        if t < received - self.late_after:
            if self._late == 0:
                self._first_late = self._last_late = t
                self._dups_at_late = self.duplicates
            else:
                assert self._first_late is not None and self._last_late is not None
                self._first_late = min(self._first_late, t)
                self._last_late = max(self._last_late, t)
            self._late += 1
            self._late_arrival = received
            return Verdict(historical=True)
        if t > received + self.late_after:
            return Verdict(ahead=True)
        bisect.insort(self._live, t)
        if len(self._live) > 4096:
            del self._live[0]
        return Verdict(gap=self._flush(received))

    @property
    def pending(self) -> int:
        """Late samples not yet reported in a gap."""
        return self._late

    def _flush(self, received: float) -> Gap | None:
        if not self._late:
            return None
        assert self._first_late is not None and self._last_late is not None
        after = bisect.bisect_right(self._live, self._last_late)
        if after == len(self._live):
            return None  # no live sample after the late ones yet
        end = self._live[after]
        complete = end - self._last_late <= 1.5 * self.interval
        quiet = received - self._late_arrival >= self.late_after
        if not (complete or quiet):
            return None
        before = bisect.bisect_left(self._live, self._first_late)
        gap = Gap(
            start=self._live[before - 1] if before else None,
            end=end,
            late=self._late,
            first_late=self._first_late,
            last_late=self._last_late,
            interval=self.interval,
            duplicates=self.duplicates - self._dups_at_late,
        )
        self._late = 0
        self._first_late = self._last_late = None
        return gap


# --- modbus_thp ------------------------------------------------------------------------------


@frozen
class ThpOptions:
    """``[device.options]`` of a ``modbus_thp`` device (a T / RH / ΔP transmitter)."""

    #: 1: the addresses below are register numbers as manuals write them (register 1 is wire
    #: address 0); 0: wire addresses. Field-level ``address`` keys use the same base.
    address_base: int = 1
    #: "holding" (function 3) or "input" (function 4)
    register: RegisterTable = RegisterTable.HOLDING
    t_address: Address = Address(3)  # temperature, °C, FLOAT32 (Vaisala: register 0003)
    rh_address: Address = Address(1)  # relative humidity, %RH, FLOAT32 (Vaisala: register 0001)
    dp_address: Address = Address(5)  # differential pressure, Pa, FLOAT32 (set your map's)
    #: order of the FLOAT32 words and bytes; Vaisala sends the least significant word first
    byte_order: ByteOrder = ByteOrder.CDAB
    #: read the test register at start and refuse to run on a wrong value
    check_test_register: bool = True
    test_register: Address = Address(7938)  # Vaisala: FLOAT32 test register, -123.45
    test_type: DataType = DataType.FLOAT32  # INT16 for Vaisala's integer test register 7937
    test_value: float = -123.45
    #: optional fault status register (UINT16) read on every poll, e.g. HMT330 register 0513
    status_register: Address | None = None
    status_ok: int = 1  # the status register's "no errors" value


class RegisterCheckError(RuntimeError):
    """The start-up check failed: misconfigured byte order, or not the expected device."""


def _fmt_value(decoded_value: object, detail: str | None) -> str:
    if isinstance(decoded_value, float):
        return f"{decoded_value:.6g}"
    if decoded_value is None:
        return detail or "nothing"
    return str(decoded_value)


def _is_test_value(value: object, expected: float) -> bool:
    # the test value is not exact in binary32: compare at float32 precision
    return isinstance(value, int | float) and math.isclose(
        float(value), expected, rel_tol=1e-6, abs_tol=1e-6
    )


def register_check_problem(device_id: str, words: Sequence[int], options: ThpOptions) -> str | None:
    """None if ``words`` (read from the test register) hold ``test_value`` in the configured
    byte order; else a message naming the device, what was read and the likely cause."""
    order = options.byte_order
    got = decode_registers(list(words), options.test_type, order)
    if _is_test_value(got.value, options.test_value):
        return None
    wire = int(options.test_register) - options.address_base
    shown = " ".join(f"0x{int(w):04X}" for w in words)
    head = (
        f"device {device_id!r}: test register {options.test_register} ({options.register}, "
        f"wire address {wire}) reads {_fmt_value(got.value, got.detail)} as {order} "
        f"(words {shown}), expected {options.test_value:g}"
    )
    right = next(
        (
            other
            for other in ByteOrder
            if other is not order
            and _is_test_value(
                decode_registers(list(words), options.test_type, other).value, options.test_value
            )
        ),
        None,
    )
    if right is not None:
        return (
            f"{head}: misconfigured byte order: the words read {options.test_value:g} as "
            f'{right}; set byte_order = "{right}" in [device.options] (a gateway that swaps '
            "words does this). No readings are taken until the check passes."
        )
    return (
        f"{head} in no byte order: wrong register map or not a Vaisala-style transmitter "
        "(check test_register and test_type, or set check_test_register = false). "
        "No readings are taken until the check passes."
    )


def thp_points(device: DeviceConfig, options: ThpOptions) -> list[FieldConfig]:
    """The point map of a ``modbus_thp`` device: t, rh, dp as FLOAT32 registers."""

    def point(name: str, unit: str, address: int, quantity: Quantity) -> FieldConfig:
        return FieldConfig(
            name=Ident(name),
            unit=unit,
            register=options.register,
            address=Address(address),
            type=DataType.FLOAT32,
            byte_order=options.byte_order,
            quantity=quantity,
        )

    return [
        point("t", "°C", options.t_address, Quantity.TEMPERATURE),
        point("rh", "%RH", options.rh_address, Quantity.HUMIDITY),
        point("dp", "Pa", options.dp_address, Quantity.DIFFERENTIAL_PRESSURE),
    ]


def validate_thp(device: DeviceConfig, options: ThpOptions) -> Problems:
    yield from validate_register_fields(device, options)
    base = options.address_base
    if options.register.is_bits:
        yield ("options", "register"), 'must be "holding" or "input" (measurements are registers)'
    for key in ("t_address", "rh_address", "dp_address", "test_register", "status_register"):
        value = getattr(options, key)
        if value is not None and value < base:
            yield ("options", key), f"must be at least {base} (address_base = {base})"
    if options.test_type is DataType.BOOL:
        yield ("options", "test_type"), "must be a register type (INT16 ... FLOAT64)"
    if not math.isfinite(options.test_value):
        yield ("options", "test_value"), "must be a finite number"


class ThpDriver(ModbusDriver):
    """The register map of :func:`thp_points`, read like any Modbus map, after a test-register
    check in :meth:`start`; an optional status register turns faults into device-error."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: ThpOptions = ctx.options if ctx.options is not None else ThpOptions()

    async def start(self) -> None:
        """Check the test register. Unreachable: DeviceUnavailable (the daemon retries). A wrong
        value: RegisterCheckError naming the device (the daemon marks it error and retries;
        no reading is taken meanwhile) and a device-error event."""
        opts = self.options
        if not opts.check_test_register:
            return
        wire = int(opts.test_register) - opts.address_base
        try:
            words = await self.ctx.hub.read(
                opts.register, wire, register_count(opts.test_type), self._unit
            )
        except ModbusDeviceError as exc:
            problem = (
                f"device {self.device.id!r}: cannot read test register {opts.test_register} "
                f"({opts.register}, wire address {wire}): {exc}; wrong register map or not a "
                "Vaisala-style transmitter (set check_test_register = false to skip the check)"
            )
        else:
            problem = register_check_problem(self.device.id, [int(w) for w in words], opts)
        if problem is not None:
            self.ctx.emit_event(Event(EventKind.DEVICE_ERROR, self.device.id, problem))
            raise RegisterCheckError(problem)

    async def poll(self) -> list[Reading]:
        readings = await super().poll()
        if self.options.status_register is None:
            return readings
        fault = await self._fault()
        if fault is None:
            return readings
        return [
            evolve(r, quality=Quality.DEVICE_ERROR, detail=fault)
            if r.quality is Quality.GOOD
            else r
            for r in readings
        ]

    async def _fault(self) -> str | None:
        opts = self.options
        assert opts.status_register is not None
        wire = int(opts.status_register) - opts.address_base
        try:
            words = await self.ctx.hub.read(opts.register, wire, 1, self._unit)
        except ModbusDeviceError as exc:
            return f"status register {opts.status_register} unreadable: {exc}"
        status = int(words[0])
        if status == opts.status_ok:
            return None
        return (
            f"transmitter reports a fault (status register {opts.status_register} = {status}, "
            f"{opts.status_ok} = no errors)"
        )


# --- particle_counter: the Lighthouse REMOTE register map (domain.md §5.3) -------------------

# Holding registers (4xxxx; register 40001 is wire address 0)
H_MAP_VERSION = 0  # 40001
H_COMMAND = 1  # 40002, write only (reads 0)
H_STATUS = 2  # 40003
H_FLOW = 22  # 40023, hundredths of CFM (100 = 1.00 CFM)
H_RECORD_COUNT = 23  # 40024, records in the buffer
H_RECORD_INDEX = 24  # 40025, selects the record shown in 3xxxx; 0xFFFF = most recent
H_RTC = 26  # 40027-40028, Unix seconds
H_SAMPLE_TIME = 32  # 40033-40034, seconds
HOLDING_WORDS = 36  # 40001-40036, read in one request
# Input registers (3xxxx; register 30001 is wire address 0): the selected record
I_TIMESTAMP = 0  # 30001-30002, Unix seconds
I_SAMPLE_TIME = 2  # 30003-30004, seconds
I_LOCATION = 4  # 30005-30006
I_DATA_STATUS = 6  # 30007-30008
I_CHANNELS = 8  # 30009-30024: channels 1-8, UINT32 high word first
MAX_CHANNELS = 8
MOST_RECENT = 0xFFFF

# Command register values
CMD_SAVE_SAMPLE_PARAMS = 4
CMD_START = 11  # instrument start: auto counting with delay / hold / sample times
CMD_STOP = 12  # instrument stop: aborts the current sample

# Device status (40003) bits
ST_RUNNING = 1 << 0
ST_SAMPLING = 1 << 1
ST_NEW_DATA = 1 << 2  # cleared when a record is read
ST_DEVICE_ERROR = 1 << 3
ST_FLOW = 1 << 12  # newer maps: flow status (set = flow out of tolerance)
DEVICE_FAULTS = {ST_DEVICE_ERROR: "device error (status bit 3)", ST_FLOW: "flow (status bit 12)"}

#: record data status (30007-30008) bits that make a record's counts device-error
RECORD_FAULTS = {
    0: "laser alert",
    1: "flow alert",
    2: "particle overflow",
    3: "instrument service / malfunction",
    6: "sampler error",
}
#: bits 4 / 5 are the counter's own threshold alarms: information, not faults

# Point names
COUNTS_0_5, COUNTS_5_0 = "counts_0_5", "counts_5_0"
COUNTS_0_5_FT3, COUNTS_5_0_FT3 = "counts_0_5_ft3", "counts_5_0_ft3"
RAW_0_5, RAW_5_0 = "raw_0_5", "raw_5_0"
VOLUME = "volume"

COUNTER_FIELD_KEYS = frozenset({"name", "deadband", "precision", "quantity", "limits"})


@frozen
class CounterOptions:
    """``[device.options]`` of a ``particle_counter`` device (Lighthouse-style remote counter)."""

    #: at start, send "instrument start" (command 11) if the counter is not running
    auto_start: bool = True
    #: write the sample time (40033-40034) at start; default: leave the counter's setting
    sample_time: Duration | None = None
    #: particle size (µm) of channels 1..n as set on the counter; must include 0.5 and 5.0
    channel_sizes: tuple[float, ...] = (0.3, 0.5, 1.0, 5.0)
    #: "cumulative": a channel counts particles >= its size (Lighthouse's data registers);
    #: "differential": from its size up to the next channel's
    bins: Literal["cumulative", "differential"] = "cumulative"
    #: "per_record": each record holds the counts of its own sample (Lighthouse);
    #: "running_total": channels are running totals, a sample's counts are the difference
    #: from the previous record (UINT32 wrap-around handled)
    count_mode: Literal["per_record", "running_total"] = "per_record"
    #: sample flow in CFM; default: the flow register 40023 (hundredths of CFM)
    flow_cfm: float | None = None
    #: a record older than this when read is historical; default: 2 x interval + sample time
    late_after: Duration | None = None
    #: records read per poll at most (after an outage the rest follow at the next polls)
    max_records_per_poll: PositiveInt = PositiveInt(20)
    #: 6: write single registers (Lighthouse accepts function 06 only); 16: write multiple
    write_function: Literal[6, 16] = 6
    #: a counter clock further off than this from the host's raises a device-error event
    max_clock_skew: Duration = Duration(60.0)


@frozen
class CounterStatus:
    """The holding registers 40001-40036 that matter, decoded."""

    status: int
    flow_raw: int  # hundredths of CFM
    record_count: int
    record_index: int
    rtc: int
    sample_time: int

    @classmethod
    def from_words(cls, words: Sequence[int]) -> CounterStatus:
        if len(words) < HOLDING_WORDS:
            raise ValueError(f"expected {HOLDING_WORDS} holding registers, got {len(words)}")
        return cls(
            status=int(words[H_STATUS]),
            flow_raw=int(words[H_FLOW]),
            record_count=int(words[H_RECORD_COUNT]),
            record_index=int(words[H_RECORD_INDEX]),
            rtc=_u32(words, H_RTC),
            sample_time=_u32(words, H_SAMPLE_TIME),
        )

    @property
    def running(self) -> bool:
        return bool(self.status & ST_RUNNING)

    @property
    def new_data(self) -> bool:
        return bool(self.status & ST_NEW_DATA)

    @property
    def faults(self) -> list[str]:
        return [name for bit, name in DEVICE_FAULTS.items() if self.status & bit]


@frozen
class Record:
    """One record of the counter's buffer: one sample."""

    time: float  # Unix seconds, the counter's clock (taken as the end of the sample)
    sample_time: int  # seconds
    location: int
    status: int  # data status bits
    channels: tuple[int, ...]  # raw counts of channels 1..n (cumulative or running totals)

    @property
    def faults(self) -> list[str]:
        return [
            f"{name} (record status bit {bit})"
            for bit, name in RECORD_FAULTS.items()
            if self.status & (1 << bit)
        ]


def _u32(words: Sequence[int], i: int) -> int:
    """UINT32 from two registers, high word first (Lighthouse: integers big-endian)."""
    return (int(words[i]) << 16) | int(words[i + 1])


def parse_record(words: Sequence[int], channels: int) -> Record:
    """Decode input registers 30001.. of one record (``8 + 2 * channels`` words)."""
    need = I_CHANNELS + 2 * channels
    if len(words) < need:
        raise ValueError(f"a record of {channels} channel(s) is {need} registers, got {len(words)}")
    return Record(
        time=float(_u32(words, I_TIMESTAMP)),
        sample_time=_u32(words, I_SAMPLE_TIME),
        location=_u32(words, I_LOCATION),
        status=_u32(words, I_DATA_STATUS) & 0xFF,  # the LSB is used
        channels=tuple(_u32(words, I_CHANNELS + 2 * c) for c in range(channels)),
    )


def counts_since(current: int, previous: int | None) -> int:
    """Particles counted since ``previous`` (a running UINT32 total) for a total now
    ``current``. A decrease is a wrap-around if ``previous`` was within 2**30 of 2**32, else
    the counter restarted its totals (cleared, power-cycled): then ``current`` counts since."""
    if previous is None or current >= previous:
        return current if previous is None else current - previous
    if previous >= 2**32 - 2**30:
        return current + 2**32 - previous
    return current


def size_counts(channels: Sequence[int], sizes: Sequence[float], bins: str) -> tuple[int, int]:
    """(>= 0.5 µm, >= 5.0 µm) counts from per-channel counts."""
    i05, i50 = sizes.index(0.5), sizes.index(5.0)
    if bins == "differential":
        return sum(channels[i05:]), sum(channels[i50:])
    return channels[i05], channels[i50]


def counter_points(device: DeviceConfig, options: CounterOptions) -> list[FieldConfig]:
    """The points of a ``particle_counter``: concentrations, raw counts, sample volume."""

    def point(name: str, unit: str, quantity: Quantity | None = None) -> FieldConfig:
        return FieldConfig(name=Ident(name), unit=unit, quantity=quantity)

    return [
        point(COUNTS_0_5, "counts/m³", Quantity.PARTICLES_0_5),
        point(COUNTS_5_0, "counts/m³", Quantity.PARTICLES_5_0),
        point(COUNTS_0_5_FT3, "counts/ft³"),
        point(COUNTS_5_0_FT3, "counts/ft³"),
        point(RAW_0_5, "counts"),
        point(RAW_5_0, "counts"),
        point(VOLUME, "L"),
    ]


def validate_counter(device: DeviceConfig, options: CounterOptions) -> Problems:
    sizes = options.channel_sizes
    if not 1 <= len(sizes) <= MAX_CHANNELS:
        yield ("options", "channel_sizes"), f"give 1 to {MAX_CHANNELS} channel sizes (µm)"
    elif any(not math.isfinite(s) or s <= 0 for s in sizes) or any(
        b <= a for a, b in itertools.pairwise(sizes)
    ):
        yield ("options", "channel_sizes"), "sizes must be positive and strictly ascending"
    else:
        missing = [f"{s:g}" for s in (0.5, 5.0) if s not in sizes]
        if missing:
            yield (
                ("options", "channel_sizes"),
                f"needs a channel of {' and '.join(missing)} µm "
                f"(the counter's channels: {', '.join(f'{s:g}' for s in sizes)})",
            )
    if options.flow_cfm is not None and not (
        math.isfinite(options.flow_cfm) and options.flow_cfm > 0
    ):
        yield ("options", "flow_cfm"), "must be a positive number of CFM (1.0 = 28.3 L/min)"
    if options.sample_time is not None:
        st = float(options.sample_time)
        if not (1 <= st <= 86_399) or st != int(st):
            yield ("options", "sample_time"), "must be whole seconds from 1s to 86399s"
        elif device.stale_after < st + float(device.interval):
            need = st + float(device.interval)
            yield (
                ("expire_after",),
                f"counts arrive once per sample (sample_time {st:g}s): set expire_after to at "
                f"least {need:g}s or the points go stale between records",
            )
    if options.late_after is not None and options.late_after <= 0:
        yield ("options", "late_after"), "must be longer than 0s"
    if options.max_clock_skew <= 0:
        yield ("options", "max_clock_skew"), "must be longer than 0s"


@frozen
class _Cursor:
    """Where the driver is in the counter's buffer: committed at the end of a poll."""

    count: int = 0  # the record count the last poll saw
    time: float | None = None  # timestamp of the newest record taken
    totals: tuple[int, ...] | None = None  # its channels (running_total mode)


class CounterError(RuntimeError):
    """The counter answered, but not like a Lighthouse-style counter."""


class ParticleCounterDriver(PolledDriver):
    """Reads each new record of the counter's buffer exactly once, in order.

    Every poll reads the holding registers (status, flow, record count). When the record
    count grew, the records from the previous count on are read (write the index, read the
    record); when it shrank (buffer cleared) or stayed while the status says NEW DATA (a full,
    rolling buffer), the first record newer than the last one taken is found by binary search
    on the timestamps. A record whose timestamp is not newer than the last one taken is a
    duplicate and skipped. Nothing is committed until the poll completes, so a poll cut short
    by its timeout reads the same records again next time.
    """

    commands = {
        "start_sampling": "send 'instrument start' (command 11) to the counter",
        "stop_sampling": "send 'instrument stop' (command 12; aborts the current sample)",
    }

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: CounterOptions = ctx.options if ctx.options is not None else CounterOptions()
        self._unit = ctx.device.modbus_unit
        self._channels = len(self.options.channel_sizes)
        self._lock = asyncio.Lock()
        self._cursor = _Cursor()
        self._baseline: Record | None = None  # the newest record at start (not published)
        interval = float(ctx.device.interval)
        self.tracker = BackfillTracker(late_after=2 * interval, interval=interval)
        self.duplicates = 0  # records skipped as already taken
        self._device_faults: frozenset[str] = frozenset()
        self._record_faults: frozenset[str] = frozenset()  # of the newest live record
        self._clock_off = False

    # --- register access ---------------------------------------------------------------------

    async def _read_status(self) -> CounterStatus:
        words = await self.ctx.hub.read(RegisterTable.HOLDING, 0, HOLDING_WORDS, self._unit)
        return CounterStatus.from_words([int(w) for w in words])

    async def _write(self, address: int, words: list[int]) -> None:
        hub = self.ctx.hub
        if self.options.write_function == 16:
            await hub.write_registers(address, words, self._unit)
            return
        for offset, word in enumerate(words):
            await _write_single(hub, address + offset, word, self._unit)

    async def _command(self, code: int) -> None:
        await self._write(H_COMMAND, [code])

    async def _read_record(self, index: int) -> Record:
        await self._write(H_RECORD_INDEX, [index])
        words = await self.ctx.hub.read(
            RegisterTable.INPUT, 0, I_CHANNELS + 2 * self._channels, self._unit
        )
        return parse_record([int(w) for w in words], self._channels)

    async def _record_time(self, index: int) -> float:
        await self._write(H_RECORD_INDEX, [index])
        words = await self.ctx.hub.read(RegisterTable.INPUT, I_TIMESTAMP, 2, self._unit)
        return float(_u32([int(w) for w in words], 0))

    async def _first_after(self, after: float | None, count: int) -> int:
        """Index of the first record newer than ``after`` (binary search; records are in
        time order, oldest at index 0)."""
        if after is None:
            return 0
        lo, hi = 0, count
        while lo < hi:
            mid = (lo + hi) // 2
            if await self._record_time(mid) <= after:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Configure and start the counter; take the newest record as the baseline (it is not
        published: the first reading is the first sample completed after start)."""
        opts = self.options
        async with self._lock:
            try:
                status = await self._read_status()
                if opts.sample_time is not None and status.sample_time != int(opts.sample_time):
                    st = int(opts.sample_time)
                    await self._write(H_SAMPLE_TIME, [st >> 16, st & 0xFFFF])
                    await self._command(CMD_SAVE_SAMPLE_PARAMS)
                if opts.auto_start and not status.running:
                    await self._command(CMD_START)
                cursor = _Cursor(count=status.record_count)
                self._baseline = None
                if status.record_count:
                    newest = await self._read_record(status.record_count - 1)
                    cursor = _Cursor(status.record_count, newest.time, newest.channels)
                    self._baseline = newest
            except ModbusDeviceError as exc:
                raise CounterError(
                    f"device {self.device.id!r}: {exc}: is unit {self._unit} a Lighthouse-style "
                    "particle counter (holding 40001-40036, input 30001-30024)?"
                ) from None
            self._cursor = cursor

    async def read_once(self, timeout: float) -> list[Reading]:
        """``floorctl run --once``: a new record if one is ready, else the newest record taken
        at start, else the first record completed within ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                readings = await self._poll_guarded()
                if readings or self._baseline is not None:
                    break
                await asyncio.sleep(min(float(self.device.interval), 1.0))
            if readings:
                return readings
            assert self._baseline is not None
            async with self._lock:
                status = await self._read_status()
                prev = None
                if self.options.count_mode == "running_total" and status.record_count >= 2:
                    prev = (await self._read_record(status.record_count - 2)).channels
            readings, _, _ = self._take(self._baseline, prev, status, time.time())
            return readings

    async def command(self, name: str, args: Mapping[str, Any]) -> str:
        codes = {"start_sampling": CMD_START, "stop_sampling": CMD_STOP}
        if name not in codes:
            return await super().command(name, args)
        try:
            async with self._lock:
                await self._command(codes[name])
        except (DeviceUnavailable, ModbusDeviceError) as exc:
            raise CommandError(str(exc)) from None
        return f"command {codes[name]} sent"

    # --- polling -----------------------------------------------------------------------------

    async def poll(self) -> list[Reading]:
        async with self._lock:
            try:
                status = await self._read_status()
                records, cursor = await self._new_records(status, self._cursor)
            except ModbusDeviceError as exc:
                self.ctx.counters.error(str(exc))
                return self.ctx.bad_readings(str(exc), Quality.DEVICE_ERROR)
            received = time.time()
            out: list[Reading] = []
            totals = self._cursor.totals
            live = False
            for rec in records:
                readings, totals, is_live = self._take(rec, totals, status, received)
                out += readings
                live = live or is_live
            self._cursor = evolve(cursor, totals=totals)
        self._check_clock(status, received)
        device_faults = status.faults
        if not status.running:
            device_faults = [*device_faults, "counter is not sampling (status RUNNING bit clear)"]
        self._report_faults(device_faults, records)
        if not live and device_faults:
            detail = "; ".join(device_faults)
            out += self.ctx.bad_readings(detail, Quality.DEVICE_ERROR, receive_time=received)
        return out

    async def _new_records(
        self, status: CounterStatus, cursor: _Cursor
    ) -> tuple[list[Record], _Cursor]:
        count = status.record_count
        if count == 0:
            return [], evolve(cursor, count=0)
        if count > cursor.count:
            first = cursor.count
        elif count < cursor.count or status.new_data:
            first = await self._first_after(cursor.time, count)
        else:
            return [], cursor
        last = min(count, first + int(self.options.max_records_per_poll))
        records: list[Record] = []
        newest = cursor.time
        for index in range(first, last):
            rec = await self._read_record(index)
            if newest is not None and rec.time <= newest:
                self.duplicates += 1
                continue
            records.append(rec)
            newest = rec.time
        return records, _Cursor(count=last, time=newest, totals=cursor.totals)

    def _take(
        self,
        rec: Record,
        totals: tuple[int, ...] | None,
        status: CounterStatus,
        received: float,
    ) -> tuple[list[Reading], tuple[int, ...], bool]:
        """Readings of one record; the new running totals; whether it is live."""
        opts = self.options
        if opts.count_mode == "running_total":
            prev: Sequence[int | None] = (
                totals if totals is not None else [None] * len(rec.channels)
            )
            counts = [counts_since(c, p) for c, p in zip(rec.channels, prev, strict=True)]
        else:
            counts = list(rec.channels)
        raw05, raw50 = size_counts(counts, opts.channel_sizes, opts.bins)
        flow = opts.flow_cfm if opts.flow_cfm is not None else status.flow_raw / 100
        volume_ft3 = flow * rec.sample_time / 60.0

        interval = float(self.device.interval)
        if rec.sample_time > 0:
            self.tracker.interval = float(rec.sample_time)
        self.tracker.late_after = (
            float(opts.late_after)
            if opts.late_after is not None
            else 2 * interval + rec.sample_time
        )
        verdict = self.tracker.observe(rec.time, received)
        if verdict.gap is not None:
            self.ctx.emit_event(
                Event(EventKind.DATA_GAP, self.device.id, verdict.gap.describe(), time=received)
            )
        faults = rec.faults
        if not verdict.historical:
            faults = faults + status.faults
        quality = Quality.DEVICE_ERROR if faults else Quality.GOOD
        detail = "; ".join(faults) if faults else None
        if verdict.ahead:
            quality = Quality.UNCERTAIN if quality is Quality.GOOD else quality
            detail = detail or f"record time {iso(rec.time)} is ahead of the host clock"

        values: dict[str, float | int | None] = {RAW_0_5: raw05, RAW_5_0: raw50}
        if volume_ft3 > 0:
            values |= {
                COUNTS_0_5: raw05 / (volume_ft3 * M3_PER_FT3),
                COUNTS_5_0: raw50 / (volume_ft3 * M3_PER_FT3),
                COUNTS_0_5_FT3: raw05 / volume_ft3,
                COUNTS_5_0_FT3: raw50 / volume_ft3,
                VOLUME: volume_ft3 * M3_PER_FT3 * 1000.0,
            }
        no_volume = (
            f"no sample volume (flow {flow:g} CFM x sample time {rec.sample_time} s): "
            "concentration unknown"
        )
        out: list[Reading] = []
        for f in self.device.fields:
            value = values.get(f.name)
            if f.precision is not None and value is not None:
                value = round(value, f.precision)
            known = f.name in values
            out.append(
                Reading(
                    device=self.device.id,
                    point=f.name,
                    value=value,
                    quality=quality if known else Quality.BAD,
                    receive_time=received,
                    source_time=rec.time,
                    unit=f.unit,
                    detail=detail if known else no_volume,
                    historical=verdict.historical,
                )
            )
        return out, rec.channels, not verdict.historical

    def _report_faults(self, device_faults: list[str], records: list[Record]) -> None:
        """A device-error event when the counter starts reporting a fault it did not before
        (device status on every poll; record status bits as of the newest record read)."""
        before = self._device_faults | self._record_faults
        self._device_faults = frozenset(device_faults)
        if records:
            self._record_faults = frozenset(records[-1].faults)
        new = sorted((self._device_faults | self._record_faults) - before)
        if new:
            self.ctx.emit_event(
                Event(EventKind.DEVICE_ERROR, self.device.id, "new fault: " + "; ".join(new))
            )

    def _check_clock(self, status: CounterStatus, received: float) -> None:
        if status.rtc == 0:  # a counter without a clock register
            return
        off = status.rtc - received
        limit = float(self.options.max_clock_skew)
        if abs(off) > limit and not self._clock_off:
            self.ctx.emit_event(
                Event(
                    EventKind.DEVICE_ERROR,
                    self.device.id,
                    f"counter clock is {off:+.0f} s off the host clock (limit {limit:g} s): "
                    "record timestamps come from the counter; set its clock (command 13)",
                )
            )
        self._clock_off = abs(off) > limit


async def _write_single(hub: Any, address: int, value: int, unit: int) -> None:
    """Write one holding register with function 06 (what Lighthouse counters accept).

    ModbusHub has no public single-register write yet: use its request wrapper, which gives
    the write the hub's lock, timeout, failure handling and Modbus-exception mapping.
    """
    write = getattr(hub, "write_register", None)
    if write is not None:
        await write(address, value, unit)
        return
    await hub._call(
        f"write holding {address} unit {unit}",
        lambda c: c.write_register(address, value, device_id=unit),
    )


# --- mqtt_env ----------------------------------------------------------------------------------


@frozen
class MqttEnvOptions:
    """``[device.options]`` of an ``mqtt_env`` device (a store-and-forward T/RH logger)."""

    state_topic: str
    #: where each message carries its sample's own timestamp (UNIX s or ms, or ISO 8601)
    timestamp_path: str = "ts"
    #: a sample older than this when it arrives is historical; default: 2 x interval
    late_after: Duration | None = None
    max_payload: int = 65536
    qos: int = 1
    #: sample timestamps kept to recognise duplicates
    remember: PositiveInt = PositiveInt(10_000)


def env_points(device: DeviceConfig, options: MqttEnvOptions) -> list[FieldConfig]:
    """The points of an ``mqtt_env`` logger: t and rh at the JSON keys "t" and "rh"."""
    return [
        FieldConfig(name=Ident("t"), unit="°C", path="t", quantity=Quantity.TEMPERATURE),
        FieldConfig(name=Ident("rh"), unit="%RH", path="rh", quantity=Quantity.HUMIDITY),
    ]


def validate_env(device: DeviceConfig, options: MqttEnvOptions) -> Problems:
    yield from validate_json(device, options)  # type: ignore[arg-type]
    if not options.timestamp_path:
        yield ("options", "timestamp_path"), "required: each sample carries its own timestamp"
    if options.late_after is not None and options.late_after <= 0:
        yield ("options", "late_after"), "must be longer than 0s"


class MqttEnvDriver(MqttJsonDriver):
    """JSON samples with their own timestamps: live, historical (sent late from the logger's
    buffer) or duplicate (ignored and counted); one data-gap event per filled outage."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        interval = float(ctx.device.interval)
        late = self.options.late_after
        self.tracker = BackfillTracker(
            late_after=float(late) if late is not None else 2 * interval,
            interval=interval,
            remember=int(getattr(self.options, "remember", 10_000)),
        )

    @property
    def duplicates(self) -> int:
        return self.tracker.duplicates

    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        doc = load_json_payload(payload, self.options.max_payload)
        assert self._ts_path is not None
        try:
            source_time = parse_timestamp(lookup(doc, self._ts_path))
        except (LookupError, ValueError) as exc:
            # keep the values (a sample is never dropped), but not as a record-grade reading
            self.ctx.counters.error(f"{topic}: timestamp: {exc}")
            why = f"no sample timestamp at {self.options.timestamp_path!r} ({exc}): receive time"
            return [_downgrade(r, why) for r in self._values(doc, None, received)]
        verdict = self.tracker.observe(source_time, received)
        if verdict.duplicate:
            self.ctx.log.debug("%s: sample of %s seen before; ignored", topic, iso(source_time))
            return []
        readings = list(self._values(doc, source_time, received))
        if verdict.historical:
            readings = [evolve(r, historical=True) for r in readings]
        elif verdict.ahead:
            ahead = source_time - received
            why = f"sample time {iso(source_time)} is {ahead:.0f} s ahead of the host clock"
            readings = [_downgrade(r, why) for r in readings]
        if verdict.gap is not None:
            self.ctx.emit_event(
                Event(EventKind.DATA_GAP, self.device.id, verdict.gap.describe(), time=received)
            )
        return readings


def _downgrade(r: Reading, why: str) -> Reading:
    """A good reading becomes uncertain with ``why``; others keep their quality."""
    if r.quality is not Quality.GOOD:
        return r
    return evolve(r, quality=Quality.UNCERTAIN, detail=why)


def _iter_kinds() -> Iterator[Kind]:
    yield Kind(
        name="modbus_thp",
        driver=ThpDriver,
        transport=Transport.MODBUS,
        options=ThpOptions,
        description="T / RH / differential-pressure transmitter over Modbus (FLOAT32 map, "
        "Vaisala-style CDAB, test-register check)",
        validate=validate_thp,
        field_keys=MODBUS_FIELD_KEYS,
        points=thp_points,
    )
    yield Kind(
        name="particle_counter",
        driver=ParticleCounterDriver,
        transport=Transport.MODBUS,
        options=CounterOptions,
        description="Lighthouse-style remote particle counter over Modbus (record buffer, "
        "counts per m³ and ft³)",
        validate=validate_counter,
        field_keys=COUNTER_FIELD_KEYS,
        points=counter_points,
    )
    yield Kind(
        name="mqtt_env",
        driver=MqttEnvDriver,
        transport=Transport.MQTT,
        options=MqttEnvOptions,
        description="wireless T/RH logger: timestamped JSON with store-and-forward backfill",
        validate=validate_env,
        field_keys=JSON_FIELD_KEYS,
        points=env_points,
    )


@hookimpl
def floorctl_register_kinds(registry: KindRegistry) -> None:
    for kind in _iter_kinds():
        registry.add(kind)
