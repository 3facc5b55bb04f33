"""Serve every device of a devices.toml over its real protocol, until told to stop.

Simulators plug in through :data:`SIMULATORS`: kind name -> :class:`SimulatorKind`. Devices
whose kinds share a ``group`` and a ``via`` connection are served by ONE simulator (one
Modbus TCP server per ``[[modbus]]`` connection, one MQTT client per ``[[mqtt]]`` one), built
by the group's factory. A kind with a Modbus register map of its own can join the
``"modbus-tcp"`` group and be served by the same server as generic ``modbus`` devices.

Every simulator of one :func:`serve` shares one :class:`~simulators.faults.SimClock`
(``speed``); a :mod:`scenario <simulators.scenario>` drives faults on its timeline.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from attrs import field, frozen

from floorctl.config import Config, DeviceConfig, ModbusConnection, MqttConnection
from simulators.faults import SimClock
from simulators.modbus_device import ModbusSimServer, SimulatorError
from simulators.mqtt_publisher import MqttJsonPublisher
from simulators.scenario import Scenario, ScenarioRun
from simulators.signals import Signal, parse_all

__all__ = [
    "SIMULATORS",
    "SimRequest",
    "Simulator",
    "SimulatorKind",
    "build_simulators",
    "register_simulator",
    "serve",
]

log = logging.getLogger("floorctl.simulators")


class Simulator(Protocol):
    """What a factory returns: something that serves some devices until stopped."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...


@frozen
class SimRequest:
    """What a factory gets: the devices of one group on one connection."""

    config: Config
    connection: MqttConnection | ModbusConnection | None
    devices: tuple[DeviceConfig, ...]
    signals: Mapping[str, Mapping[str, Signal]]  # device id -> field -> signal
    seed: int
    bind: str | None = None  # listen address for servers instead of the connection's host
    #: simulated time for signals and faults (``--speed``); protocol timing stays real
    clock: SimClock = field(factory=SimClock)


@frozen
class SimulatorKind:
    """How to simulate devices of one kind."""

    factory: Callable[[SimRequest], Simulator]
    group: str | None = None  # default: the kind name


def _modbus(req: SimRequest) -> Simulator:
    if not isinstance(req.connection, ModbusConnection):
        raise SimulatorError(f"modbus devices need a [[modbus]] connection, got {req.connection!r}")
    return ModbusSimServer(
        req.connection,
        req.devices,
        seed=req.seed,
        signals=req.signals,
        host=req.bind,
        clock=req.clock,
    )


def _mqtt_json(req: SimRequest) -> Simulator:
    if not isinstance(req.connection, MqttConnection):
        raise SimulatorError(
            f"mqtt_json devices need an [[mqtt]] connection, got {req.connection!r}"
        )
    return MqttJsonPublisher(
        req.connection, req.devices, seed=req.seed, signals=req.signals, clock=req.clock
    )


#: kind name -> how to simulate it
SIMULATORS: dict[str, SimulatorKind] = {
    "modbus": SimulatorKind(_modbus, group="modbus-tcp"),
    "mqtt_json": SimulatorKind(_mqtt_json, group="mqtt-json"),
}


#: modules that register the simulators of the built-in device kinds when imported
BUILTIN_SIMULATOR_MODULES = (
    "simulators.balances",
    "simulators.environment",
    "simulators.equipment",
)


def load_builtin_simulators() -> None:
    for name in BUILTIN_SIMULATOR_MODULES:
        importlib.import_module(name)


def register_simulator(
    kind: str, factory: Callable[[SimRequest], Simulator], *, group: str | None = None
) -> None:
    """Add (or replace) the simulator of a kind."""
    SIMULATORS[kind] = SimulatorKind(factory, group)


