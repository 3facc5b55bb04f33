"""The demo end to end, headless: the demo's parts in this process (embedded broker, the demo
floor's simulators with the demo scenario, the daemon, the store with the demo users), the
terminal UI driven by Textual's pilot: the scenario's alarm is raised, a demo user
acknowledges it through the signature modal, and that signature is in the audit trail."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from floorctl.demo import DEMO_USERS, banner, demo_app_class, running_demo
from floorctl.limits import Quantity
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.store.audit import AuditTrail
from floorctl.store.db import Store
from floorctl.store.users import Users
from floorctl.tui.screens.signature import SignatureModal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: the scenario's first fault: the buffer room's pressure cascade collapses (dp to 3 Pa)
KEY = ("thp-buffer", "dp")


async def until(pilot: Pilot[None], predicate: Callable[[], bool], what: str, t: float) -> None:
    deadline = time.monotonic() + t
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {t:g}s waiting for {what}")
        await pilot.pause(0.05)


async def test_acknowledge_the_scenarios_alarm_and_find_the_signature(tmp_path: Path) -> None:
    pm = get_plugin_manager(autoload=False)
    kinds = collect_kinds(pm)
    tech = next(u for u in DEMO_USERS if u.user_id == "tech")
    # The demo scenario at 15x: the excursion starts 1 s in. The daemon's on-delays are real
    # time (30 s for an alert on differential pressure): shortened here, or the test would
    # wait half a minute for what `floorctl demo` shows in its first minute.
    fast = {Quantity.DIFFERENTIAL_PRESSURE: {"alert_on_delay": 0.5, "action_on_delay": 1.0}}
    async with running_demo(
        ROOT / "devices.toml",
        pm,
        kinds,
        workdir=tmp_path,
        speed=15.0,
        alarm_defaults=fast,
    ) as demo:
        assert demo.embedded is not None and demo.store is not None
        app = demo_app_class()(demo.config, banner=banner(), kinds=kinds)
        async with app.run_test(size=(160, 48)) as pilot:
            state = app.state
            assert "tech / 1111 (technician)" in str(
                app.screen.query_one("#banner-line", Static).content
            )
            await until(pilot, lambda: (state.daemon or {}).get("state") == "online", "online", 15)
            await until(
                pilot,
                lambda: KEY in state.alarms and state.alarms[KEY].state == "unack",
                "the scenario's alarm on thp-buffer/dp",
                30,
            )

            # the alarms screen lists it; acknowledge it with the demo technician's PIN
            await pilot.press("2")
            table = app.screen.query_one("#table-shown", DataTable)
            await until(pilot, lambda: table.row_count > 0, "a row on the alarms screen", 10)
            table.move_cursor(row=table.get_row_index("thp-buffer/dp"))
            assert table.get_row("thp-buffer/dp")[3] == "Unacknowledged"
            await pilot.press("a")
            modal = app.screen
            assert isinstance(modal, SignatureModal)
            modal.query_one("#sign-user", Input).focus()
            comment = "cascade lost: ante door held open, closed it"
            await pilot.press(*tech.user_id, "enter", *tech.pin, "enter", *comment, "enter")

            def outcome() -> str:
                return str(modal.query_one("#sign-outcome", Static).content)

            await until(
                pilot, lambda: outcome() and not outcome().startswith("sent"), "the reply", 15
            )
            assert outcome().startswith("accepted: unack -> acked (audit entry "), outcome()
            seq = int(outcome().rsplit(" ", 1)[1].rstrip(")"))
            await pilot.press("escape")
            await until(pilot, lambda: state.alarms[KEY].state == "acked", "acked", 10)
        assert demo.floor.alarms.point(*KEY).state.value == "acked"
        store_path = demo.store

    # the store the demo left: that signature, in an intact audit trail
    with Store(store_path) as store:
        trail = AuditTrail(store)
        entry = trail.get(seq)
        assert entry is not None
        assert (entry.action, entry.user_id, entry.printed_name) == (
            "alarm.ack",
            "tech",
            tech.printed_name,
        )
        assert entry.meaning == "acknowledged"
        assert entry.target.startswith("alarm:thp-buffer/dp"), entry.target
        assert entry.reason == comment
        assert trail.verify().ok
        signatures = Users(store).signatures(seq)
        assert [(s.user_id, s.printed_name, s.meaning) for s in signatures] == [
            ("tech", "Terry Tech", "acknowledged")
        ]
