"""Laboratory balances: ``mt_sics`` (Mettler Toledo MT-SICS over TCP) and ``mqtt_balance``.

Both give the same points and the same quality rules (docs/devices.md):

- ``weight``: good only when the balance calls it stable; a dynamic (unsettled) weight is
  ``uncertain`` with detail "dynamic"; "no stable weight" (``S I``) is ``bad`` with no value,
  never 0; overload, underload and errors the balance reports are ``device-error``;
  unreadable replies are ``bad``. The unit is the one the balance sends; a unit other than
  the point's is ``uncertain``.
- ``stable``: the stability flag the balance sent with the weight (true/false).
- ``serial``: the balance's serial number (MT-SICS ``I4``), so every weighing is recorded
  with the instrument that made it.
- ``tare`` (``mt_sics`` only): the tare value in use (``TA``), which shows tares made at the
  balance's own keys too.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from attrs import define, field, frozen

from floorctl import hookimpl
from floorctl.config import DeviceConfig, Duration, FieldConfig, Ident, Port
from floorctl.driver import (
    CommandError,
    DeviceContext,
    DeviceUnavailable,
    PolledDriver,
    SubscribedDriver,
)
from floorctl.hubs.mqtt import NotConnected
from floorctl.kinds import Kind, KindRegistry, Problems, Transport
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.plugins.generic import load_json_payload, lookup, parse_path, parse_timestamp

__all__ = [
    "GENERAL_ERRORS",
    "WEIGHT_ERRORS",
    "LineSplitter",
    "MqttBalanceDriver",
    "MqttBalanceOptions",
    "MtSicsDriver",
    "MtSicsOptions",
    "SicsParseError",
    "SicsReply",
    "SicsStatus",
    "Weighing",
    "parse_reply",
    "weighing_from_document",
    "weighing_from_reply",
]

log = logging.getLogger("floorctl.balances")

# --- MT-SICS replies (pure) ------------------------------------------------------------------


class SicsParseError(ValueError):
    """A line that is not an MT-SICS reply."""


class SicsStatus(enum.StrEnum):
    """The status letter after the command name in a reply (MT-SICS 2.1.3.1)."""

    DONE = "A"  # executed (final line)
    MORE = "B"  # not finished, more lines follow
    STABLE = "S"  # stable weight
    DYNAMIC = "D"  # dynamic (unstable) weight
    NOT_EXECUTABLE = "I"  # understood, not executable now (busy, or no stable weight in time)
    LOGICAL = "L"  # logical error: parameter not allowed
    OVERLOAD = "+"  # upper limit exceeded (weighing, zero or tare range)
    UNDERLOAD = "-"  # lower limit exceeded (weighing, zero or tare range)


#: general errors, sent alone instead of a reply (MT-SICS 2.1.3.2)
GENERAL_ERRORS: Mapping[str, str] = {
    "ES": "syntax error: the balance did not recognise the command",
    "ET": "transmission error: the balance received a faulty command (parity error or break)",
    "EL": "logical error: the balance cannot execute the command",
}

#: hardware errors carried in the weight field: "S S Error <code><trigger>" (MT-SICS 2.1.3.3)
WEIGHT_ERRORS: Mapping[str, str] = {
    "1": "boot error",
    "2": "brand error",
    "3": "checksum error",
    "9": "option fail",
    "10": "EEPROM error",
    "11": "device mismatch",
    "12": "hot plug out",
    "14": "weigh module / electronics mismatch",
    "15": "adjustment needed",
}

_TOKEN = re.compile(r'"[^"]*"|[^\s"]+')
_COMMAND = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_UNIT = re.compile(r"^[A-Za-z%][A-Za-z0-9%/.]{0,7}$")
_WEIGHT_ERROR = re.compile(r"^(\d{1,3})([A-Za-z]?)$")
MAX_LINE = 256  # an MT-SICS reply is short; anything longer is garbage
#: replies whose S / D status carries a weight (ZI answers a bare "ZI S" / "ZI D")
WEIGHT_REPLIES = frozenset({"S", "SU", "T", "TI"})


@frozen
class SicsReply:
    """One parsed reply line.

    ``command`` is the name the reply starts with (``S`` for S and SI, ``I4`` for I4 and @),
    or the general error (``ES``, ``ET``, ``EL``) with ``status`` None. ``value`` and ``unit``
    are set when the data is a number (with its unit); ``text`` is the first quoted string;
    ``weight_error`` is the code of an ``Error <code>`` weight field.
    """

    command: str
    status: SicsStatus | None
    data: tuple[str, ...] = ()
    value: float | None = None
    unit: str | None = None
    text: str | None = None
    weight_error: str | None = None
    line: str = ""

    @property
    def general_error(self) -> str | None:
        return self.command if self.status is None else None

    def answers(self, command: str) -> bool:
        """Is this the reply to ``command`` (or a general error, which answers anything)?"""
        return self.status is None or self.command == reply_name(command)

    def describe(self) -> str:
        """The meaning of a reply that is not a plain success, for people."""
        if self.status is None:
            return f"{GENERAL_ERRORS[self.command]} ({self.command})"
        if self.weight_error is not None:
            return f"{describe_weight_error(self.weight_error)} (Error {self.weight_error})"
        what = {
            SicsStatus.NOT_EXECUTABLE: "not executable now: balance busy or no stable weight",
            SicsStatus.LOGICAL: "logical error: parameter not allowed",
            SicsStatus.OVERLOAD: "upper limit exceeded",
            SicsStatus.UNDERLOAD: "lower limit exceeded",
            SicsStatus.MORE: "not finished",
            SicsStatus.DONE: "done",
            SicsStatus.STABLE: "stable",
            SicsStatus.DYNAMIC: "dynamic",
        }[self.status]
        return f"{what} ({self.command} {self.status})"


def reply_name(command: str) -> str:
    """The name a command's reply starts with: SI and S answer ``S``; @ answers ``I4``."""
    name = command.split(" ", 1)[0]
    return {"SI": "S", "SIR": "S", "@": "I4"}.get(name, name)