def build_simulators(
    config: Config,
    *,
    seed: int | None = None,
    bind: str | None = None,
    clock: SimClock | None = None,
) -> list[Simulator]:
    """One simulator per (group, connection); devices of kinds without a simulator are
    skipped with an info line. Raises SimulateConfigError for bad ``[device.simulate]``."""
    load_builtin_simulators()
    clock = clock if clock is not None else SimClock()
    groups: dict[tuple[str, str | None], list[DeviceConfig]] = {}
    for d in config.devices:
        sk = SIMULATORS.get(d.kind)
        if sk is None:
            log.info("device %s: no simulator for kind %r; skipped", d.id, d.kind)
            continue
        groups.setdefault((sk.group or d.kind, d.via), []).append(d)
    factories = {key: _group_factory(key, devices) for key, devices in groups.items()}
    all_devices = [d for devices in groups.values() for d in devices]
    signals = parse_all(all_devices, seed=0 if seed is None else seed)
    sims: list[Simulator] = []
    for key, devices in groups.items():
        req = SimRequest(
            config=config,
            connection=config.connection(key[1]),
            devices=tuple(devices),
            signals={d.id: signals[d.id] for d in devices},
            seed=0 if seed is None else seed,
            bind=bind,
            clock=clock,
        )
        sims.append(factories[key](req))
    return sims


#: kinds any simulator of their group serves (a register map from devices.toml)
GENERIC_KINDS = frozenset({"modbus"})


def _group_factory(
    key: tuple[str, str | None], devices: Sequence[DeviceConfig]
) -> Callable[[SimRequest], Simulator]:
    """The simulator of devices that share one server (one Modbus port): the factory of
    their specific kinds; generic devices go with whichever family is there. Kinds of two
    families with simulators of their own cannot share a server yet: say so, never serve
    one family's devices with the other's models."""
    specific: dict[Callable[[SimRequest], Simulator], list[str]] = {}
    for d in devices:
        if d.kind not in GENERIC_KINDS:
            specific.setdefault(SIMULATORS[d.kind].factory, []).append(f"{d.id} ({d.kind})")
    if len(specific) > 1:
        families = "; ".join(", ".join(ids) for ids in specific.values())
        raise SimulatorError(
            f"connection {key[1]!r}: these devices need different simulators that cannot share "
            f"one server yet: {families}. Put each family on a [[modbus]] connection of its own "
            "(a gateway per system, as the demo floor does)."
        )
    if specific:
        return next(iter(specific))
    return SIMULATORS[devices[0].kind].factory


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def serve(
    config: Config,
    *,
    seed: int | None = None,
    stop: asyncio.Event,
    bind: str | None = None,
    started: Callable[[Sequence[Simulator]], None] | None = None,
    speed: float = 1.0,
    scenario: Scenario | ScenarioRun | None = None,
) -> None:
    """Serve every simulated device of ``config`` until ``stop`` is set, then stop all.

    :param seed: global signal seed; default: the scenario's ``seed``, else 0 (a device's
        ``simulate.seed`` wins over both).
    :param bind: listen address for Modbus servers instead of each connection's host.
    :param started: called with the running simulators once all (and the scenario) started.
    :param speed: simulated seconds per real second (signals and the scenario's timeline).
    :param scenario: faults to run on a timeline; pass a :class:`ScenarioRun` to keep its
        timeline. It is checked against the simulators before any starts (ScenarioError).
        The simulators keep serving after the scenario has finished, until ``stop``.
    """
    if not (isinstance(speed, int | float) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
    run = ScenarioRun(scenario) if isinstance(scenario, Scenario) else scenario
    if seed is None and run is not None:
        seed = run.scenario.seed
    clock = SimClock(speed)
    sims = build_simulators(config, seed=seed, bind=bind, clock=clock)
    if run is not None:
        run.check(sims, config)
    running: list[Simulator] = []
    try:
        for sim in sims:
            await sim.start()
            running.append(sim)
            log.info("serving %s", _short(sim.describe()))
        if not sims:
            log.warning("nothing to simulate: no device has a simulator")
        if speed != 1:
            log.info("simulated time runs at %gx real time", speed)
        if run is not None:
            run.start(clock)
        if started is not None:
            started(running)
        await stop.wait()
    finally:
        if run is not None:
            await run.stop()
        for sim in reversed(running):
            try:
                await sim.stop()
            except Exception:
                log.exception("stopping %s failed", _short(sim.describe(), 80))
        log.info("simulators stopped")
