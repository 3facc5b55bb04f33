"""Balances end to end: a real Floor against the MT-SICS TCP simulator and the MQTT balance
gateway simulator, on 127.0.0.1 with a private broker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from floorctl import hookimpl
from floorctl.commands import CommandRequest
from floorctl.config import Config
from floorctl.driver import CommandError, DeviceContext
from floorctl.model import Event, EventKind, Quality, Reading
from floorctl.plugins.balances import MtSicsDriver
from simulators.balances import MqttBalancePublisher, MtSicsSimulator, serial_number
from simulators.faults import SimClock
from simulators.serve import SimRequest
from simulators.signals import parse_all
from tests.helpers import free_port

from .floorkit import make_config, running_floor, wait_until

pytestmark = pytest.mark.integration

SPEED = 4.0  # simulated seconds per real second: a 2 s settle lasts 0.5 s


class Events:
    """A plugin that keeps every floor event."""

    def __init__(self) -> None:
        self.seen: list[Event] = []

    @hookimpl
    def floorctl_on_event(self, event: Event) -> None:
        self.seen.append(event)

    def of(self, kind: EventKind, source: str) -> list[str]:
        return [e.detail for e in self.seen if e.kind is kind and e.source == source]


def sim_request(config: Config, kind: str, *, seed: int = 0) -> SimRequest:
    devices = tuple(d for d in config.devices if d.kind == kind)
    via = devices[0].via
    return SimRequest(
        config,
        config.connection(via) if via else None,
        devices,
        parse_all(devices, seed=seed),
        seed=seed,
        clock=SimClock(speed=SPEED),
    )


def last(seen: list[Reading], device: str, point: str) -> Reading | None:
    return next((r for r in reversed(seen) if r.key == (device, point)), None)


async def wait_reading(
    seen: list[Reading],
    device: str,
    point: str,
    predicate: Callable[[Reading], bool],
    timeout: float = 15.0,
) -> Reading:
    """The first reading of the point, from now on, that satisfies predicate."""
    start = len(seen)
    found: list[Reading] = []

    def check() -> bool:
        found[:] = [r for r in seen[start:] if r.key == (device, point) and predicate(r)]
        return bool(found)

    await wait_until(check, timeout, f"{device}/{point}")
    return found[0]


async def command(floor, device: str, name: str) -> dict:
    return await floor.run_command(CommandRequest.new(device, name))


def good(value: float) -> Callable[[Reading], bool]:
    return lambda r: r.quality is Quality.GOOD and r.value == value


# --- mt_sics -----------------------------------------------------------------------------------

SICS = """
[floor]
id = "bal"

