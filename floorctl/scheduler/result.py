"""What :func:`floorctl.scheduler.solve` takes and gives: options, progress, the result."""

from __future__ import annotations

import enum

from attrs import field, frozen

from floorctl.scheduler.check import Violation
from floorctl.scheduler.schedule import Schedule


class Status(enum.StrEnum):
    OPTIMAL = "optimal"  # proved optimal (on the time grid)
    FEASIBLE = "feasible"  # a schedule, not proved optimal (time limit, gap limit, cancel)
    #: the solver found nothing in time; the schedule is the previous one (repaired where it
    #: can be) or the greedy heuristic's, and its violations say what is wrong with it
    FALLBACK = "fallback"
    INFEASIBLE = "infeasible"  # proved: no schedule meets the hard constraints
    UNKNOWN = "unknown"  # nothing found and nothing to fall back on
    INVALID = "invalid"  # the model was rejected by CP-SAT (a bug: please report)


@frozen
class SolveOptions:
    """How to solve.

    :param time_limit: wall-clock seconds (default mode), or the budget of deterministic time
        units in reproducible mode when ``deterministic_time`` is None.
    :param workers: CP-SAT search workers (use >= 2: LNS needs them).
    :param reproducible: deterministic search: ``max_deterministic_time`` and either one worker
        or ``interleave_search``; the same input gives a byte-identical schedule (on the same
        OR-Tools version). Slower per second of wall time. docs/planning.md, "Modes".
    :param deterministic_time: the deterministic-time budget in reproducible mode; None: the
        time limit's value.
    :param seed: CP-SAT ``random_seed``.
    :param relative_gap: stop when the gap is at most this (0: run to the limit or optimum).
    :param explain: on infeasibility, a second solve (1 worker, assumptions on the hard
        constraint groups) names the groups at fault (``Result.explanation``).
    :param now: replanning: minutes after the epoch it is now; operations that started
        before it stay where they are. None: no freezing.
    :param freeze: replanning: operations of the previous schedule starting before
        ``now + freeze`` minutes stay where they are too.
    :param log: CP-SAT's search log to stderr.
    """

    time_limit: float = 30.0
    workers: int = 2
    reproducible: bool = False
    deterministic_time: float | None = None
    seed: int = 0
    relative_gap: float = 0.0
    explain: bool = False
    now: int | None = None
    freeze: int = 0
    log: bool = False


@frozen
class Progress:
    """A progress report: a new solution (``solutions`` went up) or a better bound.

    ``objective`` and ``bound`` are in the solver's combined objective (docs/planning.md,
    "Objective"); ``gap`` is relative, ``|objective - bound| / max(1, |objective|)``.
    ``source`` says whose schedule it is: ``cp-sat``, or before the solver's first solution
    the heuristic's (``greedy``; replanning: ``repaired``, the previous schedule with the
    batches that must move placed again), reported once, with ``solutions`` 0 and no bound
    (``-inf``), when it breaks no hard constraint: it is what a cancel would return."""

    objective: float | None
    bound: float
    gap: float | None
    elapsed: float
    solutions: int
    source: str = "cp-sat"


@frozen
class ObjectiveTerms:
    """The objective's terms, in minutes (tardiness and penalties weighted).

    ``value`` is the solver's combined objective: tier 1 (weighted tardiness + soft penalties
    + moves) dominates tier 2 (makespan), which dominates tier 3 (changeover time)."""

    weighted_tardiness: int = 0
    soft_penalty: int = 0
    moves: int = 0
    makespan: int = 0
    changeover: int = 0
    value: int = 0


@frozen
class Move:
    """An operation that changed against the previous schedule, and why."""

    batch: str
    operation: str
    what: str  # "start" or "resource"
    old: str | None
    new: str | None
    reason: str


@frozen
class Timings:
    """Seconds: model building, the solve(s), until CP-SAT's first solution, in all; and
    until the first schedule without hard violations (the heuristic's or CP-SAT's, whichever
    came first: from then on the planner has an answer)."""

    build: float = 0.0
    solve: float = 0.0
    first_solution: float | None = None
    total: float = 0.0
    first_schedule: float | None = None


@frozen
class Result:
    """The outcome of a solve. ``schedule`` is None only when there is nothing to show
    (infeasible, or no solution and no fallback)."""

    status: Status
    schedule: Schedule | None
    objective: ObjectiveTerms = ObjectiveTerms()
    bound: float | None = None
    gap: float | None = None
    #: a lower bound of the makespan (minutes) stated in the model before the search: the
    #: load of the last shifts on a group of resources (bounds.py); None when there is none
    makespan_bound: int | None = None
    #: every violation of the schedule (``check``): soft ones (a late batch, a hold time
    #: exceeded) for a solver schedule; any for a fallback schedule
    violations: tuple[Violation, ...] = ()
    moves: tuple[Move, ...] = ()
    #: infeasible + ``explain``: the constraint groups at fault, e.g. "deadline[B003]"
    explanation: tuple[str, ...] = ()
    timings: Timings = Timings()
    solutions: int = 0
    cancelled: bool = False
    #: the CP-SAT parameters used, for the record ("num_workers: 2 ...")
    parameters: str = field(default="")

    @property
    def ok(self) -> bool:
        """A schedule without hard violations."""
        return self.schedule is not None and not any(v.hard for v in self.violations)