def describe_weight_error(code: str) -> str:
    m = _WEIGHT_ERROR.match(code)
    if m is None:
        return f"hardware error {code}"
    what = WEIGHT_ERRORS.get(m.group(1), f"hardware error {m.group(1)}")
    trigger = m.group(2).lower()
    if trigger == "t":
        return f"{what}, from terminal"
    if trigger:
        return f"{what}, from electronics"
    return what


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if text[pos : m.start()].strip():
            break
        tokens.append(m.group())
        pos = m.end()
    if text[pos:].strip():
        raise SicsParseError(f"unbalanced quote or stray character in {text!r}")
    return tokens


def parse_reply(line: bytes | str) -> SicsReply:
    """Parse one reply line (with or without its CR LF). Raise SicsParseError for garbage.

    ``S S      100.00 g`` -> stable 100.0 g; ``S D  -3.1 mg`` -> dynamic; ``S I``, ``S +``,
    ``S -``; ``ES``, ``ET``, ``EL``; ``T S  12.34 g``; ``Z A``; ``I4 A "B123456789"``;
    ``S S  Error 15t`` -> a hardware error in the weight field.
    """
    if isinstance(line, bytes):
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise SicsParseError(f"not ASCII: {line[:40]!r}") from None
    else:
        text = line
    text = text.rstrip("\r\n")
    if len(text) > MAX_LINE:
        raise SicsParseError(f"line of {len(text)} characters")
    if any(not ch.isprintable() for ch in text):
        raise SicsParseError(f"control characters in {text[:40]!r}")
    tokens = _tokens(text.strip())
    if not tokens:
        raise SicsParseError("empty line")
    head = tokens[0]
    if head in GENERAL_ERRORS:
        if len(tokens) > 1:
            raise SicsParseError(f"{head} followed by data: {text!r}")
        return SicsReply(head, None, line=text)
    if not _COMMAND.match(head):
        raise SicsParseError(f"no command name at the start of {text!r}")
    if len(tokens) < 2:
        raise SicsParseError(f"no status after {head!r}")
    try:
        status = SicsStatus(tokens[1])
    except ValueError:
        raise SicsParseError(f"unknown status {tokens[1]!r} in {text!r}") from None
    data = list(tokens[2:])
    # a sign written apart from its digits ("-   12.34") belongs to the number
    if len(data) >= 2 and data[0] in ("+", "-") and _NUMBER.match(data[1]):
        data[0:2] = [data[0] + data[1]]
    text_value = next((d[1:-1] for d in data if d.startswith('"')), None)
    value: float | None = None
    unit: str | None = None
    weight_error: str | None = None
    if data and data[0] == "Error":
        if len(data) != 2:
            raise SicsParseError(f"weight error without one code: {text!r}")
        weight_error = data[1]
    elif data and _NUMBER.match(data[0]) and len(data) <= 2:
        value = float(data[0])
        if len(data) == 2:
            if not _UNIT.match(data[1]):
                raise SicsParseError(f"bad unit {data[1]!r} in {text!r}")
            unit = data[1]
    if head in WEIGHT_REPLIES and status in (SicsStatus.STABLE, SicsStatus.DYNAMIC):
        if value is None and weight_error is None:
            raise SicsParseError(f"{head} {status} without a weight: {text!r}")
    return SicsReply(
        head,
        status,
        tuple(d[1:-1] if d.startswith('"') else d for d in data),
        value,
        unit,
        text_value,
        weight_error,
        text,
    )


