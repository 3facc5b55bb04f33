"""The CP-SAT model and :func:`solve` (scheduling.md section 3 is the practice it follows).

Per operation one start variable on the grid and one fixed-size master interval; per eligible
resource of a requirement with a choice, one *optional fixed-size* interval sharing that start
(``add_exactly_one`` / ``sum == count`` over the presences). Disjunctive resources (capacity
1: units, equipment, people, capacity-1 rooms) get a NoOverlap, the others a Cumulative
(pools, concurrent operations of a room; a room's headcount is a second Cumulative). A unit's
room is used with the unit's presence. Calendars and outages are fixed intervals inside those
constraints. Sequence-dependent changeovers (family changeovers, decontamination after a
hazardous operation) are an ``add_circuit`` per disjunctive resource whose operations need
any; each arc forces the gap on the starts.

Every lag is stated on the starts in exact minutes (``G*s_b >= G*s_a + d_a + lag``), so the
grid only rounds occupancy up (conservative): the schedule's exact times always pass
:func:`floorctl.scheduler.check`.

Objective, one solve with tiered weights (docs/planning.md, "Objective"):
``W1 * (weighted tardiness + soft penalties + moves) + W2 * makespan + changeover``, with the
makespan and the changeover time in ticks and ``W2``, ``W1`` larger than the largest possible
value of everything below them, so the order is strictly lexicographic. One solve keeps the
whole time budget for one search (two cores), and the hint stays valid for it. Only the ends
that can be last carry the makespan, tardiness and deadline constraints, and the makespan has
the load bound of the last shifts as a lower bound (both in :mod:`floorctl.scheduler.bounds`).
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from attrs import define, field
from ortools.sat.python import cp_model

from floorctl.scheduler.bounds import LoadBound, last_ends, load_bound
from floorctl.scheduler.check import check, tardiness
from floorctl.scheduler.heuristic import blocked_ticks, ceil_div, greedy, topological_order
from floorctl.scheduler.problem import Operation, Precedence, Problem, Relation, Window
from floorctl.scheduler.result import (
    Move,
    ObjectiveTerms,
    Progress,
    Result,
    SolveOptions,
    Status,
    Timings,
)
from floorctl.scheduler.schedule import Assignment, Schedule

log = logging.getLogger(__name__)

#: an outage "from a time on" ends here (minutes; the model clips it to its horizon)
FOREVER = 10**9

#: hook point: called with (model, problem) after the model is built (see hookspecs)
ModelHook = Callable[["SchedulingModel", Problem], None]


def with_room_outages(problem: Problem, outages: Iterable[tuple[str, int]]) -> Problem:
    """The problem with each ``(room, minute)`` out of service from that minute on.

    The room and every unit ``within`` it become unavailable (the units because using a unit
    uses its room). Raises KeyError for an unknown resource id."""
    by_room: dict[str, list[Window]] = defaultdict(list)
    for rid, t in outages:
        problem.resource(rid)  # KeyError names it
        by_room[rid].append(Window(t, max(FOREVER, t), "out of service"))
    if not by_room:
        return problem
    resources = tuple(
        attrs.evolve(r, outages=(*r.outages, *by_room[r.id])) if r.id in by_room else r
        for r in problem.resources
    )
    return attrs.evolve(problem, resources=resources)


@define
class _OpVars:
    op: Operation
    start: cp_model.IntVar
    size: int
    interval: cp_model.IntervalVar
    #: requirement group -> [(resource, presence literal or True)]
    choices: dict[str, list[tuple[str, Any]]] = field(factory=dict)


@define
class _Circuit:
    """The sequence of one disjunctive resource with changeovers (``add_circuit``)."""

    rid: str
    empty: Any
    first: dict[str, Any]
    last: dict[str, Any]
    arcs: dict[tuple[str, str], Any]


@define
class SchedulingModel:
    """The built CP-SAT model and the handles a hook or the solve loop needs.

    Plugins of ``floorctl_add_schedule_constraints`` receive it: ``model`` is the
    ``cp_model.CpModel``; ``start(op_id)`` the start variable (ticks), ``end_minutes(op_id)``
    a linear expression of the exact end in minutes, ``uses(resource_id, op_id)`` the literal
    "op uses the resource" (or None if it cannot), ``grid`` minutes per tick.
    """

    problem: Problem
    model: cp_model.CpModel
    horizon: int  # ticks
    ops: dict[str, _OpVars]
    #: resource -> op -> literal (True constant when always)
    usage: dict[str, dict[str, Any]]
    #: constraint group name -> enforcement literal (explain mode only)
    groups: dict[str, cp_model.IntVar]
    terms: dict[str, cp_model.LinearExpr]
    weights: tuple[int, int]  # W1, W2
    arcs: list[tuple[Any, int]]  # (literal, changeover ticks)
    tardy: dict[str, cp_model.IntVar]
    #: the constant true literal (a choice without alternatives)
    true: Any = None
    #: the makespan variable (ticks)
    makespan: Any = None
    #: auxiliary variables, kept so that a hint can give every variable a value
    #: (scheduling.md 3.6: CP-SAT benefits mainly from complete hints)
    unions: list[tuple[Any, list[Any]]] = field(factory=list)  # u == OR(lits)
    circuits: list[_Circuit] = field(factory=list)
    excess: list[tuple[Any, Any]] = field(factory=list)  # (var, Precedence)
    #: batch -> (moved literal, [(op, lowest, highest start tick not counted as moved)])
    moved: dict[str, tuple[Any, list[tuple[str, int, int]]]] = field(factory=dict)
    #: the load bound the model states on the makespan (bounds.py), if any
    makespan_bound: LoadBound | None = None

    @property
    def grid(self) -> int:
        return self.problem.grid

    def start(self, op_id: str) -> cp_model.IntVar:
        return self.ops[op_id].start

    def end_minutes(self, op_id: str) -> cp_model.LinearExpr:
        v = self.ops[op_id]
        return self.grid * v.start + v.op.duration

    def uses(self, resource_id: str, op_id: str) -> Any:
        return self.usage.get(resource_id, {}).get(op_id)

    @property
    def timing_only(self) -> bool:
        """True when start times are the only decisions: no choice among candidate
        resources, no changeover sequences, no move penalties (RCPSP-like models: PSPLIB,
        plans whose every operation has its resources fixed)."""
        if self.arcs or self.moved:
            return False
        return all(
            lit is self.true
            for v in self.ops.values()
            for choices in v.choices.values()
            for _, lit in choices
        )

    def group(self, name: str) -> Any:
        """The enforcement literal of a constraint group in explain mode, else None."""
        return self.groups.get(name)


def _enforce(ct: cp_model.Constraint, lit: Any) -> None:
    if lit is not None:
        ct.only_enforce_if(lit)


def allowed_candidates(problem: Problem) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per operation and requirement group, the candidates the rules allow (hazardous-drug
    operations: negative-pressure rooms and the units in them only)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for op in problem.operations:
        out[op.id] = {
            req.group: tuple(
                c for c in req.candidates if not op.hazardous or problem.hazardous_allowed(c)
            )
            for req in op.requirements
        }
    return out


class _Availability:
    """Per operation, the start ticks at which enough of its candidates are available (not
    blocked by their calendar, outages, or their room's) for its whole duration: the start
    variables' domains. A relaxation of the NoOverlap / Cumulative blocks (it ignores the
    other operations), so it removes no schedule; it gives the precedences something to push
    against, and the makespan a bound that knows the shifts (a QA release waits for the next
    day shift)."""

    def __init__(self, problem: Problem, horizon: int) -> None:
        self.problem = problem
        self.horizon = horizon
        self._blocked: dict[str, list[tuple[int, int]]] = {}
        self._free: dict[tuple[str, int], cp_model.Domain] = {}

    def blocked(self, rid: str) -> list[tuple[int, int]]:
        if rid not in self._blocked:
            hm = self.horizon * self.problem.grid
            spans = [
                w
                for r in (rid, *(p.id for p in self.problem.parents(rid)))
                for w in blocked_ticks(self.problem, r, hm)
            ]
            self._blocked[rid] = sorted(spans)
        return self._blocked[rid]

    def free(self, rid: str, size: int, hi: int) -> cp_model.Domain:
        """Start ticks in [0, hi] at which ``rid`` is free for ``size`` ticks."""
        key = (rid, size)
        if key not in self._free:
            flat: list[int] = []
            for bs, be in self.blocked(rid):
                lo, up = bs - size + 1, be - 1
                if up >= lo:
                    flat += [lo, up]
            forbidden = cp_model.Domain.from_intervals(
                [[a, b] for a, b in zip(flat[::2], flat[1::2], strict=True)]
            )
            self._free[key] = forbidden.complement()
        return self._free[key].intersection_with(cp_model.Domain(0, hi))

    def starts(
        self, groups: list[tuple[int, tuple[str, ...]]], size: int, hi: int
    ) -> cp_model.Domain:
        """Ticks in [0, hi] at which, for every ``(count, candidates)``, at least ``count``
        candidates are free for ``size`` ticks."""
        out = cp_model.Domain(0, hi)
        if size == 0:
            return out
        for count, cands in groups:
            events: list[tuple[int, int]] = []
            for c in cands:
                flat = self.free(c, size, hi).flattened_intervals()
                for a, b in zip(flat[::2], flat[1::2], strict=True):
                    events += [(a, 1), (b + 1, -1)]
            events.sort()
            spans: list[list[int]] = []
            level, begin = 0, 0
            for t, d in events:
                before = level
                level += d
                if before < count <= level:
                    begin = t
                elif level < count <= before and t - 1 >= begin:
                    spans.append([begin, t - 1])
            out = out.intersection_with(cp_model.Domain.from_intervals(spans))
        return out


def _earliest_starts(
    problem: Problem,
    horizon: int,
    allowed: Mapping[str, Mapping[str, tuple[str, ...]]],
    frozen: Mapping[str, Assignment],
    earliest: int,
    availability: _Availability | None = None,
) -> dict[str, int]:
    """Per operation, a lower bound of its start tick: its release (and ``earliest`` unless
    frozen), its predecessors' bounds plus the minimum lags, moved on to the first tick at
    which enough of its candidates are available for its whole duration. A relaxation of the
    model (capacity ignored), so it removes no schedule; it gives the makespan a bound that
    knows the shifts (a QA release waits for the next day shift), which CP-SAT does not infer
    from optional intervals on their own."""
    g = problem.grid
    try:
        order = topological_order(problem)
    except ValueError:
        return {}  # a cycle: the model says it is infeasible
    preds: dict[str, list[Precedence]] = defaultdict(list)
    for p in problem.precedences:
        preds[p.after].append(p)
    availability = availability or _Availability(problem, horizon)
    est: dict[str, int] = {}
    for op in order:
        size = ceil_div(op.duration, g)
        hi = max(horizon - size, 0)
        if op.id in frozen:
            est[op.id] = frozen[op.id].start // g
            continue
        batch = problem.batch(op.batch)
        t = max(ceil_div(max(op.release, batch.release, earliest), g), 0)
        for p in preds[op.id]:
            d = problem.operation(p.before).duration if p.relation is Relation.END_START else 0
            t = max(t, est[p.before] + ceil_div(p.min_lag + d, g))
        groups = [
            (r.count, allowed[op.id][r.group])
            for r in op.requirements
            if len(allowed[op.id][r.group]) >= r.count
        ]
        free = availability.starts(groups, size, hi).intersection_with(cp_model.Domain(t, hi))
        est[op.id] = t if free.is_empty() else free.min()
    return est


def build_model(
    problem: Problem,
    *,
    horizon: int,
    explain: bool = False,
    previous: Schedule | None = None,
    frozen: Mapping[str, Assignment] | None = None,
    hint: Mapping[str, Assignment] | None = None,
    hooks: Iterable[ModelHook] = (),
    earliest: int = 0,
) -> SchedulingModel:
    """Build the model over ``horizon`` ticks. ``frozen`` assignments are fixed; ``previous``
    adds the move penalties; ``hint`` (exact minutes on the grid) becomes the solver hint;
    operations not frozen start at or after ``earliest`` minutes (replanning: now)."""
    g = problem.grid
    m = cp_model.CpModel()
    groups: dict[str, cp_model.IntVar] = {}
    frozen = frozen or {}

    def grp(name: str) -> Any:
        if not explain:
            return None
        if name not in groups:
            groups[name] = m.new_bool_var(name)
        return groups[name]

    allowed = allowed_candidates(problem)
    availability = _Availability(problem, horizon)
    earliest_start = (
        {}
        if explain
        else _earliest_starts(problem, horizon, allowed, frozen, earliest, availability)
    )
    ops: dict[str, _OpVars] = {}
    usage: dict[str, dict[str, Any]] = defaultdict(dict)
    usage_lits: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    demand_of: dict[tuple[str, str], int] = {}
    true = m.new_constant(1)
    for op in problem.operations:
        batch = problem.batch(op.batch)
        size = ceil_div(op.duration, g)
        release = ceil_div(max(op.release, batch.release), g)
        hi = max(horizon - size, 0)
        s = m.new_int_var(min(earliest_start.get(op.id, 0), hi), hi, f"s[{op.id}]")
        if release > 0:
            _enforce(m.add(s >= release), grp(f"release[{op.batch}]"))
        if earliest > 0 and op.id not in frozen:  # what has not started cannot start in the past
            _enforce(m.add(s >= ceil_div(earliest, g)), grp(f"now[{op.id}]"))
        interval = m.new_fixed_size_interval_var(s, size, f"i[{op.id}]")
        v = _OpVars(op, s, size, interval)
        ops[op.id] = v
        for req in op.requirements:
            cands = allowed[op.id][req.group]
            if len(cands) < req.count:
                # the hazardous-drug rule leaves too few: infeasible, explained by that group
                _enforce(m.add_bool_or([]), grp(f"hazardous[{op.id}]"))
                cands = req.candidates
            if len(cands) == req.count:
                v.choices[req.group] = [(c, true) for c in cands]
            else:
                lits = [m.new_bool_var(f"x[{op.id},{req.group},{c}]") for c in cands]
                m.add(sum(lits) == req.count)
                v.choices[req.group] = list(zip(cands, lits, strict=True))
            for c, lit in v.choices[req.group]:
                usage_lits[c][op.id].append(lit)
                demand_of[(c, op.id)] = max(demand_of.get((c, op.id), 0), req.demand)
                for parent in problem.parents(c):
                    usage_lits[parent.id][op.id].append(lit)
                    demand_of.setdefault((parent.id, op.id), 1)
        if op.id in frozen:
            a = frozen[op.id]
            _enforce(m.add(s == a.start // g), grp(f"frozen[{op.id}]"))
            for group, chosen in a.resources:
                for c, lit in v.choices.get(group, []):
                    if lit is not true:
                        _enforce(m.add(lit == (1 if c in chosen else 0)), grp(f"frozen[{op.id}]"))

    # --- resources -----------------------------------------------------------------------
    intervals: dict[str, dict[str, cp_model.IntervalVar]] = defaultdict(dict)
    unions: list[tuple[Any, list[Any]]] = []
    for rid in sorted(usage_lits):
        for oid, lits in usage_lits[rid].items():
            v = ops[oid]
            if any(lit is true for lit in lits):
                lit: Any = true
                iv = v.interval
            else:
                if len(lits) == 1:
                    lit = lits[0]
                else:
                    lit = m.new_bool_var(f"u[{rid},{oid}]")
                    m.add_max_equality(lit, lits)
                    unions.append((lit, lits))
                iv = m.new_optional_fixed_size_interval_var(v.start, v.size, lit, f"o[{rid},{oid}]")
            usage[rid][oid] = lit
            intervals[rid][oid] = iv

    horizon_minutes = horizon * g
    arcs: list[tuple[Any, int]] = []
    circuits: list[_Circuit] = []
    for rid in sorted(usage):
        res = problem.resource(rid)
        windows = [
            (max(bs, 0), min(be, horizon))
            for bs, be in blocked_ticks(problem, rid, horizon_minutes)
            if min(be, horizon) > max(bs, 0)
        ]
        avail = grp(f"availability[{rid}]") if windows else None
        blocks = []
        for bs, be in windows:
            if avail is None:
                blocks.append(m.new_fixed_size_interval_var(bs, be - bs, f"b[{rid},{bs}]"))
            else:
                blocks.append(
                    m.new_optional_fixed_size_interval_var(bs, be - bs, avail, f"b[{rid},{bs}]")
                )
        ivs = [intervals[rid][oid] for oid in sorted(usage[rid])]
        demands = [demand_of[(rid, oid)] for oid in sorted(usage[rid])]
        if res.capacity == 1 and all(d == 1 for d in demands):
            m.add_no_overlap(ivs + blocks)
            circuit = _changeover_circuit(problem, m, rid, ops, usage[rid], true, arcs)
            if circuit is not None:
                circuits.append(circuit)
        else:
            m.add_cumulative(ivs + blocks, demands + [res.capacity] * len(blocks), res.capacity)
        if res.headcount is not None:
            people = [
                (intervals[rid][oid], ops[oid].op.headcount)
                for oid in sorted(usage[rid])
                if ops[oid].op.headcount > 0
            ]
            if people:
                m.add_cumulative([p[0] for p in people], [p[1] for p in people], res.headcount)

    # --- precedences ---------------------------------------------------------------------
    max_minutes = horizon_minutes + max((o.duration for o in problem.operations), default=0)
    soft: list[cp_model.LinearExpr] = []
    excess_vars: list[tuple[Any, Any]] = []
    for p in problem.precedences:
        a, b = ops[p.before], ops[p.after]
        d = a.op.duration if p.relation is Relation.END_START else 0
        m.add(b.start - a.start >= ceil_div(p.min_lag + d, g))
        if p.max_lag is None:
            continue
        if p.max_lag_penalty is None:
            ct = m.add(b.start - a.start <= (p.max_lag + d) // g)
            _enforce(ct, grp(f"hold[{p.before}->{p.after}]"))
        else:
            excess = m.new_int_var(0, max_minutes, f"excess[{p.before}->{p.after}]")
            m.add(excess >= g * (b.start - a.start) - d - p.max_lag)
            soft.append(p.max_lag_penalty * excess)
            excess_vars.append((excess, p))

    # --- batches: deadlines, tardiness, makespan -------------------------------------------
    # only the ends that can be last: an end that a successor's end follows anyway adds a
    # constraint CP-SAT cannot drop (on PSPLIB presolve turned the makespan's 32 into 27
    # AllDiffs), and nothing else
    last_any, last_in_batch = last_ends(problem)
    tardy: dict[str, cp_model.IntVar] = {}
    weighted: list[cp_model.LinearExpr] = []
    for bch in problem.batches:
        bops = [o for o in problem.operations_by_batch[bch.id] if o.id in last_in_batch]
        if bch.deadline is not None:
            lit = grp(f"deadline[{bch.id}]")
            for o in bops:
                _enforce(m.add(g * ops[o.id].start + o.duration <= bch.deadline), lit)
        if bch.due is not None and bops:
            t = m.new_int_var(0, max(max_minutes - bch.due, 0), f"tardy[{bch.id}]")
            for o in bops:
                m.add(t >= g * ops[o.id].start + o.duration - bch.due)
            tardy[bch.id] = t
            weighted.append(bch.priority * t)
    makespan = m.new_int_var(0, horizon, "makespan")
    for oid, v in ops.items():
        if oid in last_any:
            m.add(makespan >= v.start + v.size)
    # the load of the last shifts, which CP-SAT's bound does not see (bounds.py)
    makespan_bound = load_bound(problem, horizon, allowed, earliest_start, availability)
    if makespan_bound is not None:
        m.add(makespan >= makespan_bound.ticks)

    # --- replanning: move penalties --------------------------------------------------------
    moves: list[cp_model.LinearExpr] = []
    moved: dict[str, tuple[Any, list[tuple[str, int, int]]]] = {}
    if previous is not None:
        w = problem.weights
        tol = w.move_tolerance // g
        prev = previous.index()
        moved_batch: dict[str, cp_model.IntVar] = {}
        for oid, v in ops.items():
            a = prev.get(oid)
            if a is None or oid in frozen:
                continue
            if w.moved_batch:
                mb = moved_batch.get(v.op.batch)
                if mb is None:
                    mb = moved_batch[v.op.batch] = m.new_bool_var(f"moved[{v.op.batch}]")
                    moves.append(w.moved_batch * mb)
                lo, hi = a.start // g - tol, a.start // g + tol
                m.add(v.start >= lo).only_enforce_if(~mb)
                m.add(v.start <= hi).only_enforce_if(~mb)
                moved.setdefault(v.op.batch, (mb, []))[1].append((oid, lo, hi))
            if w.reassigned:
                for group, chosen in a.resources:
                    for c, lit in v.choices.get(group, []):
                        if c in chosen and lit is not true:
                            moves.append(w.reassigned * (1 - lit))

    # --- objective -------------------------------------------------------------------------
    change_terms = [lit * ticks for lit, ticks in arcs if ticks > 0]
    change_max = sum(ticks for _, ticks in arcs if ticks > 0)
    # changeover sum is at most the sum of the largest outgoing arc per node; bound loosely
    change_max = min(change_max, horizon * max(1, len(usage)))
    w2 = change_max + 1
    w1 = horizon * w2 + change_max + 1
    tier1 = sum(weighted) + sum(soft) + sum(moves)
    changeover = sum(change_terms)
    has_tier1 = bool(weighted or soft or moves)
    m.minimize((w1 * tier1 if has_tier1 else 0) + w2 * makespan + changeover)
    terms = {
        "weighted_tardiness": sum(weighted),
        "soft_penalty": sum(soft),
        "moves": sum(moves),
        "makespan": makespan,
        "changeover": changeover,
    }
    built = SchedulingModel(
        problem=problem,
        model=m,
        horizon=horizon,
        ops=ops,
        usage=dict(usage),
        groups=groups,
        terms=terms,  # type: ignore[arg-type]
        weights=(w1, w2),
        arcs=arcs,
        tardy=tardy,
        true=true,
        makespan=makespan,
        unions=unions,
        circuits=circuits,
        excess=excess_vars,
        moved=moved,
        makespan_bound=makespan_bound,
    )
    if hint:
        _add_hint(built, hint)
    for hook in hooks:
        hook(built, problem)
    return built


def _changeover_circuit(
    problem: Problem,
    m: cp_model.CpModel,
    rid: str,
    ops: dict[str, _OpVars],
    uses: dict[str, Any],
    true: Any,
    out: list[tuple[Any, int]],
) -> _Circuit | None:
    """Sequence the operations on a disjunctive resource with ``add_circuit`` when any pair
    needs a changeover; each arc i->j forces ``start_j`` after ``i`` plus the changeover.
    The arcs' (literal, changeover ticks) are appended to ``out``."""
    g = problem.grid
    oids = sorted(uses)
    if len(oids) < 2:
        return None
    # the changeover depends on the two families, hazardous-before and "same batch" only
    reps: dict[tuple[str, bool], Operation] = {}
    for oid in oids:
        reps.setdefault((ops[oid].op.family, ops[oid].op.hazardous), ops[oid].op)
    by_class: dict[tuple[str, bool, str], int] = {}
    for (fa, ha), a in reps.items():
        for (fb, _), b in reps.items():
            other = attrs.evolve(b, batch=f"{a.batch}\x00other")  # another batch, same family
            by_class[(fa, ha, fb)] = problem.changeover(rid, a, other)
    if not any(by_class.values()) or len({ops[oid].op.batch for oid in oids}) < 2:
        return None
    pairs = {
        (i, j): 0
        if ops[i].op.batch == ops[j].op.batch
        else by_class[(ops[i].op.family, ops[i].op.hazardous, ops[j].op.family)]
        for i in oids
        for j in oids
        if i != j
    }
    if not any(pairs.values()):
        return None
    node = {oid: k + 1 for k, oid in enumerate(oids)}
    arcs: list[tuple[int, int, Any]] = []
    empty = m.new_bool_var(f"empty[{rid}]")
    circuit = _Circuit(rid, empty, {}, {}, {})
    arcs.append((0, 0, empty))
    for oid in oids:
        lit = uses[oid]
        if lit is true:
            m.add(empty == 0)
        else:
            arcs.append((node[oid], node[oid], ~lit))
            m.add_implication(empty, ~lit)
        first = m.new_bool_var(f"first[{rid},{oid}]")
        last = m.new_bool_var(f"last[{rid},{oid}]")
        arcs.append((0, node[oid], first))
        arcs.append((node[oid], 0, last))
        circuit.first[oid] = first
        circuit.last[oid] = last
    for (i, j), setup in pairs.items():
        a, b = ops[i], ops[j]
        lit = m.new_bool_var(f"arc[{rid},{i},{j}]")
        arcs.append((node[i], node[j], lit))
        gap = max(a.size, ceil_div(a.op.duration + setup, g))
        m.add(b.start >= a.start + gap).only_enforce_if(lit)
        out.append((lit, ceil_div(setup, g)))
        circuit.arcs[(i, j)] = lit
    m.add_circuit(arcs)
    return circuit


