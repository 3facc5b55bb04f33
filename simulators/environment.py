"""Simulators of the environmental kinds: ``modbus_thp``, ``particle_counter``, ``mqtt_env``.

Realistic in simulated time (the shared :class:`~simulators.faults.SimClock`, ``--speed``);
protocol timing and device clocks are real (records and samples carry real UNIX time).

- ``modbus_thp``: t and rh drift slowly (a sine of hours around a room-dependent level); dp sits
  at the room's design differential pressure and dips when a door opens (seeded openings about
  every 20 simulated minutes: the cascade collapses to 10-30 % in ~2 s and recovers with a ~6 s
  time constant once the door closes). The float test register (7938) and an optional status
  register are served next to the point map, in the device's wire byte order.
- ``particle_counter``: a Lighthouse REMOTE-style register model (:class:`CounterSim`):
  command register (start / stop / clear / set clock), record buffer (3000 records, rolling)
  with record count and record index, one record per sample time with its Unix timestamp,
  sample time, location, data status bits and raw counts per channel (UINT32, high word first,
  cumulative in size unless the device's options say differential; running totals if
  ``count_mode = "running_total"``). Counts are Poisson draws around a background level set by
  the room's ISO class, raised by seeded activity bursts.
- ``mqtt_env``: a :class:`~simulators.mqtt_publisher.MqttJsonPublisher` publishing t / rh with
  the sample's timestamp; ``backfill`` holds the samples and sends them late.

Faults (docs/devices.md): ``excursion``, ``silent``, ``exception`` (Modbus);
``door_open`` (``modbus_thp``: dp collapses for the fault's duration, ``residual`` = the share
left, default 0.1); ``laser``, ``flow``, ``service`` (``particle_counter``: the record status
bits, and the device status bits for flow and service); ``excursion`` of ``counts_0_5`` /
``counts_5_0`` moves the concentration (counts/m³) the counts are drawn from; ``malformed``,
``backfill`` (``mqtt_env``).

The Modbus kinds join the ``"modbus-tcp"`` group: :class:`EnvironmentModbusServer` (a
:class:`~simulators.modbus_device.ModbusSimServer`) serves them together with the generic
``modbus`` devices of the connection, whichever of them comes first in devices.toml.
"""

from __future__ import annotations

import bisect
import collections
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from attrs import define, evolve, field
from pymodbus.constants import ExcCodes

from floorctl.config import Config, DeviceConfig, IsoClass, ModbusConnection, MqttConnection
from floorctl.decode import ByteOrder, DataType, RegisterTable, register_count
from floorctl.limits import PressureRegime
from floorctl.plugins.environment import (
    CMD_START,
    CMD_STOP,
    H_COMMAND,
    H_RECORD_INDEX,
    HOLDING_WORDS,
    I_CHANNELS,
    M3_PER_FT3,
    MAX_CHANNELS,
    MOST_RECENT,
    ST_DEVICE_ERROR,
    ST_FLOW,
    ST_NEW_DATA,
    ST_RUNNING,
    ST_SAMPLING,
    CounterOptions,
    MqttEnvOptions,
    ThpOptions,
)
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.modbus_device import ModbusSimServer, SimulatorError, _Run, _runs, _Slot
from simulators.mqtt_publisher import MqttJsonPublisher
from simulators.serve import SIMULATORS, SimRequest, register_simulator
from simulators.signals import (
    Excursion,
    FaultParamError,
    Signal,
    SignalKind,
    check_fault_params,
    field_seed,
    parse_excursion,
    parse_simulate,
    stable_seed,
)

__all__ = [
    "CounterSim",
    "DoorSignal",
    "EnvironmentModbusServer",
    "Episodes",
    "default_signals",
    "mqtt_env_publisher",
]

MODBUS_KINDS = frozenset({"modbus_thp", "particle_counter"})

# --- signals -----------------------------------------------------------------------------------


def _room_of(
    config: Config | None, device: DeviceConfig
) -> tuple[int | None, PressureRegime | None]:
    """(ISO class, pressure regime) of the device's room; an ISO 5 unit within a room is 5."""
    room = config.room(device.room) if config is not None else None
    if room is None:
        return None, None
    iso = None if room.iso_class is IsoClass.UNCLASSIFIED else int(room.iso_class.value)
    if room.within is not None and iso is None:
        iso = 5
    return iso, room.pressure


