"""The scheduling core: known optima, and for every constraint kind a solved instance where
it binds (check() clean) plus the same schedule broken by hand (check() names the kind)."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
from ortools.sat.python import cp_model

from floorctl.scheduler import (
    Assignment,
    Batch,
    Changeover,
    Operation,
    Precedence,
    PressureRegime,
    Problem,
    Requirement,
    Resource,
    ResourceKind,
    Schedule,
    SolveOptions,
    Status,
    Window,
    check,
    schedule_to_dict,
    solve,
    with_room_outages,
)
from floorctl.scheduler.model import TIMING_ONLY_IGNORED_SUBSOLVERS
from floorctl.scheduler.schedule import dumps, schedule_from_dict

EPOCH = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)
FAST = SolveOptions(time_limit=10, workers=2)


def problem(ops, resources, precedences=(), batches=None, **kw) -> Problem:
    ids = sorted({o.batch for o in ops})
    return Problem(
        name="t",
        epoch=EPOCH,
        grid=kw.pop("grid", 1),
        resources=tuple(resources),
        batches=tuple(batches or [Batch(b) for b in ids]),
        operations=tuple(ops),
        precedences=tuple(precedences),
        **kw,
    )


def op(oid: str, duration: int, *reqs: Requirement, **kw) -> Operation:
    batch, name = oid.split("/")
    return Operation(oid, batch, name, duration, tuple(reqs), **kw)


def req(group: str, *cands: str, count: int = 1, demand: int = 1) -> Requirement:
    return Requirement(group, tuple(cands), count, demand)


def solved(p: Problem, options: SolveOptions = FAST) -> Schedule:
    r = solve(p, options)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE), r
    assert [v for v in r.violations if v.hard] == []
    assert check(p, r.schedule) == [v for v in r.violations]
    return r.schedule


def move(s: Schedule, oid: str, **changes) -> Schedule:
    return Schedule.build(
        s.epoch,
        [attrs.evolve(a, **changes) if a.operation == oid else a for a in s.assignments],
        s.plan,
    )


def kinds(p: Problem, s: Schedule) -> set[str]:
    return {v.kind for v in check(p, s) if v.hard}


# --- known optima ----------------------------------------------------------------------------


def test_rcpsp_known_optimum_is_proved():
    # R1 capacity 2: b takes both units; d needs R1 and R2 after a. Optimum 9 (a, b, d serial).
    p = problem(
        [
            op("p/a", 3, req("R1", "R1")),
            op("p/b", 4, req("R1", "R1", demand=2)),
            op("p/c", 2, req("R2", "R2")),
            op("p/d", 2, req("R2", "R2"), req("R1", "R1")),
        ],
        [Resource("R1", capacity=2), Resource("R2")],
        [Precedence("p/a", "p/d")],
    )
    r = solve(p, FAST)
    assert r.status is Status.OPTIMAL
    assert r.objective.makespan == 9 and r.objective.value == 9
    assert check(p, r.schedule) == []
    assert r.timings.first_solution is not None


def test_portfolio_follows_the_model_class():
    # start times are the only decisions: CP-SAT runs only its scheduling neighbourhoods
    # beside the full search (model.TIMING_ONLY_IGNORED_SUBSOLVERS)
    rcpsp = problem(
        [
            op("p/a", 3, req("R1", "R1")),
            op("p/b", 4, req("R1", "R1", demand=2)),
            op("p/d", 2, req("R2", "R2"), req("R1", "R1")),
        ],
        [Resource("R1", capacity=2), Resource("R2")],
        [Precedence("p/a", "p/d")],
    )
    r = solve(rcpsp, FAST)
    assert r.status is Status.OPTIMAL and r.objective.makespan == 9
    solver = cp_model.CpSolver()
    solver.parameters.merge_text_format(r.parameters)
    assert list(solver.parameters.ignore_subsolvers) == list(TIMING_ONLY_IGNORED_SUBSOLVERS)
    assert solver.parameters.max_time_in_seconds == FAST.time_limit  # merged, not replaced
    # reproducible mode (interleaved search) stays byte-identical with the narrower portfolio
    opts = SolveOptions(time_limit=1, workers=2, reproducible=True)
    docs = [dumps(schedule_to_dict(solve(rcpsp, opts).schedule, rcpsp)) for _ in range(2)]
    assert docs[0] == docs[1]

    # a choice between two machines, or a changeover sequence: the default portfolio
    choice = problem(
        [op("b1/x", 10, req("m", "M1", "M2")), op("b2/x", 10, req("m", "M1", "M2"))],
        [Resource("M1"), Resource("M2")],
    )
    assert "ignore_subsolvers" not in solve(choice, FAST).parameters
    seq = problem(
        [op("b1/x", 10, req("m", "M1")), op("b2/x", 10, req("m", "M1"))],
        [Resource("M1", ResourceKind.UNIT)],
        changeovers=(Changeover("*", "*", 5, ("M1",)),),
    )
    assert "ignore_subsolvers" not in solve(seq, FAST).parameters
    # replanning (move penalties): the default portfolio too
    previous = solve(rcpsp, FAST).schedule
    replan = solve(rcpsp, attrs.evolve(FAST, now=0), previous=previous)
    assert "ignore_subsolvers" not in replan.parameters


def test_dag_with_max_lag_optimum():
    # a -> {b, c} -> d; c must start within 1 of a's end, so b waits: makespan 2+3+3 = 8
    m = Resource("M")
    p = problem(
        [
            op("x/a", 2, req("m", "M")),
            op("x/b", 3, req("m", "M")),
            op("x/c", 3, req("m", "M")),
            op("x/d", 1),
        ],
        [m],
        [
            Precedence("x/a", "x/b"),
            Precedence("x/a", "x/c", max_lag=1),
            Precedence("x/b", "x/d"),
            Precedence("x/c", "x/d"),
        ],
    )
    s = solved(p)
    idx = s.index()
    assert idx["x/c"].start <= idx["x/a"].end + 1
    assert s.makespan == 9  # d (1 min) after b and c
    bad = move(s, "x/c", start=idx["x/c"].start + 5, end=idx["x/c"].end + 5)
    assert "max-lag" in kinds(p, bad)


def test_weighted_tardiness_first_then_makespan():
    # one machine: the high-priority batch goes first although it is longer
    p = problem(
        [op("lo/a", 10, req("m", "M")), op("hi/a", 20, req("m", "M"))],
        [Resource("M")],
        batches=[Batch("lo", due=10, priority=1), Batch("hi", due=20, priority=5)],
    )
    r = solve(p, FAST)
    assert r.status is Status.OPTIMAL
    assert r.schedule.index()["hi/a"].start == 0
    assert r.objective.weighted_tardiness == 20  # lo is 20 min late at priority 1
    assert [v.kind for v in r.violations] == ["due"] and not r.violations[0].hard


# --- one test per constraint kind ---------------------------------------------------------------


def test_capacity_and_overlap():
    p = problem([op("a/x", 5, req("m", "M")), op("b/x", 5, req("m", "M"))], [Resource("M")])
    s = solved(p)
    assert s.makespan == 10
    assert "capacity" in kinds(
        p,
        move(s, "b/x", start=0, end=5)
        if s.index()["b/x"].start
        else move(s, "a/x", start=0, end=5),
    )


def test_cumulative_demand():
    p = problem(
        [op("a/x", 4, req("r", "R", demand=2)), op("b/x", 4, req("r", "R", demand=2))],
        [Resource("R", capacity=3)],
    )
    s = solved(p)
    assert s.makespan == 8
    first = min(s.assignments, key=lambda a: a.start).operation
    other = "b/x" if first == "a/x" else "a/x"
    assert "capacity" in kinds(p, move(s, other, start=0, end=4))


def test_alternatives_and_eligibility():
    p = problem(
        [op("a/x", 5, req("unit", "U1", "U2")), op("b/x", 5, req("unit", "U1", "U2"))],
        [Resource("U1", ResourceKind.UNIT), Resource("U2", ResourceKind.UNIT)],
    )
    s = solved(p)
    assert s.makespan == 5
    assert {a.chosen("unit") for a in s.assignments} == {("U1",), ("U2",)}
    assert "eligibility" in kinds(p, move(s, "a/x", resources=(("unit", ("U3",)),)))
    assert "eligibility" in kinds(p, move(s, "a/x", resources=()))


def test_unit_uses_its_room_and_headcount():
    rooms = [
        Resource("buffer", ResourceKind.ROOM, capacity=2, headcount=3),
        Resource("laf-1", ResourceKind.UNIT, within="buffer"),
        Resource("laf-2", ResourceKind.UNIT, within="buffer"),
    ]
    ops = [op(f"{b}/fill", 60, req("unit", "laf-1", "laf-2"), headcount=2) for b in "ab"]
    p = problem(ops, rooms)
    s = solved(p)
    assert s.makespan == 120  # two hoods, but 2 + 2 people > headcount 3
    late = max(s.assignments, key=lambda a: a.start)
    assert "headcount" in kinds(p, move(s, late.operation, start=0, end=60))


def test_hazardous_only_in_negative_pressure_room():
    rooms = [
        Resource("buffer", ResourceKind.ROOM, pressure=PressureRegime.POSITIVE),
        Resource("hd-buffer", ResourceKind.ROOM, pressure=PressureRegime.NEGATIVE),
        Resource("laf-1", ResourceKind.UNIT, within="buffer"),
        Resource("bsc-1", ResourceKind.UNIT, within="hd-buffer"),
    ]
    p = problem([op("h/x", 30, req("unit", "laf-1", "bsc-1"), hazardous=True)], rooms)
    s = solved(p)
    assert s.assignments[0].chosen("unit") == ("bsc-1",)
    assert kinds(p, move(s, "h/x", resources=(("unit", ("laf-1",)),))) == {"hazardous"}


def test_changeover_and_decontamination():
    room = Resource("hd-buffer", ResourceKind.ROOM, capacity=2, pressure=PressureRegime.NEGATIVE)
    hood = Resource("bsc-1", ResourceKind.UNIT, within="hd-buffer")
    ops = [
        op("h/x", 30, req("unit", "bsc-1"), hazardous=True, family="cyto"),
        op("n/x", 30, req("unit", "bsc-1"), family="other"),
        op("m/x", 30, req("unit", "bsc-1"), family="other"),
    ]
    p = problem(
        ops, [room, hood], changeovers=(Changeover("other", "cyto", 45),), decontamination=120
    )
    r = solve(p, FAST)
    assert r.status is Status.OPTIMAL
    # best: n, m (no changeover within family), then h (45): 30+30+45+30
    assert r.objective.makespan == 135
    assert r.objective.changeover == 45
    s = r.schedule
    assert check(p, s) == []
    assert "changeover" in kinds(p, move(s, "h/x", start=60, end=90))
    # the decontamination after a hazardous batch
    hd_first = Schedule.build(
        EPOCH,
        [
            Assignment("h/x", "h", 0, 30, (("unit", ("bsc-1",)),)),
            Assignment("n/x", "n", 60, 90, (("unit", ("bsc-1",)),)),
            Assignment("m/x", "m", 90, 120, (("unit", ("bsc-1",)),)),
        ],
    )
    found = [v for v in check(p, hd_first) if v.kind == "changeover"]
    assert len(found) == 1 and "decontamination" in found[0].message and found[0].amount == 90


def test_outage_and_calendar():
    staff = Resource("ana", ResourceKind.STAFF, calendar=(Window(0, 480),), tags=frozenset({"q"}))
    m = Resource("M", outages=(Window(0, 100, "maintenance"),))
    p = problem([op("a/x", 60, req("m", "M"), req("staff", "ana"), headcount=1)], [m, staff])
    s = solved(p)
    assert s.assignments[0].start >= 100 and s.assignments[0].end <= 480
    assert "unavailable" in kinds(p, move(s, "a/x", start=50, end=110))
    assert "unavailable" in kinds(p, move(s, "a/x", start=450, end=510))


def test_room_outage_propagates_to_units():
    rooms = [
        Resource("buffer", ResourceKind.ROOM),
        Resource("laf-1", ResourceKind.UNIT, within="buffer"),
    ]
    p = with_room_outages(problem([op("a/x", 30, req("unit", "laf-1"))], rooms), [("buffer", 0)])
    r = solve(p, FAST)
    assert r.status is Status.INFEASIBLE


def test_precedence_release_duration_missing():
    p = problem(
        [op("a/x", 10, req("m", "M")), op("a/y", 10, req("m", "M"))],
        [Resource("M")],
        [Precedence("a/x", "a/y", min_lag=30)],
        batches=[Batch("a", release=15)],
    )
    s = solved(p)
    idx = s.index()
    assert idx["a/x"].start >= 15 and idx["a/y"].start >= idx["a/x"].end + 30
    assert "precedence" in kinds(p, move(s, "a/y", start=idx["a/x"].end, end=idx["a/x"].end + 10))
    assert "release" in kinds(p, move(s, "a/x", start=0, end=10))
    assert "duration" in kinds(p, move(s, "a/x", end=idx["a/x"].start + 5))
    gone = Schedule.build(EPOCH, [a for a in s.assignments if a.operation != "a/y"])
    assert kinds(p, gone) == {"missing"}


def test_soft_max_lag_is_a_penalty_not_a_failure():
    # the machine is out between 10 and 100: y cannot start within 5 min of x's end
    m = Resource("M", outages=(Window(10, 100),))
    p = problem(
        [op("a/x", 10, req("m", "M")), op("a/y", 10, req("m", "M"))],
        [m],
        [Precedence("a/x", "a/y", max_lag=5, max_lag_penalty=3)],
    )
    r = solve(p, FAST)
    assert r.status is Status.OPTIMAL
    assert r.objective.soft_penalty == 3 * (100 - 10 - 5)
    assert [(v.kind, v.hard) for v in r.violations] == [("max-lag", False)]


def test_infeasible_deadline_is_explained():
    p = problem(
        [op("a/x", 60, req("m", "M")), op("b/x", 60, req("m", "M"))],
        [Resource("M")],
        batches=[Batch("a", deadline=60), Batch("b", deadline=90)],
    )
    r = solve(p, attrs.evolve(FAST, explain=True))
    assert r.status is Status.INFEASIBLE
    assert set(r.explanation) <= {"deadline[a]", "deadline[b]"} and r.explanation
    # the planner still gets a schedule (greedy), with its violations listed
    assert r.schedule is not None and any(v.kind == "deadline" for v in r.violations)


def test_grid_rounds_durations_up_but_times_stay_exact():
    p = problem(
        [op("a/x", 20, req("m", "M")), op("b/x", 20, req("m", "M"))],
        [Resource("M")],
        grid=15,
    )
    s = solved(p)
    starts = sorted(a.start for a in s.assignments)
    assert starts == [0, 30]  # 20 min occupies two 15-min ticks
    assert all(a.end - a.start == 20 for a in s.assignments)


def test_reproducible_mode_gives_byte_identical_json():
    ops = [op(f"b{i}/x", 10 + 7 * (i % 3), req("m", "M1", "M2")) for i in range(8)]
    batches = [Batch(f"b{i}", due=20 + 5 * i, priority=1 + i % 2) for i in range(8)]
    p = problem(ops, [Resource("M1"), Resource("M2")], batches=batches)
    opts = SolveOptions(time_limit=2, workers=2, reproducible=True)
    docs = [dumps(schedule_to_dict(solve(p, opts).schedule, p)) for _ in range(2)]
    assert docs[0] == docs[1]
    assert schedule_from_dict(__import__("json").loads(docs[0])).assignments


def test_replanning_after_room_outage_moves_and_explains():
    rooms = [
        Resource("buffer", ResourceKind.ROOM, capacity=2),
        Resource("laf-1", ResourceKind.UNIT, within="buffer"),
        Resource("clean", ResourceKind.ROOM, capacity=1),
    ]
    ops = [op(f"b{i}/fill", 60, req("room", "buffer", "clean")) for i in range(4)]
    p = problem(ops, rooms)
    first = solve(p, FAST).schedule
    in_buffer = [a for a in first.assignments if a.chosen("room") == ("buffer",)]
    assert in_buffer
    p2 = with_room_outages(p, [("buffer", 0)])
    r = solve(p2, attrs.evolve(FAST, now=0), previous=first)
    assert r.status in (Status.OPTIMAL, Status.FEASIBLE) and r.ok
    by_op: dict[str, list] = {}
    for m in r.moves:
        by_op.setdefault(m.operation, []).append(m)
    for a in in_buffer:  # every operation that was in the buffer room moved, saying why
        (res,) = [m for m in by_op[a.operation] if m.what == "resource:room"]
        assert (res.old, res.new) == ("buffer", "clean")
        assert "buffer is not available from 2025-03-03 06:00 on (out of service)" in res.reason
    # moves are penalised: the fewest batches possible changed time (4 ops, 1 room: 2 must)
    moved_batches = {m.batch for m in r.moves if m.what == "start"}
    assert len(moved_batches) == 2
    assert r.objective.moves == 2 * p.weights.moved_batch + len(in_buffer) * p.weights.reassigned


def test_frozen_window_keeps_started_operations():
    ops = [op(f"b{i}/x", 30, req("m", "M")) for i in range(3)]
    p = problem(
        ops,
        [Resource("M")],
        batches=[Batch(f"b{i}", due=200 - 50 * i, priority=1) for i in range(3)],
    )
    prev = Schedule.build(
        EPOCH,
        [
            Assignment("b0/x", "b0", 0, 30, (("m", ("M",)),)),
            Assignment("b1/x", "b1", 30, 60, (("m", ("M",)),)),
            Assignment("b2/x", "b2", 60, 90, (("m", ("M",)),)),
        ],
    )
    r = solve(p, attrs.evolve(FAST, now=10, freeze=30), previous=prev)
    idx = r.schedule.index()
    assert idx["b0/x"] == prev.index()["b0/x"]  # started
    assert idx["b1/x"] == prev.index()["b1/x"]  # inside the frozen window


@pytest.mark.parametrize("cancel_first", [True])
def test_cancel_keeps_a_schedule(cancel_first):
    import threading

    ev = threading.Event()
    ev.set()
    ops = [op(f"b{i}/x", 10, req("m", "M1", "M2")) for i in range(6)]
    p = problem(ops, [Resource("M1"), Resource("M2")])
    r = solve(p, FAST, cancel=ev)
    assert r.schedule is not None and r.ok
