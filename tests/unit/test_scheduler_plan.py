"""Plan files: the demo plan on the demo floor, and a corpus of bad plans whose every problem
is reported with its file, key path and line (tests/plans/bad/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from floorctl.scheduler import PressureRegime, ResourceKind
from floorctl.scheduler.plan import PlanError, load_plan

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "tests" / "plans"
DEMO = ROOT / "examples" / "plans" / "demo" / "facility.toml"


def test_demo_plan_uses_the_demo_floor():
    p = load_plan(DEMO)
    laf = p.resource("laf-1")
    assert laf.kind is ResourceKind.UNIT and laf.within == "buffer"
    assert p.resource("hd-buffer").pressure is PressureRegime.NEGATIVE
    assert p.hazardous_allowed("bsc-1") and not p.hazardous_allowed("laf-1")
    assert len(p.batches) == 8 and p.grid == 15
    fill = p.operation("B001/fill")  # 1h + 6 s x 400
    assert fill.duration == 60 + 40 and fill.headcount == 2
    (staff,) = [r for r in fill.requirements if r.group == "staff"]
    assert staff.count == 2 and "fay" not in staff.candidates
    hold = [x for x in p.precedences if x.after == "B001/qa-release"]
    assert hold[0].min_lag == 14 * 24 * 60
    # the shifts: ana works 06:00-14:30 New York time on weekdays
    ana = p.resource("ana")
    assert ana.calendar[0].end - ana.calendar[0].start == 510


def test_small_plan_without_floor():
    p = load_plan(PLANS / "small.toml")
    assert [o.id for o in p.operations] == ["S1/fill", "S1/release", "S2/fill", "S2/release"]
    assert p.operation("S1/release").milestone


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "types.toml",
            [
                ("types.toml", 5, "plan.horizon", 'expected a duration string such as "5s"'),
                ("types.toml", 32, "recipe[syringe].operation[fill].colour", "unknown key"),
            ],
        ),
        (
            "refs.toml",
            [
                ("refs.csv", 3, "batch[S2].recipe", "unknown recipe 'syrnge' (known: syringe)"),
                ("refs.csv", 4, "batch[S3].due", "expected a date and time"),
                ("refs.csv", 4, "batch[S3].quantity", "expected a number, got 'lots'"),
                (
                    "refs.toml",
                    29,
                    "recipe[syringe].operation[fill].units[0]",
                    "unknown ISO 5 unit 'laf-9'",
                ),
                (
                    "refs.toml",
                    32,
                    "recipe[syringe].operation[fill].headcount",
                    "needs 1 people (hazardous-drug), 0 on staff qualify",
                ),
            ],
        ),
        ("syntax.toml", [("syntax.toml", 4, "", "TOML syntax error")]),
        (
            "hazardous.toml",
            [
                (
                    "hazardous.toml",
                    30,
                    "recipe[syringe].operation[fill].units",
                    "needs a negative-pressure room",
                )
            ],
        ),
    ],
)
def test_bad_plans_name_file_path_and_line(name, expected):
    with pytest.raises(PlanError) as info:
        load_plan(PLANS / "bad" / name)
    got = [(Path(p.file).name, p.line, p.path, p.message) for p in info.value.problems]
    assert len(got) == len(expected), got
    for (file, line, path, text), g in zip(expected, got, strict=True):
        assert g[:3] == (file, line, path) and text in g[3], g
    assert all(p.format().startswith(p.file) for p in info.value.problems)


def test_unknown_floor_room(tmp_path):
    text = DEMO.read_text().replace('id = "ante"', 'id = "anteroom"', 1)
    plan = tmp_path / "facility.toml"
    plan.write_text(
        text.replace("../../../devices.toml", str(ROOT / "devices.toml")).replace(
            '"batches.csv"', f'"{DEMO.parent / "batches.csv"}"'
        )
    )
    with pytest.raises(PlanError) as info:
        load_plan(plan)
    (p,) = [p for p in info.value.problems if p.path == "room[anteroom].id"]
    assert "no room 'anteroom' in" in p.message and p.line == 23
