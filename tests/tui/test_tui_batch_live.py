"""The batch view and the signed actuals, against a real daemon (real mosquitto, a store with
signed users): the batch record of a floor with history (tests/batchrecord/, built by the
module fixture of tests/integration/test_batch_record.py) with its QA list; the actual start and
end of an operation recorded through the signature modal and found in the store.

``FLOORCTL_TUI_RECORD_DATA=1`` makes the batch-view test write the schedule and the daemon's
answer it used to tests/tui/data/ (the batch-view snapshot replays them)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown, Static

from floorctl.batches import iso
from floorctl.config import parse_config
from floorctl.pluginmanager import collect_kinds, get_plugin_manager
from floorctl.store.db import Store
from floorctl.tui.app import FloorApp
from floorctl.tui.screens.batch import BatchScreen
from floorctl.tui.screens.schedule import ScheduleScreen
from floorctl.tui.screens.signature import SignatureModal
from tests.integration.floorkit import make_users, running_floor
from tests.integration.test_batch_record import floor  # noqa: F401 (the module fixture)

from .recorded import DATA
from .test_tui_live import text_of, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORD_DATA = os.environ.get("FLOORCTL_TUI_RECORD_DATA") == "1"


def floor_text(folder: Path, port: int, db: Path) -> str:
    text = (folder / "devices.toml").read_text()
    text = text.replace("port = 1883", f"port = {port}")
    return text.replace('store = "floor.db"', f'store = "{db}"')


def app_for(text: str, folder: Path) -> FloorApp:
    config = parse_config(text.encode(), collect_kinds(get_plugin_manager(autoload=False)))
    return FloorApp(config, plan=folder / "plan.toml", schedule=folder / "s.json")


async def online(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, FloorApp)
    await until(pilot, lambda: (app.state.daemon or {}).get("state") == "online", "online")


async def to_batch(pilot: Pilot[None], batch: str) -> ScheduleScreen:
    await pilot.press("3")
    screen = pilot.app.screen
    assert isinstance(screen, ScheduleScreen) and screen.problem is not None
    row = [b.id for b in screen.problem.batches].index(batch)
    screen.query_one("#batch-table", DataTable).move_cursor(row=row)
    await pilot.pause(0.1)
    return screen


async def record_shown(pilot: Pilot[None]) -> BatchScreen:
    screen = pilot.app.screen
    assert isinstance(screen, BatchScreen)
    await until(pilot, lambda: screen.status != "loading ..." and "asking" not in screen.status,
                "the batch record")  # fmt: skip
    return screen


async def test_batch_view_shows_the_record_and_the_qa_list(floor, mosquitto) -> None:  # noqa: F811
    folder, _ctx = floor
    text = floor_text(folder, mosquitto.port, folder / "floor.db")
    async with running_floor(text):
        app = app_for(text, folder)
        async with app.run_test(size=(160, 48)) as pilot:
            await online(pilot)
            await to_batch(pilot, "B1")
            await pilot.press("b")
            screen = await record_shown(pilot)
            assert screen.record is not None, screen.status
            verdict = text_of(app, "#batch-verdict")
            # the verdict and QA's list come first, as the daemon made them
            assert verdict.startswith("NEEDS QA'S ATTENTION: ")
            assert "! fill (laf-1): pc-laf-1/p05 outside its ACTION limits for 5.0 min" in verdict
            assert "! compound: planned times only (no signed actual start and end)" in verdict
            assert "- ACTION-LEVEL EXCURSION during ISO 5 operation(s): fill" in verdict
            assert screen.query_one("#batch-verdict").has_class("verdict-attention")
            ops = screen.query_one("#batch-ops", DataTable)
            assert [ops.get_row_at(i)[:3] for i in range(ops.row_count)] == [
                ["compound", "buffer", "planned"],
                ["fill", "buffer / laf-1", "planned"],
                ["sterilise", "-", "planned"],
            ]
            md = screen.query_one("#batch-record", Markdown).source
            assert md.startswith("# Batch environmental record: B1")
            assert "Alarms:" in md and "glove change near the counter" in md
            title = text_of(app, "#batch-title")
            assert title.startswith("Batch B1: batch environmental record from the daemon at ")

            # back to the schedule; B2 (actuals signed, nothing wrong) opens with enter: clean
            await pilot.press("escape")
            assert isinstance(app.screen, ScheduleScreen)
            await to_batch(pilot, "B2")
            app.screen.query_one("#batch-table", DataTable).focus()
            await pilot.press("enter")
            screen = await record_shown(pilot)
            assert text_of(app, "#batch-verdict").startswith("CLEAN: nothing needs QA's attention")
            assert screen.query_one("#batch-ops", DataTable).get_row_at(0)[2] == "actual"
            if RECORD_DATA:
                await save_recorded_data(app, folder)

            # the daemon's refusal is shown as it came (a batch the plan does not have)
            await pilot.press("escape")
            await app.push_screen(BatchScreen("B9"))
            screen = await record_shown(pilot)
            assert screen.record is None
            assert text_of(app, "#batch-verdict") == (
                "batch-record query refused (bad-request): no batch 'B9' in the plan "
                "(batches: B1, B2)"
            )
            assert screen.query_one("#batch-verdict").has_class("verdict-unknown")


async def save_recorded_data(app: FloorApp, folder: Path) -> None:
    """The schedule and the daemon's answer for B1, for the batch-view snapshot."""
    shutil.copy(folder / "s.json", DATA / "br-schedule.json")
    args = {"batch": "B1", "plan": str(folder / "plan.toml"), "schedule": str(folder / "s.json")}
    reply = await app.source.query("batch-record", args, 30.0)
    assert reply["status"] == "done", reply
    reply["id"] = "r"
    (DATA / "batch-record-B1.json").write_text(json.dumps(reply, indent=1) + "\n")


