"""PSPLIB single-mode RCPSP instances (``.sm``) and the UGent best-known-solution tables.

PSPLIB: Kolisch, R. & Sprecher, A. (1996), "PSPLIB - A project scheduling problem library",
European Journal of Operational Research 96(1):205-216. The best-known values are the
"RCPSP solutions update" of the OR&S group, Ghent University (solutionsupdate.ugent.be).

- :func:`parse_sm` / :func:`read_sm` read one ``.sm`` file into an :class:`Instance`: jobs
  (numbered from 1 as in the file, the first the dummy source and the last the dummy sink),
  durations, successors, renewable capacities and per-job demands, and the file's horizon.
  Every problem is an :class:`PsplibError` naming the file and the line.
- :func:`read_best_known` reads a UGent CSV (``J30.csv``, ``J60_1.csv``, ...) into
  :class:`BestKnown` values keyed by instance name (``"j301_1"``).
- :func:`to_problem` maps an instance onto the scheduler's own problem types, so that the
  product's solver core (not a separate model) can be measured on PSPLIB.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from attrs import frozen

from floorctl.scheduler.problem import (
    Batch,
    Operation,
    Precedence,
    Problem,
    Requirement,
    Resource,
    ResourceKind,
)

__all__ = [
    "BestKnown",
    "Instance",
    "Job",
    "PsplibError",
    "parse_sm",
    "read_best_known",
    "read_sm",
    "to_problem",
]


class PsplibError(ValueError):
    """A PSPLIB or best-known-solution file that cannot be read; the message names the place."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.message = message


@frozen
class Job:
    """One job of an instance. ``number`` is the file's (1-based); demands are per renewable."""

    number: int
    duration: int
    successors: tuple[int, ...]
    demands: tuple[int, ...]
    nonrenewable: tuple[int, ...] = ()


@frozen
class Instance:
    """A single-mode RCPSP instance as written in a PSPLIB ``.sm`` file."""

    name: str
    horizon: int
    capacities: tuple[int, ...]
    jobs: tuple[Job, ...]
    nonrenewable_capacities: tuple[int, ...] = ()
    source: str = ""

    @property
    def n_jobs(self) -> int:
        """Jobs including the dummy source and sink."""
        return len(self.jobs)

    @property
    def n_resources(self) -> int:
        return len(self.capacities)

    @property
    def sink(self) -> Job:
        return self.jobs[-1]

    def job(self, number: int) -> Job:
        return self.jobs[number - 1]

    def precedences(self) -> Iterator[tuple[int, int]]:
        """(predecessor, successor) job numbers, in file order."""
        for job in self.jobs:
            for succ in job.successors:
                yield job.number, succ

    def critical_path(self) -> int:
        """The length of the longest path (the resource-free lower bound on the makespan)."""
        finish: dict[int, int] = {}
        preds = _predecessors(self)
        for number in _topological_order(self):
            job = self.job(number)
            start = max((finish[p] for p in preds[number]), default=0)
            finish[number] = start + job.duration
        return max(finish.values(), default=0)


@frozen
class BestKnown:
    """One row of a UGent table: the best lower and upper bounds, and whether UB is optimal."""

    name: str
    lb: int
    ub: int
    optimal: bool


# --- .sm -------------------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")


