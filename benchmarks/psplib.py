"""PSPLIB benchmark: the product's scheduling core against a plain CP-SAT RCPSP model.

    .venv/bin/python benchmarks/psplib.py                      # j30 (480), j60 and j120 samples
    .venv/bin/python benchmarks/psplib.py --sets j30 --limit 40 --out /tmp/x.json

A benchmark, not a test. For every instance of the chosen sets it runs, one after the other
on the same instance, with the same time limit, workers and random seed:

- **product**: the instance mapped onto the scheduler's own problem types
  (``floorctl.scheduler.psplib.to_problem``) and solved by ``floorctl.scheduler.solve`` in the
  product's default mode;
- **plain**: the plain CP-SAT RCPSP model of docs/../scheduling guide §2, exactly: one interval
  per job, ``start[succ] >= end[pred]``, one ``add_cumulative`` per renewable resource (jobs
  with zero demand or zero duration skipped), minimise the sink's end, the file's horizon;
  nothing else (no redundant constraints, hints or search strategy).

It scores both against the UGent 2024 best-known upper bounds (``bks_ugent_2024/*.csv``) and
prints, per set, side by side with the ratio product / plain: instances reaching the best-known
UB, proved optimal, mean and max gap to the best-known UB, median and mean time, time to the
first solution. The raw numbers, per instance, go to ``benchmarks/results/psplib.json``.

Times are wall-clock seconds from the call to its return on this process, model building
included for both sides (``plain`` also records CP-SAT's own ``wall_time``, solve only, as
the guide's tables use). The machine is shared (2 cores; others run tests meanwhile), so the
numbers are noisy: the ratio of runs taken back to back is the stable part.

PSPLIB: Kolisch, R. & Sprecher, A. (1996), "PSPLIB - A project scheduling problem library",
EJOR 96(1):205-216.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import click
import ortools
from attrs import frozen
from ortools.sat.python import cp_model

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from floorctl.scheduler.psplib import (  # noqa: E402
    BestKnown,
    Instance,
    read_best_known,
    read_sm,
    to_problem,
)

DATA = Path("/work/shared/benchmarks/psplib")
RESULTS = Path(__file__).resolve().parent / "results" / "psplib.json"
#: the UGent table of each set
BKS_FILES = {"j30": "J30.csv", "j60": "J60_1.csv", "j90": "J90_3.csv", "j120": "J120_0.csv"}
SETS = tuple(BKS_FILES)
MODELS = ("product", "plain")


# --- one run -----------------------------------------------------------------------------------


@frozen
class RunResult:
    """One model on one instance. Times in seconds from the call; None when never reached."""

    status: str
    makespan: int | None
    bound: int | None
    proved_optimal: bool
    wall_s: float
    first_s: float | None  # the first schedule the call reported, whoever found it
    first_makespan: int | None
    reach_s: float | None  # first solution with makespan <= the best-known UB
    solver_wall_s: float | None = None
    error: str | None = None
    #: product: who found the first schedule (``greedy`` heuristic or ``cp-sat``), and when
    #: CP-SAT's own first solution came
    first_source: str | None = None
    first_cpsat_s: float | None = None


class _Timeline:
    """Solutions as (seconds since start, makespan), fed from the solver's callback thread."""

    def __init__(self, t0: float, target: int | None) -> None:
        self.t0 = t0
        self.target = target
        self.first: tuple[float, int] | None = None
        self.reach: float | None = None
        self.lock = threading.Lock()

    def solution(self, makespan: int) -> None:
        now = time.perf_counter() - self.t0
        with self.lock:
            if self.first is None:
                self.first = (now, makespan)
            if self.reach is None and self.target is not None and makespan <= self.target:
                self.reach = now


class _PlainCallback(cp_model.CpSolverSolutionCallback):
    def __init__(self, timeline: _Timeline) -> None:
        super().__init__()
        self.timeline = timeline

    def on_solution_callback(self) -> None:
        self.timeline.solution(round(self.objective_value))


