"""What the model leaves out or adds to make CP-SAT's search and bound stronger must not change
any optimum (floorctl/scheduler/bounds.py):

- the ends that cannot be last (``last_ends``) are left out of the makespan, tardiness and
  deadline constraints: the optimum of small random instances is the same as with every end
  constrained;
- the makespan lower bound from the load on a group of resources (``load_bound``) never
  exceeds the optimum, and the optimum with it is the optimum without it, on small random
  instances with shifts, two-person operations and a QA release after a lag."""

from __future__ import annotations

import datetime as dt
import random

import attrs
import pytest

from floorctl.scheduler import (
    Batch,
    Operation,
    Precedence,
    Problem,
    Requirement,
    Resource,
    SolveOptions,
    Status,
    Window,
    solve,
)
from floorctl.scheduler import model as model_module
from floorctl.scheduler.bounds import last_ends
from floorctl.scheduler.problem import Relation

EPOCH = dt.datetime(2025, 3, 3, 6, 0, tzinfo=dt.UTC)
EXACT = SolveOptions(time_limit=20, workers=2)


def random_problem(seed: int) -> Problem:
    """A few operations in two or three batches on two resources, with end-to-start and
    start-to-start precedences (negative lags too), due dates and deadlines, grid 1 or 3."""
    rnd = random.Random(seed)
    batches = [f"b{k}" for k in range(rnd.randint(2, 3))]
    ops: list[Operation] = []
    for b in batches:
        for k in range(rnd.randint(2, 3)):
            reqs = []
            if rnd.random() < 0.8:
                reqs.append(Requirement("m", ("M1", "M2") if rnd.random() < 0.5 else ("M1",)))
            if rnd.random() < 0.5:
                reqs.append(Requirement("p", ("P",), demand=rnd.randint(1, 2)))
            ops.append(Operation(f"{b}/o{k}", b, f"o{k}", rnd.randint(0, 9), tuple(reqs)))
    precedences: list[Precedence] = []
    for i, a in enumerate(ops):
        for bop in ops[i + 1 :]:
            if rnd.random() < (0.6 if a.batch == bop.batch else 0.15):
                relation = Relation.START_START if rnd.random() < 0.4 else Relation.END_START
                precedences.append(
                    Precedence(a.id, bop.id, min_lag=rnd.randint(-3, 4), relation=relation)
                )
    grid = rnd.choice((1, 3))
    return Problem(
        name=f"random-{seed}",
        epoch=EPOCH,
        grid=grid,
        resources=(Resource("M1"), Resource("M2"), Resource("P", capacity=2)),
        batches=tuple(
            Batch(
                b,
                due=rnd.randint(5, 25),
                priority=rnd.randint(1, 3),
                deadline=rnd.choice((None, 60)),
            )
            for b in batches
        ),
        operations=tuple(ops),
        precedences=tuple(precedences),
    )


def every_end(problem: Problem) -> tuple[set[str], set[str]]:
    ids = {o.id for o in problem.operations}
    return ids, set(ids)


@pytest.mark.parametrize("seed", range(40))
def test_leaving_out_ends_that_cannot_be_last_keeps_the_optimum(seed, monkeypatch):
    p = random_problem(seed)
    lean = solve(p, EXACT)
    monkeypatch.setattr(model_module, "last_ends", every_end)
    full = solve(p, EXACT)
    assert lean.status is full.status is Status.OPTIMAL
    assert lean.objective.value == full.objective.value


def test_last_ends_follows_the_lags_and_durations():
    ops = (
        Operation("b/a", "b", "a", 10),
        Operation("b/s", "b", "s", 2),  # starts with a, ends before it
        Operation("b/e", "b", "e", 1),  # starts after a's end
        Operation("c/x", "c", "x", 4),
    )
    p = Problem(
        name="t",
        epoch=EPOCH,
        grid=1,
        resources=(),
        batches=(Batch("b"), Batch("c")),
        operations=ops,
        precedences=(
            Precedence("b/a", "b/s", relation=Relation.START_START),
            Precedence("b/a", "b/e"),
            Precedence("b/e", "c/x", min_lag=-5),  # x may end before e: e stays
        ),
    )
    any_last, batch_last = last_ends(p)
    assert any_last == {"b/s", "b/e", "c/x"}
    assert batch_last == {"b/s", "b/e", "c/x"}
    # on a 15-minute grid x starts no earlier than e's tick, so it ends after e
    assert last_ends(attrs.evolve(p, grid=15))[0] == {"b/s", "c/x"}
    # a long start-to-start lag makes the successor end later
    p2 = Problem(
        name="t",
        epoch=EPOCH,
        grid=1,
        resources=(),
        batches=(Batch("b"),),
        operations=ops[:2],
        precedences=(Precedence("b/a", "b/s", min_lag=8, relation=Relation.START_START),),
    )
    assert last_ends(p2) == ({"b/s"}, {"b/s"})


def test_last_ends_keeps_every_end_on_a_cycle():
    ops = (Operation("b/a", "b", "a", 3), Operation("b/c", "b", "c", 3))
    p = Problem(
        name="t",
        epoch=EPOCH,
        grid=1,
        resources=(),
        batches=(Batch("b"),),
        operations=ops,
        precedences=(
            Precedence("b/a", "b/c", relation=Relation.START_START),
            Precedence("b/c", "b/a", relation=Relation.START_START),
        ),
    )
    assert last_ends(p) == ({"b/a", "b/c"}, {"b/a", "b/c"})