def read_sm(path: str | Path) -> Instance:
    """Read a PSPLIB single-mode ``.sm`` file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii", errors="strict")
    except UnicodeDecodeError as exc:
        raise PsplibError(str(p), None, f"not an ASCII PSPLIB file ({exc.reason})") from exc
    except OSError as exc:
        raise PsplibError(str(p), None, f"cannot read: {exc.strerror or exc}") from exc
    return parse_sm(text, source=str(p), name=p.stem)


def parse_sm(text: str, source: str = "<string>", name: str = "") -> Instance:
    """Parse the text of a PSPLIB single-mode ``.sm`` file; ``source`` names it in errors."""
    return _SmParser(text.splitlines(), source).parse(name or Path(source).stem)


class _SmParser:
    def __init__(self, lines: Sequence[str], source: str) -> None:
        self.lines = lines
        self.source = source

    def error(self, index: int | None, message: str) -> PsplibError:
        return PsplibError(self.source, None if index is None else index + 1, message)

    def find(self, prefix: str, start: int = 0) -> int:
        for i in range(start, len(self.lines)):
            if self.lines[i].strip().lower().startswith(prefix.lower()):
                return i
        raise self.error(None, f"no line starting with {prefix!r}")

    def value(self, prefix: str) -> tuple[int, int]:
        """The integer after the colon of the line starting with ``prefix``, and its index."""
        i = self.find(prefix)
        _, sep, rest = self.lines[i].partition(":")
        numbers = _INT.findall(rest) if sep else []
        if not numbers:
            raise self.error(i, f"expected a number after {prefix.strip()!r}")
        return int(numbers[0]), i

    def ints(self, index: int, what: str) -> list[int]:
        line = self.lines[index]
        tokens = line.split()
        out: list[int] = []
        for token in tokens:
            if not _INT.fullmatch(token):
                raise self.error(index, f"{what}: {token!r} is not an integer")
            out.append(int(token))
        return out

    def rows(self, header: int) -> Iterator[int]:
        """Indices of the data rows after a section header, up to the next ``***`` line."""
        i = header + 1
        while i < len(self.lines):
            stripped = self.lines[i].strip()
            if stripped.startswith("*"):
                return
            if stripped and not stripped.startswith("-") and not stripped[0].isalpha():
                yield i
            i += 1

    def parse(self, name: str) -> Instance:
        n_jobs, jobs_line = self.value("jobs (incl. supersource/sink")
        horizon, horizon_line = self.value("horizon")
        n_renew, _ = self.value("- renewable")
        n_nonrenew, _ = self.value("- nonrenewable")
        n_doubly, doubly_line = self.value("- doubly constrained")
        if n_jobs < 2:
            raise self.error(jobs_line, f"{n_jobs} jobs: need at least the source and the sink")
        if horizon < 0:
            raise self.error(horizon_line, f"horizon {horizon} is negative")
        if n_doubly:
            raise self.error(doubly_line, "doubly constrained resources are not supported")
        n_res = n_renew + n_nonrenew

        successors = self.parse_precedences(n_jobs)
        durations, demands = self.parse_requests(n_jobs, n_res)
        capacities = self.parse_capacities(n_res)

        jobs = tuple(
            Job(
                number=j,
                duration=durations[j],
                successors=successors[j],
                demands=tuple(demands[j][:n_renew]),
                nonrenewable=tuple(demands[j][n_renew:]),
            )
            for j in range(1, n_jobs + 1)
        )
        instance = Instance(
            name=name,
            horizon=horizon,
            capacities=tuple(capacities[:n_renew]),
            nonrenewable_capacities=tuple(capacities[n_renew:]),
            jobs=jobs,
            source=self.source,
        )
        self.check(instance)
        return instance

    def parse_precedences(self, n_jobs: int) -> dict[int, tuple[int, ...]]:
        header = self.find("PRECEDENCE RELATIONS:")
        successors: dict[int, tuple[int, ...]] = {}
        where: dict[int, int] = {}
        for i in self.rows(header):
            values = self.ints(i, "precedence row")
            if len(values) < 3:
                raise self.error(i, "precedence row: expected job, #modes, #successors, ...")
            job, modes, count, *succ = values
            if not 1 <= job <= n_jobs:
                raise self.error(i, f"job {job} is not in 1..{n_jobs}")
            if job in successors:
                raise self.error(i, f"job {job} listed twice (first on line {where[job] + 1})")
            if modes != 1:
                raise self.error(i, f"job {job} has {modes} modes: only single-mode is supported")
            if count != len(succ):
                raise self.error(i, f"job {job} says {count} successors but lists {len(succ)}")
            for s in succ:
                if not 1 <= s <= n_jobs:
                    raise self.error(i, f"job {job}: successor {s} is not in 1..{n_jobs}")
                if s == job:
                    raise self.error(i, f"job {job} is its own successor")
            successors[job] = tuple(succ)
            where[job] = i
        missing = sorted(set(range(1, n_jobs + 1)) - successors.keys())
        if missing:
            raise self.error(header, f"precedence relations miss job(s) {_fmt(missing)}")
        return successors

    def parse_requests(
        self, n_jobs: int, n_res: int
    ) -> tuple[dict[int, int], dict[int, list[int]]]:
        header = self.find("REQUESTS/DURATIONS:")
        durations: dict[int, int] = {}
        demands: dict[int, list[int]] = {}
        for i in self.rows(header):
            values = self.ints(i, "request row")
            if len(values) != 3 + n_res:
                raise self.error(
                    i,
                    f"request row: expected job, mode, duration and {n_res} demand(s), "
                    f"got {len(values)} numbers",
                )
            job, mode, duration, *request = values
            if not 1 <= job <= n_jobs:
                raise self.error(i, f"job {job} is not in 1..{n_jobs}")
            if job in durations:
                raise self.error(i, f"job {job} has a second request row")
            if mode != 1:
                raise self.error(i, f"job {job}: mode {mode}, only single-mode is supported")
            if duration < 0:
                raise self.error(i, f"job {job}: duration {duration} is negative")
            for r, d in enumerate(request, start=1):
                if d < 0:
                    raise self.error(i, f"job {job}: demand {d} on resource {r} is negative")
            durations[job] = duration
            demands[job] = request
        missing = sorted(set(range(1, n_jobs + 1)) - durations.keys())
        if missing:
            raise self.error(header, f"requests/durations miss job(s) {_fmt(missing)}")
        return durations, demands

    def parse_capacities(self, n_res: int) -> list[int]:
        header = self.find("RESOURCEAVAILABILITIES:")
        rows = list(self.rows(header))
        if not rows:
            raise self.error(header, "no resource availabilities")
        values = self.ints(rows[0], "resource availabilities")
        if len(values) != n_res:
            raise self.error(rows[0], f"expected {n_res} capacities, got {len(values)}")
        for r, c in enumerate(values, start=1):
            if c < 0:
                raise self.error(rows[0], f"capacity {c} of resource {r} is negative")
        return values

    def check(self, instance: Instance) -> None:
        """Whole-instance checks: demand within capacity, an acyclic precedence graph."""
        header = self.find("REQUESTS/DURATIONS:")
        for job in instance.jobs:
            for r, (d, c) in enumerate(zip(job.demands, instance.capacities, strict=True), 1):
                if d > c:
                    raise self.error(
                        header,
                        f"job {job.number} needs {d} of resource R{r}, whose capacity is {c}: "
                        "the instance is infeasible",
                    )
        for r, c in enumerate(instance.nonrenewable_capacities, start=1):
            total = sum(job.nonrenewable[r - 1] for job in instance.jobs)
            if total > c:
                raise self.error(
                    header,
                    f"non-renewable N{r}: the jobs use {total}, capacity {c}: infeasible",
                )
        try:
            _topological_order(instance)
        except ValueError as exc:
            raise self.error(self.find("PRECEDENCE RELATIONS:"), str(exc)) from None


def _predecessors(instance: Instance) -> dict[int, list[int]]:
    preds: dict[int, list[int]] = {job.number: [] for job in instance.jobs}
    for p, s in instance.precedences():
        preds[s].append(p)
    return preds


def _topological_order(instance: Instance) -> list[int]:
    indegree = {job.number: 0 for job in instance.jobs}
    for _, s in instance.precedences():
        indegree[s] += 1
    ready = [n for n, d in indegree.items() if d == 0]
    order: list[int] = []
    while ready:
        n = ready.pop()
        order.append(n)
        for s in instance.job(n).successors:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if len(order) != len(indegree):
        cyclic = sorted(n for n, d in indegree.items() if d > 0)
        raise ValueError(f"the precedence relations have a cycle through job(s) {_fmt(cyclic)}")
    return order


def _fmt(numbers: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" ... ({len(numbers)} in all)" if len(numbers) > limit else "")


# --- UGent best-known solutions ----------------------------------------------------------------


def read_best_known(path: str | Path) -> dict[str, BestKnown]:
    """Read a UGent "RCPSP solutions update" CSV: ``;``-separated, one row per instance.

    The header row starts with ``ID;``; the instance file name is in ``Ref1``; the bounds in
    ``LB value`` and ``UB value``; ``OPT value`` is non-zero when the optimum is proved. The
    rows end at the first ``#`` line (the record-set notes that follow are skipped).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PsplibError(str(p), None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # The published files' trailing notes are Windows-1252 (en dashes); the data is ASCII.
        text = data.decode("cp1252", errors="replace")
    return parse_best_known(text, source=str(p))