def plain_model(instance: Instance) -> tuple[cp_model.CpModel, cp_model.IntVar]:
    """The reference "plain CP-SAT model" (scheduling guide §2); returns it and the sink's end."""
    model = cp_model.CpModel()
    horizon = instance.horizon
    starts: dict[int, cp_model.IntVar] = {}
    ends: dict[int, cp_model.IntVar] = {}
    intervals: dict[int, cp_model.IntervalVar] = {}
    for job in instance.jobs:
        n = job.number
        starts[n] = model.new_int_var(0, horizon, f"s{n}")
        ends[n] = model.new_int_var(0, horizon, f"e{n}")
        intervals[n] = model.new_interval_var(starts[n], job.duration, ends[n], f"i{n}")
    for pred, succ in instance.precedences():
        model.add(starts[succ] >= ends[pred])
    for r, capacity in enumerate(instance.capacities):
        used = [j for j in instance.jobs if j.demands[r] > 0 and j.duration > 0]
        if used:
            model.add_cumulative(
                [intervals[j.number] for j in used], [j.demands[r] for j in used], capacity
            )
    sink_end = ends[instance.sink.number]
    model.minimize(sink_end)
    return model, sink_end


def run_plain(
    instance: Instance, time_limit: float, workers: int, seed: int, target: int | None
) -> RunResult:
    t0 = time.perf_counter()
    timeline = _Timeline(t0, target)
    model, sink_end = plain_model(instance)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    status = solver.solve(model, _PlainCallback(timeline))
    wall = time.perf_counter() - t0
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    makespan = round(solver.value(sink_end)) if found else None
    return RunResult(
        status=solver.status_name(status),
        makespan=makespan,
        bound=round(solver.best_objective_bound) if found else None,
        proved_optimal=status == cp_model.OPTIMAL,
        wall_s=wall,
        first_s=timeline.first[0] if timeline.first else None,
        first_makespan=timeline.first[1] if timeline.first else None,
        reach_s=timeline.reach,
        solver_wall_s=solver.wall_time,
        first_source="cp-sat" if timeline.first else None,
        first_cpsat_s=timeline.first[0] if timeline.first else None,
    )


def run_product(
    instance: Instance, time_limit: float, workers: int, seed: int, target: int | None
) -> RunResult:
    """The product's core: the adapted problem through ``floorctl.scheduler.solve``, in its
    default mode (wall-clock limit), with the benchmark's limit, workers and seed."""
    from floorctl.scheduler import solve
    from floorctl.scheduler.result import Progress, SolveOptions, Status

    problem = to_problem(instance)  # not timed: the adapter stands in for the plan loader
    # (seconds since the call, combined objective, source); bound-only reports are skipped
    seen: list[tuple[float, float, str]] = []
    t0 = time.perf_counter()

    def progress(p: Progress) -> None:
        if p.objective is not None:
            seen.append((time.perf_counter() - t0, p.objective, getattr(p, "source", "cp-sat")))

    options = SolveOptions(time_limit=time_limit, workers=workers, seed=seed)
    result = solve(problem, options, progress=progress)
    wall = time.perf_counter() - t0
    makespan = result.schedule.makespan if result.schedule is not None else None
    if result.status not in (Status.OPTIMAL, Status.FEASIBLE):
        makespan = None  # a fallback (heuristic) schedule is not the solver's
    # The progress reports carry the combined objective; with no tardiness, penalties or
    # changeovers it is the makespan times the tier weight, found from the final result.
    scale = 1.0
    if result.objective.makespan and result.objective.value:
        scale = result.objective.value / result.objective.makespan
    first = seen[0] if seen else None
    reach = None
    if target is not None:
        reach = next((t for t, obj, _ in seen if round(obj / scale) <= target), None)
    bound = None if result.bound is None else math.ceil(result.bound / scale - 1e-6)
    return RunResult(
        status=str(result.status),
        makespan=makespan,
        bound=bound,
        proved_optimal=result.status == Status.OPTIMAL,
        wall_s=wall,
        first_s=first[0] if first else None,
        first_makespan=round(first[1] / scale) if first else None,
        reach_s=reach,
        solver_wall_s=result.timings.solve,
        error=None,
        first_source=first[2] if first else None,
        first_cpsat_s=next((t for t, _, src in seen if src == "cp-sat"), None),
    )


Runner = Callable[[Instance, float, int, int, int | None], RunResult]


# --- sets, samples, summaries ------------------------------------------------------------------


def instance_paths(data: Path, set_name: str) -> list[Path]:
    folder = data / set_name / "instances"
    paths = sorted(folder.glob("*.sm"), key=_natural_key)
    if not paths:
        raise click.ClickException(f"{folder}: no .sm files")
    return paths