#: give CP-SAT the greedy schedule as a hint even when the model has no changeover sequences
#: and there is no previous plan (off: measured slower on PSPLIB)
HINT_WITHOUT_SEQUENCES = False


def hint_objective(built: SchedulingModel) -> float | None:
    """The objective value of the model's hint if it gives every variable a value (the
    hint's feasibility is not checked here), else None."""
    proto = built.model.proto
    hint = dict(zip(proto.solution_hint.vars, proto.solution_hint.values, strict=True))
    obj = proto.objective
    if any(v not in hint for v in obj.vars) or len(hint) < len(proto.variables) - 1:
        return None
    total = sum(c * hint[v] for v, c in zip(obj.vars, obj.coeffs, strict=True)) + obj.offset
    return float(total) * (obj.scaling_factor or 1.0)


def _upper(var: cp_model.IntVar) -> int:
    return int(list(var.proto.domain)[-1])


def _add_hint(built: SchedulingModel, hint: Mapping[str, Assignment]) -> None:
    """Hint the starts and resource choices of ``hint``; when it places every operation, hint
    every other variable of the model too (usage, sequence arcs, lags, tardiness, makespan,
    moves), so that CP-SAT can take a feasible hint as its first solution at once."""
    g = built.grid
    m = built.model
    start: dict[str, int] = {}
    value: dict[int, bool] = {}
    for oid, v in built.ops.items():
        a = hint.get(oid)
        if a is None:
            continue
        start[oid] = a.start // g
        m.add_hint(v.start, start[oid])
        for group, choices in v.choices.items():
            chosen = set(a.chosen(group))
            for c, lit in choices:
                if lit is not built.true:
                    m.add_hint(lit, c in chosen)
                    value[lit.index] = c in chosen
    if len(start) < len(built.ops):
        return  # a partial hint: the solver completes it

    def on(lit: Any) -> bool:
        return lit is built.true or value.get(lit.index, False)

    for u, lits in built.unions:
        value[u.index] = any(on(lit) for lit in lits)
        m.add_hint(u, value[u.index])
    for c in built.circuits:
        uses = built.usage[c.rid]
        seq = sorted(
            (oid for oid in c.first if on(uses[oid])),
            key=lambda oid: (start[oid], built.ops[oid].size, oid),
        )
        m.add_hint(c.empty, not seq)
        for oid in c.first:
            m.add_hint(c.first[oid], bool(seq) and seq[0] == oid)
            m.add_hint(c.last[oid], bool(seq) and seq[-1] == oid)
        follows = set(itertools.pairwise(seq))
        for pair, lit in c.arcs.items():
            m.add_hint(lit, pair in follows)
    for var, p in built.excess:
        a = built.ops[p.before]
        d = a.op.duration if p.relation is Relation.END_START else 0
        over = g * (start[p.after] - start[p.before]) - d - p.max_lag
        m.add_hint(var, min(max(0, over), _upper(var)))
    ends = {oid: g * start[oid] + v.op.duration for oid, v in built.ops.items()}
    for bid, var in built.tardy.items():
        due = built.problem.batch(bid).due or 0
        late = max(ends[o.id] for o in built.problem.operations_by_batch[bid]) - due
        m.add_hint(var, min(max(0, late), _upper(var)))
    if built.makespan is not None:
        last = max((start[o] + v.size for o, v in built.ops.items()), default=0)
        m.add_hint(built.makespan, last)
    for mb, spans in built.moved.values():
        m.add_hint(mb, any(not lo <= start[oid] <= hi for oid, lo, hi in spans))


