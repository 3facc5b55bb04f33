"""Serve every device of a devices.toml over its real protocol, until told to stop.

Simulators plug in through :data:`SIMULATORS`: kind name -> :class:`SimulatorKind`. Devices
whose kinds share a ``group`` and a ``via`` connection are served by ONE simulator (one
Modbus TCP server per ``[[modbus]]`` connection, one MQTT client per ``[[mqtt]]`` one), built
by the group's factory. A kind with a Modbus register map of its own can join the
``"modbus-tcp"`` group and be served by the same server as generic ``modbus`` devices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from attrs import frozen

from floorctl.config import Config, DeviceConfig, ModbusConnection, MqttConnection
from simulators.modbus_device import ModbusSimServer, SimulatorError
from simulators.mqtt_publisher import MqttJsonPublisher
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


@frozen
class SimulatorKind:
    """How to simulate devices of one kind."""

    factory: Callable[[SimRequest], Simulator]
    group: str | None = None  # default: the kind name


def _modbus(req: SimRequest) -> Simulator:
    if not isinstance(req.connection, ModbusConnection):
        raise SimulatorError(f"modbus devices need a [[modbus]] connection, got {req.connection!r}")
    return ModbusSimServer(
        req.connection, req.devices, seed=req.seed, signals=req.signals, host=req.bind
    )


def _mqtt_json(req: SimRequest) -> Simulator:
    if not isinstance(req.connection, MqttConnection):
        raise SimulatorError(
            f"mqtt_json devices need an [[mqtt]] connection, got {req.connection!r}"
        )
    return MqttJsonPublisher(req.connection, req.devices, seed=req.seed, signals=req.signals)


#: kind name -> how to simulate it
SIMULATORS: dict[str, SimulatorKind] = {
    "modbus": SimulatorKind(_modbus, group="modbus-tcp"),
    "mqtt_json": SimulatorKind(_mqtt_json, group="mqtt-json"),
}


def register_simulator(
    kind: str, factory: Callable[[SimRequest], Simulator], *, group: str | None = None
) -> None:
    """Add (or replace) the simulator of a kind."""
    SIMULATORS[kind] = SimulatorKind(factory, group)


def build_simulators(
    config: Config, *, seed: int | None = None, bind: str | None = None
) -> list[Simulator]:
    """One simulator per (group, connection); devices of kinds without a simulator are
    skipped with an info line. Raises SimulateConfigError for bad ``[device.simulate]``."""
    groups: dict[tuple[str, str | None], list[DeviceConfig]] = {}
    factories: dict[tuple[str, str | None], Callable[[SimRequest], Simulator]] = {}
    for d in config.devices:
        sk = SIMULATORS.get(d.kind)
        if sk is None:
            log.info("device %s: no simulator for kind %r; skipped", d.id, d.kind)
            continue
        key = (sk.group or d.kind, d.via)
        groups.setdefault(key, []).append(d)
        factories.setdefault(key, sk.factory)
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
        )
        sims.append(factories[key](req))
    return sims


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def serve(
    config: Config,
    *,
    seed: int | None = None,
    stop: asyncio.Event,
    bind: str | None = None,
    started: Callable[[Sequence[Simulator]], None] | None = None,
) -> None:
    """Serve every simulated device of ``config`` until ``stop`` is set, then stop all.

    :param seed: global signal seed (default 0; a device's ``simulate.seed`` wins).
    :param bind: listen address for Modbus servers instead of each connection's host.
    :param started: called with the running simulators once all have started.
    """
    sims = build_simulators(config, seed=seed, bind=bind)
    running: list[Simulator] = []
    try:
        for sim in sims:
            await sim.start()
            running.append(sim)
            log.info("serving %s", _short(sim.describe()))
        if not sims:
            log.warning("nothing to simulate: no device has a simulator")
        if started is not None:
            started(running)
        await stop.wait()
    finally:
        for sim in reversed(running):
            try:
                await sim.stop()
            except Exception:
                log.exception("stopping %s failed", _short(sim.describe(), 80))
        log.info("simulators stopped")