@define
class LineSplitter:
    """Frames a byte stream into lines: CR LF as the protocol says, lone LF or CR tolerated,
    empty lines dropped, an overlong line cut and returned as it is (the parser rejects it)."""

    limit: int = MAX_LINE * 4
    _buffer: bytearray = field(factory=bytearray)

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        out: list[bytes] = []
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if not ends:
                break
            i = min(ends)
            line = bytes(self._buffer[:i])
            del self._buffer[: i + 1]
            if line:
                out.append(line)
        if len(self._buffer) > self.limit:
            out.append(bytes(self._buffer))
            self._buffer.clear()
        return out

    def clear(self) -> None:
        self._buffer.clear()


# --- one weighing, whatever the transport -------------------------------------------------


@frozen
class Weighing:
    """What a balance said about the load: value, unit, stability flag and their quality."""

    value: float | None
    unit: str | None
    stable: bool | None
    quality: Quality
    detail: str | None = None

    @classmethod
    def failed(cls, detail: str, quality: Quality = Quality.BAD) -> Weighing:
        return cls(None, None, None, quality, detail)


def _checked(
    value: float, unit: str | None, stable: bool | None, expected_unit: str | None
) -> Weighing:
    """The quality of a real value: good only when stable and in the point's unit."""
    why: list[str] = []
    if stable is None:
        why.append("no stability flag")
    elif not stable:
        why.append("dynamic")
    if expected_unit and unit != expected_unit:
        why.append(f"balance reports {unit}, the point is in {expected_unit}")
    if why:
        return Weighing(value, unit, stable, Quality.UNCERTAIN, "; ".join(why))
    return Weighing(value, unit, stable, Quality.GOOD)


def weighing_from_reply(reply: SicsReply, expected_unit: str | None = None) -> Weighing:
    """The weighing a reply to S or SI stands for (never a 0 for "no stable weight")."""
    if reply.status is None or reply.weight_error is not None:
        return Weighing.failed(reply.describe(), Quality.DEVICE_ERROR)
    if reply.command != "S":
        return Weighing.failed(f"unexpected reply {reply.line!r}")
    if reply.status is SicsStatus.NOT_EXECUTABLE:
        return Weighing.failed("no stable weight (S I: balance busy or not settled in time)")
    if reply.status is SicsStatus.OVERLOAD:
        return Weighing.failed("overload (S +: above the weighing range)", Quality.DEVICE_ERROR)
    if reply.status is SicsStatus.UNDERLOAD:
        return Weighing.failed(
            "underload (S -: below the weighing range; weighing pan missing?)",
            Quality.DEVICE_ERROR,
        )
    if reply.status is SicsStatus.LOGICAL:
        return Weighing.failed(reply.describe(), Quality.DEVICE_ERROR)
    if reply.status not in (SicsStatus.STABLE, SicsStatus.DYNAMIC) or reply.value is None:
        return Weighing.failed(f"unexpected reply {reply.line!r}")
    if reply.unit is None:
        return Weighing.failed(f"weight without a unit: {reply.line!r}")
    return _checked(reply.value, reply.unit, reply.status is SicsStatus.STABLE, expected_unit)


def weighing_readings(
    device_id: str,
    fields: Mapping[str, FieldConfig],
    w: Weighing,
    received: float,
    source_time: float | None = None,
) -> list[Reading]:
    """The ``weight`` and ``stable`` readings of one weighing (for the fields configured)."""
    out: list[Reading] = []
    f = fields.get("weight")
    if f is not None:
        value = w.value
        if value is not None and f.precision is not None:
            value = round(value, f.precision)
        out.append(
            Reading(
                device_id,
                f.name,
                value,
                w.quality,
                received,
                source_time,
                w.unit or f.unit,
                w.detail,
            )
        )
    f = fields.get("stable")
    if f is not None:
        if w.stable is None:
            quality = w.quality if w.quality is not Quality.UNCERTAIN else Quality.BAD
            out.append(
                Reading(device_id, f.name, None, quality, received, source_time, None, w.detail)
            )
        else:
            out.append(Reading(device_id, f.name, w.stable, Quality.GOOD, received, source_time))
    return out