# --- solving -------------------------------------------------------------------------------


#: sequence arcs from which presolve probing is switched off (see _parameters)
PROBING_ARC_LIMIT = 1000

#: CP-SAT's ``linearization_level`` for models without changeover arcs (default 1). With 2,
#: the three j30 instances the core missed (j3013_5, j3013_6, j3029_8; 10 s, 2 workers,
#: seeds 1-8, load 2.3-3.9) reached their optimum in 22 of 24 runs, against 17 of 24 with 1
#: and 18 of 24 for the plain model; on 12 j120 instances the mean gap was 3.63 % against
#: 3.68 % (docs/performance.md, Scheduler). Models with changeover circuits keep 1: their
#: LP would carry thousands of arc literals.
SEQUENCE_FREE_LINEARIZATION = 2

#: CP-SAT subsolvers (glob patterns) left out when start times are the only decisions
#: (:attr:`SchedulingModel.timing_only`). With 2 workers CP-SAT runs one full search and
#: interleaves 12 LNS and local-search subsolvers on the other thread; on a timing-only model
#: the graph, random and RINS neighbourhoods, the violation local search and the feasibility
#: pump take that thread's time from the three scheduling neighbourhoods (intervals,
#: precedences, time window) that improve such schedules. On the hardest j60 instances
#: (j6013_6, j6045_4, j6045_5, j6045_7; 10 s, 2 workers, 4-6 seeds each) the mean gap to the
#: best-known fell from 3.00 % to 2.18 % (plain CP-SAT model 3.47 %), and j3029_8 reached its
#: optimum in 4 of 4 seeds against 3 of 6. On a 60-batch plan without changeovers, which
#: has choices among rooms, units and staff, the default portfolio found the optimum in both
#: seeds and this one in one of two: so models with choices keep the default
#: (docs/performance.md, Scheduler).
TIMING_ONLY_IGNORED_SUBSOLVERS = ("graph_*", "rnd_*", "rins/rens", "ls", "feasibility_pump")


