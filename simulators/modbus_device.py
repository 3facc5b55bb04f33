"""Simulated Modbus TCP devices: every ``kind = "modbus"`` device of one ``[[modbus]]`` connection.

One pymodbus ``ModbusTcpServer`` per connection, one ``SimDevice`` per unit id with the four
non-shared tables (coils, discrete inputs, holding, input registers), so addressing matches
the Modbus data model. Devices that share a unit id (disjoint register ranges) share that
unit's ``SimDevice``. Registers are sized from the fields: a read of an address no field
covers answers ILLEGAL ADDRESS (exception 2), like a real device.

One updater task per server writes the due devices' values at each device's interval (real
time), one ``async_setValues`` call per contiguous run of fields; the values come from the
signals at the simulated time of the shared :class:`~simulators.faults.SimClock`.

Faults (:class:`~simulators.faults.Faultable`): ``excursion`` (a field moves ``to`` a level or
``by`` an offset, optionally ramped), ``silent`` (requests touching the device's registers get
no reply at all, so the client times out: the SimDevice action hook raises pymodbus's
NoSuchIdException and the server runs with ``ignore_missing_devices``) and ``exception``
(every request touching the device's registers answers Modbus exception ``code``, default 4).
Faults are per device, also when devices share a unit id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import Mapping, Sequence

import attrs
from attrs import define, field
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from floorctl.config import DeviceConfig, ModbusConnection
from floorctl.decode import ByteOrder, DataType, RegisterTable, encode_registers, to_raw
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.signals import (
    Excursion,
    FaultParamError,
    Signal,
    check_fault_params,
    parse_excursion,
    parse_simulate,
)

__all__ = ["ModbusSimServer", "SimulatorError"]

log = logging.getLogger("floorctl.simulators.modbus")

_TABLES = (RegisterTable.COIL, RegisterTable.DISCRETE, RegisterTable.HOLDING, RegisterTable.INPUT)
#: function code for our own server-side writes into each table
_FC_SET = {
    RegisterTable.COIL: 1,
    RegisterTable.DISCRETE: 2,
    RegisterTable.HOLDING: 3,
    RegisterTable.INPUT: 4,
}
#: request function code -> table it addresses
_FC_TABLE = {
    1: RegisterTable.COIL, 5: RegisterTable.COIL, 15: RegisterTable.COIL,
    2: RegisterTable.DISCRETE,
    3: RegisterTable.HOLDING, 6: RegisterTable.HOLDING, 16: RegisterTable.HOLDING,
    22: RegisterTable.HOLDING, 23: RegisterTable.HOLDING,
    4: RegisterTable.INPUT,
}  # fmt: skip
#: a full update yields to the event loop after this many devices (~5 ms of work)
_YIELD_EVERY = 25


class SimulatorError(RuntimeError):
    """A simulator could not be built or started."""


@define(eq=False)
class _Slot:
    """One field of one device, placed in a unit's table."""

    device_id: str
    name: str
    signal: Signal
    table: RegisterTable
    address: int  # wire address
    count: int
    dtype: DataType
    byte_order: ByteOrder
    scale: float
    offset: float
    pin_value: float | None = None
    pinned: bool = False
    pin_raw: list[int] | None = None
    excursion: Excursion | None = None

    def encode(self, value: float) -> list[int]:
        if self.table.is_bits:
            return [1 if value else 0]
        return encode_registers(
            to_raw(value, self.scale, self.offset, self.dtype), self.dtype, self.byte_order
        )

    def words(self, t: float) -> list[int]:
        if self.pin_raw is not None:
            return self.pin_raw
        if self.pinned:
            return self.encode(self.pin_value)  # type: ignore[arg-type]
        if self.excursion is not None:
            return self.encode(self.excursion.apply(self.signal, t))
        if self.signal.raw is not None:
            return list(self.signal.raw)
        return self.encode(self.signal.value(t))


@define(eq=False)
class _Run:
    """Contiguous fields of one device in one table: written with one call."""

    table: RegisterTable
    start: int
    slots: list[_Slot]