def default_signals(config: Config | None, device: DeviceConfig, seed: int) -> dict[str, Signal]:
    """Room-aware signals of the environmental points (used when a field has no
    ``[device.simulate.<field>]`` table): a classified room holds 18.5 °C and 42 %RH (inside
    the USP <797> limits, so the demo floor does not alarm), dp the room's design cascade."""
    iso, regime = _room_of(config, device)
    classified = iso is not None
    dp = {PressureRegime.POSITIVE: 15.0 if iso in (5, 7) else 12.0, PressureRegime.NEGATIVE: -5.0}
    levels: dict[str, dict[str, Any]] = {
        "t": {
            "base": 18.5 if classified else 21.0,
            "noise": 0.03,
            "period": 6 * 3600.0,
            "amplitude": 0.4,
        },
        "rh": {
            "base": 42.0 if classified else 45.0,
            "noise": 0.2,
            "period": 4 * 3600.0,
            "amplitude": 3.0,
        },
        "dp": {
            "base": dp.get(regime, 0.5) if regime else 0.5,
            "noise": 0.15,
            "period": 1800.0,
            "amplitude": 0.3,
        },
    }
    return {
        name: Signal(seed=field_seed(seed, device.id, name), **params)
        for name, params in levels.items()
    }


def _own(device: DeviceConfig) -> set[str]:
    """Fields with a ``[device.simulate.<field>]`` table of their own."""
    table = device.simulate if isinstance(device.simulate, dict) else {}
    return {name for name, spec in table.items() if isinstance(spec, dict)}


def _device_seed(device: DeviceConfig, seed: int) -> int:
    own = device.simulate.get("seed") if isinstance(device.simulate, dict) else None
    return own if isinstance(own, int) and not isinstance(own, bool) else seed


@define
class Episodes:
    """Seeded episodes on simulated time (door openings, bursts of activity): gaps drawn from
    an exponential distribution of mean ``mean_gap``, lengths uniform in ``length``, a
    ``level`` uniform in ``levels``. Generated lazily and always in order, so the same seed
    gives the same episodes whatever the order ``at`` is asked in."""

    seed: int
    mean_gap: float
    length: tuple[float, float]
    levels: tuple[float, float]
    _rng: random.Random = field(init=False)
    _starts: list[float] = field(init=False, factory=list)
    _items: list[tuple[float, float, float]] = field(init=False, factory=list)
    _horizon: float = field(init=False, default=0.0)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._horizon = self._rng.expovariate(1.0 / self.mean_gap)

    def latest(self, t: float) -> tuple[float, float, float] | None:
        """The last episode (start, end, level) that began at or before ``t``."""
        while self._horizon <= t:
            start = self._horizon
            end = start + self._rng.uniform(*self.length)
            self._items.append((start, end, self._rng.uniform(*self.levels)))
            self._starts.append(start)
            self._horizon = end + self._rng.expovariate(1.0 / self.mean_gap)
        i = bisect.bisect_right(self._starts, t)
        return self._items[i - 1] if i else None


TAU_FALL = 2.0  # s: the cascade collapses this fast when a door opens
TAU_RISE = 6.0  # s: and recovers with this time constant once it closes


def door_factor(t: float, start: float, end: float | None, residual: float) -> float:
    """Share of the differential pressure left at ``t`` for a door open from ``start`` to
    ``end`` (None: still open) that lets the pressure fall to ``residual``."""
    if t < start:
        return 1.0
    if end is None or t < end:
        return residual + (1.0 - residual) * math.exp(-(t - start) / TAU_FALL)
    at_close = residual + (1.0 - residual) * math.exp(-(end - start) / TAU_FALL)
    return 1.0 - (1.0 - at_close) * math.exp(-(t - end) / TAU_RISE)


@define(eq=False)
class DoorSignal:
    """A dp signal with door openings on top: random ones (:class:`Episodes`) and the
    ``door_open`` fault. Quacks like a :class:`~simulators.signals.Signal` (value, trend,
    kind, base, raw), so excursions and the Modbus server take it as one."""

    signal: Signal
    episodes: Episodes | None
    forced: list[list[float | None]] = field(factory=list)  # [start, end, residual]

    @property
    def kind(self) -> SignalKind:
        return self.signal.kind

    @property
    def base(self) -> float:
        return self.signal.base

    @property
    def raw(self) -> tuple[int, ...] | None:
        return self.signal.raw

    def factor(self, t: float) -> float:
        found: tuple[float, float | None, float] | None = None
        if self.episodes is not None:
            found = self.episodes.latest(t)
        for start, end, residual in self.forced:
            assert start is not None and residual is not None
            if start <= t and (found is None or start >= found[0]):
                found = (start, end, residual)
        return 1.0 if found is None else door_factor(t, *found)

    def trend(self, t: float) -> float:
        return self.signal.trend(t) * self.factor(t)

    def value(self, t: float) -> float:
        return self.signal.value(t) * self.factor(t)

    def sample(self, t: float) -> float:
        return self.value(t)

    def open(self, t: float, residual: float) -> None:
        self.forced.append([t, None, residual])

    def close(self, t: float) -> None:
        for item in self.forced:
            if item[1] is None:
                item[1] = t