[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-bal-${PORT}"

[[device]]
id = "bal-1"
kind = "mt_sics"
interval = "200ms"

[device.options]
host = "127.0.0.1"
port = "${SICS_1}"
reconnect_max = "400ms"

[device.simulate.weight]
base = 100.0
noise = 0.0

[[device]]
id = "bal-s"
kind = "mt_sics"
interval = "500ms"
timeout = "450ms"

[device.options]
host = "127.0.0.1"
port = "${SICS_2}"
weigh_command = "S"

[[device.fields]]
name = "weight"

[device.simulate.weight]
base = 20.0
noise = 0.0
"""


def sics_env(mosquitto) -> dict[str, int]:
    return {"PORT": mosquitto.port, "SICS_1": free_port(), "SICS_2": free_port()}


async def test_mt_sics_weights_tare_and_zero(mosquitto) -> None:
    env = sics_env(mosquitto)
    config, _, _ = make_config(SICS, **env)
    async with (
        MtSicsSimulator(sim_request(config, "mt_sics")) as sim,
        running_floor(SICS, **env) as (floor, seen),
    ):
        serial = sim.models["bal-1"].serial
        weight = await wait_reading(seen, "bal-1", "weight", good(100.0))
        assert weight.unit == "g" and weight.detail is None
        assert last(seen, "bal-1", "stable").value is True
        assert last(seen, "bal-1", "serial").value == serial
        assert last(seen, "bal-1", "tare").value == 0.0
        assert floor.devices["bal-1"].driver.status()["serial"] == serial
        # a device that lists only weight gets only weight; S (stable) works too
        await wait_reading(seen, "bal-s", "weight", good(20.0))
        assert {r.point for r in seen if r.device == "bal-s"} == {"weight"}

        answer = await command(floor, "bal-1", "tare")
        assert (answer["status"], answer["result"]) == ("done", "tared at 100.00 g")
        await wait_reading(seen, "bal-1", "weight", good(0.0))
        await wait_reading(seen, "bal-1", "tare", good(100.0))

        # a container of 1.5 g less, put on over 2 s: dynamic until it settles, then stable
        sim.set_fault("bal-1", "excursion", field="weight", to=98.5, ramp=2.0)
        dynamic = await wait_reading(seen, "bal-1", "weight", lambda r: r.detail == "dynamic")
        assert dynamic.quality is Quality.UNCERTAIN and dynamic.value is not None
        stable = await wait_reading(seen, "bal-1", "weight", good(-1.5))
        assert last(seen, "bal-1", "stable").value is True and stable.unit == "g"

        # zero refuses 98.5 g on the pan (outside ±2 % of capacity) ...
        answer = await command(floor, "bal-1", "zero")
        assert answer["status"] == "failed"
        assert answer["error"] == (
            "zero not done: upper limit of the zero setting range exceeded (Z +)"
        )
        # ... and zeroes a 1.2 g residue, clearing the tare
        sim.set_fault("bal-1", "excursion", field="weight", to=1.2)
        await wait_reading(seen, "bal-1", "weight", good(-98.8))
        answer = await command(floor, "bal-1", "zero")
        assert (answer["status"], answer["result"]) == ("done", "zeroed")
        await wait_reading(seen, "bal-1", "weight", good(0.0))
        await wait_reading(seen, "bal-1", "tare", good(0.0))
        sim.end_fault("bal-1", "excursion")  # the 100 g load is back, on the new zero
        await wait_reading(seen, "bal-1", "weight", good(98.8))

        answer = await command(floor, "bal-1", "identify")
        assert answer["result"] == f"serial number {serial}"
        answer = await command(floor, "bal-1", "calibrate")
        assert answer["status"] == "refused" and "(it has: identify, tare, zero)" in answer["error"]
        # a weight that is not a value (bad, device error) never carries one, 0 included
        assert all(
            r.value is None
            for r in seen
            if r.point == "weight" and r.quality in (Quality.BAD, Quality.DEVICE_ERROR)
        )


async def test_mt_sics_no_stable_weight_and_device_errors(mosquitto) -> None:
    env = sics_env(mosquitto)
    config, _, _ = make_config(SICS, **env)
    events = Events()
    async with (
        MtSicsSimulator(sim_request(config, "mt_sics"), stability_timeout=0.2) as sim,
        running_floor(SICS, plugins=[events], **env) as (floor, seen),
    ):
        await wait_reading(seen, "bal-1", "weight", good(100.0))
        await wait_reading(seen, "bal-s", "weight", good(20.0))

        sim.set_fault("bal-s", "unstable")
        sim.set_fault("bal-1", "unstable")
        no_weight = await wait_reading(seen, "bal-s", "weight", lambda r: r.quality is Quality.BAD)
        assert no_weight.value is None and no_weight.detail.startswith("no stable weight")
        dynamic = await wait_reading(seen, "bal-1", "weight", lambda r: r.detail == "dynamic")
        assert dynamic.quality is Quality.UNCERTAIN and 99 < dynamic.value < 101
        answer = await command(floor, "bal-1", "tare")
        assert answer["error"] == "tare not done: balance busy or no stable weight in time (T I)"
        sim.end_fault("bal-s", "unstable")
        sim.end_fault("bal-1", "unstable")
        await wait_reading(seen, "bal-s", "weight", good(20.0))

        cases = [
            ("overload", {}, Quality.DEVICE_ERROR, "overload (S +: above the weighing range)"),
            ("underload", {}, Quality.DEVICE_ERROR, "underload (S -: below the weighing range"),
            ("error", {}, Quality.DEVICE_ERROR, "logical error: the balance cannot execute"),
            ("error", {"code": "ET"}, Quality.DEVICE_ERROR, "transmission error"),
            ("hardware", {}, Quality.DEVICE_ERROR, "adjustment needed, from terminal"),
            ("malformed", {}, Quality.BAD, "unreadable reply to SI: not ASCII"),
        ]
        for name, params, quality, detail in cases:
            sim.set_fault("bal-1", name, **params)
            r = await wait_reading(seen, "bal-1", "weight", lambda r, q=quality: r.quality is q)
            assert r.value is None and r.detail.startswith(detail), (name, r.detail)
            sim.end_fault("bal-1", name)
            await wait_reading(seen, "bal-1", "weight", good(100.0))
        faults = events.of(EventKind.DEVICE_ERROR, "bal-1")
        assert faults[0] == "overload (S +: above the weighing range)"
        assert len(faults) == 5  # once per fault, not once per poll; garbage is not a fault


async def test_mt_sics_comm_loss_and_recovery(mosquitto) -> None:
    env = sics_env(mosquitto)
    config, _, _ = make_config(SICS, **env)
    events = Events()
    async with running_floor(SICS, plugins=[events], **env) as (floor, seen):
        rt = floor.devices["bal-1"]
        # nothing listens yet: connection refused, no reading, comm loss
        await wait_until(lambda: rt.state == "comm-loss", 15, "comm loss while unreachable")
        assert not [r for r in seen if r.device == "bal-1" and r.quality is not Quality.STALE]
        assert "cannot connect" in rt.ctx.counters.last_error
        async with MtSicsSimulator(sim_request(config, "mt_sics")) as sim:
            await wait_reading(seen, "bal-1", "weight", good(100.0))
            assert rt.state == "online"
            # (a loaded machine may add a brief loss and recovery of its own: at least one)
            assert "readings again" in events.of(EventKind.COMM_RESTORED, "bal-1")

            sim.set_fault("bal-1", "silent")  # accepts, reads, never answers
            await wait_until(lambda: rt.state == "comm-loss", 15, "comm loss while silent")
            stale = last(seen, "bal-1", "weight")
            assert stale.quality is Quality.STALE and stale.value == 100.0
            sim.end_fault("bal-1", "silent")
            await wait_reading(seen, "bal-1", "weight", good(100.0))
            assert rt.state == "online"
            assert len(events.of(EventKind.COMM_LOSS, "bal-1")) == 2

        # another balance on the same address: the new serial number is an event for QA
        async with MtSicsSimulator(sim_request(config, "mt_sics", seed=7)):
            new = serial_number(7, "bal-1")
            await wait_reading(seen, "bal-1", "serial", lambda r: r.value == new, timeout=8)
        assert events.of(EventKind.DEVICE_ERROR, "bal-1") == [
            f"serial number changed from {serial_number(0, 'bal-1')} to {new}: balance replaced?"
        ]


class ScriptedBalance:
    """A TCP peer that answers as the protocol text says a balance may: ``script(connection
    number, command)`` gives the (delay, bytes) to send. Records what it was asked."""

    def __init__(self, script: Callable[[int, str], list[tuple[float, bytes]]]) -> None:
        self.script = script
        self.asked: list[tuple[int, str]] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ScriptedBalance:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = self.connections
        self.writers.append(writer)
        try:
            while line := await reader.readuntil(b"\r\n"):
                command = line.decode().strip()
                self.asked.append((n, command))
                for delay, data in self.script(n, command):
                    await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


SCRIPTED = """
[[mqtt]]
name = "b"

[[device]]
id = "bal-x"
kind = "mt_sics"
interval = "1s"

[device.options]
host = "127.0.0.1"
port = "${PORT}"
reconnect_max = "300ms"

[[device.fields]]
name = "weight"

[[device.fields]]
name = "serial"
"""


async def test_mt_sics_driver_against_a_scripted_balance() -> None:
    """Stray and late replies are never taken for the answer; framing variants are read."""

    def script(conn: int, command: str) -> list[tuple[float, bytes]]:
        polls = sum(1 for c, cmd in balance.asked if c == conn and cmd == "SI")
        if command == "I4":
            return [(0, b'I4 A "X1"\r\n' if conn == 1 else b'I4 A "X1"\r')]  # CR alone
        if command == "SI" and conn == 1 and polls == 1:
            # a reply to some earlier T, then the weight in two TCP segments
            return [(0, b"T S      5.00 g\r\nS S  "), (0.05, b"    1.00 g\r\n")]
        if command == "SI" and conn == 1:
            return [(0.4, b"S S      9.99 g\r\n")]  # after the poll gave up
        if command == "SI":
            return [(0, b"S D      2.00 g\n")]  # LF alone
        return [(0, b"ES\r\n")]

    async with ScriptedBalance(script) as balance:
        config, _, _ = make_config(SCRIPTED, PORT=balance.port)
        ctx = DeviceContext(config.device("bal-x"), config.device_options["bal-x"], None)
        driver = MtSicsDriver(ctx)
        await driver.start()
        assert driver.serial == "X1"
        weight, serial = await driver.poll()
        assert (weight.value, weight.quality, serial.value) == (1.0, Quality.GOOD, "X1")
        with pytest.raises(TimeoutError):  # what PolledDriver's timeout does to a slow poll
            async with asyncio.timeout(0.15):
                await driver.poll()
        await asyncio.sleep(0.45)  # the late 9.99 g arrives on the abandoned connection
        weight, _ = await driver.poll()
        assert (weight.value, weight.quality, weight.detail) == (2.0, Quality.UNCERTAIN, "dynamic")
        assert balance.connections == 2 and (2, "I4") in balance.asked
        await driver.stop()
    with pytest.raises(CommandError, match=r"balance bal-x \(127.0.0.1:\d+\): cannot connect"):
        await driver.command("tare", {})


# --- mqtt_balance ---------------------------------------------------------------------------

GATEWAY = """
[floor]
id = "gw"

[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-gw-${PORT}"

[[device]]
id = "bal-2"
kind = "mqtt_balance"
via = "b"
interval = "200ms"

[device.options]
state_topic = "lab/bal-2/state"
command_topic = "lab/bal-2/cmd"
timestamp_path = "ts"

[device.simulate.weight]
base = 50.0
noise = 0.0

[[device]]
id = "bal-3"
kind = "mqtt_balance"
via = "b"
interval = "200ms"

[device.options]
state_topic = "lab/bal-3/state"
weight_path = "reading.value"
stable_path = "reading.stable"
unit_path = ""

[device.simulate.weight]
base = 5.0
noise = 0.0
"""


async def test_mqtt_balance_end_to_end(mosquitto) -> None:
    env = {"PORT": mosquitto.port}
    config, _, _ = make_config(GATEWAY, **env)
    events = Events()
    async with (
        MqttBalancePublisher(sim_request(config, "mqtt_balance")) as sim,
        running_floor(GATEWAY, plugins=[events], **env) as (floor, seen),
    ):
        weight = await wait_reading(seen, "bal-2", "weight", good(50.0))
        assert weight.unit == "g" and weight.source_time is not None
        assert last(seen, "bal-2", "serial").value == sim.models["bal-2"].serial
        assert last(seen, "bal-2", "stable").value is True
        await wait_reading(seen, "bal-3", "weight", good(5.0))  # custom paths, no unit sent

        answer = await command(floor, "bal-2", "tare")
        assert answer["status"] == "done" and "tare requested on lab/bal-2/cmd" in answer["result"]
        await wait_reading(seen, "bal-2", "weight", good(0.0))
        answer = await command(floor, "bal-3", "tare")  # no command_topic, no commands
        assert answer["status"] == "refused" and "(it has: none)" in answer["error"]

        sim.set_fault("bal-2", "unstable")
        r = await wait_reading(seen, "bal-2", "weight", lambda r: r.quality is Quality.UNCERTAIN)
        assert r.detail == "dynamic" and r.value is not None
        sim.end_fault("bal-2", "unstable")
        sim.set_fault("bal-2", "overload")
        r = await wait_reading(seen, "bal-2", "weight", lambda r: r.quality is Quality.DEVICE_ERROR)
        assert (r.value, r.detail) == (None, "balance error: overload")
        assert events.of(EventKind.DEVICE_ERROR, "bal-2") == ["balance error: overload"]
        sim.end_fault("bal-2", "overload")
        sim.set_fault("bal-2", "malformed")
        r = await wait_reading(seen, "bal-2", "weight", lambda r: r.quality is Quality.BAD)
        assert r.value is None and r.detail.startswith("JSONDecodeError")
        sim.end_fault("bal-2", "malformed")
        await wait_reading(seen, "bal-2", "weight", good(0.0))

        rt = floor.devices["bal-2"]
        sim.set_fault("bal-2", "silent")
        await wait_until(lambda: rt.state == "comm-loss", 15, "comm loss")
        assert floor.devices["bal-3"].state == "online"  # its neighbour keeps publishing
        sim.end_fault("bal-2", "silent")
        await wait_reading(seen, "bal-2", "weight", good(0.0))
        assert rt.state == "online"
        assert "readings again" in events.of(EventKind.COMM_RESTORED, "bal-2")
        # the gateway did tare exactly once
        assert sim.gateways["bal-2"].commands == 1


def test_cli_lists_only_the_commands_a_gateway_balance_has(tmp_path) -> None:
    """A gateway balance without a command topic has no commands; the CLI says so."""
    from click.testing import CliRunner

    from floorctl.cli import Ctx, cli
    from floorctl.pluginmanager import get_plugin_manager

    cfg = tmp_path / "devices.toml"
    base = """
[[mqtt]]
name = "local"
[[device]]
id = "bal-2"
kind = "mqtt_balance"
via = "local"
[device.options]
state_topic = "lab/bal-2/state"
"""
    cfg.write_text(base)
    runner = CliRunner()
    result = runner.invoke(cli, ["device", "-c", str(cfg), "bal-2"], obj=Ctx(get_plugin_manager()))
    assert result.exit_code == 0 and result.output.strip() == "bal-2 (mqtt_balance) has no commands"
    cfg.write_text(base + 'command_topic = "lab/bal-2/cmd"\n')
    result = runner.invoke(cli, ["device", "-c", str(cfg), "bal-2"], obj=Ctx(get_plugin_manager()))
    assert result.exit_code == 0 and {line.split()[0] for line in result.output.splitlines()} == {
        "tare",
        "zero",
    }
