"""What makes the scheduler fast on realistic plans (issue 5): a greedy schedule that meets the
hard maximum lags, a complete and feasible hint, the heuristic schedule reported before
CP-SAT's first, and replanning that keeps the batches that need not move."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import attrs
import pytest
from ortools.sat.python import cp_model

from floorctl.scheduler import (
    Batch,
    Changeover,
    Operation,
    Precedence,
    Problem,
    Progress,
    Requirement,
    Resource,
    ResourceKind,
    Schedule,
    SolveOptions,
    Status,
    check,
    solve,
    with_room_outages,
)
from floorctl.scheduler.heuristic import greedy
from floorctl.scheduler.model import (
    allowed_candidates,
    build_model,
    default_horizon,
    hint_objective,
)
from floorctl.scheduler.schedule import Assignment

EPOCH = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)
FAST = SolveOptions(time_limit=10, workers=2)


def op(oid: str, duration: int, *reqs: Requirement, **kw) -> Operation:
    batch, name = oid.split("/")
    return Operation(oid, batch, name, duration, tuple(reqs), **kw)


def req(group: str, *cands: str, count: int = 1) -> Requirement:
    return Requirement(group, tuple(cands), count)


def test_greedy_meets_hard_max_lags():
    # x (due first) takes M2 for [0, 60); y's fill must start within 10 min of its compound's
    # end: placing compound at 0 (M1 is free) would break that, so compound waits
    p = Problem(
        name="t",
        epoch=EPOCH,
        grid=1,
        resources=(Resource("M1"), Resource("M2")),
        batches=(Batch("x", due=60), Batch("y", due=500)),
        operations=(
            op("x/fill", 60, req("m", "M2")),
            op("y/compound", 30, req("m", "M1")),
            op("y/fill", 30, req("m", "M2")),
        ),
        precedences=(Precedence("y/compound", "y/fill", max_lag=10),),
    )
    seed = greedy(p, allowed=allowed_candidates(p))
    assert seed is not None
    s = Schedule.build(EPOCH, seed, "t")
    assert [v for v in check(p, s) if v.hard] == []
    idx = s.index()
    assert idx["y/fill"].start - idx["y/compound"].end <= 10
    assert idx["y/fill"].start == 60


def _rich_problem() -> Problem:
    """Alternatives, a unit in a room, changeovers, hard and soft max lags, due dates."""
    rooms = [
        Resource("buffer", ResourceKind.ROOM, capacity=2),
        Resource("laf-1", ResourceKind.UNIT, within="buffer"),
        Resource("laf-2", ResourceKind.UNIT, within="buffer"),
        Resource("line"),
    ]
    ops, precs, batches = [], [], []
    for i in range(6):
        fam = "syringe" if i % 2 else "bag"
        b = f"b{i}"
        batches.append(Batch(b, family=fam, due=200 + 60 * i, priority=1 + i % 3))
        ops += [
            op(f"{b}/compound", 40 + 5 * i, req("unit", "laf-1", "laf-2"), family=fam),
            op(f"{b}/fill", 30, req("unit", "laf-1", "laf-2"), family=fam),
            op(f"{b}/pack", 20, req("line", "line"), family=fam),
        ]
        precs += [
            Precedence(f"{b}/compound", f"{b}/fill", max_lag=240),
            Precedence(f"{b}/fill", f"{b}/pack", max_lag=30, max_lag_penalty=5),
        ]
    return Problem(
        name="rich",
        epoch=EPOCH,
        grid=5,
        resources=tuple(rooms),
        batches=tuple(batches),
        operations=tuple(ops),
        precedences=tuple(precs),
        changeovers=(Changeover("*", "*", 30), Changeover("bag", "syringe", 45)),
    )


def _hinted(p: Problem, previous: Schedule | None = None) -> tuple[cp_model.CpModel, float]:
    seed = greedy(p, allowed=allowed_candidates(p))
    assert seed is not None
    built = build_model(
        p,
        horizon=default_horizon(p, seed),
        previous=previous,
        hint={a.operation: a for a in seed},
    )
    proto = built.model.proto
    hinted = set(proto.solution_hint.vars)
    constants = {
        i
        for i, v in enumerate(proto.variables)
        if len(v.domain) == 2 and v.domain[0] == v.domain[1]
    }
    assert set(range(len(proto.variables))) - constants <= hinted  # every variable
    value = hint_objective(built)
    assert value is not None
    return built.model, value


@pytest.mark.parametrize("replanning", [False, True])
def test_hint_is_complete_and_feasible(replanning):
    p = _rich_problem()
    previous = None
    if replanning:  # the move penalties' literals are hinted too
        seed = greedy(p, allowed=allowed_candidates(p))
        assert seed is not None
        previous = Schedule.build(
            EPOCH, [attrs.evolve(a, start=a.start + 5, end=a.end + 5) for a in seed], "t"
        )
    model, value = _hinted(p, previous)
    solver = cp_model.CpSolver()
    solver.parameters.merge_text_format(
        "fix_variables_to_their_hinted_value: true num_workers: 1 max_time_in_seconds: 10"
    )
    status = solver.solve(model)
    assert status in (cp_model.OPTIMAL, cp_model.FEASIBLE), solver.status_name(status)
    assert solver.objective_value == pytest.approx(value)


def test_heuristic_schedule_is_reported_before_cp_sat():
    p = _rich_problem()
    seen: list[Progress] = []
    r = solve(p, FAST, progress=seen.append)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE) and r.ok
    reports = [x for x in seen if x.objective is not None]
    assert reports[0].source == "greedy" and reports[0].solutions == 0
    assert all(x.source == "cp-sat" for x in reports[1:])
    assert reports[-1].objective <= reports[0].objective
    assert r.timings.first_schedule is not None and r.timings.first_solution is not None
    assert r.timings.first_schedule <= r.timings.first_solution


def test_replanning_keeps_what_need_not_move_and_nothing_starts_in_the_past():
    rooms = [
        Resource("buffer", ResourceKind.ROOM, capacity=1),
        Resource("clean", ResourceKind.ROOM, capacity=1),
    ]
    ops = [op(f"b{i}/fill", 60, req("room", "buffer", "clean")) for i in range(5)]
    p = Problem(
        name="t",
        epoch=EPOCH,
        grid=15,
        resources=tuple(rooms),
        batches=tuple(Batch(f"b{i}", due=400) for i in range(5)),
        operations=tuple(ops),
    )
    # the clean room is idle before 60: a replanned batch must not go there (it is past)
    placed = [("buffer", 0), ("clean", 60), ("buffer", 60), ("clean", 120), ("buffer", 120)]
    prev = Schedule.build(
        EPOCH,
        [
            Assignment(f"b{i}/fill", f"b{i}", t, t + 60, (("room", (r,)),))
            for i, (r, t) in enumerate(placed)
        ],
    )
    now = 60  # b0 ran; the buffer room is out from now on
    p2 = with_room_outages(p, [("buffer", now)])
    seen: list[Progress] = []
    r = solve(p2, attrs.evolve(FAST, now=now), previous=prev, progress=seen.append)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE) and r.ok
    assert seen[0].source == "repaired"
    idx, old = r.schedule.index(), prev.index()
    for a in r.schedule.assignments:
        if old[a.operation].start >= now:
            assert a.start >= now, a  # not started: cannot start in the past
    # the batches in the clean room keep their place; the two in the buffer room move
    for b in ("b0", "b1", "b3"):
        assert idx[f"{b}/fill"] == old[f"{b}/fill"]
    assert {m.batch for m in r.moves} == {"b2", "b4"}


PLANGEN = Path(__file__).resolve().parents[2] / "examples" / "plangen.py"


@pytest.mark.slow
def test_thirty_batch_plan_gets_a_cp_sat_schedule(tmp_path):
    # before the complete hint and the probing limit, CP-SAT found no schedule for a
    # 30-batch plan within 60 s (it was still probing in presolve)
    spec = importlib.util.spec_from_file_location("plangen", PLANGEN)
    assert spec is not None and spec.loader is not None
    plangen = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("plangen", plangen)
    spec.loader.exec_module(plangen)
    from floorctl.scheduler.plan import load_plan

    p = load_plan(plangen.write_plan(tmp_path / "plan", 30, 2, 1))
    r = solve(p, SolveOptions(time_limit=8, workers=2, seed=1))
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE), r.status
    assert r.solutions >= 1 and r.ok
    assert r.timings.first_schedule is not None and r.timings.first_schedule < 8
