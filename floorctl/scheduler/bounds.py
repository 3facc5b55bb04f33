"""Lower bounds that the model states for CP-SAT, which it does not infer on its own.

:func:`last_ends` names the operations whose end can be the latest (the others need no
makespan, tardiness or deadline constraint). :func:`load_bound` is a lower bound of the
makespan from the load on a group of resources: CP-SAT's own bound on a generated 503B plan
was only as good as every batch scheduled alone, because it does not see that the last
batches compete for the same few people in the last shifts before the weekend.

**The load bound.** Take a *group* ``S``: the candidates of some requirement (one resource, or
several interchangeable capacity-1 resources: the aseptically qualified staff, two hoods).
Every operation with a requirement whose candidates all lie in ``S`` occupies ``demand``
units of ``S`` (its count, or its demand on a single resource) for its ``size`` ticks. At
tick ``t`` the group has ``cap(t)`` units: the members not blocked by their calendar, outages
or their room's (the blocks the model puts into their NoOverlap / Cumulative). For a head
``h`` let ``O_h`` be the group's operations whose earliest start is ``>= h``, with energy
``E_h = sum(demand x size)``. In every schedule they are all processed inside ``[h, end)``,
where ``end`` is the latest end among them, so ``sum(cap(t), h <= t < end) >= E_h``: ``end >=
C_h``, the first tick at which the group's capacity from ``h`` on covers ``E_h`` (a
preemptive relaxation). The operation ``i`` that ends last then ends at ``>= C_h``, and the
schedule ends no earlier than ``f_i(C_h)``: its successors propagated forward from there
with their minimum lags and their candidates' calendars (a QA release 14 days after the
last fill waits for the next weekday day shift). So ``makespan >= min(f_i(C_h), i in O_h)``
for every group and head; the bound is the largest of these. Each step only relaxes the
model (capacity shared preemptively, other operations ignored), so no schedule is cut. It is
stated only when some resource has a calendar or outages: that is what CP-SAT misses.
"""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Protocol

from attrs import frozen
from ortools.sat.python import cp_model

from floorctl.scheduler.heuristic import ceil_div, topological_order
from floorctl.scheduler.problem import Precedence, Problem, Relation

__all__ = ["LoadBound", "last_ends", "load_bound"]


class Availability(Protocol):
    """What :func:`load_bound` needs of the model's availability domains."""

    def blocked(self, rid: str) -> list[tuple[int, int]]: ...

    def starts(
        self, groups: list[tuple[int, tuple[str, ...]]], size: int, hi: int
    ) -> cp_model.Domain: ...


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


@frozen
class LoadBound:
    """A makespan lower bound (ticks) and where it comes from."""

    ticks: int
    group: tuple[str, ...]  # the resources
    head: int  # tick from which their load is counted
    operations: int  # how many operations that load is


def _lag_ticks(problem: Problem, p: Precedence) -> int:
    d = problem.operation(p.before).duration if p.relation is Relation.END_START else 0
    return ceil_div(p.min_lag + d, problem.grid)


def _groups(
    problem: Problem, allowed: Mapping[str, Mapping[str, tuple[str, ...]]]
) -> dict[tuple[str, ...], dict[str, int]]:
    """Per group (sorted resource ids), the demand of each operation that must use it."""
    g = problem.grid
    candidate_sets: set[tuple[str, ...]] = set()
    for op in problem.operations:
        for req in op.requirements:
            cands = allowed[op.id][req.group]
            if len(cands) >= req.count:
                candidate_sets.add(tuple(sorted(set(cands))))
    out: dict[tuple[str, ...], dict[str, int]] = {}
    for group in candidate_sets:
        if len(group) > 1 and any(problem.resource(r).capacity != 1 for r in group):
            continue  # interchangeable pools: not needed, and not what the model sequences
        members = set(group)
        demand: dict[str, int] = {}
        for op in problem.operations:
            if ceil_div(op.duration, g) == 0:
                continue
            for req in op.requirements:
                cands = allowed[op.id][req.group]
                if len(cands) < req.count or not set(cands) <= members:
                    continue
                need = req.demand if len(group) == 1 else req.count
                demand[op.id] = max(demand.get(op.id, 0), need)
        if demand:
            out[group] = demand
    return out


def _capacity_prefix(
    problem: Problem, group: tuple[str, ...], horizon: int, availability: Availability
) -> list[int]:
    """``P[t]``: the group's capacity summed over ticks ``[0, t)``, for t in 0..horizon."""
    delta = [0] * (horizon + 1)
    for rid in group:
        capacity = problem.resource(rid).capacity if len(group) == 1 else 1
        delta[0] += capacity
        spans = sorted((max(a, 0), min(b, horizon)) for a, b in availability.blocked(rid))
        merged: list[list[int]] = []
        for a, b in spans:
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
            delta[a] -= capacity
            delta[b] += capacity
    prefix = [0] * (horizon + 1)
    level = 0
    for t in range(horizon):
        level += delta[t]
        prefix[t + 1] = prefix[t] + level
    return prefix


