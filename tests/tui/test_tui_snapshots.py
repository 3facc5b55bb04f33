"""Snapshots (pytest-textual-snapshot) of every screen, from the recorded demo floor with a
frozen clock, at a fixed terminal size. Update after looking at the report:
``.venv/bin/pytest tests/tui/test_tui_snapshots.py --snapshot-update``."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from floorctl.tui.app import FloorApp
from floorctl.tui.screens.batch import BatchScreen
from floorctl.tui.screens.floor import FloorScreen

from .recorded import ROOT, SCHEDULE_SHOWN, batch_app, recorded_app

pytestmark = pytest.mark.slow
SIZE = (160, 48)


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository's root: the schedule path shown is relative to it."""
    monkeypatch.chdir(ROOT)


def app(**kw: Any) -> FloorApp:
    return recorded_app(schedule=SCHEDULE_SHOWN, **kw)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()


def test_floor(snap_compare: Any) -> None:
    async def select_buffer(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#tile-buffer").focus()
        screen = pilot.app.screen
        assert isinstance(screen, FloorScreen)
        for _ in range(40):
            if screen.selected == "buffer" and screen.history:
                break
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=select_buffer)


def test_alarms(snap_compare: Any) -> None:
    assert snap_compare(app(), press=["2"], terminal_size=SIZE, run_before=settle)


def test_alarms_shelved(snap_compare: Any) -> None:
    async def shelved(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("2")
        pilot.app.screen.query_one("#alarm-tabs", TabbedContent).active = "tab-shelved"
        await settle(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=shelved)


def test_signature_modal(snap_compare: Any) -> None:
    async def ack(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a", *"tech", "tab", *"1111", "tab", *"door propped; closed")
        await settle(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=ack)


def test_schedule(snap_compare: Any) -> None:
    async def schedule(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        pilot.app.screen.query_one("#batch-table", DataTable).move_cursor(row=2)
        await settle(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=schedule)


def test_devices(snap_compare: Any) -> None:
    assert snap_compare(app(), press=["4"], terminal_size=SIZE, run_before=settle)


def test_audit(snap_compare: Any) -> None:
    async def audit(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("5")
        table = pilot.app.screen.query_one("#audit-table", DataTable)
        for _ in range(40):
            if table.row_count:
                break
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(app(), terminal_size=SIZE, run_before=audit)


def test_help_read_only(snap_compare: Any) -> None:
    assert snap_compare(
        app(read_only=True), press=["2", "question_mark"], terminal_size=SIZE, run_before=settle
    )


def test_batch_view(snap_compare: Any) -> None:
    """B1's record as the daemon answered it (recorded: tests/tui/data/batch-record-B1.json),
    opened from the Schedule screen."""

    async def batch(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("b")
        screen = pilot.app.screen
        assert isinstance(screen, BatchScreen)
        for _ in range(60):
            if screen.record is not None and screen.query_one("#batch-ops", DataTable).row_count:
                break
            await pilot.pause(0.05)
        assert screen.record is not None, screen.status
        await settle(pilot)

    assert snap_compare(batch_app(), terminal_size=SIZE, run_before=batch)