def serial_reading(
    device_id: str, f: FieldConfig, serial: str | None, problem: str | None, received: float
) -> Reading:
    if serial:
        return Reading(device_id, f.name, serial, Quality.GOOD, received, unit=f.unit)
    return Reading.bad(
        device_id, f.name, problem or "serial number unknown", unit=f.unit, receive_time=received
    )


class FaultTracker:
    """Emits one device-error event when a balance starts reporting a fault, not every poll."""

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        self.current: str | None = None

    def note(self, w: Weighing) -> None:
        fault = w.detail if w.quality is Quality.DEVICE_ERROR else None
        if fault == self.current:
            return
        if fault is not None:
            self.ctx.log.warning("balance %s reports: %s", self.ctx.device.id, fault)
            self.ctx.emit_event(Event(EventKind.DEVICE_ERROR, self.ctx.device.id, fault))
        elif self.current is not None:
            self.ctx.log.info("balance %s: fault cleared (%s)", self.ctx.device.id, self.current)
        self.current = fault


# --- mt_sics ----------------------------------------------------------------------------------

WEIGH_COMMANDS = ("SI", "S")
#: the daemon gives a device command this long (floorctl.daemon.Floor.COMMAND_TIMEOUT)
DAEMON_COMMAND_TIMEOUT = 15.0
RECONNECT_MIN = 0.25


@frozen
class MtSicsOptions:
    """A Mettler Toledo balance or weigh module speaking MT-SICS over TCP."""

    host: str  # the balance's (or its serial-to-Ethernet server's) address
    port: Port  # its TCP port (4305 on many MT terminals)
    #: "SI" (immediate: stable or dynamic weight) or "S" (waits for stability; may answer S I)
    weigh_command: str = "SI"
    #: how long a reply to SI, TA or I4 may take (and a connection attempt)
    line_timeout: Duration = Duration(2.0)
    #: how long a reply to T or Z (which wait for a stable weight) may take
    stable_timeout: Duration = Duration(10.0)
    #: longest wait between reconnection attempts (doubling from 250ms)
    reconnect_max: Duration = Duration(5.0)


def mt_sics_points(device: DeviceConfig, options: Any) -> list[FieldConfig]:
    return [
        FieldConfig(name=Ident("weight"), unit="g"),
        FieldConfig(name=Ident("stable")),
        FieldConfig(name=Ident("tare"), unit="g"),
        FieldConfig(name=Ident("serial")),
    ]


def validate_mt_sics(device: DeviceConfig, options: MtSicsOptions) -> Problems:
    if not options.host.strip():
        yield ("options", "host"), "must not be empty"
    if options.weigh_command not in WEIGH_COMMANDS:
        yield (
            ("options", "weigh_command"),
            f'must be "SI" (immediate) or "S" (stable), got {options.weigh_command!r}',
        )
    if options.line_timeout <= 0:
        yield ("options", "line_timeout"), "must be longer than 0s"
    if not 0 < options.stable_timeout < DAEMON_COMMAND_TIMEOUT:
        yield (
            ("options", "stable_timeout"),
            f"must be longer than 0s and shorter than {DAEMON_COMMAND_TIMEOUT:g}s "
            "(the daemon's limit for a device command)",
        )
    if options.reconnect_max < RECONNECT_MIN:
        yield ("options", "reconnect_max"), f"must be at least {RECONNECT_MIN * 1000:g}ms"