def _parameters(
    options: SolveOptions, *, explain: bool = False, arcs: int = 0, timing_only: bool = False
) -> str:
    """CP-SAT parameters as text (merged with ``merge_text_format``, never parsed over).

    ``arcs``: the model's changeover arcs. Without any (RCPSP-like models: PSPLIB, plans
    without changeover rules) the LP gets the cumulative and precedence cuts of
    ``linearization_level: 2`` (:data:`SEQUENCE_FREE_LINEARIZATION`). Above
    :data:`PROBING_ARC_LIMIT`, presolve probing
    is off: on a 60-batch plan (13,600 arcs, each with a reified precedence) CP-SAT 9.15 spent
    25-29 s of wall time probing (0.6 deterministic units, so its own probing budget never
    stopped it) before its first solution; without probing presolve takes about 1 s and the
    search keeps its propagation. Small models (PSPLIB, no changeovers) keep the default.
    ``timing_only``: the model's only decisions are start times; CP-SAT then runs only the
    scheduling neighbourhoods beside its full search (:data:`TIMING_ONLY_IGNORED_SUBSOLVERS`).
    """
    # SIGINT is ours: the CLI turns Ctrl-C into ``cancel`` (and reports it as such)
    lines = [f"random_seed: {options.seed}", "catch_sigint_signal: false"]
    if arcs > PROBING_ARC_LIMIT:
        lines.append("cp_model_probing_level: 0")
    if arcs == 0 and not explain:
        lines.append(f"linearization_level: {SEQUENCE_FREE_LINEARIZATION}")
    if timing_only and not explain:
        lines += [f'ignore_subsolvers: "{name}"' for name in TIMING_ONLY_IGNORED_SUBSOLVERS]
    if explain:
        lines += ["num_workers: 1", f"max_time_in_seconds: {max(options.time_limit, 1.0)}"]
    elif options.reproducible:
        dtime = options.deterministic_time or options.time_limit
        lines += [f"max_deterministic_time: {dtime}", f"num_workers: {max(options.workers, 1)}"]
        if options.workers > 1:
            lines.append("interleave_search: true")
        # a safety net only: if this wall limit is ever hit the run is not reproducible
        lines.append(f"max_time_in_seconds: {max(600.0, 40 * dtime)}")
    else:
        lines += [
            f"max_time_in_seconds: {options.time_limit}",
            f"num_workers: {max(options.workers, 1)}",
        ]
    if options.relative_gap > 0:
        lines.append(f"relative_gap_limit: {options.relative_gap}")
    if options.log:
        lines.append("log_search_progress: true")
    return "\n".join(lines)


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(
        self,
        t0: float,
        progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
    ) -> None:
        super().__init__()
        self.t0 = t0
        self.progress = progress
        self.cancel = cancel
        self.count = 0
        self.first: float | None = None

    def on_solution_callback(self) -> None:
        self.count += 1
        now = time.monotonic() - self.t0
        if self.first is None:
            self.first = now
        if self.progress is not None:
            obj, bound = self.objective_value, self.best_objective_bound
            self.progress(Progress(obj, bound, _gap(obj, bound), now, self.count))
        if self.cancel is not None and self.cancel.is_set():
            self.stop_search()