@define(eq=False)
class _Device:
    id: str
    unit: int
    interval: float
    slots: dict[str, _Slot]
    runs: list[_Run]
    next_due: float = 0.0
    dirty: bool = False
    # request faults: no reply / an exception code / a slow reply (real seconds)
    silent: bool = False
    exception: int | None = None
    delay: float = 0.0

    @property
    def faulted(self) -> bool:
        return self.silent or self.exception is not None or self.delay > 0

    def covers(self, table: RegisterTable, address: int, span: int) -> bool:
        """Does a request of ``span`` addresses from ``address`` touch one of our fields?"""
        return any(
            s.table is table and s.address < address + span and address < s.address + s.count
            for s in self.slots.values()
        )


@define(eq=False)
class _Unit:
    """One Modbus unit id: the fields of every device that answers on it."""

    id: int
    slots: list[_Slot] = field(factory=list)
    devices: list[_Device] = field(factory=list)
    bit_starts: dict[RegisterTable, frozenset[int]] = field(factory=dict)


def _runs(slots: Sequence[_Slot]) -> list[tuple[RegisterTable, int, list[_Slot]]]:
    """Group slots into contiguous (table, start, slots) runs."""
    out: list[tuple[RegisterTable, int, list[_Slot]]] = []
    for slot in sorted(slots, key=lambda s: (_TABLES.index(s.table), s.address)):
        if out:
            table, _, members = out[-1]
            end = members[-1].address + members[-1].count
            if table is slot.table and slot.address == end:
                members.append(slot)
                continue
        out.append((slot.table, slot.address, [slot]))
    return out


