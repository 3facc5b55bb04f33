"""Constraints the model states to help CP-SAT, derived from the problem alone.

:func:`last_ends` names the operations whose end can be the latest (the others need no
makespan, tardiness or deadline constraint).
"""

from __future__ import annotations

from floorctl.scheduler.heuristic import ceil_div, topological_order
from floorctl.scheduler.problem import Problem, Relation

__all__ = ["last_ends"]


def last_ends(problem: Problem) -> tuple[set[str], set[str]]:
    """The operations whose end can be the latest: of the whole schedule, and of their batch.

    An operation is left out when a precedence makes a successor (of the same batch, for the
    second set) end no earlier than it in every schedule: ``after`` starts at least
    ``ceil((min_lag + d)/g)`` ticks after ``before`` (``d`` its duration for end-to-start,
    else 0), so its exact end in minutes is at least ``before``'s when ``g * that + its
    duration >= before's duration`` (and then its end in ticks too). Every operation is kept
    when the precedences have a cycle (an equality cycle would otherwise leave none)."""
    every = {o.id for o in problem.operations}
    try:
        topological_order(problem)
    except ValueError:
        return every, set(every)
    g = problem.grid
    followed: set[str] = set()
    followed_in_batch: set[str] = set()
    for p in problem.precedences:
        a, b = problem.operation(p.before), problem.operation(p.after)
        d = a.duration if p.relation is Relation.END_START else 0
        if g * ceil_div(p.min_lag + d, g) + b.duration >= a.duration:
            followed.add(a.id)
            if a.batch == b.batch:
                followed_in_batch.add(a.id)
    return every - followed, every - followed_in_batch