class _Link:
    """One TCP connection to a balance: the streams and the lines read but not yet used."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.splitter = LineSplitter()
        self.lines: collections.deque[bytes] = collections.deque()

    async def send(self, command: str) -> None:
        self.writer.write(command.encode("ascii") + b"\r\n")
        await self.writer.drain()

    async def read_line(self) -> bytes:
        while not self.lines:
            chunk = await self.reader.read(1024)
            if not chunk:
                raise ConnectionError("connection closed by the balance")
            self.lines.extend(self.splitter.feed(chunk))
        return self.lines.popleft()

    def close(self) -> None:
        self.writer.close()


class MtSicsDriver(PolledDriver):
    """Polls a balance with SI (or S) over one TCP connection; tare, zero and identify.

    One command at a time (a lock); every command has a timeout; a timeout or a broken
    connection closes it (a late reply must never be taken for the next command's) and the
    next poll reconnects, with capped exponential backoff. Polls that cannot reach the
    balance raise DeviceUnavailable, so its points go stale and the floor reports comm loss.
    """

    commands = {
        "tare": "tare the balance (T: waits for a stable weight)",
        "zero": "zero the balance (Z: waits for a stable weight)",
        "identify": "read the balance's serial number (I4)",
    }

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: MtSicsOptions = ctx.options
        self.fields = {f.name: f for f in ctx.device.fields}
        self.where = f"{self.options.host}:{self.options.port}"
        #: the serial number (I4) of the balance on this connection; None until it answered
        self.serial: str | None = None
        self.serial_problem: str | None = None
        self._last_serial: str | None = None
        self.connected_since: float | None = None
        self._lock = asyncio.Lock()
        self._link: _Link | None = None
        self._backoff = RECONNECT_MIN
        self._retry_at = 0.0
        self._down: str | None = None  # why the balance is unreachable (logged once)
        self._tare_supported = True
        self._faults = FaultTracker(ctx)

    # --- connection ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What a status display or a record needs to know about the balance."""
        return {
            "address": self.where,
            "serial": self.serial,
            "serial_problem": self.serial_problem,
            "connected": self._link is not None,
            "connected_since": self.connected_since,
            "fault": self._faults.current,
        }

    async def start(self) -> None:
        """Connect and read the serial number; an unreachable balance is retried by poll()."""
        try:
            async with self._lock:
                await self._ensure_link()
        except DeviceUnavailable as exc:
            self.ctx.counters.error(str(exc))

    async def stop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
            try:
                async with asyncio.timeout(1.0):
                    await link.writer.wait_closed()
            except (OSError, TimeoutError):
                pass

    def _unavailable(self, why: str) -> DeviceUnavailable:
        """Note a failure: back off, log the first one of an outage, build the exception."""
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, float(self.options.reconnect_max))
        if self._down is None:
            self.ctx.log.warning("balance %s: %s", self.device.id, why)
        else:
            self.ctx.log.debug("balance %s: still unreachable: %s", self.device.id, why)
        self._down = why
        return DeviceUnavailable(f"balance {self.device.id} ({self.where}): {why}")

    def _drop(self) -> None:
        link, self._link = self._link, None
        self.connected_since = None
        if link is not None:
            link.close()

    async def _ensure_link(self) -> _Link:
        """The open connection, or a new one (serial number read); call with the lock held."""
        if self._link is not None:
            return self._link
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise DeviceUnavailable(
                f"balance {self.device.id} ({self.where}): {self._down}; "
                f"next attempt in {wait:.1f}s"
            )
        try:
            async with asyncio.timeout(float(self.options.line_timeout)):
                reader, writer = await asyncio.open_connection(
                    self.options.host, int(self.options.port)
                )
        except TimeoutError:
            raise self._unavailable("connection attempt timed out") from None
        except OSError as exc:
            raise self._unavailable(f"cannot connect: {exc.strerror or exc}") from None
        self._link = _Link(reader, writer)
        self.connected_since = time.time()
        self._tare_supported = True  # asked again on every connection
        self.serial = None  # until this balance says who it is
        try:
            reply: SicsReply | None = await self._exchange("I4", float(self.options.line_timeout))
        except SicsParseError as exc:
            reply = None
            self.serial_problem = f"unreadable reply to I4: {exc}"
        if reply is not None:
            self._identified(reply)
        self.ctx.log.info(
            "balance %s connected at %s, serial %s",
            self.device.id,
            self.where,
            self.serial or f"unknown ({self.serial_problem})",
        )
        return self._link

    def _identified(self, reply: SicsReply) -> str | None:
        """Take the serial number from an I4 reply; a changed one is an event for QA."""
        serial = reply.text or (reply.data[0] if reply.data else None)
        if reply.status is not SicsStatus.DONE or not serial:
            self.serial, self.serial_problem = None, f"no serial number: {reply.describe()}"
            return None
        if self._last_serial is not None and serial != self._last_serial:
            why = f"serial number changed from {self._last_serial} to {serial}: balance replaced?"
            self.ctx.log.warning("balance %s: %s", self.device.id, why)
            self.ctx.emit_event(Event(EventKind.DEVICE_ERROR, self.device.id, why))
        self.serial, self.serial_problem, self._last_serial = serial, None, serial
        return serial

    async def _exchange(self, command: str, timeout: float) -> SicsReply:
        """Send one command and read its reply on the open link (lock held).

        Raises SicsParseError for a garbage reply (the link stays up) and DeviceUnavailable
        when the link broke or timed out (the link is closed). Replies to other commands
        (late ones) are skipped.
        """
        link = self._link
        assert link is not None
        try:
            async with asyncio.timeout(timeout):
                await link.send(command)
                while True:
                    reply = parse_reply(await link.read_line())
                    if reply.answers(command):
                        break
                    self.ctx.log.debug("balance %s: skipped %r", self.device.id, reply.line)
        except SicsParseError:
            raise
        except TimeoutError:
            self._drop()
            raise self._unavailable(f"no reply to {command} within {timeout:g}s") from None
        except OSError as exc:  # ConnectionError is an OSError
            self._drop()
            raise self._unavailable(f"connection lost: {exc}") from None
        except BaseException:  # cancelled (the poll's timeout): the reply may still come
            self._drop()
            self._unavailable(f"no reply to {command} before the poll timed out")
            raise
        if self._down is not None:
            self.ctx.log.info("balance %s: answering again", self.device.id)
            self._down = None
        self._backoff = RECONNECT_MIN
        return reply

    async def transact(self, command: str, timeout: float | None = None) -> SicsReply:
        """One command, one reply, under the lock (connecting first if needed)."""
        async with self._lock:
            await self._ensure_link()
            return await self._exchange(command, timeout or float(self.options.line_timeout))

    # --- polling ---------------------------------------------------------------------

    async def poll(self) -> list[Reading]:
        out: list[Reading] = []
        device_id = self.device.id
        weighed = True  # the weigh command was understood (so an ES to TA means "no TA")
        if "weight" in self.fields or "stable" in self.fields:
            command = self.options.weigh_command
            timeout = float(
                self.options.stable_timeout if command == "S" else self.options.line_timeout
            )
            unit = self.fields["weight"].unit if "weight" in self.fields else None
            try:
                reply = await self.transact(command, timeout)
                w = weighing_from_reply(reply, unit)
                weighed = reply.general_error != "ES"
            except SicsParseError as exc:
                w = Weighing.failed(f"unreadable reply to {command}: {exc}")
            self._faults.note(w)
            out += weighing_readings(device_id, self.fields, w, time.time())
        f = self.fields.get("tare")
        if f is not None:
            out.append(await self._tare_reading(f, weighed))
        f = self.fields.get("serial")
        if f is not None:
            out.append(serial_reading(device_id, f, self.serial, self.serial_problem, time.time()))
        return out

    async def _tare_reading(self, f: FieldConfig, weighed: bool) -> Reading:
        device_id = self.device.id
        if not self._tare_supported:
            return Reading.bad(device_id, f.name, "the balance has no TA command", unit=f.unit)
        try:
            reply = await self.transact("TA")
        except SicsParseError as exc:
            return Reading.bad(device_id, f.name, f"unreadable reply to TA: {exc}", unit=f.unit)
        now = time.time()
        if reply.general_error == "ES" and weighed:
            self._tare_supported = False
            self.ctx.log.info("balance %s does not know TA; no tare readings", device_id)
        if reply.status is not SicsStatus.DONE or reply.value is None:
            fault = reply.status is None and (reply.command != "ES" or not weighed)
            quality = Quality.DEVICE_ERROR if fault else Quality.BAD
            return Reading.bad(
                device_id, f.name, f"no tare value: {reply.describe()}", unit=f.unit,
                quality=quality, receive_time=now,
            )  # fmt: skip
        value = reply.value if f.precision is None else round(reply.value, f.precision)
        return Reading(device_id, f.name, value, Quality.GOOD, now, unit=reply.unit or f.unit)

    # --- commands --------------------------------------------------------------------

    async def command(self, name: str, args: Mapping[str, Any]) -> str:
        if name not in self.commands:
            raise CommandError(f"device {self.device.id!r} has no command {name!r}")
        if args:
            raise CommandError(f"{name} takes no arguments, got {', '.join(sorted(args))}")
        sics = {"tare": "T", "zero": "Z", "identify": "I4"}[name]
        timeout = float(
            self.options.stable_timeout if name != "identify" else self.options.line_timeout
        )
        try:
            reply = await self.transact(sics, timeout)
        except DeviceUnavailable as exc:
            raise CommandError(str(exc)) from None
        except SicsParseError as exc:
            raise CommandError(f"unreadable reply to {sics}: {exc}") from None
        if name == "identify":
            serial = self._identified(reply)
            if serial is None:
                raise CommandError(f"the balance gives no serial number: {reply.describe()}")
            return f"serial number {serial}"
        if name == "tare":
            if reply.status is SicsStatus.STABLE and reply.value is not None:
                return f"tared at {reply.data[0]} {reply.unit or ''}".rstrip()
            raise CommandError(f"tare not done: {_refusal(reply, 'taring')}")
        if reply.status is SicsStatus.DONE:
            return "zeroed"
        raise CommandError(f"zero not done: {_refusal(reply, 'zero setting')}")


