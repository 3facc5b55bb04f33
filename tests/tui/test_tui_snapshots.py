"""Snapshots (pytest-textual-snapshot) of every screen, from the recorded demo floor with a
frozen clock, at a fixed terminal size. Update after looking at the report:
``.venv/bin/pytest tests/tui/test_tui_snapshots.py --snapshot-update``.

What moves on its own is frozen before a screenshot (:func:`settle`): the clock is the recorded
one, the recorded floor must have been applied and redrawn, and text cursors do not blink (an
Input's cursor toggles every 0.5 s after the last key, and a screenshot taken about 0.5 s after
typing caught it on or off by chance: test_signature_modal failed 4 runs in 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TabbedContent, TextArea

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


#: seconds a snapshot waits at most for something it needs (a loaded machine is slow)
DEADLINE = 20.0


async def wait_for(pilot: Pilot[Any], what: str, done: Callable[[], bool]) -> None:
    """Pause until ``done()``; fail with ``what`` after :data:`DEADLINE` seconds."""
    for _ in range(int(DEADLINE / 0.05)):
        if done():
            return
        await pilot.pause(0.05)
    pytest.fail(f"snapshot not taken: {what} did not happen within {DEADLINE:g} s")


def steady_cursors(app: App[Any]) -> None:
    """Stop every text cursor of every screen blinking: shown, steady (where focused)."""
    for screen in app.screen_stack:
        for widget in screen.query("Input, TextArea"):
            if isinstance(widget, Input | TextArea):
                widget.cursor_blink = False


async def settle(pilot: Pilot[Any]) -> None:
    """The recorded floor applied and redrawn, layout and animations done, cursors steady."""
    app = pilot.app
    assert isinstance(app, FloorApp)
    await wait_for(
        pilot,
        "the recorded floor's end",
        lambda: app.source_status.endswith("(no live updates)") and not app.state.changed,
    )
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()
    steady_cursors(app)
    await pilot.pause()


def test_floor(snap_compare: Any) -> None:
    async def select_buffer(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#tile-buffer").focus()
        screen = pilot.app.screen
        assert isinstance(screen, FloorScreen)
        await wait_for(
            pilot,
            "the buffer room's history",
            lambda: screen.selected == "buffer" and bool(screen.history),
        )
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
        await wait_for(pilot, "the audit entries", lambda: table.row_count > 0)
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
        await wait_for(
            pilot,
            "the batch record",
            lambda: (
                screen.record is not None and screen.query_one("#batch-ops", DataTable).row_count
            ),
        )
        await settle(pilot)

    assert snap_compare(batch_app(), terminal_size=SIZE, run_before=batch)