def staffed_problem(seed: int) -> Problem:
    """Three to five batches of compound (two of three people), fill (one of them, or the
    line) and a QA release at least 20 minutes after the fill, by one QA person; every person
    works in shifts with gaps, so the load of the last shift decides the makespan."""
    rnd = random.Random(seed)

    def shifts(length: int, gap: int) -> tuple[Window, ...]:
        offset = rnd.randint(0, gap)
        return tuple(Window(t, t + length) for t in range(offset, 400, length + gap))

    staff = tuple(
        Resource(f"op{k}", calendar=shifts(rnd.randint(12, 20), rnd.randint(6, 20)))
        for k in range(3)
    )
    qa = Resource("qa", calendar=shifts(6, rnd.randint(10, 30)))
    line = Resource("line", outages=(Window(rnd.randint(0, 40), rnd.randint(41, 60)),))
    people = tuple(r.id for r in staff)
    ops: list[Operation] = []
    precedences: list[Precedence] = []
    batches: list[Batch] = []
    for b in range(rnd.randint(3, 5)):
        bid = f"b{b}"
        batches.append(Batch(bid, release=rnd.randint(0, 30)))
        fill_needs = (
            Requirement("line", ("line",)) if rnd.random() < 0.4 else Requirement("p", people)
        )
        ops += [
            Operation(
                f"{bid}/compound",
                bid,
                "compound",
                rnd.randint(3, 9),
                (Requirement("p", people, count=2),),
            ),
            Operation(f"{bid}/fill", bid, "fill", rnd.randint(2, 6), (fill_needs,)),
            Operation(f"{bid}/release", bid, "release", 2, (Requirement("qa", ("qa",)),)),
        ]
        precedences += [
            Precedence(f"{bid}/compound", f"{bid}/fill", max_lag=rnd.choice((None, 15))),
            Precedence(f"{bid}/fill", f"{bid}/release", min_lag=20),
        ]
    return Problem(
        name=f"staffed-{seed}",
        epoch=EPOCH,
        grid=1,
        horizon=400,
        resources=(*staff, qa, line),
        batches=tuple(batches),
        operations=tuple(ops),
        precedences=tuple(precedences),
    )


def test_load_bound_never_cuts_the_optimum(monkeypatch):
    tight = 0
    for seed in range(30):
        p = staffed_problem(seed)
        built = model_module.build_model(p, horizon=400)
        bound = built.makespan_bound
        with_bound = solve(p, EXACT)
        monkeypatch.setattr(model_module, "load_bound", lambda *a: None)
        without = solve(p, EXACT)
        monkeypatch.undo()
        assert with_bound.status is without.status, seed
        if without.status is Status.INFEASIBLE:
            continue
        assert without.status is Status.OPTIMAL, seed
        # no due dates or changeovers: the objective is the makespan in ticks (grid 1)
        optimum = without.objective.value
        assert with_bound.objective.value == optimum, seed
        assert bound is None or bound.ticks <= optimum, (seed, bound, optimum)
        if bound is not None and bound.ticks == optimum:
            tight += 1
    # the bound is not vacuous: on several instances it is the optimum itself
    assert tight >= 3


def test_load_bound_counts_the_shift_capacity():
    # two people, each working [0, 10) and [30, 40), do four one-person jobs of 6; two QA
    # people, working [50, 52) and [80, 82), release each job at least 20 after it. The 24
    # person-minutes do not fit into the first shift (20), so the last job ends at >= 32
    # and its release waits for 80: the bound is 81, which is the optimum (two jobs in each
    # shift). Every batch alone could be released at 51.
    staff = tuple(Resource(f"op{k}", calendar=(Window(0, 10), Window(30, 40))) for k in range(2))
    qa = tuple(Resource(f"qa{k}", calendar=(Window(50, 52), Window(80, 82))) for k in range(2))
    ops, precedences = [], []
    for k in range(4):
        ops += [
            Operation(f"b{k}/job", f"b{k}", "job", 6, (Requirement("p", ("op0", "op1")),)),
            Operation(f"b{k}/release", f"b{k}", "release", 1, (Requirement("qa", ("qa0", "qa1")),)),
        ]
        precedences.append(Precedence(f"b{k}/job", f"b{k}/release", min_lag=20))
    p = Problem(
        name="shift",
        epoch=EPOCH,
        grid=1,
        horizon=100,
        resources=(*staff, *qa),
        batches=tuple(Batch(f"b{k}") for k in range(4)),
        operations=tuple(ops),
        precedences=tuple(precedences),
    )
    built = model_module.build_model(p, horizon=100)
    assert built.makespan_bound is not None
    assert built.makespan_bound.ticks == 81
    assert built.makespan_bound.group == ("op0", "op1")
    r = solve(p, EXACT)
    assert r.status is Status.OPTIMAL and r.objective.makespan == 81


def test_no_load_bound_without_calendars():
    # PSPLIB-like: CP-SAT's own energetic reasoning covers it, and the model stays the plain
    # model (docs/performance.md, Scheduler)
    p = random_problem(3)
    assert not any(r.calendar or r.outages for r in p.resources)
    assert model_module.build_model(p, horizon=200).makespan_bound is None