def _refusal(reply: SicsReply, what: str) -> str:
    if reply.status is SicsStatus.OVERLOAD:
        return f"upper limit of the {what} range exceeded ({reply.command} +)"
    if reply.status is SicsStatus.UNDERLOAD:
        return f"lower limit of the {what} range exceeded ({reply.command} -)"
    if reply.status is SicsStatus.NOT_EXECUTABLE:
        return f"balance busy or no stable weight in time ({reply.command} I)"
    return reply.describe()


# --- mqtt_balance -----------------------------------------------------------------------------


@frozen
class MqttBalanceOptions:
    """A balance behind a gateway that publishes JSON on an MQTT topic."""

    state_topic: str
    weight_path: str = "weight"
    #: where the unit is; "" if the gateway sends none (the weight field's unit is used)
    unit_path: str = "unit"
    stable_path: str = "stable"
    #: where the serial number is; "" if the gateway sends none
    serial_path: str = "serial"
    #: where an error text is (null or absent when there is none); "" to ignore
    error_path: str = "error"
    timestamp_path: str | None = None
    #: topic for tare / zero requests; no topic, no commands
    command_topic: str | None = None
    qos: int = 1
    max_payload: int = 65536


def mqtt_balance_points(device: DeviceConfig, options: Any) -> list[FieldConfig]:
    return [
        FieldConfig(name=Ident("weight"), unit="g"),
        FieldConfig(name=Ident("stable")),
        FieldConfig(name=Ident("serial")),
    ]