def _gap(obj: float | None, bound: float) -> float | None:
    if obj is None or not math.isfinite(bound):
        return None
    return abs(obj - bound) / max(1.0, abs(obj))


def _frozen(
    problem: Problem, previous: Schedule | None, options: SolveOptions
) -> dict[str, Assignment]:
    """Operations of the previous schedule that stay: started before ``now``, or starting
    within the frozen window and still valid (their resources available)."""
    if previous is None or options.now is None:
        return {}
    out: dict[str, Assignment] = {}
    limit = options.now + options.freeze
    for a in previous.assignments:
        if a.operation not in problem.operation_index:
            continue
        if a.start < options.now:
            out[a.operation] = a
        elif a.start < limit and not _blocked(problem, a):
            out[a.operation] = a
    return out


def _blocked(problem: Problem, a: Assignment) -> Window | None:
    for rid in a.used():
        if rid not in problem.resource_index:
            return Window(a.start, a.end, f"{rid} no longer exists")
        for r in (problem.resource(rid), *problem.parents(rid)):
            w = r.is_available(a.start, a.end)
            if w is not None:
                return Window(w.start, w.end, f"{r.id} {w.reason or 'unavailable'}")
    return None


def default_horizon(problem: Problem, seed: list[Assignment] | None) -> int:
    """Ticks: the plan's horizon, else the greedy schedule's end plus slack for deadlines."""
    g = problem.grid
    if problem.horizon is not None:
        return ceil_div(problem.horizon, g)
    ends = [a.end for a in seed] if seed else []
    worst = max(ends, default=0)
    total = sum(o.duration for o in problem.operations) + sum(
        p.min_lag for p in problem.precedences
    )
    releases = max([o.release for o in problem.operations] + [0])
    return ceil_div(max(worst, releases + total) + g, g) + 1