class ModbusSimServer:
    """Serves every Modbus device of one connection; can be stopped and started again.

    :param connection: the ``[[modbus]]`` connection; its host and port are bound.
    :param devices: the devices to serve (all should have ``via`` = this connection).
    :param seed: global seed for the signals (a device's ``simulate.seed`` wins).
    :param signals: precomputed ``{device id: {field: Signal}}`` (default: parsed here).
    :param host: bind address instead of ``connection.host``.
    :param port: port instead of ``connection.port``; 0 picks a free one, kept for restarts.
    :param clock: the simulation's clock: signals are sampled at ``clock.now()``.
    """

    #: the faults :meth:`start_fault` knows
    FAULTS = ("excursion", "silent", "exception")

    def __init__(
        self,
        connection: ModbusConnection,
        devices: Sequence[DeviceConfig],
        *,
        seed: int = 0,
        signals: Mapping[str, Mapping[str, Signal]] | None = None,
        host: str | None = None,
        port: int | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self.connection = connection
        self.host = host if host is not None else connection.host
        self._port = int(port if port is not None else connection.port)
        self.clock = clock if clock is not None else SimClock()
        self._server: ModbusTcpServer | None = None
        self._updater: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.writes = 0  # async_setValues calls made
        self.devices: dict[str, _Device] = {}
        self.units: dict[int, _Unit] = {}
        for d in devices:
            sigs = signals[d.id] if signals is not None else parse_simulate(d, seed=seed)
            self._add_device(d, sigs)
        for unit in self.units.values():
            unit.bit_starts = {
                t: frozenset(s.address for s in unit.slots if s.table is t)
                for t in (RegisterTable.COIL, RegisterTable.DISCRETE)
            }

    def _add_device(self, d: DeviceConfig, signals: Mapping[str, Signal]) -> None:
        base = int(d.options.get("address_base", 0) or 0)
        unit = self.units.setdefault(d.modbus_unit, _Unit(d.modbus_unit))
        slots: dict[str, _Slot] = {}
        for f in d.fields:
            if f.register is None or f.address is None:
                continue
            wire = int(f.address) - base
            if wire < 0:
                raise SimulatorError(
                    f"device {d.id!r} field {f.name!r}: address {f.address} < address_base {base}"
                )
            dtype = DataType.BOOL if f.register.is_bits else (f.type or DataType.UINT16)
            slots[f.name] = _Slot(
                device_id=d.id, name=f.name, signal=signals[f.name], table=f.register,
                address=wire, count=f.count, dtype=dtype, byte_order=f.byte_order,
                scale=f.scale, offset=f.offset,
            )  # fmt: skip
        unit.slots.extend(slots.values())
        runs = [_Run(t, start, members) for t, start, members in _runs(list(slots.values()))]
        device = _Device(d.id, d.modbus_unit, float(d.interval), slots, runs)
        self.devices[d.id] = device
        unit.devices.append(device)

    # --- pymodbus model ---------------------------------------------------------------------

    def _simdevice(self, unit: _Unit) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in _TABLES:
            members = [s for s in unit.slots if s.table is table]
            entries: list[SimData] = []
            for _, start, run in _runs(members):
                n = sum(s.count for s in run)
                if table.is_bits:
                    entries.append(SimData(start, values=[False] * n, datatype=SimType.BITS))
                else:
                    entries.append(SimData(start, values=[0] * n, datatype=SimType.REGISTERS))
            if not entries:  # pymodbus needs every table non-empty: a placeholder nobody can read
                if table.is_bits:
                    entries.append(SimData(0, values=[False], datatype=SimType.BITS))
                else:
                    entries.append(SimData(0, datatype=SimType.INVALID))
            blocks.append(entries)
        return SimDevice(
            id=unit.id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=functools.partial(self._action, unit),
        )

    async def _action(
        self,
        unit: _Unit,
        func_code: int,
        _start_address: int,
        address: int,
        count: int,
        _registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus on every access; our own writes use fc 1-4 with values."""
        if set_values is not None and func_code in (1, 2, 3, 4):
            return None
        table = _FC_TABLE.get(func_code)
        faulted = [d for d in unit.devices if d.faulted]
        if faulted and table is not None:
            # for bits pymodbus passes the count of 16-bit words the request spans
            span = 16 * count if table.is_bits else count
            hit = [d for d in faulted if d.covers(table, address, span)]
            if any(d.silent for d in hit):
                # with ignore_missing_devices the server sends nothing: the client times out
                raise NoSuchIdException(f"unit {unit.id}: silent (simulated fault)")
            delay = max((d.delay for d in hit), default=0.0)
            if delay:
                await asyncio.sleep(delay)
            code = next((d.exception for d in hit if d.exception is not None), None)
            if code is not None:
                return ExcCodes(code)
        if table is not None and table.is_bits and address not in unit.bit_starts[table]:
            # bits are stored 16 to a word: without this, any bit of a used word would answer
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port (the bound one once started, also with port 0)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def elapsed(self) -> float:
        """Simulated seconds: the time the signals are sampled at."""
        return self.clock.now()

    async def start(self) -> None:
        """Build the server, write every value, listen, start the updater."""
        if self._server is not None:
            return
        units = [self._simdevice(u) for u in self.units.values()]
        # no SimDevice raises NoSuchIdException except a silent one (SimCore answers unknown
        # unit ids with exception 4): ignoring it is how a silent device sends nothing
        server = ModbusTcpServer(
            units, address=(self.host, self._port), ignore_missing_devices=True
        )
        self._server = server
        await self._write(list(self.devices.values()))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            self._server = None
            raise SimulatorError(
                f"modbus simulator {self.connection.name!r}: cannot listen on "
                f"{self.host}:{self._port} (port in use?)"
            ) from exc
        sockets = getattr(server.transport, "sockets", None)
        if sockets:
            self._port = sockets[0].getsockname()[1]
        now = asyncio.get_running_loop().time()
        for d in self.devices.values():
            d.next_due = now + d.interval
        self._updater = asyncio.create_task(self._run(), name=f"modbus-sim-{self.connection.name}")

    async def stop(self) -> None:
        """Stop the updater, close the listener and every client connection."""
        server, self._server = self._server, None
        updater, self._updater = self._updater, None
        if updater is not None:
            updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await updater
        if server is not None:
            listener = server.transport
            await server.shutdown()
            if listener is not None and hasattr(listener, "wait_closed"):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.wait_closed(), 2.0)

    async def __aenter__(self) -> ModbusSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- updating ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        devices = list(self.devices.values())
        while True:
            now = loop.time()
            due = [d for d in devices if d.dirty or d.next_due <= now]
            if due:
                await self._write(due)
                for d in due:
                    if d.next_due <= now:
                        d.next_due += d.interval
                        if d.next_due <= now:  # fell behind: do not burst to catch up
                            d.next_due = now + d.interval
            self._wake.clear()
            if not devices:
                await self._wake.wait()
                continue
            wait = min(d.next_due for d in devices) - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)

    async def _write(self, devices: Sequence[_Device]) -> None:
        server = self._server
        if server is None:
            return
        t = self.elapsed()
        for n, d in enumerate(devices):
            if n and n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let client requests in between
                if self._server is not server:
                    return
            d.dirty = False
            for run in d.runs:
                words: list[int] = []
                for slot in run.slots:
                    try:
                        words += slot.words(t)
                    except ValueError as exc:  # cannot happen for signals; log, keep serving
                        log.warning("%s.%s: cannot encode: %s", d.id, slot.name, exc)
                        words += [0] * slot.count
                values: list[int] | list[bool] = (
                    [bool(w) for w in words] if run.table.is_bits else words
                )
                await server.async_setValues(d.unit, _FC_SET[run.table], run.start, values)
                self.writes += 1

    async def flush(self) -> None:
        """Write every device's current value now (e.g. right after :meth:`set_value`)."""
        await self._write(list(self.devices.values()))

    # --- fault injection --------------------------------------------------------------------

    def _slot(self, device_id: str, field_name: str) -> tuple[_Device, _Slot]:
        d = self.devices.get(device_id)
        if d is None:
            raise KeyError(f"no simulated modbus device {device_id!r}")
        slot = d.slots.get(field_name)
        if slot is None:
            raise KeyError(f"device {device_id!r} has no register field {field_name!r}")
        return d, slot

    def _touch(self, d: _Device) -> None:
        d.dirty = True
        self._wake.set()

    def set_value(self, device_id: str, field_name: str, value: float) -> None:
        """Pin a field to ``value`` (engineering units; NaN/inf allowed for float types).

        Takes effect at the updater's next turn; ``await flush()`` to be sure.
        Raises ValueError if the value cannot be encoded (e.g. NaN in an INT16).
        """
        d, slot = self._slot(device_id, field_name)
        value = float(value)
        if not slot.table.is_bits:
            slot.encode(value)  # validate now, not in the updater
        slot.pin_value, slot.pinned, slot.pin_raw = value, True, None
        self._touch(d)

    def set_raw(self, device_id: str, field_name: str, registers: Sequence[int]) -> None:
        """Pin a field's register words (or, for a coil/discrete input, ``[0]``/``[1]``)."""
        d, slot = self._slot(device_id, field_name)
        words = [int(w) for w in registers]
        top = 1 if slot.table.is_bits else 0xFFFF
        if len(words) != slot.count or any(not 0 <= w <= top for w in words):
            raise ValueError(
                f"{device_id}.{field_name} needs {slot.count} word(s) in 0..{top}, got {words}"
            )
        slot.pin_raw, slot.pinned = words, False
        self._touch(d)

    def release(self, device_id: str, field_name: str | None = None) -> None:
        """Undo :meth:`set_value` / :meth:`set_raw` (for one field, or all of the device)."""
        d = self.devices[device_id]
        slots = [self._slot(device_id, field_name)[1]] if field_name else list(d.slots.values())
        for slot in slots:
            slot.pin_value, slot.pinned, slot.pin_raw = None, False, None
        self._touch(d)

    def set_fault(
        self,
        device_id: str,
        *,
        exception: int | None = None,
        delay: float = 0.0,
        silent: bool = False,
    ) -> None:
        """Make requests touching the device's registers answer a Modbus exception code,
        answer only after ``delay`` real seconds (a slow device), or get no reply at all
        (``silent``). ``set_fault(id)`` clears all three."""
        d = self.devices[device_id]
        if exception is not None:
            ExcCodes(exception)  # ValueError for a code pymodbus cannot send
        if delay < 0 or not math.isfinite(delay):
            raise ValueError("delay must be a finite number of seconds >= 0")
        d.exception, d.delay, d.silent = exception, delay, silent

    def current(self, device_id: str, field_name: str) -> float:
        """The signal value the field would be written with now (pins not applied)."""
        _, slot = self._slot(device_id, field_name)
        return slot.signal.value(self.elapsed())

    # --- Faultable ---------------------------------------------------------------------------

    def device_ids(self) -> list[str]:
        return list(self.devices)

    def check_fault(self, device_id: str, fault: Fault) -> None:
        """Raise UnsupportedFault or FaultParamError (a ValueError) if ``fault`` cannot start."""
        self._parse_fault(device_id, fault)

    def _parse_fault(self, device_id: str, fault: Fault) -> Excursion | int | None:
        d = self.devices.get(device_id)
        if d is None:
            raise KeyError(f"no simulated modbus device {device_id!r}")
        if fault.name == "excursion":
            signals = {name: slot.signal for name, slot in d.slots.items()}
            exc = parse_excursion(device_id, fault, signals)
            slot = d.slots[exc.field]
            if exc.to is not None:
                level = exc.to
            else:  # the value now, moved: a fair check of what the register must hold
                level = slot.signal.value(self.clock.now()) + (exc.by or 0.0)
            try:
                slot.encode(level)
            except ValueError as err:
                raise FaultParamError(
                    device_id,
                    fault.name,
                    "to" if exc.to is not None else "by",
                    f"field {exc.field!r} ({slot.dtype}) cannot hold {level:g}: {err}",
                ) from None
            return exc
        if fault.name == "silent":
            check_fault_params(device_id, fault, ())
            return None
        if fault.name == "exception":
            check_fault_params(device_id, fault, ("code",))
            code = fault.params.get("code", 4)
            valid = {int(c) for c in ExcCodes}
            if isinstance(code, bool) or not isinstance(code, int) or code not in valid:
                raise FaultParamError(
                    device_id,
                    fault.name,
                    "code",
                    f"expected a Modbus exception code ({', '.join(map(str, sorted(valid)))}), "
                    f"got {code!r}",
                )
            return code
        raise UnsupportedFault(
            f"device {device_id!r} (modbus) cannot show {fault.name!r} "
            f"(it can: {', '.join(self.FAULTS)})"
        )

    def start_fault(self, device_id: str, fault: Fault) -> None:
        parsed = self._parse_fault(device_id, fault)
        d = self.devices[device_id]
        if isinstance(parsed, Excursion):
            d.slots[parsed.field].excursion = attrs.evolve(parsed, start=self.clock.now())
            self._touch(d)
        elif fault.name == "silent":
            d.silent = True
        else:
            d.exception = parsed  # type: ignore[assignment]

    def end_excursion(self, device_id: str, field_name: str) -> None:
        """End the excursion of one field (others of the device go on)."""
        d = self.devices[device_id]
        item = d.slots.get(field_name)
        if item is not None:
            item.excursion = None
            self._touch(d)

    def end_fault(self, device_id: str, name: str) -> None:
        """End a fault (``excursion`` ends the excursions of every field of the device)."""
        d = self.devices[device_id]
        if name == "excursion":
            for slot in d.slots.values():
                slot.excursion = None
            self._touch(d)
        elif name == "silent":
            d.silent = False
        elif name == "exception":
            d.exception = None
        else:
            raise UnsupportedFault(f"device {device_id!r} (modbus) has no fault {name!r}")

    def describe(self) -> str:
        ids = ", ".join(self.devices) or "none"
        return (
            f"modbus {self.connection.name!r} on {self.host}:{self._port}: "
            f"{len(self.devices)} device(s) on {len(self.units)} unit id(s): {ids}"
        )
