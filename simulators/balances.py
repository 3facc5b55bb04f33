"""Simulated balances: MT-SICS TCP servers (``mt_sics``) and MQTT gateways (``mqtt_balance``).

Both share one weighing model (:class:`BalanceModel`) in simulated time (``req.clock``):

- the load on the pan follows ``[device.simulate.weight]`` (``base`` and ``steps`` give the
  load in the weight field's unit, ``noise`` the readout noise when stable) or, without that
  table, a seeded schedule: every 20 s (simulated) the pan is emptied or a load of 2 g to
  60 % of capacity is put on it;
- after every change of load the reading is dynamic for a settle period (2 s simulated: a
  damped swing towards the new load), then stable with tiny noise;
- zero (``Z``) and tare (``T``) change what is displayed; zero works within ±2 % of
  capacity, and both wait for a stable weight; above capacity the balance is overloaded,
  more than 5 % of capacity below zero it is underloaded.

Faults (``start_fault`` / ``end_fault``, or :meth:`set_fault` in tests):

- ``silent``: MT-SICS: connections are accepted, commands read, nothing answered;
  MQTT: nothing is published.
- ``malformed``: every reply (every message) is garbage: ``params["payload"]`` (str or bytes)
  or a built-in one.
- ``excursion``: ``field = "weight"`` and ``to`` (a load, in the weight unit) or ``by`` (an
  offset to the scheduled load), optionally ``ramp`` (simulated seconds or "30s" of movement).
  The reading is dynamic until the load has settled, and again when the fault ends.
- ``overload`` / ``underload``: the weighing range is exceeded: ``S +`` / ``S -`` (and
  ``T +``, ``Z +`` ...); MQTT: ``weight`` null and ``error`` "overload" / "underload".
- ``unstable``: the weight never settles: ``SI`` answers ``S D``, ``S``, ``T`` and ``Z``
  answer ``I`` after the stability timeout; MQTT: ``stable`` false.
- ``error``: every command is answered with a general error, ``params["code"]`` ``ES``,
  ``ET`` or ``EL`` (default); MQTT: ``error`` names it.
- ``hardware``: a hardware error in the weight field: ``S S Error <code>``
  (``params["code"]``, default ``15t``: adjustment needed, from terminal); other
  commands answer ``EL``; MQTT: ``error`` "Error 15t".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiomqtt
from attrs import define, field, frozen

from floorctl.config import DeviceConfig, MqttConnection
from floorctl.plugins.balances import (
    GENERAL_ERRORS,
    LineSplitter,
    MqttBalanceOptions,
    MtSicsOptions,
    describe_weight_error,
)
from simulators.faults import Fault, SimClock, UnsupportedFault
from simulators.modbus_device import SimulatorError
from simulators.mqtt_publisher import build_document, parse_path, put_path
from simulators.serve import SimRequest, register_simulator
from simulators.signals import (
    Excursion,
    FaultParamError,
    Signal,
    check_fault_params,
    parse_excursion,
    parse_simulate,
    stable_seed,
)

__all__ = [
    "FAULTS",
    "BalanceModel",
    "MqttBalancePublisher",
    "MtSicsSimulator",
    "SeededLoads",
    "SignalLoads",
    "serial_number",
]

log = logging.getLogger("floorctl.simulators.balances")

#: fault names the balance simulators support
FAULTS = (
    "silent",
    "malformed",
    "excursion",
    "overload",
    "underload",
    "unstable",
    "error",
    "hardware",
)
DEFAULT_CAPACITY = 220.0  # in the weight unit: an analytical balance's 220 g
SETTLE = 2.0  # simulated seconds from a load change to a stable reading
ZERO_RANGE = 0.02  # zero works within ±2 % of capacity
UNDERLOAD = 0.05  # more than 5 % of capacity below zero: underload (pan lifted)
SLOT = 20.0  # seeded schedule: simulated seconds between load changes
MALFORMED_LINE = b"\xfeS?S 12,,3 \x00g\r\n"
MALFORMED_JSON = b'{"weight": 12.3,, "stable": tru'
_HARDWARE_CODE = re.compile(r"^\d{1,3}[tb]?$")

LoadAt = tuple[float, float, float]  # (load, previous load, time of the last change)


def serial_number(seed: int, device_id: str) -> str:
    """A stable, plausible serial number ("B" and 9 digits) for a simulated balance."""
    return f"B{stable_seed(seed, device_id, 'serial') % 10**9:09d}"


@frozen
class SignalLoads:
    """Loads from ``[device.simulate.weight]``: ``base`` + ``steps`` (+ drift)."""

    signal: Signal

    def __call__(self, t: float) -> LoadAt:
        since = max((s.at for s in self.signal.steps if s.at <= t), default=-math.inf)
        previous = self.signal.trend(since - 1e-6) if math.isfinite(since) else 0.0
        return self.signal.trend(t), previous, since


@frozen
class SeededLoads:
    """Every ``slot`` seconds the pan is emptied or gets a new load (seeded, random access)."""

    seed: int
    capacity: float
    decimals: int = 2
    slot: float = SLOT

    def load(self, k: int) -> float:
        if k <= 0:
            return 0.0
        rng = random.Random(stable_seed(self.seed, "load", k))
        if rng.random() < 0.35:
            return 0.0
        return round(rng.uniform(2.0, 0.6 * self.capacity), self.decimals)

    def __call__(self, t: float) -> LoadAt:
        k = math.floor(max(t, 0.0) / self.slot)
        now, before = self.load(k), self.load(k - 1)
        return now, before, (k * self.slot if now != before else -math.inf)


@define
class _Excursion:
    start: float
    before: float  # the load when it started
    to: float | None
    by: float | None
    ramp: float

    def target(self, scheduled: float) -> float:
        return self.to if self.to is not None else scheduled + (self.by or 0.0)


@frozen
class Sample:
    """What the balance would display now."""

    net: float  # displayed weight: gross - zero - tare
    stable: bool
    range: str | None  # "+" overload, "-" underload, None within range


@define(eq=False)
class BalanceModel:
    """One simulated balance: loads in simulated time, zero, tare, faults."""

    device_id: str
    serial: str
    unit: str
    loads: Callable[[float], LoadAt]
    signal: Signal = Signal(base=0.0)  # the weight field's signal (for fault checks)
    capacity: float = DEFAULT_CAPACITY
    decimals: int = 2
    noise: float = 0.003
    settle: float = SETTLE
    seed: int = 0
    zero: float = 0.0  # the gross load that reads 0
    tare: float = 0.0
    faults: dict[str, Fault] = field(factory=dict)
    requests: int = 0  # commands received (MT-SICS) or samples made (MQTT)
    _excursion: _Excursion | None = None
    _released: tuple[float, float] | None = None  # (time, load) when an excursion ended
    _rng: random.Random = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(stable_seed(self.seed, self.device_id, "noise"))

    # --- the load -------------------------------------------------------------------------

    def load_at(self, t: float) -> LoadAt:
        load, previous, since = self.loads(t)
        ex = self._excursion
        if ex is not None:
            target = ex.target(load)
            if ex.ramp > 0 and t < ex.start + ex.ramp:
                moved = ex.before + (target - ex.before) * (t - ex.start) / ex.ramp
                return moved, ex.before, t  # still moving: never settled
            return target, ex.before, ex.start + ex.ramp
        if self._released is not None and self._released[0] > since:
            return load, self._released[1], self._released[0]
        return load, previous, since

    def start_excursion(self, t: float, excursion: Excursion) -> None:
        self._excursion = _Excursion(
            t, self.load_at(t)[0], excursion.to, excursion.by, excursion.ramp
        )

    def end_excursion(self, t: float) -> None:
        if self._excursion is not None:
            self._released = (t, self.load_at(t)[0])
            self._excursion = None

    def settled_in(self, t: float) -> float | None:
        """Simulated seconds until the reading is stable (0 if it is), None if never."""
        if "unstable" in self.faults:
            return None
        _, _, since = self.load_at(t)
        return max(0.0, since + self.settle - t)

    def gross(self, t: float) -> tuple[float, bool]:
        """The gross reading (before zero and tare) and whether it is stable."""
        load, previous, since = self.load_at(t)
        if "unstable" in self.faults:
            swing = max(0.05, abs(load) * 0.004)
            return load + swing * math.sin(2 * math.pi * t / 0.9) + self._noise(swing / 3), False
        age = t - since
        if age < self.settle:
            k = math.exp(-4.0 * age / self.settle)
            swing = (previous - load) * k * math.cos(2 * math.pi * age / (self.settle / 3))
            return load + swing + self._noise(self.noise * 5), False
        return load + self._noise(self.noise), True

    def _noise(self, sigma: float) -> float:
        return self._rng.gauss(0.0, sigma) if sigma > 0 else 0.0

    def sample(self, t: float) -> Sample:
        gross, stable = self.gross(t)
        above_zero = gross - self.zero
        where = None
        if "overload" in self.faults or above_zero > self.capacity:
            where = "+"
        elif "underload" in self.faults or above_zero < -UNDERLOAD * self.capacity:
            where = "-"
        return Sample(self.round(gross - self.zero - self.tare), stable, where)

    def round(self, value: float) -> float:
        value = round(value, self.decimals)
        return 0.0 if value == 0 else value  # no "-0.00"

    def fmt(self, value: float) -> str:
        """A weight as MT-SICS writes it: 10 characters, right-aligned, fixed decimals."""
        return f"{self.round(value):>10.{self.decimals}f}"

    # --- zero and tare (the caller waited for stability where the command says so) -------

    def do_tare(self, t: float) -> str | None:
        """Tare now; None if done, else the status letter that refuses it ("+", "-")."""
        s = self.sample(t)
        if s.range is not None:
            return s.range
        value = s.net + self.tare  # net before any tare: the container's weight
        if value < 0:
            return "-"
        self.tare = self.round(value)
        return None

    def do_zero(self, t: float) -> str | None:
        """Zero now (clears the tare); None if done, else "+" / "-" (zero range exceeded)."""
        gross, _ = self.gross(t)
        if "overload" in self.faults or gross > ZERO_RANGE * self.capacity:
            return "+"
        if "underload" in self.faults or gross < -ZERO_RANGE * self.capacity:
            return "-"
        self.zero, self.tare = gross, 0.0
        return None


def _check_fault(
    models: Mapping[str, BalanceModel], device_id: str, fault: Fault
) -> Excursion | None:
    """Raise UnsupportedFault or FaultParamError; an excursion comes back parsed."""
    model = models.get(device_id)
    if model is None:
        raise ValueError(f"no simulated balance {device_id!r} (have: {', '.join(models)})")
    if fault.name not in FAULTS:
        raise UnsupportedFault(
            f"balance {device_id!r}: no fault {fault.name!r} (supported: {', '.join(FAULTS)})"
        )
    p = fault.params
    if fault.name == "excursion":
        excursion = parse_excursion(device_id, fault, {"weight": model.signal})
        if excursion.to is not None and not math.isfinite(excursion.to):
            raise FaultParamError(device_id, fault.name, "to", "a load is a finite number")
        return excursion
    allowed = {"error": ("code",), "hardware": ("code",), "malformed": ("payload",)}
    check_fault_params(device_id, fault, allowed.get(fault.name, ()))
    if fault.name == "error" and p.get("code", "EL") not in GENERAL_ERRORS:
        raise FaultParamError(
            device_id, fault.name, "code", f"must be one of {', '.join(GENERAL_ERRORS)}"
        )
    if fault.name == "hardware" and not _HARDWARE_CODE.match(str(p.get("code", "15t"))):
        raise FaultParamError(
            device_id, fault.name, "code", 'a number and a trigger letter, e.g. "15t"'
        )
    if fault.name == "malformed" and not isinstance(p.get("payload", b""), str | bytes):
        raise FaultParamError(device_id, fault.name, "payload", "must be a string")
    return None


class _Faults:
    """The Faultable protocol over ``self.models`` (shared by both simulators)."""

    models: dict[str, BalanceModel]
    clock: SimClock

    def device_ids(self) -> list[str]:
        return list(self.models)

    def check_fault(self, device_id: str, fault: Fault) -> None:
        _check_fault(self.models, device_id, fault)

    def start_fault(self, device_id: str, fault: Fault) -> None:
        excursion = _check_fault(self.models, device_id, fault)
        model = self.models[device_id]
        if excursion is not None:
            model.start_excursion(self.clock.now(), excursion)
        model.faults[fault.name] = fault
        log.info("balance %s: fault %s started %s", device_id, fault.name, dict(fault.params))

    def end_fault(self, device_id: str, name: str) -> None:
        model = self.models[device_id]
        if name == "excursion":
            model.end_excursion(self.clock.now())
        model.faults.pop(name, None)
        log.info("balance %s: fault %s ended", device_id, name)

    def end_excursion(self, device_id: str, field: str) -> None:
        """End the excursion of ``field`` (a balance has one field: weight)."""
        self.end_fault(device_id, "excursion")

    def set_fault(self, device_id: str, name: str, **params: Any) -> None:
        """Start a fault now (tests): ``set_fault("bal-1", "excursion", to=150.0)``."""
        self.start_fault(device_id, Fault(name, params))


def _model(req: SimRequest, d: DeviceConfig, **tuning: Any) -> BalanceModel:
    weight = d.get_field("weight")
    unit = (weight.unit if weight else None) or "g"
    decimals = weight.precision if weight is not None and weight.precision is not None else 2
    capacity = float(tuning.pop("capacity", DEFAULT_CAPACITY))
    seed = int(d.simulate.get("seed", req.seed)) if isinstance(d.simulate, dict) else req.seed
    signals = req.signals.get(d.id) or parse_simulate(d, seed=req.seed)
    table = d.simulate.get("weight") if isinstance(d.simulate, dict) else None
    loads: Callable[[float], LoadAt]
    noise = 0.3 * 10**-decimals
    if isinstance(table, dict) and "weight" in signals:
        loads = SignalLoads(signals["weight"])
        if "noise" in table:
            noise = signals["weight"].noise
    else:
        loads = SeededLoads(stable_seed(seed, d.id), capacity, decimals)
    return BalanceModel(
        d.id,
        serial_number(seed, d.id),
        unit,
        loads,
        signals.get("weight", Signal(base=0.0)),
        capacity=capacity,
        decimals=decimals,
        noise=noise,
        seed=seed,
        **tuning,
    )


# --- MT-SICS over TCP ---------------------------------------------------------------------------


@define(eq=False)
class _Endpoint:
    model: BalanceModel
    host: str
    port: int
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(factory=set)


class MtSicsSimulator(_Faults):
    """One MT-SICS TCP server per ``mt_sics`` device, on its ``options.host``:``port``
    (or ``bind``). Commands: SI, S, T, TI, TA, TAC, Z, ZI, I2, I4, @; others answer ES.

    :param stability_timeout: real seconds S, T and Z wait for a stable weight before they
        answer ``I`` (a balance's stability timeout).
    :param tuning: ``capacity``, ``settle``, ``noise`` for every balance's model.
    """

    def __init__(self, req: SimRequest, *, stability_timeout: float = 3.0, **tuning: Any) -> None:
        self.clock = req.clock
        self.stability_timeout = stability_timeout
        self.models: dict[str, BalanceModel] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        for d in req.devices:
            options = req.config.device_options.get(d.id)
            if not isinstance(options, MtSicsOptions):
                raise SimulatorError(f"device {d.id!r} is not an mt_sics device")
            model = _model(req, d, **tuning)
            self.models[d.id] = model
            self.endpoints[d.id] = _Endpoint(model, req.bind or options.host, int(options.port))

    def port(self, device_id: str) -> int:
        """The TCP port a balance listens on (the bound one once started)."""
        return self.endpoints[device_id].port

    async def start(self) -> None:
        try:
            for ep in self.endpoints.values():
                if ep.server is not None:
                    continue
                try:
                    ep.server = await asyncio.start_server(
                        lambda r, w, ep=ep: self._client(ep, r, w), ep.host, ep.port
                    )
                except OSError as exc:
                    raise SimulatorError(
                        f"mt_sics simulator {ep.model.device_id!r}: cannot listen on "
                        f"{ep.host}:{ep.port}: {exc.strerror or exc}"
                    ) from None
                ep.port = ep.server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the listeners and every client connection."""
        for ep in self.endpoints.values():
            server, ep.server = ep.server, None
            if server is not None:
                server.close()
            for w in list(ep.writers):
                w.close()
            if server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 2.0)

    async def __aenter__(self) -> MtSicsSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def describe(self) -> str:
        where = ", ".join(
            f"{ep.model.device_id} on {ep.host}:{ep.port} (serial {ep.model.serial})"
            for ep in self.endpoints.values()
        )
        return f"mt_sics balances: {where or 'none'}"

    async def _client(
        self, ep: _Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ep.writers.add(writer)
        splitter = LineSplitter()
        try:
            while True:
                chunk = await reader.read(1024)
                if not chunk:
                    break
                for line in splitter.feed(chunk):
                    answer = await self.respond(ep.model, line.decode("ascii", "replace"))
                    if answer is not None:
                        writer.write(answer)
                        await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            ep.writers.discard(writer)
            writer.close()

    async def respond(self, bal: BalanceModel, line: str) -> bytes | None:
        """The reply to one command line (None: no reply at all)."""
        bal.requests += 1
        faults = bal.faults
        if "silent" in faults:
            return None
        if "malformed" in faults:
            payload = faults["malformed"].params.get("payload", MALFORMED_LINE)
            return payload if isinstance(payload, bytes) else payload.encode()
        if "error" in faults:
            return _line(str(faults["error"].params.get("code", "EL")))
        command, _, arg = line.strip().partition(" ")
        if "hardware" in faults and command in ("S", "SI"):
            return _line(f"S S     Error {faults['hardware'].params.get('code', '15t')}")
        if "hardware" in faults and command in ("T", "TI", "Z", "ZI"):
            return _line("EL")
        t = self.clock.now()
        if command in ("S", "T", "Z"):
            t, settled = await self._wait_stable(bal)
            if not settled:
                return _line(f"{command} I")
        s = bal.sample(t)
        match command:
            case "SI" | "S":
                if s.range is not None:
                    return _line(f"S {s.range}")
                return _line(f"S {'S' if s.stable else 'D'} {bal.fmt(s.net)} {bal.unit}")
            case "T" | "TI":
                refused = bal.do_tare(t)
                if refused is not None:
                    return _line(f"{command} {refused}")
                flag = "S" if command == "T" or s.stable else "D"
                return _line(f"{command} {flag} {bal.fmt(bal.tare)} {bal.unit}")
            case "TA":
                if arg:
                    return _line("TA L")  # presetting a tare is not simulated
                return _line(f"TA A {bal.fmt(bal.tare)} {bal.unit}")
            case "TAC":
                bal.tare = 0.0
                return _line("TAC A")
            case "Z" | "ZI":
                refused = bal.do_zero(t)
                if refused is not None:
                    return _line(f"{command} {refused}")
                return _line("Z A" if command == "Z" else f"ZI {'S' if s.stable else 'D'}")
            case "I4" | "@":
                return _line(f'I4 A "{bal.serial}"')
            case "I2":
                capacity = bal.fmt(bal.capacity).strip()
                return _line(f'I2 A "floorctl-sim MT-SICS {capacity} {bal.unit}"')
            case _:
                return _line("ES")

    async def _wait_stable(self, bal: BalanceModel) -> tuple[float, bool]:
        """Wait (real time) for a stable weight, at most ``stability_timeout``."""
        deadline = time.monotonic() + self.stability_timeout
        while True:
            t = self.clock.now()
            left = bal.settled_in(t)
            if left == 0:
                return t, True
            wait = deadline - time.monotonic()
            if wait <= 0:
                return t, False
            step = wait if left is None else min(wait, self.clock.real_seconds(left) + 0.001)
            await asyncio.sleep(step)


def _line(text: str) -> bytes:
    return text.encode("ascii") + b"\r\n"


# --- MQTT balance gateway -------------------------------------------------------------------


@define(eq=False)
class _Gateway:
    model: BalanceModel
    options: MqttBalanceOptions
    interval: float
    pending: list[str] = field(factory=list)  # tare / zero asked for, done when stable
    next_due: float = 0.0
    commands: int = 0


class MqttBalancePublisher(_Faults):
    """Publishes every ``mqtt_balance`` device of one ``[[mqtt]]`` connection as a gateway
    would: a JSON document per device every ``interval`` on its ``state_topic`` (paths from
    its options), and ``{"command": "tare" | "zero"}`` taken on its ``command_topic`` (done
    at the next stable weight). Reconnects with capped backoff; no store-and-forward."""

    def __init__(self, req: SimRequest, *, host: str | None = None, **tuning: Any) -> None:
        if not isinstance(req.connection, MqttConnection):
            raise SimulatorError(
                f"mqtt_balance devices need an [[mqtt]] connection, got {req.connection!r}"
            )
        self.connection = req.connection
        self.host = host or req.connection.host
        self.clock = req.clock
        self.models: dict[str, BalanceModel] = {}
        self.gateways: dict[str, _Gateway] = {}
        self.published = 0
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for d in req.devices:
            options = req.config.device_options.get(d.id)
            if not isinstance(options, MqttBalanceOptions):
                raise SimulatorError(f"device {d.id!r} is not an mqtt_balance device")
            try:
                for path in (options.weight_path, options.stable_path):
                    parse_path(path)
            except ValueError as exc:
                raise SimulatorError(f"device {d.id!r}: {exc}") from None
            model = _model(req, d, **tuning)
            self.models[d.id] = model
            self.gateways[d.id] = _Gateway(model, options, float(d.interval))

    def describe(self) -> str:
        ids = ", ".join(self.gateways) or "none"
        return f"mqtt_balance gateway {self.connection.name!r} ({self.host}): {ids}"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mqtt-balance-sim")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    async def __aenter__(self) -> MqttBalancePublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def document(self, gw: _Gateway, t: float) -> dict[str, Any]:
        """The JSON document a device publishes now (pending tare/zero applied if stable)."""
        bal, o = gw.model, gw.options
        bal.requests += 1
        if gw.pending and bal.settled_in(t) == 0:
            for command in gw.pending:
                refused = bal.do_tare(t) if command == "tare" else bal.do_zero(t)
                if refused is not None:
                    log.info("balance %s: %s refused (%s)", bal.device_id, command, refused)
            gw.pending.clear()
        s = bal.sample(t)
        weight: float | None = s.net
        error: str | None = None
        if "error" in bal.faults:
            code = str(bal.faults["error"].params.get("code", "EL"))
            weight, error = None, f"{code}: {GENERAL_ERRORS[code]}"
        elif "hardware" in bal.faults:
            code = str(bal.faults["hardware"].params.get("code", "15t"))
            weight, error = None, f"Error {code}: {describe_weight_error(code)}"
        elif s.range is not None:
            weight, error = None, "overload" if s.range == "+" else "underload"
        items: list[tuple[tuple[str | int, ...], Any]] = [
            (parse_path(o.weight_path), weight),
            (parse_path(o.stable_path), s.stable and weight is not None),
        ]
        if o.unit_path:
            items.append((parse_path(o.unit_path), bal.unit))
        if o.serial_path:
            items.append((parse_path(o.serial_path), bal.serial))
        if o.error_path:
            items.append((parse_path(o.error_path), error))
        doc = build_document(items)
        if o.timestamp_path:
            put_path(doc, parse_path(o.timestamp_path), round(self.clock.wall(), 3))
        return doc

    def payload(self, gw: _Gateway, t: float) -> bytes | None:
        faults = gw.model.faults
        if "silent" in faults:
            return None
        if "malformed" in faults:
            raw = faults["malformed"].params.get("payload", MALFORMED_JSON)
            return raw if isinstance(raw, bytes) else raw.encode()
        return json.dumps(self.document(gw, t), separators=(",", ":")).encode()

    def command(self, gw: _Gateway, payload: bytes) -> None:
        """Take a request from the command topic."""
        try:
            body = json.loads(payload)
            command = body.get("command") if isinstance(body, dict) else None
        except ValueError:
            command = None
        if command not in ("tare", "zero"):
            log.warning("balance %s: ignored command %r", gw.model.device_id, payload[:80])
            return
        gw.commands += 1
        gw.pending.append(command)

    async def _run(self) -> None:
        c = self.connection
        delay = 0.1
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    int(c.port),
                    identifier=f"floorctl-sim-bal-{c.name}-{uuid.uuid4().hex[:8]}",
                    username=c.username,
                    password=c.password,
                    logger=logging.getLogger("floorctl.simulators.balances.mqtt"),
                ) as client:
                    delay = 0.1
                    by_topic = {
                        gw.options.command_topic: gw
                        for gw in self.gateways.values()
                        if gw.options.command_topic
                    }
                    for topic in by_topic:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._publish(client))
                        async for m in client.messages:
                            gw = by_topic.get(m.topic.value)
                            if gw is not None and isinstance(m.payload, bytes | bytearray):
                                self.command(gw, bytes(m.payload))
            except aiomqtt.MqttError as exc:
                log.debug("mqtt_balance simulator %r: %s", c.name, exc)
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _publish(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        gateways = list(self.gateways.values())
        for gw in gateways:
            gw.next_due = loop.time()
        while gateways:
            now = loop.time()
            t = self.clock.now()
            for gw in gateways:
                if gw.next_due > now:
                    continue
                gw.next_due = max(gw.next_due + gw.interval, now)
                payload = self.payload(gw, t)
                if payload is not None:
                    await client.publish(gw.options.state_topic, payload, qos=gw.options.qos)
                    self.published += 1
            await asyncio.sleep(max(0.0, min(gw.next_due for gw in gateways) - loop.time()))


# --- registration (at import: simulators.serve imports this module) ------------------------------


def _mt_sics(req: SimRequest) -> MtSicsSimulator:
    return MtSicsSimulator(req)


def _mqtt_balance(req: SimRequest) -> MqttBalancePublisher:
    return MqttBalancePublisher(req)


register_simulator("mt_sics", _mt_sics, group="mt-sics")
register_simulator("mqtt_balance", _mqtt_balance, group="mqtt-balance")
