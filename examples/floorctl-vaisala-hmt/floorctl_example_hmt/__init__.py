"""floorctl plugin: a Vaisala HMT330-style temperature / humidity transmitter over Modbus TCP.

The register map is built in, so a device in devices.toml only names the measurements it
wants published::

    [[device]]
    id = "hmt-buffer"
    kind = "example_hmt"
    via = "bms"              # a [[modbus]] connection
    unit_id = 1

    [[device.fields]]
    name = "t"               # or "rh"
    deadband = 0.1
    precision = 2

Register map (Vaisala HMT330 manual; register number n is PDU address n - 1):

=========  =======  ===================================================
register   address  meaning
=========  =======  ===================================================
0001-0002  0        relative humidity, %RH, FLOAT32
0003-0004  2        temperature, °C, FLOAT32
0513       512      fault status, UINT16: 1 = no errors
7938-7939  0x1F01   float test register, always -123.45
=========  =======  ===================================================

Floats are IEEE-754 binary32 in two registers, least significant word first: byte order
CDAB (Vaisala's example: 30.56 %RH = 0x41F47AE1 reads as the words 0x7AE1, 0x41F4).
A wrong word order still gives plausible-looking numbers, which is why the driver reads the
test register when it starts. Unavailable measurements read as quiet NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from attrs import frozen

from floorctl import hookimpl
from floorctl.config import DeviceConfig, FieldConfig
from floorctl.decode import (
    ByteOrder,
    DataType,
    ReadBlock,
    RegisterTable,
    decode_registers,
    plan_reads,
)
from floorctl.driver import DeviceContext, PolledDriver
from floorctl.hubs.modbus import ModbusDeviceError
from floorctl.kinds import Kind, KindRegistry, Problems, Transport
from floorctl.model import Quality, Reading

__version__ = "0.1.0"

KIND = "example_hmt"


@frozen
class Measurement:
    """One FLOAT32 measurement of the built-in register map."""

    address: int  # PDU (wire) address of the first of its two registers
    unit: str
    description: str


#: field name -> measurement. Adding a measurement of the map is one line here.
MEASUREMENTS: dict[str, Measurement] = {
    "rh": Measurement(0x0000, "%RH", "relative humidity"),
    "t": Measurement(0x0002, "°C", "temperature"),
}

#: register 7938: a FLOAT32 that always reads -123.45 when the byte order is right
TEST_REGISTER = 0x1F01
TEST_VALUE = -123.45
#: register 0513: 1 when the transmitter has no active errors
STATUS_REGISTER = 0x0200
STATUS_OK = 1


@frozen
class HmtOptions:
    """``[device.options]`` of an ``example_hmt`` device."""

    #: read the float test register in start() and refuse to run if it is not -123.45
    check_test_register: bool = True
    #: read the fault status register on every poll; a fault makes the readings device-error
    check_status: bool = False
    #: "holding" (function 3) or "input" (function 4): the transmitter answers both
    register: RegisterTable = RegisterTable.HOLDING
    #: word/byte order of the floats; CDAB unless a gateway in between swaps words
    byte_order: ByteOrder = ByteOrder.CDAB


class HmtCheckError(RuntimeError):
    """The device failed the start-up check: wrong byte order or not an HMT330."""


def validate(device: DeviceConfig, options: HmtOptions) -> Problems:
    """Problems types alone cannot express; paths are below ``device[<id>]``."""
    known = ", ".join(f"{name} ({m.description}, {m.unit})" for name, m in MEASUREMENTS.items())
    if options.register.is_bits:
        yield ("options", "register"), 'must be "holding" or "input" (measurements are registers)'
    if not device.fields:
        yield ("fields",), f"name at least one measurement in a [[device.fields]] entry: {known}"
    for j, f in enumerate(device.fields):
        if f.name not in MEASUREMENTS:
            problem = f"unknown measurement {f.name!r}; kind {KIND!r} has {known}"
            yield ("fields", j, "name"), problem


def _describe(words: list[int]) -> str:
    return ", ".join(f"0x{w:04X}" for w in words)


class HmtDriver(PolledDriver):
    """Polls the measurements the device's fields name, each float in one read."""

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: HmtOptions = ctx.options if ctx.options is not None else HmtOptions()
        wanted = [(f, MEASUREMENTS[f.name]) for f in ctx.device.fields if f.name in MEASUREMENTS]
        blocks = plan_reads([(self.options.register, m.address, 2) for _, m in wanted])
        # each read block with its fields and the offset of each field's words in the block
        self._plan: list[tuple[ReadBlock, list[tuple[FieldConfig, Measurement, int]]]] = [
            (b, [(wanted[i][0], wanted[i][1], wanted[i][1].address - b.address) for i in b.members])
            for b in blocks
        ]
        self._unit = ctx.device.modbus_unit

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the float test register. DeviceUnavailable (not reachable) is left to the
        caller, which retries; a wrong value raises HmtCheckError naming the device."""
        if not self.options.check_test_register:
            return
        order = self.options.byte_order
        where = f"test register 7938 (address 0x{TEST_REGISTER:04X}, {self.options.register})"
        try:
            words = await self.ctx.hub.read(self.options.register, TEST_REGISTER, 2, self._unit)
        except ModbusDeviceError as exc:
            raise HmtCheckError(
                f"device {self.device.id!r}: cannot read the {where}: {exc}; is unit "
                f"{self._unit} a Vaisala HMT330? (check_test_register = false skips this check)"
            ) from None
        words = [int(w) for w in words]
        got = decode_registers(words, DataType.FLOAT32, order)
        if _is_test_value(got.value):
            return
        hint = next(
            (
                f'the words decode to {TEST_VALUE} as {other}: set byte_order = "{other}" '
                "in [device.options]"
                for other in ByteOrder
                if other is not order
                and _is_test_value(decode_registers(words, DataType.FLOAT32, other).value)
            ),
            None,
        )
        shown = got.detail if got.value is None else f"{got.value:.6g}"
        raise HmtCheckError(
            f"device {self.device.id!r}: {where} reads {shown} as {order} "
            f"(words {_describe(words)}), expected {TEST_VALUE}: "
            + (
                f"misconfigured byte order; {hint}"
                if hint
                else "wrong device (not a Vaisala HMT330?) or misconfigured byte order"
            )
        )

    # --- polling -----------------------------------------------------------------------------

    async def poll(self) -> list[Reading]:
        """One round. DeviceUnavailable propagates (the base counts it); everything the device
        answers becomes readings: exceptions device-error, NaN bad, a fault device-error."""
        hub = self.ctx.hub
        out: list[Reading] = []
        fault = await self._fault() if self.options.check_status else None
        for block, members in self._plan:
            try:
                data = await hub.read(block.table, block.address, block.count, self._unit)
            except ModbusDeviceError as exc:  # the device answered, but refuses this block
                self.ctx.counters.error(str(exc))
                now = time.time()
                out.extend(
                    Reading.bad(
                        self.device.id,
                        f.name,
                        str(exc),
                        unit=_unit(f, m),
                        quality=Quality.DEVICE_ERROR,
                        receive_time=now,
                    )
                    for f, m, _ in members
                )
                continue
            out.extend(self._decode(data, members, fault, time.time()))
        return out

    def _decode(
        self,
        data: list[Any],
        members: list[tuple[FieldConfig, Measurement, int]],
        fault: str | None,
        now: float,
    ) -> Iterator[Reading]:
        for f, m, offset in members:
            decoded = decode_registers(
                data[offset : offset + 2],
                DataType.FLOAT32,
                self.options.byte_order,
                precision=f.precision,
            )
            quality, detail = decoded.quality, decoded.detail
            if fault is not None and quality is Quality.GOOD:
                quality, detail = Quality.DEVICE_ERROR, fault
            yield Reading(
                self.device.id,
                f.name,
                decoded.value,
                quality,
                receive_time=now,
                unit=_unit(f, m),
                detail=detail,
            )

    async def _fault(self) -> str | None:
        """None when the status register says "no errors", else why the values are suspect."""
        try:
            words = await self.ctx.hub.read(self.options.register, STATUS_REGISTER, 1, self._unit)
        except ModbusDeviceError as exc:
            return f"status register 0513 unreadable: {exc}"
        status = int(words[0])
        if status == STATUS_OK:
            return None
        return f"transmitter reports a fault (status register 0513 = {status}, 1 = no errors)"


def _unit(f: FieldConfig, m: Measurement) -> str:
    return f.unit if f.unit is not None else m.unit


def _is_test_value(value: object) -> bool:
    # -123.45 is not exact in binary32: compare at the register's own precision
    return isinstance(value, float) and math.isclose(value, TEST_VALUE, abs_tol=1e-4)


@hookimpl
def floorctl_register_kinds(registry: KindRegistry) -> None:
    registry.add(
        Kind(
            name=KIND,
            driver=HmtDriver,
            transport=Transport.MODBUS,
            options=HmtOptions,
            description="Vaisala HMT330-style T/RH transmitter (built-in register map)",
            validate=validate,
        )
    )
