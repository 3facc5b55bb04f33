"""Device commands: MQTT request/reply through the daemon, and `floorctl device`."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiomqtt
import pytest
from click.testing import CliRunner

from floorctl import hookimpl
from floorctl.cli import Ctx, cli
from floorctl.config import parse_config
from floorctl.daemon import Floor
from floorctl.driver import CommandError, PolledDriver
from floorctl.kinds import Kind, Transport
from floorctl.model import Quality, Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store
from floorctl.store.users import Users

from .floorkit import Watcher, make_users, running_floor, signer, wait_until

pytestmark = pytest.mark.integration


class ScaleDriver(PolledDriver):
    commands = {"tare": "tare the balance", "jam": "always fails"}

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.tare = 0.0

    async def poll(self) -> list[Reading]:
        return [Reading(self.device.id, "weight", 12.5 - self.tare, Quality.GOOD, unit="g")]

    async def command(self, name, args):
        if name == "tare":
            self.tare = 12.5
            return f"tared at 12.5 g{' for ' + args['who'] if 'who' in args else ''}"
        raise CommandError("mechanism jammed")


class ScalePlugin:
    @hookimpl
    def floorctl_register_kinds(self, registry):
        registry.add(Kind("test_scale", ScaleDriver, Transport.NONE))


FLOOR = """
[floor]
id = "cmd"
store = "${DB}"

