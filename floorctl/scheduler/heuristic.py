"""A greedy serial schedule-generation scheme on the solver's time grid.

It gives the CP-SAT model three things: a horizon when the problem has none, a complete hint
(first feasible schedule in well under a second on plans of a few hundred operations) and a
fallback answer when the solver finds nothing in time (scheduling.md 3.6: hints can fail).

Operations are placed one by one in a topological order of the precedences, batches by
deadline / due date / priority, each at the earliest tick at which its predecessors' minimum
lags, its release, and a choice of free eligible resources (capacity, headcount, calendars,
outages, changeovers with both neighbours on a disjunctive resource) allow. Maximum lags and
deadlines are not enforced: a fallback schedule lists them among its violations.
"""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Mapping

from floorctl.scheduler.problem import Operation, Precedence, Problem, Relation
from floorctl.scheduler.schedule import Assignment

#: the scheme gives up on an operation after this many ticks past its earliest start
GIVE_UP = 10**6
#: how often a batch is placed anew to meet its hard maximum lags
MAX_LAG_RETRIES = 20


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


class _Timeline:
    """The uses of one resource, in ticks: disjunctive (a start-sorted sequence) or a
    cumulative profile."""

    def __init__(self, problem: Problem, rid: str, blocked: list[tuple[int, int]]) -> None:
        self.problem = problem
        self.rid = rid
        res = problem.resource(rid)
        self.capacity = res.capacity
        self.headcount = res.headcount
        self.blocked = blocked
        self.uses: list[tuple[int, int, int, int, str]] = []  # start, end, demand, people, op

    def conflict(self, op: Operation, s: int, size: int, demand: int, g: int) -> int | None:
        """None if ``op`` fits at tick ``s``; else a tick from which to try again."""
        e = s + size
        nxt: int | None = None
        for bs, be in self.blocked:
            if bs < max(e, s + 1) and s < be:
                nxt = be if nxt is None else min(nxt, be)
        if nxt is not None:
            return nxt
        if self.capacity == 1:
            return self._sequence_conflict(op, s, size, g)
        level = demand
        people = op.headcount
        ends: list[int] = []
        for us, ue, d, p, _ in self.uses:
            if us < e and s < ue:
                level += d
                people += p
                ends.append(ue)
        if level > self.capacity or (self.headcount is not None and people > self.headcount):
            return min(ends) if ends else s + 1
        return None

    def _sequence_conflict(self, op: Operation, s: int, size: int, g: int) -> int | None:
        problem = self.problem
        for us, ue, _, _, oid in self.uses:
            other = problem.operation(oid)
            if us <= s:  # other before op
                need = us + max(
                    ue - us, ceil_div(other.duration + problem.changeover(self.rid, other, op), g)
                )
                if s < need:
                    return need
            else:  # op before other
                need = s + max(
                    size, ceil_div(op.duration + problem.changeover(self.rid, op, other), g)
                )
                if us < need or (size == 0 and us == s):
                    return ue
        return None

    def add(self, op: Operation, s: int, size: int, demand: int) -> None:
        insort(self.uses, (s, s + size, demand, op.headcount, op.id))

    def remove(self, op_id: str) -> None:
        self.uses = [u for u in self.uses if u[4] != op_id]


