"""What the model leaves out or adds to make CP-SAT's search and bound stronger must not change
any optimum (floorctl/scheduler/bounds.py): the ends that cannot be last (``last_ends``) are
left out of the makespan, tardiness and deadline constraints; the optimum of small random
instances is the same as with every end constrained."""

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
