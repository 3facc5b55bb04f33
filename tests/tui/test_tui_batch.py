"""The batch view and the actuals action on a recorded floor (tests/batchrecord/ with the
daemon's recorded answer for B1), frozen clock: what the view asks and shows, what it says when
it cannot, read-only, the palette. The live daemon is in test_tui_batch_live.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown, Static

from floorctl.tui.app import FloorApp
from floorctl.tui.screens.batch import BatchScreen
from floorctl.tui.screens.schedule import ScheduleScreen
from floorctl.tui.screens.signature import SignatureModal, describe_reply

from .recorded import ROOT, batch_app

SIZE = (160, 48)


@pytest.fixture(autouse=True)
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded floor's plan and schedule are given relative to the repository's root."""
    monkeypatch.chdir(ROOT)


def text_of(app: FloorApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


async def until(pilot: Pilot[None], predicate: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def opened(pilot: Pilot[None]) -> BatchScreen:
    screen = pilot.app.screen
    assert isinstance(screen, BatchScreen), screen
    await until(pilot, lambda: "loading" not in screen.status, "the record")
    await until(pilot, lambda: "asking" not in text_of(pilot.app, "#batch-title"), "the reply")
    return screen


def footer_keys(app: FloorApp) -> dict[str, str]:
    return {
        k: b.binding.description
        for k, b in app.active_bindings.items()
        if b.binding.show and b.enabled
    }


async def test_the_batch_view_asks_with_absolute_paths_and_shows_verdict_first() -> None:
    app = batch_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        assert isinstance(app.screen, ScheduleScreen)
        assert footer_keys(app)["b"] == "Batch record"
        await pilot.press("b")
        screen = await opened(pilot)
        # the recording answers only absolute paths of these files (else: refused, shown)
        assert screen.record is not None, text_of(app, "#batch-verdict")
        verdict = text_of(app, "#batch-verdict").splitlines()
        assert verdict[0] == "NEEDS QA'S ATTENTION: 5 item(s)"
        assert verdict[1].startswith("  ! compound (buffer): data gap on mon/dp from ")
        assert any("outside its ACTION limits for 5.0 min" in v for v in verdict)
        assert verdict[-1].startswith("  - ")  # the verdict lines follow the list
        assert text_of(app, "#batch-title") == (
            "Batch B1: batch environmental record from the daemon at 13:30:00 (r: refresh, "
            "esc: back); plan tests/batchrecord/plan.toml, schedule "
            "tests/tui/data/br-schedule.json"
        )
        md = screen.query_one("#batch-record", Markdown)
        assert md.source.startswith("# Batch environmental record: B1")
        keys = footer_keys(app)
        assert {k: keys.get(k) for k in ("escape", "r", "s", "e")} == {
            "escape": "Back",
            "r": "Refresh",
            "s": "Actual start",
            "e": "Actual end",
        }
        await pilot.press("escape")
        assert isinstance(app.screen, ScheduleScreen)


async def test_a_refusal_is_shown_verbatim_and_so_is_a_missing_schedule() -> None:
    app = batch_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        table = app.screen.query_one("#batch-table", DataTable)
        table.move_cursor(row=1)  # B2: not in the recording
        table.focus()
        await pilot.press("enter")
        screen = await opened(pilot)
        assert screen.record is None
        assert text_of(app, "#batch-verdict") == (
            "batch-record query refused (bad-request): this recording has no batch record of 'B2'"
        )
        assert screen.query_one("#batch-ops", DataTable).row_count == 0
        # nothing to sign against before a record arrived
        await pilot.press("s")
        assert isinstance(app.screen, BatchScreen)

    app = batch_app(schedule=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "b")
        await opened(pilot)
        assert text_of(app, "#batch-verdict").startswith(
            "no batch record: the daemon reads the plan and the schedule from files; start "
            "the terminal with --plan PLAN --schedule SCHEDULE"
        )


async def test_the_actual_modal_asks_for_a_time_and_says_what_went_wrong() -> None:
    app = batch_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        ops = app.screen.query_one("#op-table", DataTable)
        assert [ops.get_row_at(i)[1:] for i in range(ops.row_count)] == [
            ["compound", "buffer"],
            ["fill", "laf-1"],
            ["sterilise", "autoclave-1"],
        ]
        ops.focus()
        await pilot.press("down", "s")
        modal = app.screen
        assert isinstance(modal, SignatureModal)
        assert str(modal.query_one("#sign-title", Static).content) == "Record actual start: B1/fill"
        assert "Signature meaning: performed; who may: technician, supervisor." in str(
            modal.query_one("#sign-detail", Static).content
        )
        modal.query_one("#sign-user", Input).focus()
        await pilot.press(*"tech", "enter", *"1111", "enter", "enter", *"10:20", "enter")
        assert text_of(app, "#sign-outcome").startswith("not sent: time: '10:20': a duration ago")
        # the secret was kept for the retry (nothing was sent); a readable time goes out, and
        # the recording has no daemon to take it: said as it is
        modal.query_one("#sign-time", Input).value = "2026-11-21T13:10"
        await pilot.click("#sign-send")
        await until(pilot, lambda: "waiting" not in text_of(app, "#sign-outcome"), "the answer")
        assert text_of(app, "#sign-outcome") == (
            "not sent: recorded state: no daemon to send the request to"
        )


def test_an_accepted_actual_reads_recorded() -> None:
    reply: dict[str, Any] = {
        "status": "accepted",
        "result": "start 2026-11-20T09:10:00Z",
        "audit_seq": 17,
    }
    assert describe_reply(reply, "recorded") == (
        True,
        "recorded: start 2026-11-20T09:10:00Z (audit entry 17)",
    )
    assert describe_reply(reply) == (True, "accepted: start 2026-11-20T09:10:00Z (audit entry 17)")
    refused = {"status": "refused", "reason": "state", "error": "B1/fill has no recorded start"}
    assert describe_reply(refused, "recorded") == (
        False,
        "refused (state): B1/fill has no recorded start",
    )


async def test_read_only_hides_and_refuses_the_actuals() -> None:
    app = batch_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        keys = footer_keys(app)
        assert "s" not in keys and "e" not in keys and keys["b"] == "Batch record"
        await pilot.press("s")
        assert isinstance(app.screen, ScheduleScreen)
        notes = [n.message for n in app._notifications]
        assert notes[-1] == (
            "read-only terminal: recording an actual start is not available (started with "
            "--read-only)"
        )
        await pilot.press("b")
        await opened(pilot)
        assert "s" not in footer_keys(app)
        await pilot.press("e")
        assert isinstance(app.screen, BatchScreen)
        assert [n.message for n in app._notifications][-1] == (
            "read-only terminal: recording an actual end is not available (started with "
            "--read-only)"
        )


async def test_the_palette_opens_the_batch_record_and_leaves_out_actuals_when_read_only() -> None:
    from floorctl.tui.commands import FloorCommands

    for read_only in (False, True):
        app = batch_app(read_only=read_only)
        async with app.run_test(size=SIZE) as pilot:
            titles = {t: cb for t, _h, cb in FloorCommands(app.screen)._commands()}
            assert "Schedule: Batch record" in titles
            assert ("Batch: Record actual start" in titles) is not read_only
            assert ("Batch: Record actual end" in titles) is not read_only
            await titles["Schedule: Batch record"]()  # type: ignore[misc]
            screen = await opened(pilot)
            assert screen.batch == "B1"
