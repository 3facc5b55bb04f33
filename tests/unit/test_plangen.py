"""examples/plangen.py: generated 503B plans load, solve feasibly, and are reproducible."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from floorctl.scheduler import ResourceKind, SolveOptions, Status, check, solve

try:
    from floorctl.scheduler import load_plan
except ImportError:  # exported from the package later; the plan module has it
    from floorctl.scheduler.plan import load_plan

PLANGEN = Path(__file__).resolve().parents[2] / "examples" / "plangen.py"


@pytest.fixture(scope="module")
def plangen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plangen", PLANGEN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plangen"] = module
    spec.loader.exec_module(module)
    return module


def test_same_seed_same_files_other_seed_other_files(plangen: ModuleType, tmp_path: Path) -> None:
    a = plangen.write_plan(tmp_path / "a", 30, 2, seed=7)
    b = plangen.write_plan(tmp_path / "b", 30, 2, seed=7)
    c = plangen.write_plan(tmp_path / "c", 30, 2, seed=8)
    for name in ("facility.toml", "batches.csv"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
    assert (a.parent / "batches.csv").read_bytes() != (c.parent / "batches.csv").read_bytes()


def test_generated_plan_is_the_demo_floor_with_503b_content(
    plangen: ModuleType, tmp_path: Path
) -> None:
    problem = load_plan(plangen.write_plan(tmp_path, 40, 3, seed=3))
    assert len(problem.batches) == 40
    kinds = {r.id: r.kind for r in problem.resources}
    for room in ("ante", "buffer", "hd-buffer"):
        assert kinds[room] is ResourceKind.ROOM
    for unit in ("laf-1", "laf-2", "bsc-1", "bsc-2"):
        assert kinds[unit] is ResourceKind.UNIT
    tags = {t for r in problem.resources for t in r.tags}
    assert {"autoclave", "depyrogenation-oven", "filling-line", "qa-release"} <= tags
    assert all(r.calendar for r in problem.resources if r.kind is ResourceKind.STAFF)
    # every batch ends with QA release >= 14 days after its previous operation
    holds = [p for p in problem.precedences if p.after.endswith("/qa-release")]
    assert len(holds) == 40 and all(p.min_lag == 14 * 24 * 60 for p in holds)
    # hazardous drugs only on the BSCs of the negative-pressure room
    hazardous = [o for o in problem.operations if o.hazardous and o.requirements]
    assert hazardous
    for op in hazardous:
        units = [q for q in op.requirements if q.group == "unit"]
        assert all(set(q.candidates) <= {"bsc-1", "bsc-2"} for q in units)
    # due dates after the sterility hold, deadlines (beyond-use dating) after the due date
    for b in problem.batches:
        assert b.due is not None and b.deadline is not None
        assert b.release + 14 * 24 * 60 < b.due < b.deadline
    assert problem.changeovers and problem.grid == 15


def test_small_generated_plan_solves_feasibly(plangen: ModuleType, tmp_path: Path) -> None:
    problem = load_plan(plangen.write_plan(tmp_path, 8, 1, seed=1))
    result = solve(problem, SolveOptions(time_limit=10, workers=2, seed=1))
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert result.schedule is not None
    assert len(result.schedule.assignments) == len(problem.operations)
    assert [v for v in check(problem, result.schedule) if v.hard] == []


def test_cli_writes_a_plan_and_rejects_bad_sizes(plangen: ModuleType, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(plangen.main, [str(tmp_path / "p"), "--batches", "5", "--weeks", "1"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "p" / "facility.toml").is_file()
    assert len((tmp_path / "p" / "batches.csv").read_text().splitlines()) == 6
    bad = runner.invoke(plangen.main, [str(tmp_path / "q"), "--weeks", "0"])
    assert bad.exit_code == 2 and "--weeks" in bad.output
    missing = runner.invoke(plangen.main, [str(tmp_path / "r"), "--devices", "nope.toml"])
    assert missing.exit_code == 2 and "nope.toml" in missing.output
