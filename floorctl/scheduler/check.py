"""Verify a schedule against its problem, independently of the solver.

Everything is recomputed from the problem and the schedule's exact minutes; nothing the model
built is reused, so a model bug shows up here. Every violation is listed (not only the first).
Hard violations make a schedule unusable; soft ones (a batch later than its due date, a soft
hold time exceeded) are what the objective weighs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from itertools import pairwise

from attrs import frozen

from floorctl.scheduler.problem import Operation, Problem, Relation
from floorctl.scheduler.schedule import Assignment, Schedule

#: one use of a resource: (start, end, demand, operation)
Use = tuple[int, int, int, Operation]


@frozen
class Violation:
    """One violated constraint.

    :param kind: the constraint kind: ``missing``, ``unknown``, ``duration``, ``release``,
        ``eligibility``, ``hazardous``, ``precedence``, ``max-lag``, ``capacity``,
        ``headcount``, ``unavailable``, ``changeover``, ``deadline``, ``due``.
    :param subject: what it is about (an operation, batch or resource id; ``a -> b``).
    :param amount: minutes by which it is violated, where that makes sense.
    """

    kind: str
    hard: bool
    subject: str
    message: str
    amount: int | None = None

    def format(self) -> str:
        level = "violated" if self.hard else "soft"
        return f"{level}: {self.kind}: {self.subject}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "hard": self.hard,
            "subject": self.subject,
            "message": self.message,
            "amount": self.amount,
        }


def _fmt(problem: Problem, minutes: int) -> str:
    return problem.time(minutes).strftime("%Y-%m-%d %H:%M")


def _span(problem: Problem, start: int, end: int) -> str:
    if end >= OPEN_END:
        return f"from {_fmt(problem, start)} on"
    return f"{_fmt(problem, start)} to {_fmt(problem, end)}"


#: a window ending this late (minutes) is open-ended ("out of service from ... on")
OPEN_END = 10**8


def check(problem: Problem, schedule: Schedule) -> list[Violation]:
    """Every violated constraint of ``schedule`` against ``problem``, hard ones first."""
    out: list[Violation] = []
    by_op = schedule.index()
    if len(by_op) != len(schedule.assignments):
        out.append(Violation("unknown", True, "schedule", "an operation is scheduled twice"))
    for a in schedule.assignments:
        if a.operation not in problem.operation_index:
            out.append(Violation("unknown", True, a.operation, "not an operation of the plan"))
    ok: dict[str, Assignment] = {}
    for op in problem.operations:
        a = by_op.get(op.id)
        if a is None:
            out.append(Violation("missing", True, op.id, "not scheduled"))
            continue
        ok[op.id] = a
        out.extend(_check_operation(problem, op, a))
    out.extend(_check_precedences(problem, ok))
    out.extend(_check_resources(problem, ok))
    out.extend(_check_batches(problem, ok))
    return sorted(out, key=lambda v: (not v.hard, v.kind, v.subject, v.message))


def _check_operation(problem: Problem, op: Operation, a: Assignment) -> Iterable[Violation]:
    if a.batch != op.batch:
        yield Violation("unknown", True, op.id, f"listed under batch {a.batch!r}, not {op.batch!r}")
    if a.end - a.start < op.duration:
        yield Violation(
            "duration",
            True,
            op.id,
            f"takes {a.end - a.start} min, needs {op.duration} min",
            op.duration - (a.end - a.start),
        )
    batch = problem.batch(op.batch)
    release = max(op.release, batch.release)
    if a.start < release:
        yield Violation(
            "release",
            True,
            op.id,
            f"starts {_fmt(problem, a.start)}, before its release {_fmt(problem, release)}",
            release - a.start,
        )
    groups = {g for g, _ in a.resources}
    for req in op.requirements:
        chosen = a.chosen(req.group)
        if req.group not in groups:
            yield Violation("eligibility", True, op.id, f"no resource chosen for {req.group!r}")
            continue
        if len(set(chosen)) != len(chosen) or len(chosen) != req.count:
            yield Violation(
                "eligibility",
                True,
                op.id,
                f"{req.group}: needs {req.count} distinct resource(s), got {list(chosen)}",
            )
        for rid in chosen:
            if rid not in req.candidates:
                yield Violation(
                    "eligibility",
                    True,
                    op.id,
                    f"{req.group}: {rid!r} is not eligible (eligible: {', '.join(req.candidates)})",
                )
    extra = groups - {r.group for r in op.requirements}
    for g in sorted(extra):
        yield Violation("eligibility", True, op.id, f"{g!r} is not a requirement of it")
    if op.hazardous:
        for rid in a.used():
            if rid in problem.resource_index and not problem.hazardous_allowed(rid):
                room = problem.room_of(rid)
                where = f"{rid} (in {room.id})" if room is not None and room.id != rid else rid
                yield Violation(
                    "hazardous",
                    True,
                    op.id,
                    f"a hazardous-drug operation in {where}, which is not negative-pressure",
                )


def _check_precedences(problem: Problem, ok: dict[str, Assignment]) -> Iterable[Violation]:
    for p in problem.precedences:
        a, b = ok.get(p.before), ok.get(p.after)
        if a is None or b is None:
            continue
        ref = a.end if p.relation is Relation.END_START else a.start
        lag = b.start - ref
        subject = f"{p.before} -> {p.after}"
        label = f"{p.label}: " if p.label else ""
        if lag < p.min_lag:
            yield Violation(
                "precedence",
                True,
                subject,
                f"{label}{p.after} starts {lag} min after the {_ref(p.relation)} of {p.before}, "
                f"needs at least {p.min_lag}",
                p.min_lag - lag,
            )
        if p.max_lag is not None and lag > p.max_lag:
            yield Violation(
                "max-lag",
                p.max_lag_penalty is None,
                subject,
                f"{label}{p.after} starts {lag} min after the {_ref(p.relation)} of {p.before}, "
                f"at most {p.max_lag} allowed",
                lag - p.max_lag,
            )


def _ref(relation: Relation) -> str:
    return "end" if relation is Relation.END_START else "start"


def _check_resources(problem: Problem, ok: dict[str, Assignment]) -> Iterable[Violation]:
    # resource -> [(start, end, demand, op)]; a unit's room is used too (demand 1)
    usage: dict[str, dict[str, Use]] = defaultdict(dict)
    for oid, a in ok.items():
        op = problem.operation(oid)
        demands = {r.group: r.demand for r in op.requirements}
        for g, rs in a.resources:
            for rid in rs:
                if rid not in problem.resource_index:
                    continue
                d = demands.get(g, 1)
                prev = usage[rid].get(oid)
                usage[rid][oid] = (a.start, a.end, max(d, prev[2] if prev else 0), op)
                for parent in problem.parents(rid):
                    usage[parent.id].setdefault(oid, (a.start, a.end, 1, op))
    horizon = max((a.end for a in ok.values()), default=0)
    for rid in sorted(usage):
        res = problem.resource(rid)
        uses = sorted(usage[rid].values(), key=lambda u: (u[0], u[1], u[3].id))
        blocked = res.unavailable(horizon + 1)
        for start, end, _, op in uses:
            for w in blocked:
                if w.overlaps(start, end) or (start == end and w.start <= start < w.end):
                    why = f" ({w.reason})" if w.reason else ""
                    yield Violation(
                        "unavailable",
                        True,
                        f"{rid}: {op.id}",
                        f"{rid} is not available {_span(problem, w.start, w.end)}{why}, "
                        f"used {_fmt(problem, start)} to "
                        f"{_fmt(problem, end)}",
                        min(end, w.end) - max(start, w.start),
                    )
        yield from _profile(problem, rid, uses, res.capacity, "capacity", lambda u: u[2])
        if res.headcount is not None:
            yield from _profile(
                problem, rid, uses, res.headcount, "headcount", lambda u: u[3].headcount
            )
        if res.capacity == 1:
            yield from _changeovers(problem, rid, uses)


def _profile(
    problem: Problem,
    rid: str,
    uses: list[Use],
    capacity: int,
    kind: str,
    demand: Callable[[Use], int],
) -> Iterable[Violation]:
    events: list[tuple[int, int, str]] = []
    for u in uses:
        if u[1] > u[0] and demand(u) > 0:
            events.append((u[0], demand(u), u[3].id))
            events.append((u[1], -demand(u), u[3].id))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same minute
    level, reported = 0, False
    active: set[str] = set()
    for t, d, oid in events:
        level += d
        if d > 0:
            active.add(oid)
        else:
            active.discard(oid)
            reported = False if level <= capacity else reported
        if level > capacity and not reported:
            what = "people" if kind == "headcount" else "units of capacity"
            yield Violation(
                kind,
                True,
                rid,
                f"{level} {what} in use at {_fmt(problem, t)} ({', '.join(sorted(active))}), "
                f"limit {capacity}",
                level - capacity,
            )
            reported = True


def _changeovers(problem: Problem, rid: str, uses: list[Use]) -> Iterable[Violation]:
    for prev, nxt in pairwise(uses):
        need = problem.changeover(rid, prev[3], nxt[3])
        gap = nxt[0] - prev[1]
        if gap < 0:
            continue  # reported as capacity
        if gap < need:
            why = (
                "decontamination after a hazardous-drug batch"
                if prev[3].hazardous and need == problem.decontamination
                else f"changeover {prev[3].family or '-'} -> {nxt[3].family or '-'}"
            )
            yield Violation(
                "changeover",
                True,
                f"{rid}: {prev[3].id} -> {nxt[3].id}",
                f"{gap} min between them, {why} needs {need} min",
                need - gap,
            )


def _check_batches(problem: Problem, ok: dict[str, Assignment]) -> Iterable[Violation]:
    for b in problem.batches:
        ops = problem.operations_by_batch[b.id]
        if not ops or any(o.id not in ok for o in ops):
            continue
        end = max(ok[o.id].end for o in ops)
        if b.deadline is not None and end > b.deadline:
            yield Violation(
                "deadline",
                True,
                b.id,
                f"finishes {_fmt(problem, end)}, after its deadline {_fmt(problem, b.deadline)}",
                end - b.deadline,
            )
        if b.due is not None and end > b.due:
            yield Violation(
                "due",
                False,
                b.id,
                f"finishes {_fmt(problem, end)}, {end - b.due} min after its due date "
                f"{_fmt(problem, b.due)} (priority {b.priority})",
                end - b.due,
            )


def tardiness(problem: Problem, schedule: Schedule) -> dict[str, int]:
    """Minutes late per batch (0 when on time or without a due date)."""
    idx = schedule.index()
    out: dict[str, int] = {}
    for b in problem.batches:
        ops = problem.operations_by_batch[b.id]
        if b.due is None or not ops or any(o.id not in idx for o in ops):
            out[b.id] = 0
            continue
        out[b.id] = max(0, max(idx[o.id].end for o in ops) - b.due)
    return out