async def sign_actual(pilot: Pilot[None], user: str, secret: str, when: str = "") -> None:
    """Fill the actual's signature modal by typing (user, PIN, no comment, time) and send."""
    modal = pilot.app.screen
    assert isinstance(modal, SignatureModal) and modal.query("#sign-time")
    modal.query_one("#sign-user", Input).focus()
    await pilot.press(*user, "enter", *secret, "enter", "enter", *when, "enter")


async def answer(pilot: Pilot[None]) -> str:
    def replied() -> bool:
        text = text_of(pilot.app, "#sign-outcome")
        return bool(text) and not text.startswith("sent")

    await until(pilot, replied, "the daemon's answer")
    return text_of(pilot.app, "#sign-outcome")


async def test_record_actual_start_and_end_through_the_tui(floor, mosquitto, tmp_path) -> None:  # noqa: F811
    folder, _ctx = floor
    for name in ("devices.toml", "plan.toml", "s.json"):
        shutil.copy(folder / name, tmp_path / name)
    db = tmp_path / "actuals.db"
    make_users(db)
    text = floor_text(tmp_path, mosquitto.port, db)
    async with running_floor(text):
        app = app_for(text, tmp_path)
        async with app.run_test(size=(160, 48)) as pilot:
            await online(pilot)
            schedule = await to_batch(pilot, "B1")
            ops = schedule.query_one("#op-table", DataTable)
            assert [ops.get_row_at(i)[1] for i in range(ops.row_count)] == [
                "compound", "fill", "sterilise"
            ]  # fmt: skip
            ops.focus()
            ops.move_cursor(row=1)  # fill

            # an end without a start: the daemon refuses, and the modal says why, verbatim
            await pilot.press("e")
            modal = app.screen
            assert isinstance(modal, SignatureModal)
            assert str(modal.query_one("#sign-title", Static).content) == (
                "Record actual end: B1/fill"
            )
            await sign_actual(pilot, "tech", "1111")
            assert await answer(pilot) == "refused (state): B1/fill has no recorded start"
            await pilot.press("escape")

            # a time the terminal cannot read is not sent
            await pilot.press("s")
            await sign_actual(pilot, "tech", "1111", "yesterday")
            assert (await answer(pilot)).startswith("not sent: time: 'yesterday': a duration ago")
            await pilot.press("escape")

            # start 5 minutes ago, end now: both recorded with their audit entries
            await pilot.press("s")
            await sign_actual(pilot, "tech", "1111", "5m")
            started = await answer(pilot)
            assert started.startswith("recorded: start 20"), started
            await pilot.press("escape")
            await pilot.press("e")
            await sign_actual(pilot, "sup", "2222")
            ended = await answer(pilot)
            assert ended.startswith("recorded: end 20"), ended
            await pilot.press("escape")
            assert isinstance(app.screen, ScheduleScreen)

            # the batch view: fill is on its actual times now; compound's start recorded from
            # the view, which then asks for the record again
            await pilot.press("b")
            view = await record_shown(pilot)
            table = view.query_one("#batch-ops", DataTable)

            def basis() -> dict[str, str]:  # the record lists operations by their window
                return {str(r[0]): str(r[2]) for r in map(table.get_row_at, range(3))}

            assert basis() == {"compound": "planned", "fill": "actual", "sterilise": "planned"}
            table.move_cursor(row=view._ops.index("compound"))
            await pilot.press("s")
            await sign_actual(pilot, "tech", "1111")
            compound = await answer(pilot)
            assert compound.startswith("recorded: start 20"), compound
            view.status = "loading ..."
            await pilot.press("escape")
            await record_shown(pilot)
            assert basis() == {
                "compound": "partly actual", "fill": "actual", "sterilise": "planned"
            }  # fmt: skip

    def seq(text: str) -> int:
        return int(text.rsplit("audit entry ", 1)[1].rstrip(")"))

    with Store(db) as store:
        rows = store.actuals("B1")
    got = [(a.batch, a.operation, a.event, a.user_id, a.audit_seq) for a in rows]
    assert got == [
        ("B1", "fill", "start", "tech", seq(started)),
        ("B1", "fill", "end", "sup", seq(ended)),
        ("B1", "compound", "start", "tech", seq(compound)),
    ]
    start, end = rows[0].time, rows[1].time
    assert 290 <= end - start <= 330  # "5m" ago, then now
    assert started.split()[2] == iso(start) and ended.split()[2] == iso(end)
