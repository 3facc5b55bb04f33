"""The terminal UI against a real daemon: a floor with a store and signed users, a real
mosquitto, the app's own MQTT source. Acknowledge (refused for a wrong PIN, then accepted),
shelve and see the shelf expire, run a device command, read the audit trail."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static
from textual.widgets.data_table import RowDoesNotExist

from floorctl import hookimpl
from floorctl.config import parse_config
from floorctl.driver import CommandError, PolledDriver
from floorctl.kinds import Kind, Transport
from floorctl.model import Quality, Reading
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.tui.app import FloorApp
from floorctl.tui.screens.signature import SignatureModal
from tests.integration.floorkit import (
    ANTE_AND_BUFFER,
    dp_monitor,
    make_users,
    publish,
    running_floor,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class ScaleDriver(PolledDriver):
    commands = {"tare": "tare the balance", "jam": "always fails"}

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.tare = 0.0

    async def poll(self) -> list[Reading]:
        return [Reading(self.device.id, "weight", 12.5 - self.tare, Quality.GOOD, unit="g")]

    async def command(self, name: str, args: dict[str, Any]) -> str:
        if name == "tare":
            self.tare = 12.5
            return "tared at 12.5 g"
        raise CommandError("mechanism jammed")


FLOOR = (
    """
[floor]
id = "tui"
store = "${DB}"
[[mqtt]]
name = "b"
port = "${PORT}"
client_id = "floorctl-tui-${PORT}"
"""
    + ANTE_AND_BUFFER
    + dp_monitor("mon")
    + """
[[device]]
id = "bal-1"
kind = "test_scale"
room = "buffer"
interval = "200ms"
[[device.fields]]
name = "weight"
unit = "g"
"""
)


def text_of(app: FloorApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def until(
    pilot: Pilot[None], predicate: Callable[[], bool], what: str, t: float = 20
) -> None:
    deadline = time.monotonic() + t
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def sign(pilot: Pilot[None], user: str, secret: str, comment: str = "") -> None:
    """Fill the signature modal by typing, and send it."""
    modal = pilot.app.screen
    assert isinstance(modal, SignatureModal)
    modal.query_one("#sign-user", Input).focus()
    await pilot.press(*user, "enter", *secret, "enter", *comment, "enter")
    if modal.query("#sign-duration"):
        await pilot.press("enter")


async def outcome(pilot: Pilot[None], start: str) -> str:
    app = pilot.app

    def replied() -> bool:
        text = text_of(app, "#sign-outcome")
        return bool(text) and not text.startswith("sent")

    await until(pilot, replied, "a reply")
    text = text_of(app, "#sign-outcome")
    assert text.startswith(start), text
    return text


async def test_acknowledge_shelve_command_and_audit(mosquitto, tmp_path) -> None:
    class ScalePlugin:
        @hookimpl
        def floorctl_register_kinds(self, registry: Any) -> None:
            registry.add(Kind("test_scale", ScaleDriver, Transport.NONE))

    db = tmp_path / "f.db"
    make_users(db)
    port = mosquitto.port
    kinds = collect_kinds(get_plugin_manager(autoload=False, plugins=[ScalePlugin()]))
    config = parse_config(FLOOR.encode(), kinds, env={"PORT": str(port), "DB": str(db)})
    async with running_floor(FLOOR, plugins=[ScalePlugin()], PORT=port, DB=db) as (floor, _):
        app = FloorApp(config, kinds=kinds)
        async with app.run_test(size=(160, 48)) as pilot:
            state = app.state
            await until(pilot, lambda: (state.daemon or {}).get("state") == "online", "online")
            await publish(port, "gw/mon", json.dumps({"dp": 3.0}))  # below action_low 5 Pa
            key = ("mon", "dp")
            await until(pilot, lambda: key in state.alarms and state.alarms[key].active, "alarm")

            await pilot.press("2")
            await until(
                pilot, lambda: app.screen.query_one("#table-shown", DataTable).row_count > 0, "row"
            )
            table = app.screen.query_one("#table-shown", DataTable)
            assert table.get_row("mon/dp")[3] == "Unacknowledged"

            # a wrong PIN: refused, and exactly why
            await pilot.press("a")
            assert isinstance(app.screen, SignatureModal)
            await sign(pilot, "tech", "0000", "door was propped")
            await outcome(
                pilot,
                "refused (auth): signature refused: wrong password or PIN for tech: "
                "4 attempts left before lockout",
            )
            # the right PIN: accepted, with the audit entry
            await pilot.press(*"1111", "enter", "enter")
            text = await outcome(pilot, "accepted: unack -> acked (audit entry ")
            seq = int(text.rsplit(" ", 1)[1].rstrip(")"))
            await pilot.press("escape")
            await until(pilot, lambda: state.alarms[key].state == "acked", "acked")
            assert floor.alarms.point("mon", "dp").state.value == "acked"

            # shelve for one second: listed as shelved with its end, then the expiry is shown
            await pilot.press("s")
            modal = app.screen
            assert isinstance(modal, SignatureModal)
            modal.query_one("#sign-duration", Input).value = "1s"
            await sign(pilot, "sup", "2222", "sensor swap")
            await outcome(pilot, "accepted: acked -> shelved (audit entry ")
            await pilot.press("escape")
            await until(pilot, lambda: state.alarms[key].state == "shelved", "shelved")
            shelved = app.screen.query_one("#table-shelved", DataTable)

            def listed_shelved() -> bool:  # the table redraws a few times a second
                try:
                    return shelved.get_row("mon/dp")[3] == "Shelved"
                except RowDoesNotExist:
                    return False

            await until(pilot, listed_shelved, "the shelved list")
            assert shelved.get_row("mon/dp")[7].startswith("shelve by sup ")
            await until(pilot, lambda: state.alarms[key].state == "unack", "shelf expiry")
            shown = app.screen.query_one("#table-shown", DataTable)

            def expiry_shown() -> bool:
                try:
                    return shown.get_row("mon/dp")[3] == "Unacknowledged"
                except RowDoesNotExist:
                    return False

            await until(pilot, expiry_shown, "the expiry in the list")
            assert shown.get_row("mon/dp")[7].startswith("shelf expired at ")

            # a device command through the same modal
            await pilot.press("4")
            await until(pilot, lambda: "bal-1" in state.devices, "device status")
            devices = app.screen.query_one("#device-table", DataTable)
            devices.move_cursor(row=[d.id for d in config.devices].index("bal-1"))
            await pilot.press("c")
            modal = app.screen
            assert isinstance(modal, SignatureModal)
            modal.query_one("#sign-command", Select).value = "tare"
            await sign(pilot, "tech", "1111", "before weighing")
            await outcome(pilot, "done: tared at 12.5 g")
            await pilot.press("escape")

            # the audit trail, read through the daemon, has the signed acknowledgement
            await pilot.press("5")
            audit = app.screen.query_one("#audit-table", DataTable)
            await until(pilot, lambda: audit.row_count > 0, "audit entries")
            row = audit.get_row(str(seq))
            assert (row[2], row[3]) == ("tech (Terry Tech)", "alarm.ack")
            assert text_of(app, "#audit-verify").startswith("CHAIN OK")
            await asyncio.sleep(0)