@define(eq=False)
class _Const:
    """A constant register value (the test register, a status register)."""

    base: float
    kind: SignalKind = SignalKind.FLOAT
    raw: None = None

    def value(self, t: float) -> float:
        return self.base

    def trend(self, t: float) -> float:
        return self.base


# --- the particle counter ----------------------------------------------------------------------

#: background concentration >= 0.5 µm (counts/m³) by ISO class: well inside the class limit
BACKGROUND = {5: 12.0, 7: 4_000.0, 8: 40_000.0, None: 300_000.0}
SIZE_EXPONENT = 2.08  # ISO 14644-1: C(D) ∝ D^-2.08
BUFFER_RECORDS = 3000


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth below 30, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


@define(eq=False)
class _SimRecord:
    time: int
    sample_time: int
    location: int
    status: int
    channels: tuple[int, ...]


@define(eq=False)
class CounterSim:
    """The register model of one Lighthouse-style remote counter (domain.md §5.3).

    Pure apart from its clock: :meth:`holding_words`, :meth:`input_words` and :meth:`write`
    take the real time (``wall``) and produce the records due by then. Counts: a background
    concentration (``background(t)``, counts/m³ >= 0.5 µm at simulated time ``t``) times the
    activity factor, split over the channels by ISO 14644-1's size law, Poisson-drawn per
    differential bin from the sample volume (flow x sample time).
    """

    device_id: str
    seed: int
    clock: SimClock
    channel_sizes: tuple[float, ...] = (0.3, 0.5, 1.0, 5.0)
    bins: str = "cumulative"
    count_mode: str = "per_record"
    background: Callable[[float], float] = lambda t: BACKGROUND[7]
    background_5: Callable[[float], float] | None = None
    activity: Episodes | None = None
    running: bool = False
    sample_time: int = 60
    hold_time: int = 0
    initial_delay: int = 0
    location: int = 1
    flow_raw: int = 100  # hundredths of CFM
    capacity: int = BUFFER_RECORDS
    index: int = MOST_RECENT
    new_data: bool = False
    rtc_offset: float = 0.0
    data_set: int = 0
    faults: set[str] = field(factory=set)
    excursions: dict[str, Excursion] = field(factory=dict)
    records: collections.deque[_SimRecord] = field(factory=collections.deque)
    totals: list[int] = field(factory=lambda: [0] * MAX_CHANNELS)
    made: int = 0
    _next_end: float | None = None

    # --- time --------------------------------------------------------------------------------

    def sim_time(self, wall: float) -> float:
        """The simulated time at real time ``wall``."""
        return self.clock.now() - (self.clock.wall() - wall) * self.clock.speed

    def start(self, wall: float) -> None:
        if not self.running:
            self.running = True
            self._next_end = wall + self.initial_delay + max(1, self.sample_time)

    def stop(self) -> None:
        self.running = False
        self._next_end = None

    def advance(self, wall: float) -> None:
        """Complete every sample that ended by ``wall``."""
        while self.running and self._next_end is not None and self._next_end <= wall:
            end = self._next_end
            self._record(end)
            self._next_end = end + self.hold_time + max(1, self.sample_time)

    # --- counts ------------------------------------------------------------------------------

    def concentration(self, t: float) -> tuple[float, float]:
        """(>= 0.5 µm, >= 5.0 µm) counts/m³ at simulated time ``t``."""
        factor = 1.0
        if self.activity is not None:
            found = self.activity.latest(t)
            if found is not None:
                start, end, peak = found
                if t < end:
                    factor = 1.0 + (peak - 1.0) * (1.0 - math.exp(-(t - start) / 20.0))
                else:
                    held = 1.0 + (peak - 1.0) * (1.0 - math.exp(-(end - start) / 20.0))
                    factor = 1.0 + (held - 1.0) * math.exp(-(t - end) / 90.0)
        c05 = max(0.0, self.background(t)) * factor
        ratio = 0.1**SIZE_EXPONENT
        c50 = (
            max(0.0, self.background_5(t)) * factor
            if self.background_5 is not None
            else c05 * ratio
        )
        c05 = self._excursion("counts_0_5", t, c05)
        if "counts_0_5" in self.excursions:  # the larger particles come along
            c50 = max(c50, c05 * ratio)
        c50 = self._excursion("counts_5_0", t, c50)
        return c05, c50

    def _excursion(self, name: str, t: float, level: float) -> float:
        exc = self.excursions.get(name)
        if exc is None:
            return level
        if exc.by is not None:
            return max(0.0, level + exc.by * exc.progress(t))
        assert exc.to is not None
        return max(0.0, level + (exc.to - level) * exc.progress(t))

    def _record(self, end: float) -> None:
        sample = max(1, self.sample_time)
        self.made += 1
        rng = random.Random(stable_seed(self.seed, self.device_id, "record", self.made))
        c05, c50 = self.concentration(self.sim_time(end - sample / 2))
        flow_raw = self.flow_raw if "flow" not in self.faults else round(self.flow_raw * 0.8)
        volume_m3 = flow_raw / 100 * sample / 60 * M3_PER_FT3

        def cumulative(size: float) -> float:  # expected count >= size in this sample
            return volume_m3 * max(
                c05 * (0.5 / size) ** SIZE_EXPONENT, c50 * (5.0 / size) ** SIZE_EXPONENT
            )

        sizes = self.channel_sizes
        expected = [
            cumulative(s) - (cumulative(sizes[i + 1]) if i + 1 < len(sizes) else 0.0)
            for i, s in enumerate(sizes)
        ]
        diff = [poisson(rng, lam) for lam in expected]
        if "laser" in self.faults:  # no light, no pulses
            diff = [0] * len(diff)
        counts = diff if self.bins == "differential" else _suffix_sums(diff)
        counts += [0] * (MAX_CHANNELS - len(counts))
        if self.count_mode == "running_total":
            self.totals = [(a + b) % 2**32 for a, b in zip(self.totals, counts, strict=True)]
            counts = list(self.totals)
        status = 0
        for name, bit in (("laser", 0), ("flow", 1), ("service", 3)):
            if name in self.faults:
                status |= 1 << bit
        self.records.append(
            _SimRecord(round(end + self.rtc_offset), sample, self.location, status, tuple(counts))
        )
        while len(self.records) > self.capacity:
            self.records.popleft()
        self.new_data = True

    # --- registers ---------------------------------------------------------------------------

    def status_word(self) -> int:
        word = 0
        if self.running:
            word |= ST_RUNNING | ST_SAMPLING
        if self.new_data:
            word |= ST_NEW_DATA
        if "service" in self.faults:
            word |= ST_DEVICE_ERROR
        if "flow" in self.faults:
            word |= ST_FLOW
        return word

    def holding_words(self, wall: float) -> list[int]:
        """Holding registers 40001-40036."""
        self.advance(wall)
        words = [0] * HOLDING_WORDS
        words[0] = 148  # register map v1.48
        words[2] = self.status_word()
        words[3] = 210  # firmware 2.10
        serial = 10_000 + stable_seed(self.device_id) % 90_000
        words[4:6] = _split(serial)
        words[6:14] = _text("REMOTE 3104P", 8)
        words[14:22] = _text("LMS-SIM", 8)
        words[22] = self.flow_raw if "flow" not in self.faults else round(self.flow_raw * 0.8)
        words[23] = len(self.records)
        words[24] = self.index
        words[25] = self.location
        words[26:28] = _split(round(wall + self.rtc_offset))
        words[28:30] = _split(self.initial_delay)
        words[30:32] = _split(self.hold_time)
        words[32:34] = _split(self.sample_time)
        words[34:36] = _split(self.data_set)
        return words

    def selected(self) -> _SimRecord | None:
        if not self.records:
            return None
        if self.index == MOST_RECENT:
            return self.records[-1]
        return self.records[self.index] if self.index < len(self.records) else None

    def input_words(self, wall: float) -> list[int]:
        """Input registers 30001-30024: the record the index selects (zeros if none)."""
        self.advance(wall)
        rec = self.selected()
        if rec is None:
            return [0] * (I_CHANNELS + 2 * MAX_CHANNELS)
        words = [*_split(rec.time), *_split(rec.sample_time), *_split(rec.location)]
        words += _split(rec.status)
        for count in rec.channels:
            words += _split(count)
        return words

    def write(self, address: int, values: Sequence[int], wall: float) -> ExcCodes | None:
        """A client's write of holding registers from ``address``; an exception code if the
        counter would refuse it."""
        self.advance(wall)
        shadow = self.holding_words(wall)
        for offset, value in enumerate(values):
            reg = address + offset
            if reg == H_COMMAND:
                code = self._command(int(value), wall)
                if code is not None:
                    return code
                continue
            if reg == H_RECORD_INDEX:
                if value != MOST_RECENT and value >= len(self.records):
                    return ExcCodes.ILLEGAL_VALUE
                self.index = int(value)
                continue
            if reg == 25 or 26 <= reg <= 35:
                shadow[reg] = int(value)
                continue
            return ExcCodes.ILLEGAL_ADDRESS  # read-only register
        self.location = shadow[25]
        self.initial_delay = (shadow[28] << 16) | shadow[29]
        self.hold_time = (shadow[30] << 16) | shadow[31]
        self.sample_time = (shadow[32] << 16) | shadow[33]
        self.data_set = (shadow[34] << 16) | shadow[35]
        rtc = (shadow[26] << 16) | shadow[27]
        if rtc != round(wall + self.rtc_offset):
            self.rtc_offset = rtc - wall
        return None

    def _command(self, code: int, wall: float) -> ExcCodes | None:
        if code in (9, CMD_START):
            self.start(wall)
        elif code in (10, CMD_STOP):
            self.stop()
        elif code == 3:  # clear the data buffer
            self.records.clear()
            self.totals = [0] * MAX_CHANNELS
            self.new_data = False
        elif code == 13:  # set the clock from the data set registers
            self.rtc_offset = self.data_set - wall
        elif code not in (1, 4, 5, 6, 7, 8):  # EEPROM saves, remote/local, pump: accepted
            return ExcCodes.ILLEGAL_VALUE
        return None

    def record_read(self) -> None:
        """A client read the record registers: NEW DATA is cleared."""
        self.new_data = False