[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-cmd-${PORT}"

[[device]]
id = "bal-1"
kind = "test_scale"
interval = "200ms"

[[device.fields]]
name = "weight"
unit = "g"
"""


async def request(port: int, device: str, body: dict | bytes, reply_id: str | None) -> dict | None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        if reply_id:
            await client.subscribe(f"floorctl/cmd/reply/{reply_id}", qos=1)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await client.publish(f"floorctl/cmd/command/{device}", payload, qos=1)
        if reply_id is None:
            return None
        async with asyncio.timeout(5):
            async for m in client.messages:
                return json.loads(m.payload)
    return None


async def test_commands_over_mqtt(mosquitto, tmp_path) -> None:
    db = tmp_path / "f.db"
    make_users(db)
    tech = signer("tech", "before the run")
    async with (
        Watcher(mosquitto.port, "floorctl/cmd/events") as events,
        running_floor(FLOOR, plugins=[ScalePlugin()], PORT=mosquitto.port, DB=db) as (
            floor,
            seen,
        ),
    ):
        await wait_until(lambda: floor.devices["bal-1"].state == "online", what="online")
        r = await request(
            mosquitto.port,
            "bal-1",
            {"v": 1, "id": "r1", "command": "tare", "args": {"who": "jd"}, **tech},
            "r1",
        )
        assert r is not None
        assert (r["status"], r["result"], r["device"], r["command"]) == (
            "done",
            "tared at 12.5 g for jd",
            "bal-1",
            "tare",
        )
        await asyncio.sleep(0.5)
        assert seen[-1].value == 0.0  # the driver really tared

        r = await request(mosquitto.port, "bal-1", {"id": "r2", "command": "jam", **tech}, "r2")
        assert (r["status"], r["error"]) == ("failed", "mechanism jammed")
        r = await request(mosquitto.port, "bal-1", {"id": "r3", "command": "explode", **tech}, "r3")
        assert (
            r["status"] == "refused"
            and "has no command 'explode' (it has: jam, tare)" in r["error"]
        )
        r = await request(mosquitto.port, "nope", {"id": "r4", "command": "tare", **tech}, "r4")
        assert r["status"] == "refused" and r["error"] == "no device 'nope'"
        r = await request(
            mosquitto.port, "bal-1", {"id": "r5", "command": "tare", "args": [1], **tech}, "r5"
        )
        assert r["status"] == "refused" and r["error"] == "args: must be an object"
        await request(mosquitto.port, "bal-1", b"\xffgarbage", None)  # no id: nothing to reply to
        # unsigned, wrongly signed, or by a role without the permission: refused, not run
        r = await request(mosquitto.port, "bal-1", {"id": "r6", "command": "tare"}, "r6")
        assert (r["status"], r["reason"]) == ("refused", "bad-request")
        assert "device commands are signed" in r["error"]
        r = await request(
            mosquitto.port,
            "bal-1",
            {"id": "r7", "command": "tare", **signer("tech", secret="9876")},
            "r7",
        )
        assert (r["status"], r["reason"]) == ("refused", "auth")
        assert "wrong password or PIN for tech: 4 attempts left" in r["error"]
        r = await request(
            mosquitto.port, "bal-1", {"id": "r8", "command": "tare", **signer("plan")}, "r8"
        )
        assert (r["status"], r["reason"]) == ("refused", "role")
        assert "has role planner; this needs one of: supervisor, technician" in r["error"]
        await events.wait_for(lambda m: sum(b["kind"] == "command" for _, b, _ in m) >= 4)
        details = [b["detail"] for _, b, _ in events.messages if b["kind"] == "command"]
        assert "tare: done: tared at 12.5 g for jd" in details
        assert "jam: failed: mechanism jammed" in details
    # every signed command is on record: the signed request, then its outcome
    with Store(db) as store:
        actions = [(e.user_id, e.action, e.target) for e in AuditTrail(store).entries()]
        sigs = Users(store).signatures()
    assert ("tech", "device.command", "device:bal-1") in actions
    assert ("tech", "device.command.done", "device:bal-1") in actions
    assert ("tech", "device.command.failed", "device:bal-1") in actions
    assert ("plan", "device.command.refused", "device:bal-1") in actions
    assert ("tech", "login.failed", "user:tech") in actions
    assert {s.user_id for s in sigs} == {"tech"}
    assert all(s.meaning == "performed" for s in sigs)


def test_floorctl_device_cli(mosquitto, tmp_path) -> None:
    cfg = tmp_path / "devices.toml"
    cfg.write_text(FLOOR)
    make_users(tmp_path / "f.db")
    env = {"PORT": str(mosquitto.port), "DB": str(tmp_path / "f.db")}
    pm = get_plugin_manager(autoload=False, plugins=[ScalePlugin()])
    kinds = collect_kinds(pm)
    runner = CliRunner(env=env)

    def invoke(*args: str, pin: str | None = None):
        if pin is not None:
            args = (*args, "--user", "tech", "--password-stdin")
        return runner.invoke(cli, [*args], obj=Ctx(pm), input=None if pin is None else pin + "\n")

    # listing and usage errors need no daemon
    result = invoke("device", "-c", str(cfg), "bal-1")
    assert result.exit_code == 0 and "tare         tare the balance" in result.output
    assert invoke("device", "-c", str(cfg), "bal-1", "explode").exit_code == 2
    assert invoke("device", "-c", str(cfg), "nope", "tare").exit_code == 2
    assert invoke("device", "-c", str(cfg), "bal-1", "tare", "oops").exit_code == 2
    # no daemon running: a clear message, exit 1
    result = invoke("device", "-c", str(cfg), "bal-1", "tare")
    assert result.exit_code == 2 and "--user is required" in result.output
    result = invoke("device", "-c", str(cfg), "bal-1", "tare", "--timeout", "1", pin="1111")
    assert result.exit_code == 1 and "is `floorctl run` running" in result.stderr
    # --direct runs the driver itself
    result = invoke("device", "-c", str(cfg), "bal-1", "tare", "--direct")
    assert result.exit_code == 0, result.output + result.stderr
    assert "bal-1 tare: done: tared at 12.5 g" in result.output

    # with the daemon running (in a thread with its own loop)
    config = parse_config(cfg.read_bytes(), kinds, env=env)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Floor] = {}

    async def main() -> None:
        floor = Floor(config, pm, kinds)
        holder["floor"] = floor
        task = asyncio.create_task(floor.run())
        await floor.state_hub.wait_connected(10)
        started.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        deadline = time.monotonic() + 5
        while holder["floor"].devices["bal-1"].state != "online" and time.monotonic() < deadline:
            time.sleep(0.05)
        result = invoke("device", "-c", str(cfg), "bal-1", "tare", "who=qa", pin="1111")
        assert result.exit_code == 0, result.output + result.stderr
        assert result.output.strip() == "bal-1 tare: done: tared at 12.5 g for qa"
        result = invoke("device", "-c", str(cfg), "bal-1", "jam", pin="1111")
        assert result.exit_code == 1 and "bal-1 jam: failed: mechanism jammed" in result.stderr
        result = invoke("device", "-c", str(cfg), "bal-1", "tare", pin="0000")
        assert result.exit_code == 1
        assert "refused: signature refused: wrong password or PIN for tech" in result.stderr
    finally:
        loop.call_soon_threadsafe(holder["floor"].stop)
        thread.join(10)
