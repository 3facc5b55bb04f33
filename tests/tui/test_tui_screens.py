"""Pilot tests of every screen on a recorded floor with a frozen clock: tiles and stale values,
sparklines from history, alarm lists and the filter, regenerate then accept, read-only mode,
help and the command palette."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from floorctl.scheduler import Progress, read_schedule
from floorctl.tui.screens.floor import FloorScreen
from floorctl.tui.screens.help import HelpScreen
from floorctl.tui.screens.schedule import ScheduleReview, ScheduleScreen
from floorctl.tui.screens.signature import SignatureModal
from floorctl.tui.widgets.room_tile import RoomTile

from .recorded import NOW, SCHEDULE, P, _point, recorded_app

SIZE = (160, 48)


def generated_plan(folder: Path, batches: int) -> Path:
    gen = Path(__file__).resolve().parents[2] / "examples" / "plangen.py"
    out = folder / "plan"
    subprocess.run([sys.executable, str(gen), str(out), "--batches", str(batches)], check=True)
    return out / "facility.toml"


def exists(path: Path) -> bool:
    return path.exists()


def leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(".schedule.json.*"))


def text(widget: Static) -> str:
    return str(widget.content)


async def until(
    pilot: Pilot[None], predicate: Callable[[], bool], what: str, t: float = 20
) -> None:
    deadline = time.monotonic() + t
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def test_floor_tiles_stale_values_and_sparklines() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.daemon is not None, "state")
        await pilot.pause(0.3)
        buffer = app.screen.query_one("#tile-buffer", RoomTile)
        shown = text(buffer)
        assert "ISO 7  [ACTION]  2 alarms" in shown
        assert "dP vs ante     +3.2 Pa" in shown
        assert "└ laf-1 ISO 5 [OK]" in shown
        assert buffer.has_class("status-action")
        hd = text(app.screen.query_one("#tile-hd-buffer", RoomTile))
        assert "[NO DATA]" in hd and "-11.8 Pa STALE (comm-loss)" in hd  # text, not only colour
        buffer.focus()
        screen = app.screen
        assert isinstance(screen, FloorScreen)
        await until(pilot, lambda: screen.selected == "buffer" and bool(screen.history), "history")
        key, spark, label = screen.sparks[0]
        assert key == ("thp-buffer", "dp")
        data = list(spark.data or [])
        # 59 history buckets minus a 5-bucket gap, plus the live value of the current minute
        assert len(data) == 55 and data[-1] == 3.2
        assert str(label.content) == "2.56..3.833 Pa (55/60 min)"


async def test_tile_updates_lay_out_the_screen_only_when_a_tile_changes_height() -> None:
    """A new reading repaints its tile alone, without a layout of the screen (the TUI's CPU at
    500 points, docs/performance.md); a line too wide for the tile wraps, so that update
    lays out the screen and the tile grows."""
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.source_status.endswith("(no live updates)"), "the floor")
        await pilot.pause(0.3)
        tiles = list(app.screen.query(RoomTile))
        buffer = app.screen.query_one("#tile-buffer", RoomTile)
        before = {t.id: (t.layouts, t.repaints) for t in tiles}
        height = buffer.size.height
        topic, payload = _point("thp-buffer", "dp", 4.1, "Pa")
        app.state.apply(topic, payload)
        app.redraw()
        await pilot.pause(0.1)
        assert "dP vs ante     +4.1 Pa" in text(buffer)
        assert (buffer.layouts, buffer.repaints) == (before[buffer.id][0], before[buffer.id][1] + 1)
        assert {t.id: (t.layouts, t.repaints) for t in tiles if t is not buffer} == {
            i: v for i, v in before.items() if i != buffer.id
        }  # the other rooms' views did not change: no text built, nothing redrawn
        assert buffer.size.height == height
        drawn = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "+4.1 Pa" in drawn  # drawn on the screen, not only stored

        unit = "Pa (a unit name far too long for one line of a room's tile)"
        app.state.apply(*_point("thp-buffer", "dp", 4.2, unit))
        app.redraw()
        await pilot.pause(0.1)
        assert buffer.layouts == before[buffer.id][0] + 1
        await until(pilot, lambda: buffer.size.height == height + 1, "the tile to grow a line")


async def test_alarm_lists_filter_and_read_only() -> None:
    app = recorded_app(read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: bool(app.state.alarms), "alarms")
        await pilot.press("2")
        await pilot.pause(0.3)
        shown = app.screen.query_one("#table-shown", DataTable)
        ids = [shown.get_row_at(i)[1] for i in range(shown.row_count)]
        # priority first (high, medium, low), newest first within a priority
        assert ids == ["thp-buffer/dp", "thp-hd/_comm", "thp-hd/dp", "pc-buffer/counts_0_5"]
        assert shown.get_row_at(2)[3] == "Cannot evaluate (input lost)"
        shelved = app.screen.query_one("#table-shelved", DataTable)
        assert "until 17:20:00 (in 20m)" in shelved.get_row_at(0)[7]
        oos = app.screen.query_one("#table-out-of-service", DataTable)
        assert oos.get_row_at(0)[1] == "bsc-2/downflow"
        await pilot.press("slash", *"comm")
        await pilot.pause(0.2)
        assert shown.row_count == 1 and shown.get_row_at(0)[1] == "thp-hd/_comm"
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert shown.row_count == 4
        # read-only: the write keys are not offered, and pressing one says why
        assert "a" not in {k for k, b in app.active_bindings.items() if b.binding.show}
        await pilot.press("a")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, SignatureModal)
        assert any("read-only terminal" in n.message for n in app._notifications)
        await pilot.press("3")
        await pilot.press("g")
        await pilot.pause(0.2)
        assert app.screen.query_one("#solve-progress", Static).display is False


async def test_regenerate_shows_what_moved_then_accept_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "schedule.json"
    shutil.copy(SCHEDULE, target)
    before = read_schedule(target)
    app = recorded_app(schedule=target)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, ScheduleScreen)
        gantt = text(screen.query_one("#gantt", Static))
        assert "v now" in gantt and "bsc-2 OUT" in gantt
        # LAF hood 2 goes out of service now: the solver plans around it
        topic = f"{P}/room/laf-2/status"
        app.state.apply(topic, {"room": "laf-2", "status": "out-of-service", "time": NOW})
        app.redraw()
        shown: list[str] = []
        draw = screen._progress

        def spy(p: Progress) -> None:  # what the progress line showed, report by report
            draw(p)
            shown.append(text(screen.query_one("#solve-progress", Static)))

        screen._progress = spy  # type: ignore[method-assign]
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, ScheduleReview), "the review")
        assert shown and all(line.startswith("solving: ") for line in shown)
        assert any("objective" in line and "gap" in line for line in shown)
        review = app.screen
        assert isinstance(review, ScheduleReview)
        assert review.result.moves, "work on laf-2 after now must move"
        assert all(m.operation.split("/")[0] == m.batch for m in review.result.moves)
        moves = review.query_one("#review-moves", DataTable)
        assert moves.row_count == len(review.result.moves)
        await pilot.click("#review-accept")
        await until(pilot, lambda: not isinstance(app.screen, ScheduleReview), "accepted")
        after = read_schedule(target)
        assert after.assignments != before.assignments
        doc = json.loads(target.read_text())
        assert doc["moves"] and doc["status"] in ("optimal", "feasible")
        assert leftovers(tmp_path) == []  # no temporary file left
        assert text(screen.query_one("#solve-progress", Static)).startswith("accepted: ")


@pytest.mark.slow
async def test_cancel_keeps_the_best_schedule_found(tmp_path: Path) -> None:
    plan = generated_plan(tmp_path, batches=60)  # big enough not to be solved at once
    app = recorded_app(plan=plan, schedule=tmp_path / "new.json")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        assert isinstance(screen, ScheduleScreen)
        reports: list[Progress] = []
        draw = screen._progress

        def spy(p: Progress) -> None:
            reports.append(p)
            draw(p)
            if p.solutions and screen.check_action("cancel_solve", ()):
                # what `c` does (offered while solving), done while the solver thread waits
                # for this report to be drawn, so the search cannot have ended on its own
                screen.action_cancel_solve()

        screen._progress = spy  # type: ignore[method-assign]
        await pilot.press("g")
        await until(pilot, lambda: any(p.solutions for p in reports), "a first solution", 60)
        await until(pilot, lambda: isinstance(app.screen, ScheduleReview), "the review", 30)
        review = app.screen
        assert isinstance(review, ScheduleReview)
        assert review.result.cancelled and review.result.schedule is not None
        assert review.result.timings.total < 25  # well before the 30 s limit
        await pilot.press("escape")  # Discard
        await until(pilot, lambda: app.screen is screen, "back on the schedule")
        assert not exists(tmp_path / "new.json")
        progress = text(screen.query_one("#solve-progress", Static))
        assert progress == "discarded: the current schedule stays"


async def test_help_palette_and_digits() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        for key, mode in (("2", "alarms"), ("4", "devices"), ("5", "audit"), ("1", "floor")):
            await pilot.press(key)
            assert app.current_mode == mode
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        body = text(app.screen.query_one("#help-body", Static))
        assert "Reload history" in body and "Quit" in body
        await pilot.press("escape")
        await pilot.press("ctrl+p", *"Screen: Audit", "enter")
        await pilot.pause(0.3)
        assert app.current_mode == "audit"
        table = app.screen.query_one("#audit-table", DataTable)
        await until(pilot, lambda: table.row_count == 4, "audit rows")
        assert text(app.screen.query_one("#audit-verify", Static)).startswith("CHAIN OK")