def parse_best_known(text: str, source: str = "<string>") -> dict[str, BestKnown]:
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.startswith("ID;")), None)
    if header_index is None:
        raise PsplibError(source, None, "no header row starting with 'ID;'")
    header = next(csv.reader([lines[header_index]], delimiter=";"))
    columns: Mapping[str, int] = {name.strip(): k for k, name in enumerate(header)}
    for needed in ("Ref1", "LB value", "UB value", "OPT value"):
        if needed not in columns:
            raise PsplibError(source, header_index + 1, f"no {needed!r} column")
    out: dict[str, BestKnown] = {}
    for i in range(header_index + 1, len(lines)):
        line = lines[i]
        if line.startswith("#"):
            break
        if not line.strip():
            continue
        row = next(csv.reader([line], delimiter=";"))
        if len(row) < len(header):
            raise PsplibError(source, i + 1, f"{len(row)} fields, the header has {len(header)}")
        ref = row[columns["Ref1"]].strip()
        name = ref.removesuffix(".sm").removesuffix(".SM")
        if not name:
            raise PsplibError(source, i + 1, "empty 'Ref1' (instance file name)")
        values: dict[str, int] = {}
        for key in ("LB value", "UB value", "OPT value"):
            cell = row[columns[key]].strip()
            if not _INT.fullmatch(cell):
                raise PsplibError(source, i + 1, f"{name}: {key} {cell!r} is not an integer")
            values[key] = int(cell)
        lb, ub, opt = values["LB value"], values["UB value"], values["OPT value"]
        if lb > ub:
            raise PsplibError(source, i + 1, f"{name}: LB {lb} > UB {ub}")
        if opt and opt != ub:
            raise PsplibError(source, i + 1, f"{name}: OPT {opt} differs from UB {ub}")
        if name in out:
            raise PsplibError(source, i + 1, f"{name} appears twice")
        out[name] = BestKnown(name=name, lb=lb, ub=ub, optimal=opt != 0 or lb == ub)
    if not out:
        raise PsplibError(source, header_index + 1, "no instance rows after the header")
    return out