def solve(
    problem: Problem,
    options: SolveOptions | None = None,
    *,
    previous: Schedule | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    hooks: Iterable[ModelHook] = (),
) -> Result:
    """Solve ``problem``; see the package docstring. ``hooks`` are called with the built
    model (the CLI passes the plugins' ``floorctl_add_schedule_constraints``)."""
    options = options or SolveOptions()
    t0 = time.monotonic()
    frozen = _frozen(problem, previous, options)
    allowed = allowed_candidates(problem)
    # replanning: nothing that has not started may start before now
    earliest = (options.now or 0) if previous is not None else 0
    try:
        seed = greedy(problem, allowed=allowed, fixed=frozen, earliest=earliest)
    except ValueError:
        seed = None
    repaired = (
        _repair(problem, previous, frozen, allowed, earliest) if previous is not None else None
    )
    horizon = default_horizon(problem, seed)
    hint: dict[str, Assignment] = {}
    if seed is not None:
        hint = {a.operation: a for a in seed}
    if repaired is not None:
        hint = {a.operation: a for a in repaired}
    elif previous is not None:
        hint.update(
            {a.operation: a for a in previous.assignments if a.operation in problem.operation_index}
        )
    hooks = tuple(hooks)
    built = build_model(
        problem,
        horizon=horizon,
        previous=previous,
        frozen=frozen,
        hint=hint,
        hooks=hooks,
        earliest=earliest,
    )
    t_build = time.monotonic() - t0
    # the heuristic's schedule is a real answer from now on (the fallback): report it if it
    # breaks no hard constraint, so that a planner sees a schedule before CP-SAT's first
    heuristic = repaired if repaired is not None else seed
    first_schedule: float | None = None
    if heuristic is not None and len(heuristic) == len(problem.operations):
        as_schedule = Schedule.build(problem.epoch, heuristic, problem.name)
        value = hint_objective(built)
        if value is not None and not any(v.hard for v in check(problem, as_schedule)):
            first_schedule = time.monotonic() - t0
            if progress is not None:
                source = "repaired" if repaired is not None else "greedy"
                progress(Progress(value, -math.inf, None, first_schedule, 0, source))
    if not HINT_WITHOUT_SEQUENCES and not built.arcs and previous is None:
        # nothing sequence-dependent to set up and no plan to stay close to (PSPLIB-like):
        # the greedy schedule, reported above and kept as the fallback, only slows CP-SAT's
        # own search down (benchmarks/psplib.py: j30 477/480 with it, docs/performance.md)
        built.model.clear_hints()
    solver = cp_model.CpSolver()
    params = _parameters(
        options, arcs=len(built.arcs), timing_only=previous is None and built.timing_only
    )
    solver.parameters.merge_text_format(params)
    # No repair_hint, even when the hint (the previous plan, with a room now out of service)
    # is infeasible: with several workers it aborted the whole process in 9.15 on a 150-batch
    # replan ("Check failed: heuristics.fixed_search != nullptr"; an abort Python cannot catch,
    # reported publicly against 9.15 in that very case). An infeasible hint still guides the
    # search; the greedy fallback stands behind it.
    if options.log:
        solver.log_callback = lambda line: print(line, file=sys.stderr)
    cb = _Callback(t0, progress, cancel)
    if progress is not None:

        def on_bound(bound: float) -> None:
            obj = None
            progress(Progress(obj, bound, None, time.monotonic() - t0, cb.count))

        solver.best_bound_callback = on_bound
    done = threading.Event()
    stopper = None
    if cancel is not None:

        def watch() -> None:
            while not done.is_set():
                if cancel.wait(0.05):
                    solver.stop_search()
                    return

        stopper = threading.Thread(target=watch, name="floorctl-schedule-cancel", daemon=True)
        stopper.start()
    t1 = time.monotonic()
    try:
        status = solver.solve(built.model, cb)
    finally:
        done.set()
        if stopper is not None:
            stopper.join()
    t_solve = time.monotonic() - t1
    cancelled = cancel is not None and cancel.is_set()
    first = cb.first
    if first is not None:
        first_schedule = first if first_schedule is None else min(first, first_schedule)

    schedule: Schedule | None = None
    explanation: tuple[str, ...] = ()
    terms = ObjectiveTerms()
    bound: float | None = None
    gap: float | None = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        schedule = extract(built, solver)
        value = round(solver.objective_value)
        bound = solver.best_objective_bound
        gap = _gap(solver.objective_value, bound)
        terms = objective_terms(problem, schedule, value, previous)
        st = Status.OPTIMAL if status == cp_model.OPTIMAL and not cancelled else Status.FEASIBLE
        if st is Status.OPTIMAL and gap and gap > 1e-9:
            st = Status.FEASIBLE  # #4430: a stopped search may report OPTIMAL
    elif status == cp_model.INFEASIBLE:
        st = Status.INFEASIBLE
        if options.explain:
            explanation = explain(problem, options, horizon, previous, frozen, hooks)
    elif status == cp_model.MODEL_INVALID:
        st = Status.INVALID
        log.error("CP-SAT rejected the model: %s", built.model.validate())
    else:
        st = Status.UNKNOWN
    if schedule is None:
        fallback = _fallback(problem, previous, repaired or seed)
        if fallback is not None:
            schedule = fallback
            if st is Status.UNKNOWN:
                st = Status.FALLBACK
    violations = tuple(check(problem, schedule)) if schedule is not None else ()
    moves = tuple(diff(problem, previous, schedule)) if previous and schedule else ()
    total = time.monotonic() - t0
    return Result(
        status=st,
        schedule=schedule,
        objective=terms,
        bound=bound,
        gap=gap,
        violations=violations,
        moves=moves,
        explanation=explanation,
        makespan_bound=(
            None if built.makespan_bound is None else built.makespan_bound.ticks * problem.grid
        ),
        timings=Timings(
            build=t_build,
            solve=t_solve,
            first_solution=first,
            total=total,
            first_schedule=first_schedule,
        ),
        solutions=cb.count,
        cancelled=cancelled,
        parameters=params,
    )