def _topic_problem(topic: str) -> str | None:
    if not topic or "#" in topic or "+" in topic:
        return "must be a topic without wildcards"
    return None


def validate_mqtt_balance(device: DeviceConfig, options: MqttBalanceOptions) -> Problems:
    if why := _topic_problem(options.state_topic):
        yield ("options", "state_topic"), why
    if options.command_topic is not None:
        if why := _topic_problem(options.command_topic):
            yield ("options", "command_topic"), why
        elif options.command_topic == options.state_topic:
            yield ("options", "command_topic"), "must differ from state_topic"
    if options.qos not in (0, 1, 2):
        yield ("options", "qos"), "must be 0, 1 or 2"
    if options.max_payload < 1:
        yield ("options", "max_payload"), "must be at least 1"
    paths = {
        "weight_path": options.weight_path,
        "stable_path": options.stable_path,
        "unit_path": options.unit_path,
        "serial_path": options.serial_path,
        "error_path": options.error_path,
        "timestamp_path": options.timestamp_path,
    }
    for key, path in paths.items():
        if path is None or (path == "" and key not in ("weight_path", "stable_path")):
            continue
        try:
            parse_path(path)
        except ValueError as exc:
            yield ("options", key), str(exc)


_MISSING = object()


def _get(doc: Any, path: tuple[str | int, ...] | None) -> Any:
    if path is None:
        return _MISSING
    try:
        return lookup(doc, path)
    except LookupError:
        return _MISSING


def weighing_from_document(
    doc: Any,
    weight: tuple[str | int, ...],
    stable: tuple[str | int, ...],
    unit: tuple[str | int, ...] | None,
    error: tuple[str | int, ...] | None,
    expected_unit: str | None,
) -> Weighing:
    """The weighing a gateway's JSON document stands for (paths already parsed)."""
    fault = _get(doc, error)
    if fault is not _MISSING and fault not in (None, False, ""):
        return Weighing.failed(f"balance error: {fault}", Quality.DEVICE_ERROR)
    raw = _get(doc, weight)
    if raw is _MISSING:
        return Weighing.failed(f"no weight in the payload ({'.'.join(map(str, weight))})")
    if raw is None:
        return Weighing.failed("no weight (null)")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return Weighing.failed(f"weight is not a number: {raw!r:.40}")
    if not math.isfinite(raw):
        return Weighing.failed("weight is " + ("NaN" if math.isnan(raw) else "infinite"))
    if unit is not None:
        got = _get(doc, unit)
        if not isinstance(got, str) or not got:
            return Weighing.failed("weight without a unit")
        unit_text: str | None = got
    else:
        unit_text = expected_unit
    flag = _get(doc, stable)
    if flag is not _MISSING and not isinstance(flag, bool):
        w = _checked(float(raw), unit_text, None, expected_unit)
        return Weighing(w.value, w.unit, None, w.quality, f"stability flag {flag!r:.20} unreadable")
    return _checked(float(raw), unit_text, None if flag is _MISSING else flag, expected_unit)