# --- adapter onto the scheduler's problem types ------------------------------------------------

#: time 0 of an adapted instance (PSPLIB periods become minutes after it, on a grid of 1)
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
#: the one batch every job of an instance belongs to (a PSPLIB instance is one project)
PROJECT = "project"


def job_id(number: int) -> str:
    """The operation id of job ``number`` in the adapted problem."""
    return f"j{number}"


def resource_id(index: int) -> str:
    """The resource id of renewable resource ``index`` (0-based), as PSPLIB names it: R1..."""
    return f"R{index + 1}"


def to_problem(instance: Instance) -> Problem:
    """The instance as a :class:`floorctl.scheduler.Problem` the product's core solves.

    One PSPLIB period is one minute on a grid of 1; every renewable resource is a pool with
    the file's capacity; every job is one operation of a single batch (the project), with one
    single-candidate requirement per resource it uses, carrying the job's demand; every
    successor relation is an end-to-start precedence with no lag; the horizon is the file's.
    There are no due dates, changeovers or calendars, so the core's objective is the
    makespan, which is the end of the dummy sink. Non-renewable resources of a single-mode
    instance constrain nothing (their use is fixed, and the parser checks it fits), so they
    are left out.
    """
    resources = tuple(
        Resource(id=resource_id(r), kind=ResourceKind.POOL, capacity=capacity, name=f"R {r + 1}")
        for r, capacity in enumerate(instance.capacities)
        if capacity > 0  # a resource nobody may use (the parser rejects any demand on it)
    )
    operations = tuple(
        Operation(
            id=job_id(job.number),
            batch=PROJECT,
            name=str(job.number),
            duration=job.duration,
            requirements=tuple(
                Requirement(group=resource_id(r), candidates=(resource_id(r),), demand=demand)
                for r, demand in enumerate(job.demands)
                if demand > 0
            ),
        )
        for job in instance.jobs
    )
    precedences = tuple(
        Precedence(before=job_id(pred), after=job_id(succ)) for pred, succ in instance.precedences()
    )
    return Problem(
        name=instance.name,
        epoch=EPOCH,
        resources=resources,
        batches=(Batch(id=PROJECT, recipe="psplib"),),
        operations=operations,
        precedences=precedences,
        grid=1,
        horizon=instance.horizon,
        source=instance.source,
    )
