"""One pymodbus async TCP client per ``[[modbus]]`` connection.

One request at a time per connection under an ``asyncio.Lock``; each request has a timeout;
after a failure the connection is closed and not retried before a capped exponential backoff
has passed (requests meanwhile fail fast with DeviceUnavailable, so a dead PLC costs nothing).
The first error of an outage is logged as a warning, the rest at debug, until recovery.
pymodbus's own reconnect loop is switched off: this hub owns the connection's life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from attrs import define, field
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from floorctl.aio import reraise_cancel
from floorctl.config import ModbusConnection
from floorctl.decode import RegisterTable
from floorctl.driver import DeviceUnavailable
from floorctl.model import Event, EventKind

log = logging.getLogger("floorctl.modbus")

#: unanswered requests in a row (no answer from any unit in between) after which the
#: connection is closed and retried with backoff
NO_ANSWER_LIMIT = 3

_READ = {
    RegisterTable.HOLDING: "read_holding_registers",
    RegisterTable.INPUT: "read_input_registers",
    RegisterTable.COIL: "read_coils",
    RegisterTable.DISCRETE: "read_discrete_inputs",
}


class ModbusDeviceError(Exception):
    """The device answered with a Modbus exception (illegal address, device failure, ...)."""

    def __init__(self, code: int, request: str) -> None:
        self.code = code
        super().__init__(
            f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) for {request}"
        )


EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@define
class ModbusCounters:
    requests: int = 0
    failures: int = 0
    exceptions: int = 0  # Modbus exception responses (the device answered)
    connects: int = 0
    disconnects: int = 0

    def as_payload(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "exceptions": self.exceptions,
            "connects": self.connects,
            "disconnects": self.disconnects,
        }


@define(eq=False)
class ModbusHub:
    conn: ModbusConnection
    on_event: Callable[[Event], None] = lambda event: None
    counters: ModbusCounters = field(factory=ModbusCounters)
    _lock: asyncio.Lock = field(factory=asyncio.Lock)
    _client: AsyncModbusTcpClient | None = None
    _retry_at: float = 0.0
    _backoff: float = 0.0
    _down_since: float | None = None
    _no_answer: int = 0  # unanswered requests in a row, across the connection's units

    @property
    def name(self) -> str:
        return self.conn.name

    @property
    def up(self) -> bool:
        return self._client is not None and self._client.connected

    async def run(self) -> None:
        """Hubs are driven by requests; this only keeps the task-group shape of MqttHub."""
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._retry_at:
            raise DeviceUnavailable(
                f"modbus {self.name}: connection down, next attempt in {self._retry_at - now:.1f}s"
            )
        if self._client is None:
            self._client = AsyncModbusTcpClient(
                self.conn.host,
                port=int(self.conn.port),
                timeout=float(self.conn.timeout),
                retries=0,
                reconnect_delay=0,  # we own reconnection and its backoff
                name=f"floorctl-{self.name}",
            )
        try:
            async with asyncio.timeout(float(self.conn.timeout) + 0.5):
                ok = await self._client.connect()
        except (TimeoutError, OSError, ModbusException) as exc:
            ok = False
            why = str(exc) or type(exc).__name__
        else:
            why = "connection refused or unreachable"
        if not ok:
            reraise_cancel()
            self._failed(f"cannot connect to {self.conn.host}:{self.conn.port}: {why}")
            raise DeviceUnavailable(f"modbus {self.name}: {why}")
        # connected: the bookkeeping below runs even if a cancellation was swallowed meanwhile
        # (pymodbus's wait_for, Python 3.11), then the cancellation is raised again
        self.counters.connects += 1
        if self._down_since is not None:
            log.warning(
                "modbus %s: reconnected to %s:%s after %.1fs",
                self.name,
                self.conn.host,
                self.conn.port,
                time.monotonic() - self._down_since,
            )
            self.on_event(Event(EventKind.HUB_UP, self.name, "reconnected"))
        self._down_since = None
        self._backoff = 0.0
        self._no_answer = 0
        reraise_cancel()
        return self._client

    def _failed(self, why: str) -> None:
        self.counters.failures += 1
        self._backoff = min(max(self._backoff * 2, 0.25), float(self.conn.reconnect_max))
        self._retry_at = time.monotonic() + self._backoff
        if self._client is not None:
            self._client.close()
            self.counters.disconnects += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("modbus %s: %s", self.name, why)
            self.on_event(Event(EventKind.HUB_DOWN, self.name, why))
        else:
            log.debug("modbus %s: still down: %s", self.name, why)

    async def _call(self, request: str, make: Callable[[AsyncModbusTcpClient], Any]) -> Any:
        """One request under the lock, with the connection's timeout and failure handling."""
        async with self._lock:
            client = await self._ensure_connected()
            self.counters.requests += 1
            try:
                async with asyncio.timeout(float(self.conn.timeout)):
                    rr = await make(client)
                reraise_cancel()  # pymodbus's wait_for can swallow a cancellation on 3.11
            except (TimeoutError, ModbusIOException):
                reraise_cancel()
                # No answer (or a late one): that request fails, the connection stays, so
                # one silent unit does not starve its neighbours on the same gateway. Only
                # NO_ANSWER_LIMIT unanswered requests in a row mean the link itself is dead.
                self._no_answer += 1
                why = f"no answer within {float(self.conn.timeout):g}s"
                if self._no_answer >= NO_ANSWER_LIMIT:
                    self._failed(f"{request}: {why} ({self._no_answer} requests in a row)")
                raise DeviceUnavailable(f"modbus {self.name}: {request}: {why}") from None
            except (OSError, ModbusException) as exc:
                reraise_cancel()
                why = str(exc) or type(exc).__name__
                self._failed(f"{request}: {why}")
                raise DeviceUnavailable(f"modbus {self.name}: {request}: {why}") from None
            self._no_answer = 0
            if rr.isError():
                self.counters.exceptions += 1
                raise ModbusDeviceError(getattr(rr, "exception_code", 0), request)
            return rr

    async def write_register(self, address: int, value: int, unit: int) -> None:
        """Write one holding register (function 6: some devices accept no other write)."""
        await self._call(
            f"write holding {address} unit {unit}",
            lambda c: c.write_register(address, value, device_id=unit),
        )

    async def write_registers(self, address: int, values: list[int], unit: int) -> None:
        """Write holding registers (function 16); raise DeviceUnavailable or ModbusDeviceError."""
        await self._call(
            f"write holding {address}..{address + len(values) - 1} unit {unit}",
            lambda c: c.write_registers(address, values, device_id=unit),
        )

    async def write_coil(self, address: int, value: bool, unit: int) -> None:
        """Write one coil (function 5); raise DeviceUnavailable or ModbusDeviceError."""
        await self._call(
            f"write coil {address} unit {unit}",
            lambda c: c.write_coil(address, value, device_id=unit),
        )

    async def read(
        self, table: RegisterTable, address: int, count: int, unit: int
    ) -> list[int] | list[bool]:
        """Read ``count`` registers or bits; raise DeviceUnavailable or ModbusDeviceError."""
        name = _READ[table]
        rr = await self._call(
            f"{table} {address}..{address + count - 1} unit {unit}",
            lambda c: getattr(c, name)(address, count=count, device_id=unit),
        )
        if table.is_bits:
            return list(rr.bits[:count])
        return list(rr.registers[:count])