class MqttBalanceDriver(SubscribedDriver):
    """Weights published as JSON by a balance gateway; tare and zero sent to its command
    topic (when one is configured: otherwise the device has no commands)."""

    commands = {
        "tare": "ask the gateway to tare the balance",
        "zero": "ask the gateway to zero the balance",
    }

    def __init__(self, ctx: DeviceContext) -> None:
        super().__init__(ctx)
        self.options: MqttBalanceOptions = ctx.options
        o = self.options
        if not o.command_topic:
            self.commands = {}  # type: ignore[misc]  # this balance takes no commands
        self.fields = {f.name: f for f in ctx.device.fields}
        self._weight = parse_path(o.weight_path)
        self._stable = parse_path(o.stable_path)
        self._unit = parse_path(o.unit_path) if o.unit_path else None
        self._serial = parse_path(o.serial_path) if o.serial_path else None
        self._error = parse_path(o.error_path) if o.error_path else None
        self._ts = parse_path(o.timestamp_path) if o.timestamp_path else None
        #: the serial number in the last message
        self.serial: str | None = None
        self._faults = FaultTracker(ctx)

    def status(self) -> dict[str, Any]:
        return {
            "state_topic": self.options.state_topic,
            "command_topic": self.options.command_topic,
            "serial": self.serial,
            "fault": self._faults.current,
        }

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.options.state_topic, self.options.qos)]

    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        doc = load_json_payload(payload, self.options.max_payload)
        if not isinstance(doc, dict):
            raise ValueError("the payload is not a JSON object")
        source_time = None
        if self._ts is not None:
            try:
                source_time = parse_timestamp(lookup(doc, self._ts))
            except (LookupError, ValueError) as exc:
                self.ctx.counters.error(f"{topic}: timestamp: {exc}")
        weight_field = self.fields.get("weight")
        w = weighing_from_document(
            doc,
            self._weight,
            self._stable,
            self._unit,
            self._error,
            weight_field.unit if weight_field else None,
        )
        self._faults.note(w)
        out = weighing_readings(self.device.id, self.fields, w, received, source_time)
        f = self.fields.get("serial")
        if f is not None:
            out.append(self._serial_reading(f, doc, received))
        return out

    def _serial_reading(self, f: FieldConfig, doc: Any, received: float) -> Reading:
        if self._serial is None:
            return serial_reading(self.device.id, f, None, "the gateway sends none", received)
        raw = _get(doc, self._serial)
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw:
            return serial_reading(
                self.device.id, f, None, "no serial number in the payload", received
            )
        if self.serial is not None and raw != self.serial:
            why = f"serial number changed from {self.serial} to {raw}: balance replaced?"
            self.ctx.log.warning("balance %s: %s", self.device.id, why)
            self.ctx.emit_event(Event(EventKind.DEVICE_ERROR, self.device.id, why))
        self.serial = raw
        return serial_reading(self.device.id, f, raw, None, received)

    async def command(self, name: str, args: Mapping[str, Any]) -> str:
        topic = self.options.command_topic
        if not topic or name not in self.commands:
            raise CommandError(f"device {self.device.id!r} has no command {name!r}")
        if args:
            raise CommandError(f"{name} takes no arguments, got {', '.join(sorted(args))}")
        request_id = uuid.uuid4().hex
        body = {"command": name, "id": request_id, "time": time.time()}
        try:
            await self.ctx.hub.publish(topic, json.dumps(body), qos=1)
        except NotConnected as exc:
            raise CommandError(f"cannot reach the gateway: {exc}") from None
        return f"{name} requested on {topic} (id {request_id}); the next weights show it"


# --- registration -------------------------------------------------------------------------------


def _kinds() -> Iterator[Kind]:
    yield Kind(
        name="mt_sics",
        driver=MtSicsDriver,
        transport=Transport.NONE,
        options=MtSicsOptions,
        description="Mettler Toledo balance speaking MT-SICS over TCP (weight, tare, serial)",
        validate=validate_mt_sics,
        points=mt_sics_points,
    )
    yield Kind(
        name="mqtt_balance",
        driver=MqttBalanceDriver,
        transport=Transport.MQTT,
        options=MqttBalanceOptions,
        description="balance behind a gateway publishing JSON weights on MQTT",
        validate=validate_mqtt_balance,
        points=mqtt_balance_points,
    )


@hookimpl
def floorctl_register_kinds(registry: KindRegistry) -> None:
    for kind in _kinds():
        registry.add(kind)