def _split(value: int) -> list[int]:
    value = int(value) % 2**32
    return [value >> 16, value & 0xFFFF]


def _text(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii")[: 2 * registers].ljust(2 * registers, b"\0")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def _suffix_sums(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in reversed(values):
        total += v
        out.append(total)
    return out[::-1]


@define(eq=False)
class _RegisterView:
    """The words of one register block of a counter, as a slot's ``signal.raw``."""

    words: Callable[[], list[int]]
    kind: SignalKind = SignalKind.INT
    base: float = 0.0

    @property
    def raw(self) -> tuple[int, ...]:
        return tuple(self.words())

    def value(self, t: float) -> float:
        return 0.0

    def trend(self, t: float) -> float:
        return 0.0


# --- the Modbus server -------------------------------------------------------------------------


class EnvironmentModbusServer(ModbusSimServer):
    """One Modbus TCP server for a connection: generic ``modbus`` devices as the base class
    serves them, ``modbus_thp`` with its test register and door-driven dp, and each
    ``particle_counter`` as a :class:`CounterSim` behind the pymodbus action hook.

    :param config: the floor (options of each device's kind, rooms for the default levels).
    :param wire_byte_order: device id -> the byte order its floats really go out in (default:
        as configured), e.g. to simulate a gateway that swaps words.
    """

    THP_FAULTS = ("excursion", "silent", "exception", "door_open")
    COUNTER_FAULTS = ("excursion", "silent", "exception", "laser", "flow", "service")

    def __init__(
        self,
        connection: ModbusConnection,
        devices: Sequence[DeviceConfig],
        *,
        config: Config,
        seed: int = 0,
        signals: Mapping[str, Mapping[str, Signal]] | None = None,
        host: str | None = None,
        port: int | None = None,
        clock: SimClock | None = None,
        wire_byte_order: Mapping[str, ByteOrder] | None = None,
    ) -> None:
        self.config = config
        self.counters: dict[str, CounterSim] = {}
        self._counter_units: dict[int, CounterSim] = {}
        self._wire = dict(wire_byte_order or {})
        self._kinds = {d.id: d.kind for d in devices}
        clock = clock if clock is not None else SimClock()
        given = {
            d.id: dict(signals[d.id] if signals is not None else parse_simulate(d, seed=seed))
            for d in devices
        }
        for d in devices:
            if d.kind == "modbus_thp":
                given[d.id] = self._thp_signals(d, given[d.id], seed)
        self._seed = seed
        super().__init__(
            connection, devices, seed=seed, signals=given, host=host, port=port, clock=clock
        )
        units: dict[int, list[str]] = collections.defaultdict(list)
        for d in devices:
            units[d.modbus_unit].append(d.id)
        for unit, ids in units.items():
            if unit in self._counter_units and len(ids) > 1:
                raise SimulatorError(
                    f"particle counter {self._counter_units[unit].device_id!r} shares unit id "
                    f"{unit} with {', '.join(i for i in ids if i not in self.counters)}: "
                    "give the counter a unit id of its own (its register map is fixed)"
                )

    @classmethod
    def from_request(cls, req: SimRequest) -> EnvironmentModbusServer:
        if not isinstance(req.connection, ModbusConnection):
            raise SimulatorError(
                f"modbus devices need a [[modbus]] connection, got {req.connection!r}"
            )
        return cls(
            req.connection,
            req.devices,
            config=req.config,
            seed=req.seed,
            signals=req.signals,
            host=req.bind,
            clock=req.clock,
        )

    def options(self, device_id: str) -> Any:
        return self.config.device_options.get(device_id)

    # --- building ----------------------------------------------------------------------------

    def _thp_signals(self, d: DeviceConfig, given: dict[str, Signal], seed: int) -> dict[str, Any]:
        seed = _device_seed(d, seed)
        defaults = default_signals(self.config, d, seed)
        own = _own(d)
        out: dict[str, Any] = {
            name: (sig if name in own or name not in defaults else defaults[name])
            for name, sig in given.items()
        }
        if "dp" in out:
            doors = Episodes(
                stable_seed(seed, d.id, "doors"),
                mean_gap=1200.0,
                length=(8.0, 30.0),
                levels=(0.1, 0.3),
            )
            out["dp"] = DoorSignal(out["dp"], doors)
        return out

    def _add_device(self, d: DeviceConfig, signals: Mapping[str, Any]) -> None:
        if d.kind == "modbus_thp":
            self._add_thp(d, signals)
        elif d.kind == "particle_counter":
            self._add_counter(d, signals)
        else:
            super()._add_device(d, signals)

    def _add_thp(self, d: DeviceConfig, signals: Mapping[str, Any]) -> None:
        opts: ThpOptions = self.options(d.id) or ThpOptions()
        order = self._wire.get(d.id)
        fields = d.fields if order is None else tuple(evolve(f, byte_order=order) for f in d.fields)
        base = {**d.options, "address_base": opts.address_base}
        super()._add_device(evolve(d, options=base, fields=fields), signals)
        extra = []
        if opts.check_test_register:
            extra.append(("_test_register", opts.test_register, opts.test_type, opts.test_value))
        if opts.status_register is not None:
            extra.append(
                ("_status_register", opts.status_register, DataType.UINT16, float(opts.status_ok))
            )
        for name, address, dtype, value in extra:
            self._add_slot(
                d,
                _Slot(
                    device_id=d.id,
                    name=name,
                    signal=_Const(value),
                    table=opts.register,
                    address=int(address) - opts.address_base,
                    count=register_count(dtype),
                    dtype=dtype,
                    byte_order=order or opts.byte_order,
                    scale=1.0,
                    offset=0.0,
                ),
            )

    def _add_counter(self, d: DeviceConfig, signals: Mapping[str, Any]) -> None:
        opts: CounterOptions = self.options(d.id) or CounterOptions()
        seed = _device_seed(d, self._seed)
        iso, _ = _room_of(self.config, d)
        own = _own(d)
        level = BACKGROUND.get(iso, BACKGROUND[None])
        sig05, sig50 = signals.get("counts_0_5"), signals.get("counts_5_0")
        sim = CounterSim(
            device_id=d.id,
            seed=seed,
            clock=self.clock,
            channel_sizes=tuple(opts.channel_sizes),
            bins=opts.bins,
            count_mode=opts.count_mode,
            background=(
                sig05.value if sig05 is not None and "counts_0_5" in own else lambda t: level
            ),
            background_5=sig50.value if sig50 is not None and "counts_5_0" in own else None,
            activity=Episodes(
                stable_seed(seed, d.id, "activity"),
                mean_gap=1200.0,
                length=(60.0, 240.0),
                levels=(3.0, 15.0),
            ),
            sample_time=int(opts.sample_time) if opts.sample_time is not None else 60,
            flow_raw=round(opts.flow_cfm * 100) if opts.flow_cfm is not None else 100,
        )
        if not opts.auto_start:  # nobody will start it: it runs on its own
            sim.start(self.clock.wall())
        self.counters[d.id] = sim
        self._counter_units[d.modbus_unit] = sim
        super()._add_device(d, signals)  # no register fields: an empty device to hang slots on
        blocks = (
            ("_holding", RegisterTable.HOLDING, HOLDING_WORDS, sim.holding_words),
            ("_record", RegisterTable.INPUT, I_CHANNELS + 2 * MAX_CHANNELS, sim.input_words),
        )
        for name, table, count, words in blocks:
            view = _RegisterView(lambda words=words: words(self.clock.wall()))
            self._add_slot(
                d,
                _Slot(
                    device_id=d.id,
                    name=name,
                    signal=view,
                    table=table,
                    address=0,
                    count=count,
                    dtype=DataType.UINT16,
                    byte_order=ByteOrder.ABCD,
                    scale=1.0,
                    offset=0.0,
                ),
            )

    def _add_slot(self, d: DeviceConfig, slot: _Slot) -> None:
        device = self.devices[d.id]
        device.slots[slot.name] = slot
        self.units[device.unit].slots.append(slot)
        device.runs = [
            _Run(table, start, members)
            for table, start, members in _runs(list(device.slots.values()))
        ]

    # --- the action hook -----------------------------------------------------------------------

    async def _action(
        self,
        unit: Any,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        result = await super()._action(
            unit, func_code, start_address, address, count, registers, set_values
        )
        if result is not None:
            return result
        if set_values is not None and func_code in (1, 2, 3, 4):
            return None  # our own writes
        sim = self._counter_units.get(unit.id)
        if sim is None:
            return None
        wall = self.clock.wall()
        if func_code in (3, 6, 16, 22, 23):  # holding registers
            if set_values is not None:
                code = sim.write(address, [int(v) for v in set_values], wall)
                if code is not None:
                    return code
                for i in range(len(set_values)):
                    if address + i == H_COMMAND:
                        set_values[i] = 0  # the command register reads 0
            words = sim.holding_words(wall)
            written = range(address, address + len(set_values)) if set_values else range(0)
            for reg, word in enumerate(words):
                if reg not in written and 0 <= reg - start_address < len(registers):
                    registers[reg - start_address] = word
        elif func_code == 4:
            for reg, word in enumerate(sim.input_words(wall)):
                if 0 <= reg - start_address < len(registers):
                    registers[reg - start_address] = word
            sim.record_read()
        return None

    # --- faults ------------------------------------------------------------------------------

    def check_fault(self, device_id: str, fault: Fault) -> None:
        kind = self._kinds.get(device_id)
        if kind == "modbus_thp":
            self._check_thp(device_id, fault)
        elif kind == "particle_counter":
            self._check_counter(device_id, fault)
        else:
            super().check_fault(device_id, fault)

    def _fields(self, device_id: str) -> dict[str, Any]:
        return {n: s.signal for n, s in self.devices[device_id].slots.items() if n[0] != "_"}

    def _check_thp(self, device_id: str, fault: Fault) -> float | None:
        if fault.name == "door_open":
            check_fault_params(device_id, fault, ("residual",))
            if not isinstance(self._fields(device_id).get("dp"), DoorSignal):
                raise UnsupportedFault(f"device {device_id!r} has no dp point to open a door on")
            residual = fault.params.get("residual", 0.1)
            if (
                isinstance(residual, bool)
                or not isinstance(residual, int | float)
                or not (0 <= residual <= 1)
            ):
                raise FaultParamError(
                    device_id,
                    fault.name,
                    "residual",
                    f"expected the share of dp left, 0..1, got {residual!r}",
                )
            return float(residual)
        if fault.name == "excursion":
            parse_excursion(device_id, fault, self._fields(device_id))
        elif fault.name not in self.THP_FAULTS:
            raise UnsupportedFault(
                f"device {device_id!r} (modbus_thp) cannot show {fault.name!r} "
                f"(it can: {', '.join(self.THP_FAULTS)})"
            )
        super().check_fault(device_id, fault)
        return None

    def _check_counter(self, device_id: str, fault: Fault) -> Excursion | None:
        if fault.name in ("laser", "flow", "service"):
            check_fault_params(device_id, fault, ())
            return None
        if fault.name == "excursion":
            levels = {name: Signal(base=0.0) for name in ("counts_0_5", "counts_5_0")}
            exc = parse_excursion(device_id, fault, levels)
            level = exc.to if exc.to is not None else 0.0
            if exc.to is not None and not (math.isfinite(level) and level >= 0):
                raise FaultParamError(
                    device_id, fault.name, "to", "a concentration is a finite number >= 0"
                )
            return exc
        if fault.name in ("silent", "exception"):
            super().check_fault(device_id, fault)
            return None
        raise UnsupportedFault(
            f"device {device_id!r} (particle_counter) cannot show {fault.name!r} "
            f"(it can: {', '.join(self.COUNTER_FAULTS)})"
        )

    def start_fault(self, device_id: str, fault: Fault) -> None:
        kind = self._kinds.get(device_id)
        if kind == "modbus_thp" and fault.name == "door_open":
            residual = self._check_thp(device_id, fault)
            assert residual is not None
            self._fields(device_id)["dp"].open(self.clock.now(), residual)
            self._touch(self.devices[device_id])
        elif kind == "particle_counter" and fault.name not in ("silent", "exception"):
            exc = self._check_counter(device_id, fault)
            sim = self.counters[device_id]
            if exc is not None:
                sim.excursions[exc.field] = attrs.evolve(exc, start=self.clock.now())
            else:
                sim.faults.add(fault.name)
        else:
            self.check_fault(device_id, fault)
            super().start_fault(device_id, fault)

    def end_excursion(self, device_id: str, field_name: str) -> None:
        """End one field's excursion (a counter's other field keeps its own)."""
        if self._kinds.get(device_id) == "particle_counter":
            self.counters[device_id].excursions.pop(field_name, None)
        else:
            super().end_excursion(device_id, field_name)

    def end_fault(self, device_id: str, name: str) -> None:
        kind = self._kinds.get(device_id)
        if kind == "modbus_thp" and name == "door_open":
            self._fields(device_id)["dp"].close(self.clock.now())
            self._touch(self.devices[device_id])
        elif kind == "particle_counter" and name not in ("silent", "exception"):
            sim = self.counters[device_id]
            if name == "excursion":
                sim.excursions.clear()
            elif name in ("laser", "flow", "service"):
                sim.faults.discard(name)
            else:
                raise UnsupportedFault(f"device {device_id!r} has no fault {name!r}")
        else:
            super().end_fault(device_id, name)


# --- MQTT --------------------------------------------------------------------------------------


def mqtt_env_publisher(
    connection: MqttConnection,
    devices: Sequence[DeviceConfig],
    *,
    config: Config,
    seed: int = 0,
    signals: Mapping[str, Mapping[str, Signal]] | None = None,
    clock: SimClock | None = None,
    **kwargs: Any,
) -> MqttJsonPublisher:
    """A store-and-forward publisher of ``mqtt_env`` loggers: t / rh at room-aware levels and
    the sample's own timestamp at ``timestamp_path``; faults excursion, silent, malformed and
    backfill (:class:`~simulators.mqtt_publisher.MqttJsonPublisher`)."""
    prepared: list[DeviceConfig] = []
    sigs: dict[str, dict[str, Signal]] = {}
    for d in devices:
        opts: MqttEnvOptions | None = config.device_options.get(d.id)
        raw = dict(d.options)
        if opts is not None:
            raw |= {
                "state_topic": opts.state_topic,
                "timestamp_path": opts.timestamp_path,
                "qos": opts.qos,
            }
        prepared.append(evolve(d, options=raw))
        given = dict(signals[d.id] if signals is not None else parse_simulate(d, seed=seed))
        defaults = default_signals(config, d, _device_seed(d, seed))
        own = _own(d)
        sigs[d.id] = {
            name: (s if name in own or name not in defaults else defaults[name])
            for name, s in given.items()
        }
    return MqttJsonPublisher(connection, prepared, seed=seed, signals=sigs, clock=clock, **kwargs)


def _mqtt_env(req: SimRequest) -> MqttJsonPublisher:
    if not isinstance(req.connection, MqttConnection):
        raise SimulatorError(
            f"mqtt_env devices need an [[mqtt]] connection, got {req.connection!r}"
        )
    return mqtt_env_publisher(
        req.connection,
        req.devices,
        config=req.config,
        seed=req.seed,
        signals=req.signals,
        clock=req.clock,
    )


# --- registration ------------------------------------------------------------------------------


def _modbus_tcp(req: SimRequest) -> EnvironmentModbusServer:
    return EnvironmentModbusServer.from_request(req)


def _install() -> None:
    """Register the simulators. The ``"modbus-tcp"`` group is built by the factory of the
    first device of the connection in devices.toml: the generic ``modbus`` factory is wrapped
    so that it hands a connection with an environmental device to this module's server."""
    previous = SIMULATORS.get("modbus")
    if previous is not None and not getattr(previous.factory, "environment", False):
        generic = previous.factory

        def modbus(req: SimRequest) -> Any:
            if any(d.kind in MODBUS_KINDS for d in req.devices):
                return _modbus_tcp(req)
            return generic(req)

        modbus.environment = True  # type: ignore[attr-defined]
        register_simulator("modbus", modbus, group=previous.group)
    for kind in MODBUS_KINDS:
        register_simulator(kind, _modbus_tcp, group="modbus-tcp")
    register_simulator("mqtt_env", _mqtt_env, group="mqtt-env")


_install()