def blocked_ticks(problem: Problem, rid: str, horizon_minutes: int) -> list[tuple[int, int]]:
    """A resource's unavailable windows on the grid: [floor(start), ceil(end)) ticks."""
    g = problem.grid
    return [
        (w.start // g, ceil_div(w.end, g))
        for w in problem.resource(rid).unavailable(horizon_minutes)
    ]


def topological_order(problem: Problem) -> list[Operation]:
    """Operations in an order that respects every precedence, earliest-due batches first."""
    rank = {}
    inf = math.inf
    for i, b in enumerate(
        sorted(
            problem.batches,
            key=lambda b: (
                b.deadline if b.deadline is not None else inf,
                b.due if b.due is not None else inf,
                -b.priority,
                b.release,
                b.id,
            ),
        )
    ):
        rank[b.id] = i
    succ: dict[str, list[str]] = defaultdict(list)
    indeg: dict[str, int] = {o.id: 0 for o in problem.operations}
    for p in problem.precedences:
        succ[p.before].append(p.after)
        indeg[p.after] += 1
    pos = {o.id: i for i, o in enumerate(problem.operations)}
    heap = [(rank[o.batch], pos[o.id], o.id) for o in problem.operations if indeg[o.id] == 0]
    heapq.heapify(heap)
    out: list[Operation] = []
    while heap:
        _, _, oid = heapq.heappop(heap)
        out.append(problem.operation(oid))
        for nxt in succ[oid]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(heap, (rank[problem.operation(nxt).batch], pos[nxt], nxt))
    if len(out) != len(problem.operations):
        cyc = sorted(o for o, d in indeg.items() if d > 0)
        raise ValueError(f"the precedences form a cycle through {', '.join(cyc[:5])}")
    return out


def greedy(
    problem: Problem,
    *,
    allowed: Mapping[str, Mapping[str, tuple[str, ...]]] | None = None,
    fixed: Mapping[str, Assignment] | None = None,
    horizon_minutes: int | None = None,
    earliest: int = 0,
) -> list[Assignment] | None:
    """A schedule on the grid, or None if some operation found no resources at all.

    Batches are placed one at a time (a run of one batch's operations in the topological
    order). When the placement breaks a hard maximum lag inside the run, the run is taken out
    again and placed anew with the earlier operation's start raised to what the lag needs
    (up to :data:`MAX_LAG_RETRIES` times; what is still broken after that stays, and ``check``
    lists it).

    :param allowed: per operation and requirement group, the candidates to use (the model's
        filtered lists); default: the requirement's candidates.
    :param fixed: operations placed as given before the others (replanning: frozen ones, and
        the previous placement of batches that need not move).
    :param earliest: minutes; operations not in ``fixed`` start at or after it (replanning:
        now).
    """
    g = problem.grid
    fixed = fixed or {}
    h = (
        horizon_minutes
        or max(
            [0, earliest]
            + [w.end for r in problem.resources for w in (*r.outages, *r.calendar) if w.end < 10**8]
            + [o.release for o in problem.operations]
            + [b.release for b in problem.batches]
        )
        + sum(o.duration for o in problem.operations)
        + 1
    )
    timelines: dict[str, _Timeline] = {}

    def timeline(rid: str) -> _Timeline:
        if rid not in timelines:
            timelines[rid] = _Timeline(problem, rid, blocked_ticks(problem, rid, h * 4 + 1))
        return timelines[rid]

    preds: dict[str, list[Precedence]] = defaultdict(list)
    for p in problem.precedences:
        preds[p.after].append(p)
    start: dict[str, int] = {}
    placed: dict[str, Assignment] = {}
    used_by: dict[str, list[str]] = {}

    def place(op: Operation, s: int, chosen: list[tuple[str, tuple[str, ...]]]) -> None:
        size = ceil_div(op.duration, g)
        demands = {r.group: r.demand for r in op.requirements}
        used: dict[str, int] = {}
        for grp, rs in chosen:
            for rid in rs:
                used[rid] = max(used.get(rid, 0), demands.get(grp, 1))
                for parent in problem.parents(rid):
                    used.setdefault(parent.id, 1)
        for rid, d in used.items():
            timeline(rid).add(op, s, size, d)
        used_by[op.id] = list(used)
        start[op.id] = s
        placed[op.id] = Assignment(op.id, op.batch, s * g, s * g + op.duration, tuple(chosen))

    def unplace(op: Operation) -> None:
        for rid in used_by.pop(op.id):
            timeline(rid).remove(op.id)
        del start[op.id]
        del placed[op.id]

    for oid, a in fixed.items():
        place(problem.operation(oid), a.start // g, list(a.resources))

    floor_tick = ceil_div(earliest, g)
    order = [op for op in topological_order(problem) if op.id not in fixed]
    runs = [list(run) for _, run in itertools.groupby(order, key=lambda o: o.batch)]
    for run in runs:
        in_run = {op.id for op in run}
        raised: dict[str, int] = {}
        for attempt in range(MAX_LAG_RETRIES + 1):
            for op in run:
                batch = problem.batch(op.batch)
                est = max(
                    floor_tick, ceil_div(max(op.release, batch.release), g), raised.get(op.id, 0)
                )
                for p in preds[op.id]:
                    before = problem.operation(p.before)
                    d = before.duration if p.relation is Relation.END_START else 0
                    est = max(est, start[p.before] + ceil_div(p.min_lag + d, g))
                size = ceil_div(op.duration, g)
                s = est
                while True:
                    if s - est > GIVE_UP:
                        return None
                    chosen, retry = _choose(problem, op, s, size, allowed, timeline)
                    if chosen is not None:
                        place(op, s, chosen)
                        break
                    s = max(s + 1, retry)
            late = False
            for op in run:
                for p in preds[op.id]:
                    if p.max_lag is None or p.max_lag_penalty is not None:
                        continue
                    if p.before not in in_run:
                        continue  # placed earlier (or fixed): it cannot move any more
                    before = problem.operation(p.before)
                    d = before.duration if p.relation is Relation.END_START else 0
                    need = start[op.id] - (p.max_lag + d) // g
                    if start[p.before] < need:
                        raised[p.before] = max(raised.get(p.before, 0), need)
                        late = True
            if not late or attempt == MAX_LAG_RETRIES:
                break
            for op in run:
                unplace(op)
    return [placed[o.id] for o in problem.operations if o.id in placed]


def _choose(
    problem: Problem,
    op: Operation,
    s: int,
    size: int,
    allowed: Mapping[str, Mapping[str, tuple[str, ...]]] | None,
    timeline: Callable[[str], _Timeline],
) -> tuple[list[tuple[str, tuple[str, ...]]] | None, int | None]:
    """Resources for ``op`` at tick ``s``: (choice, None) or (None, next tick to try)."""
    g = problem.grid
    chosen: list[tuple[str, tuple[str, ...]]] = []
    taken: set[str] = set()
    retry: int | None = None
    for req in op.requirements:
        cands = allowed[op.id][req.group] if allowed is not None else req.candidates
        picked: list[str] = []
        for rid in cands:
            if rid in taken:
                continue
            worst = None
            for r in (rid, *(p.id for p in problem.parents(rid))):
                demand = req.demand if r == rid else 1
                c = timeline(r).conflict(op, s, size, demand, g)
                if c is not None:
                    worst = c if worst is None else max(worst, c)
            if worst is None:
                picked.append(rid)
                if len(picked) == req.count:
                    break
            else:
                retry = worst if retry is None else min(retry, worst)
        if len(picked) < req.count:
            return None, retry if retry is not None else s + 1
        taken.update(picked)
        chosen.append((req.group, tuple(picked)))
    return chosen, None