def _repair(
    problem: Problem,
    previous: Schedule,
    frozen: Mapping[str, Assignment],
    allowed: Mapping[str, Mapping[str, tuple[str, ...]]],
    earliest: int,
) -> list[Assignment] | None:
    """The previous schedule repaired: every batch whose previous placement is still valid
    (resources allowed and available, not before ``earliest`` unless frozen) stays as it
    was; the greedy scheme places the other batches' operations around them. The hint and
    the fallback of a replanning solve (it moves only the batches that have to move)."""
    prev = previous.index()
    broken: set[str] = set()
    for op in problem.operations:
        if op.id in frozen:
            continue
        a = prev.get(op.id)
        if a is None or a.start < earliest or _blocked(problem, a) is not None:
            broken.add(op.batch)
            continue
        for req in op.requirements:
            chosen = a.chosen(req.group)
            if len(chosen) != req.count or not set(chosen) <= set(allowed[op.id][req.group]):
                broken.add(op.batch)
    keep = dict(frozen)
    for a in previous.assignments:
        if a.operation in problem.operation_index and a.batch not in broken:
            keep.setdefault(a.operation, a)
    try:
        return greedy(problem, allowed=allowed, fixed=keep, earliest=earliest)
    except ValueError:
        return None


def _fallback(
    problem: Problem, previous: Schedule | None, seed: list[Assignment] | None
) -> Schedule | None:
    if seed is not None and previous is not None and len(seed) == len(problem.operations):
        return Schedule.build(problem.epoch, seed, problem.name)  # the repaired previous one
    if previous is not None:
        keep = [a for a in previous.assignments if a.operation in problem.operation_index]
        if len(keep) == len(problem.operations):
            return Schedule.build(problem.epoch, keep, problem.name)
    if seed is not None:
        return Schedule.build(problem.epoch, seed, problem.name)
    return None