def _natural_key(path: Path) -> tuple[int, int, str]:
    """PSPLIB order: j3010_2 -> (10, 2): the parameter group, then the instance."""
    match = re.fullmatch(r"j(?:30|60|90|120)(\d+)_(\d+)", path.stem)
    if match is None:
        return (sys.maxsize, 0, path.stem)
    return (int(match[1]), int(match[2]), path.stem)


def choose(paths: Sequence[Path], sample: int | None, seed: int) -> list[Path]:
    """All paths, or a fixed-seed random sample of them kept in PSPLIB order."""
    if sample is None or sample >= len(paths):
        return list(paths)
    picked = set(random.Random(seed).sample(range(len(paths)), sample))
    return [p for k, p in enumerate(paths) if k in picked]


def _median(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.median(v) if v else None


def _mean(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.fmean(v) if v else None


def gap_percent(makespan: int | None, ub: int) -> float | None:
    return None if makespan is None else 100.0 * (makespan - ub) / ub


def summarise(rows: Sequence[dict[str, Any]], model: str) -> dict[str, Any]:
    runs = [(row[model], row["bks"]) for row in rows if row.get(model) is not None]
    ok = [(r, b) for r, b in runs if r["makespan"] is not None]
    gaps = [gap_percent(r["makespan"], b["ub"]) for r, b in ok]
    return {
        "instances": len(runs),
        "errors": sum(1 for r, _ in runs if r["error"]),
        "with_solution": len(ok),
        "reach_best_known": sum(1 for r, b in ok if r["makespan"] <= b["ub"]),
        "better_than_best_known": sum(1 for r, b in ok if r["makespan"] < b["ub"]),
        "proved_optimal": sum(1 for r, _ in runs if r["proved_optimal"]),
        "mean_gap_pct": _mean(g for g in gaps if g is not None),
        "max_gap_pct": max((g for g in gaps if g is not None), default=None),
        "median_s": _median(r["wall_s"] for r, _ in runs),
        "mean_s": _mean(r["wall_s"] for r, _ in runs),
        "total_s": sum(r["wall_s"] for r, _ in runs),
        "median_first_s": _median(r["first_s"] for r, _ in runs if r["first_s"] is not None),
        "max_first_s": max(
            (r["first_s"] for r, _ in runs if r["first_s"] is not None), default=None
        ),
        "median_first_cpsat_s": _median(
            r["first_cpsat_s"] for r, _ in runs if r.get("first_cpsat_s") is not None
        ),
        "first_from_heuristic": sum(1 for r, _ in runs if r.get("first_source") == "greedy"),
        "median_reach_s": _median(r["reach_s"] for r, _ in runs if r["reach_s"] is not None),
        "mean_first_gap_pct": _mean(
            gap_percent(r["first_makespan"], b["ub"]) or 0.0
            for r, b in runs
            if r["first_makespan"] is not None
        ),
    }


def targets(set_name: str, summary: dict[str, dict[str, Any]], total: int) -> list[dict[str, Any]]:
    """The issue's targets for this set, each with MET / NOT MET."""
    product, plain = summary.get("product"), summary.get("plain")
    out: list[dict[str, Any]] = []
    if product is None:
        return out
    if set_name == "j30":
        met = product["reach_best_known"] == total and product["instances"] == total
        out.append(
            {
                "target": f"product reaches the known optimum on all {total} j30 instances",
                "value": f"{product['reach_best_known']}/{product['instances']}",
                "met": met,
            }
        )
    elif plain is not None and product["mean_gap_pct"] is not None:
        met = (
            plain["mean_gap_pct"] is not None
            and product["mean_gap_pct"] <= plain["mean_gap_pct"] + 1e-9
            and product["with_solution"] >= plain["with_solution"]
        )
        out.append(
            {
                "target": f"{set_name} product mean gap <= plain model's at the same budget",
                "value": f"{product['mean_gap_pct']:.2f} % vs {plain['mean_gap_pct'] or 0:.2f} %",
                "met": met,
            }
        )
    return out


# --- printing ----------------------------------------------------------------------------------


def _fmt_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if unit == "s":
            return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return ""
    return f"{a / b:.2f} x"


TABLE_ROWS = (
    ("reach best-known UB", "reach_best_known", ""),
    ("proved optimal", "proved_optimal", ""),
    ("with a solution", "with_solution", ""),
    ("errors", "errors", ""),
    ("mean gap to best-known UB", "mean_gap_pct", " %"),
    ("max gap", "max_gap_pct", " %"),
    ("median time", "median_s", "s"),
    ("mean time", "mean_s", "s"),
    ("total time", "total_s", "s"),
    ("median time to first solution", "median_first_s", "s"),
    ("max time to first solution", "max_first_s", "s"),
    ("  of which the heuristic's", "first_from_heuristic", ""),
    ("median time to CP-SAT's first", "median_first_cpsat_s", "s"),
    ("median time to reach best-known", "median_reach_s", "s"),
    ("mean gap of the first solution", "mean_first_gap_pct", " %"),
)


def print_set(set_name: str, record: dict[str, Any]) -> None:
    summary = record["summary"]
    n = record["instances_run"]
    click.echo(f"\n{set_name}: {n} instances ({record['selection']}), {record['params_text']}")
    click.echo(f"{'':34} {'product':>12} {'plain':>12} {'product/plain':>14}")
    for label, key, unit in TABLE_ROWS:
        a = summary.get("product", {}).get(key)
        b = summary.get("plain", {}).get(key)
        ratio = _ratio(a, b) if unit == "s" else ""
        click.echo(f"{label:34} {_fmt_value(a, unit):>12} {_fmt_value(b, unit):>12} {ratio:>14}")
    for t in record["targets"]:
        status = "MET" if t["met"] else "NOT MET"
        click.echo(f"target: {t['target']}: {t['value']} -> {status}")


# --- the run -----------------------------------------------------------------------------------


def _run_one(
    runner: Runner,
    instance: Instance,
    time_limit: float,
    workers: int,
    seed: int,
    target: int | None,
) -> RunResult:
    t0 = time.perf_counter()
    try:
        return runner(instance, time_limit, workers, seed, target)
    except Exception as exc:  # a failing run is a result to report, not the end of the run
        return RunResult(
            status="ERROR",
            makespan=None,
            bound=None,
            proved_optimal=False,
            wall_s=time.perf_counter() - t0,
            first_s=None,
            first_makespan=None,
            reach_s=None,
            error=f"{type(exc).__name__}: {exc}",
        )


@functools.cache
def code_version() -> dict[str, Any]:
    """The commit measured, the scheduler's last commit, and whether its files differed from
    it (others edit the tree while benchmarks run: a dirty scheduler means the numbers are
    for work in progress). Taken once, at the run's start: the modules are imported then."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "floorctl/scheduler")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "scheduler_commit": git("log", "-1", "--format=%h", "--", "floorctl/scheduler"),
        "scheduler_dirty": dirty.splitlines(),
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "ortools": ortools.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": "shared machine: 2 cores, other engineers ran tests and builds at the same time",
    }


def run_set(
    set_name: str,
    data: Path,
    models: Sequence[str],
    sample: int | None,
    seed: int,
    limit: int | None,
    time_limit: float,
    workers: int,
    solver_seed: int,
    checkpoint: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    bks = read_best_known(data / "bks_ugent_2024" / BKS_FILES[set_name])
    all_paths = instance_paths(data, set_name)
    paths = choose(all_paths, sample, seed)
    selection = (
        f"all {len(all_paths)}"
        if len(paths) == len(all_paths)
        else f"random sample of {len(paths)} of {len(all_paths)}, sample seed {seed}"
    )
    if limit is not None and limit < len(paths):
        paths = paths[:limit]
        selection += f", first {limit} only"
    runners: dict[str, Runner] = {"product": run_product, "plain": run_plain}
    params = {
        "time_limit_s": time_limit,
        "workers": workers,
        "random_seed": solver_seed,
        "models": list(models),
    }
    record: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": params,
        "params_text": f"{time_limit:g} s, {workers} workers, random_seed {solver_seed}",
        "selection": selection,
        "loadavg_before": os.getloadavg(),
        "code": code_version(),
        "instances": [],
    }
    rows: list[dict[str, Any]] = record["instances"]
    for k, path in enumerate(paths):
        instance = read_sm(path)
        known: BestKnown | None = bks.get(instance.name)
        if known is None:
            raise click.ClickException(f"{instance.name}: not in {BKS_FILES[set_name]}")
        row: dict[str, Any] = {
            "name": instance.name,
            "bks": {"lb": known.lb, "ub": known.ub, "optimal": known.optimal},
        }
        # alternate which model goes first, so that neither always gets the quieter slot
        order = list(models) if k % 2 == 0 else list(reversed(models))
        for model in order:
            result = _run_one(runners[model], instance, time_limit, workers, solver_seed, known.ub)
            row[model] = attrs.asdict(result)
        rows.append(row)
        click.echo(
            f"{set_name} {k + 1}/{len(paths)} {instance.name} ub {known.ub}: "
            + ", ".join(f"{m} {_brief(row[m])}" for m in models),
            err=True,
        )
        if (k + 1) % 25 == 0:
            checkpoint(_finish(record, set_name, models, len(all_paths), done=False))
    return _finish(record, set_name, models, len(all_paths), done=True)


def _brief(run: dict[str, Any]) -> str:
    if run["error"]:
        return f"ERROR {run['error'][:80]}"
    star = "*" if run["proved_optimal"] else ""
    return f"{run['makespan']}{star} in {run['wall_s']:.2f} s"


def _finish(
    record: dict[str, Any], set_name: str, models: Sequence[str], set_size: int, done: bool
) -> dict[str, Any]:
    rows = record["instances"]
    record["instances_run"] = len(rows)
    record["complete"] = done
    record["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record["loadavg_after"] = os.getloadavg()
    record["summary"] = {m: summarise(rows, m) for m in models}
    full_j30 = set_name == "j30" and len(rows) == set_size
    record["targets"] = (
        targets(set_name, record["summary"], len(rows)) if (set_name != "j30" or full_j30) else []
    )
    return record


def write_doc(out: Path, set_name: str, record: dict[str, Any]) -> None:
    doc: dict[str, Any] = {}
    if out.exists():
        try:
            doc = json.loads(out.read_text())
        except json.JSONDecodeError:
            doc = {}
    doc["benchmark"] = "psplib"
    doc["machine"] = machine()
    doc.setdefault("sets", {})[set_name] = record
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)


@click.command()
@click.option(
    "--sets",
    "sets",
    default="j30,j60,j120",
    show_default=True,
    help="Comma-separated PSPLIB sets (j30, j60, j90, j120).",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=70,
    show_default=True,
    help="Random sample size for every set but j30 (j30 always runs all 480).",
)
@click.option(
    "--seed", type=int, default=2024, show_default=True, help="Seed of the random sample."
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds per instance and model.",
)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--solver-seed",
    type=int,
    default=1,
    show_default=True,
    help="CP-SAT random_seed, the same for both models.",
)
@click.option(
    "--models", default="product,plain", show_default=True, help="Which of product, plain to run."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N instances of each selection (a quick look).",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=DATA,
    show_default=True,
    help="The PSPLIB folder (j30/instances, bks_ugent_2024, ...).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=RESULTS,
    show_default=True,
    help="JSON results; the sets run replace theirs in it.",
)
def main(
    sets: str,
    sample: int,
    seed: int,
    time_limit: float,
    workers: int,
    solver_seed: int,
    models: str,
    limit: int | None,
    data: Path,
    out: Path,
) -> None:
    """Run the product's scheduling core and the plain CP-SAT model on PSPLIB."""
    chosen = [s.strip() for s in sets.split(",") if s.strip()]
    for s in chosen:
        if s not in SETS:
            raise click.BadParameter(f"{s!r}: not one of {', '.join(SETS)}", param_hint="--sets")
    model_list = [m.strip() for m in models.split(",") if m.strip()]
    for m in model_list:
        if m not in MODELS:
            raise click.BadParameter(
                f"{m!r}: not one of {', '.join(MODELS)}", param_hint="--models"
            )
    click.echo(
        f"PSPLIB benchmark: OR-Tools {ortools.__version__}, {os.cpu_count()} CPUs, "
        "shared machine (others run tests at the same time): numbers are noisy."
    )
    records = {}
    for set_name in chosen:
        record = run_set(
            set_name,
            data,
            model_list,
            None if set_name == "j30" else sample,
            seed,
            limit,
            time_limit,
            workers,
            solver_seed,
            lambda r, s=set_name: write_doc(out, s, r),
        )
        write_doc(out, set_name, record)
        records[set_name] = record
        print_set(set_name, record)
    if len(records) > 1:
        click.echo("\nSummary")
        for set_name, record in records.items():
            print_set(set_name, record)
    click.echo(f"\nwrote {out}")


if __name__ == "__main__":
    main()