def load_bound(
    problem: Problem,
    horizon: int,
    allowed: Mapping[str, Mapping[str, tuple[str, ...]]],
    earliest: Mapping[str, int],
    availability: Availability,
) -> LoadBound | None:
    """The best load bound over every group and head (module docstring), or None when none
    says more than 0. ``earliest``: per operation a lower bound of its start tick (the
    model's start domains)."""
    if not earliest or not any(r.calendar or r.outages for r in problem.resources):
        # without calendars or outages CP-SAT's own energetic reasoning on the Cumulative /
        # NoOverlap already covers this bound; stating it only perturbs the search (PSPLIB
        # j30's three hardest: optimum in 6 of 12 runs with it, 10 of 12 without)
        return None
    try:
        order = topological_order(problem)
    except ValueError:
        return None
    g = problem.grid
    size = {o.id: ceil_div(o.duration, g) for o in problem.operations}
    rank = {o.id: k for k, o in enumerate(order)}
    succs: dict[str, list[Precedence]] = defaultdict(list)
    preds: dict[str, list[Precedence]] = defaultdict(list)
    for p in problem.precedences:
        succs[p.before].append(p)
        preds[p.after].append(p)
    # tail[i]: makespan >= start_i + tail[i] by the lags alone (the cheap estimate of f_i)
    tail: dict[str, int] = {}
    for op in reversed(order):
        tail[op.id] = max(
            [size[op.id]] + [_lag_ticks(problem, p) + tail[p.after] for p in succs[op.id]]
        )
    demand_groups: dict[str, list[tuple[int, tuple[str, ...]]]] = {
        op.id: [
            (r.count, allowed[op.id][r.group])
            for r in op.requirements
            if len(allowed[op.id][r.group]) >= r.count
        ]
        for op in problem.operations
    }
    memo: dict[tuple[str, int], int] = {}
    domains: dict[str, cp_model.Domain] = {}  # per operation: the ticks it may start at

    def finish(oid: str, end: int) -> int:
        """f_i: the earliest the schedule can end when ``oid`` ends at ``end`` or later."""
        key = (oid, end)
        if key in memo:
            return memo[key]
        start = {oid: max(earliest[oid], end - size[oid])}
        heap = [(rank[p.after], p.after) for p in succs[oid]]
        heapq.heapify(heap)
        latest = start[oid] + size[oid]
        while heap:
            _, sid = heapq.heappop(heap)
            if sid in start:
                continue
            t = earliest.get(sid, 0)
            for p in preds[sid]:
                if p.before in start:
                    t = max(t, start[p.before] + _lag_ticks(problem, p))
            free = domains.get(sid)
            if free is None:
                hi = max(horizon - size[sid], 0)
                free = domains[sid] = availability.starts(demand_groups[sid], size[sid], hi)
            later = free.intersection_with(cp_model.Domain(t, max(horizon, t)))
            start[sid] = t if later.is_empty() else later.min()
            latest = max(latest, start[sid] + size[sid])
            for p in succs[sid]:
                heapq.heappush(heap, (rank[p.after], p.after))
        memo[key] = latest
        return latest

    best: LoadBound | None = None
    for group, demand in _groups(problem, allowed).items():
        prefix = _capacity_prefix(problem, group, horizon, availability)
        members = sorted(demand, key=lambda oid: earliest[oid], reverse=True)
        energy = 0
        k = 0
        while k < len(members):
            head = earliest[members[k]]
            while k < len(members) and earliest[members[k]] == head:
                energy += demand[members[k]] * size[members[k]]
                k += 1
            if head >= horizon:
                continue
            end = bisect.bisect_left(prefix, prefix[head] + energy)
            if end > horizon:
                continue  # more load than capacity: the model finds that out itself
            value = _least(members[:k], end, earliest, size, tail, finish)
            if best is None or value > best.ticks:
                best = LoadBound(value, group, head, k)
    if best is None or best.ticks <= 0:
        return None
    return best


def _least(
    ops: list[str],
    end: int,
    earliest: Mapping[str, int],
    size: Mapping[str, int],
    tail: Mapping[str, int],
    finish: Callable[[str, int], int],
) -> int:
    """min(finish(i, end) for i in ops), evaluated in order of the cheap estimate
    ``max(earliest, end - size) + tail`` (a lower bound of it), stopped when no estimate can
    beat the least found."""
    estimates = sorted((max(earliest[i], end - size[i]) + tail[i], i) for i in ops)
    least: int | None = None
    for estimate, oid in estimates:
        if least is not None and estimate >= least:
            break
        value = finish(oid, end)
        least = value if least is None else min(least, value)
    assert least is not None
    return least