def extract(built: SchedulingModel, solver: cp_model.CpSolver) -> Schedule:
    """The solver's schedule in exact minutes."""
    g = built.grid
    out: list[Assignment] = []
    for oid, v in built.ops.items():
        s = solver.value(v.start) * g
        res = []
        for req in v.op.requirements:
            chosen = tuple(c for c, lit in v.choices[req.group] if solver.boolean_value(lit))
            res.append((req.group, chosen))
        out.append(Assignment(oid, v.op.batch, s, s + v.op.duration, tuple(res)))
    return Schedule.build(built.problem.epoch, out, built.problem.name)


def changeover_minutes(problem: Problem, schedule: Schedule) -> int:
    """The changeover time a schedule needs: per disjunctive resource, the sum over
    consecutive operations of the changeover between them."""
    uses: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for a in schedule.assignments:
        seen = set()
        for rid in a.used():
            for r in (rid, *(p.id for p in problem.parents(rid))):
                if r in seen or r not in problem.resource_index:
                    continue
                seen.add(r)
                uses[r].append((a.start, a.operation))
    total = 0
    for rid, seq in uses.items():
        if not problem.is_disjunctive(rid):
            continue
        seq.sort()
        for (_, i), (_, j) in itertools.pairwise(seq):
            total += problem.changeover(rid, problem.operation(i), problem.operation(j))
    return total


def objective_terms(
    problem: Problem, schedule: Schedule, value: int, previous: Schedule | None
) -> ObjectiveTerms:
    """The terms recomputed from the schedule (minutes)."""
    late = tardiness(problem, schedule)
    weighted = sum(problem.batch(b).priority * t for b, t in late.items())
    idx = schedule.index()
    soft = 0
    for p in problem.precedences:
        if p.max_lag is None or p.max_lag_penalty is None:
            continue
        a, b = idx[p.before], idx[p.after]
        ref = a.end if p.relation is Relation.END_START else a.start
        soft += p.max_lag_penalty * max(0, b.start - ref - p.max_lag)
    moves = 0
    if previous is not None:
        w = problem.weights
        prev = previous.index()
        moved_batches = set()
        for a in schedule.assignments:
            pa = prev.get(a.operation)
            if pa is None:
                continue
            if abs(pa.start - a.start) > w.move_tolerance:
                moved_batches.add(a.batch)
            for group, chosen in pa.resources:
                moves += w.reassigned * len(set(chosen) - set(a.chosen(group)))
        moves += w.moved_batch * len(moved_batches)
    return ObjectiveTerms(
        weighted_tardiness=weighted,
        soft_penalty=soft,
        moves=moves,
        makespan=schedule.makespan,
        changeover=changeover_minutes(problem, schedule),
        value=value,
    )


def diff(problem: Problem, previous: Schedule, schedule: Schedule) -> list[Move]:
    """What moved against the previous schedule, and why."""
    prev = previous.index()
    reasons: dict[str, str] = {}
    for v in check(problem, previous):
        if not v.hard:
            continue
        for oid in _ops_in(v.subject, problem):
            reasons.setdefault(oid, f"{v.kind}: {v.message}")
    out: list[Move] = []
    moved_ops: set[str] = set()
    for a in schedule.assignments:
        pa = prev.get(a.operation)
        if pa is None:
            out.append(
                Move(
                    a.batch,
                    a.operation,
                    "added",
                    None,
                    problem.time(a.start).isoformat(),
                    "not in the previous schedule",
                )
            )
            continue
        changed_res = [
            (g, pa.chosen(g), a.chosen(g)) for g, _ in a.resources if pa.chosen(g) != a.chosen(g)
        ]
        if pa.start == a.start and not changed_res:
            continue
        moved_ops.add(a.operation)
        why = reasons.get(a.operation)
        if why is None:
            why = "the replanned schedule is better with it moved (objective)"
        if pa.start != a.start:
            out.append(
                Move(
                    a.batch,
                    a.operation,
                    "start",
                    problem.time(pa.start).isoformat(),
                    problem.time(a.start).isoformat(),
                    why,
                )
            )
        for g, old, new in changed_res:
            out.append(
                Move(a.batch, a.operation, f"resource:{g}", ",".join(old), ",".join(new), why)
            )
    # an operation that moved only because an earlier one of its batch did
    by_batch: dict[str, list[Move]] = defaultdict(list)
    for mv in out:
        by_batch[mv.batch].append(mv)
    final: list[Move] = []
    for mv in out:
        if mv.operation not in reasons and mv.reason.startswith("the replanned"):
            cause = next(
                (
                    o.operation
                    for o in by_batch[mv.batch]
                    if o.operation in reasons and o.operation != mv.operation
                ),
                None,
            )
            if cause is not None:
                mv = attrs.evolve(mv, reason=f"follows {cause}, which had to move")
        final.append(mv)
    return final


def _ops_in(subject: str, problem: Problem) -> list[str]:
    out = []
    for part in subject.replace("->", " ").replace(":", " ").split():
        if part in problem.operation_index:
            out.append(part)
        elif part in problem.batch_index:
            out.extend(o.id for o in problem.operations_by_batch[part])
    return out


def explain(
    problem: Problem,
    options: SolveOptions,
    horizon: int,
    previous: Schedule | None,
    frozen: Mapping[str, Assignment],
    hooks: Iterable[ModelHook] = (),
) -> tuple[str, ...]:
    """The constraint groups at fault: a solve with one worker and every group's
    enforcement literal as an assumption (scheduling.md 3.11)."""
    built = build_model(
        problem, horizon=horizon, explain=True, previous=previous, frozen=frozen, hooks=hooks
    )
    if not built.groups:
        return (
            "the precedences and capacities alone (no release, deadline, hold-time, "
            "availability or frozen constraint is involved)",
        )
    built.model.add_assumptions(list(built.groups.values()))
    solver = cp_model.CpSolver()
    solver.parameters.merge_text_format(_parameters(options, explain=True))
    status = solver.solve(built.model)
    if status != cp_model.INFEASIBLE:
        return ()
    names = {v.index: k for k, v in built.groups.items()}
    found = [names[i] for i in solver.sufficient_assumptions_for_infeasibility() if i in names]
    return tuple(sorted(found))
