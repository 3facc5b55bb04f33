"""The demo moves its dated example plan to start today, so "now" is inside it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from floorctl.demo import rebase_plan
from floorctl.scheduler.plan import load_plan

PLAN = Path(__file__).parent.parent.parent / "examples" / "plans" / "demo" / "facility.toml"


def test_rebased_plan_starts_today_and_keeps_its_shape(tmp_path) -> None:
    original = load_plan(PLAN)
    moved_path = rebase_plan(PLAN, tmp_path, dt.date(2031, 6, 2))
    moved = load_plan(moved_path)
    assert moved_path.parent == tmp_path / "plan"
    assert moved.epoch.date() == dt.date(2031, 6, 2)
    assert moved.epoch.time() == original.epoch.time()
    # the same batches, releases and due dates relative to the plan's start (local times: a
    # daylight-saving change inside the original plan moves them by up to an hour)
    assert [b.id for b in moved.batches] == [b.id for b in original.batches]
    for m, o in zip(moved.batches, original.batches, strict=True):
        for a, b in ((m.release, o.release), (m.due, o.due), (m.deadline, o.deadline)):
            assert (a is None) == (b is None) and (a is None or abs(a - b) <= 60)
    assert len(moved.operations) == len(original.operations)
