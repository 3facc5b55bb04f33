"""``floorctl schedule PLAN ...``, ``floorctl schedule check PLAN SCHEDULE``, ``... schema``.

Hooked into the main CLI by :func:`register_commands`. Exit codes: 0 a schedule without hard
violations; 1 infeasible, no schedule, or (``check``) hard violations; 2 bad input (a plan or
schedule file with problems, a bad option). Progress goes to stderr; Ctrl-C stops the search
and keeps the best schedule found (docs/planning.md).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import math
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from floorctl.scheduler.check import Violation, check
from floorctl.scheduler.model import SchedulingModel, solve, with_room_outages
from floorctl.scheduler.plan import PlanError, load_plan, parse_time
from floorctl.scheduler.problem import Problem, ResourceKind
from floorctl.scheduler.result import Progress, Result, SolveOptions, Status
from floorctl.scheduler.schedule import (
    Schedule,
    ScheduleFileError,
    dumps,
    json_schema,
    read_schedule,
    schedule_to_dict,
)

EXIT_OK, EXIT_VIOLATED, EXIT_INPUT = 0, 1, 2


class ScheduleGroup(click.Group):
    """``floorctl schedule PLAN [...]`` runs the solver; ``floorctl schedule check ...`` and
    ``schema`` are subcommands. Anything that is not a subcommand goes to ``run``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _load(plan: str, floor: str | None) -> Problem:
    try:
        return load_plan(plan, floor=floor)
    except PlanError as exc:
        for p in exc.problems:
            click.echo(p.format(), err=True)
        n = len(exc.problems)
        click.echo(f"{n} problem{'s' if n != 1 else ''} in the plan", err=True)
        sys.exit(EXIT_INPUT)


def _read(path: str) -> Schedule:
    try:
        return read_schedule(path)
    except ScheduleFileError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)


def _room_outages(problem: Problem, specs: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        room, sep, when = spec.partition("@")
        if not sep or not room or not when:
            raise click.BadParameter(f"{spec!r}: expected ROOM@TIME", param_hint="--room-out")
        if room not in problem.resource_index:
            raise click.BadParameter(
                f"{spec!r}: no room {room!r} in the plan", param_hint="--room-out"
            )
        try:
            out.append((room, parse_time(when, problem)))
        except ValueError:
            raise click.BadParameter(
                f"{spec!r}: {when!r} is not an ISO date and time", param_hint="--room-out"
            ) from None
    return out


def floor_room_outages(
    devices: str, problem: Problem, timeout: float = 2.0
) -> list[tuple[str, int, str]]:
    """Rooms of the live floor that are out of service: the retained
    ``<prefix>/room/<room>/status`` messages (docs/mqtt.md) with status ``out-of-service``,
    read from the broker named in devices.toml. (room, minute after the epoch, raw time)."""
    from floorctl.config import ConfigError, load_config
    from floorctl.pluginmanager import collect_kinds, get_plugin_manager

    try:
        config = load_config(devices, collect_kinds(get_plugin_manager()))
    except ConfigError as exc:
        for p in exc.problems:
            click.echo(p.format(exc.filename), err=True)
        sys.exit(EXIT_INPUT)
    return asyncio.run(_read_room_status(config, problem, timeout))


async def _read_room_status(
    config: Any, problem: Problem, timeout: float
) -> list[tuple[str, int, str]]:
    import aiomqtt

    from floorctl.hubs.mqtt import make_client

    prefix = config.floor.prefix
    statuses: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(timeout):
            async with make_client(config.state_connection) as client:
                await client.subscribe(f"{prefix}/room/+/status", qos=1)
                quiet = 0.3  # retained messages arrive at once: stop after a quiet spell
                while True:
                    try:
                        async with asyncio.timeout(quiet):
                            msg = await anext(client.messages)
                    except TimeoutError:
                        break
                    room = str(msg.topic).removeprefix(f"{prefix}/room/").removesuffix("/status")
                    try:
                        payload = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
                    except (ValueError, TypeError):
                        click.echo(f"warning: {msg.topic}: not JSON, ignored", err=True)
                        continue
                    if isinstance(payload, dict):
                        statuses[room] = payload
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        raise click.ClickException(
            f"reading the room status from the broker of {config.path}: {exc or 'timed out'}"
        ) from exc
    out = []
    for room, payload in sorted(statuses.items()):
        if payload.get("status") != "out-of-service":
            continue
        if room not in problem.resource_index:
            click.echo(f"warning: room {room!r} is out of service but not in the plan", err=True)
            continue
        t = payload.get("time")
        if not isinstance(t, int | float):
            click.echo(f"warning: room {room}: status without a time, ignored", err=True)
            continue
        when = dt.datetime.fromtimestamp(float(t), dt.UTC)
        out.append((room, max(problem.minutes(when), 0), when.isoformat()))
    return out


def result_document(problem: Problem, result: Result, options: SolveOptions) -> dict[str, Any]:
    """The JSON document of a result (docs/planning.md, "Output")."""
    extra: dict[str, Any] = {
        "status": result.status.value,
        "objective": {
            "weighted_tardiness": result.objective.weighted_tardiness,
            "soft_penalty": result.objective.soft_penalty,
            "moves": result.objective.moves,
            "makespan": result.objective.makespan,
            "changeover": result.objective.changeover,
            "value": result.objective.value,
        },
        "bound": result.bound,
        "gap": result.gap,
        "makespan_bound": result.makespan_bound,
        "solver": {
            "mode": "reproducible" if options.reproducible else "fast",
            "parameters": result.parameters.splitlines(),
            "solutions": result.solutions,
            "cancelled": result.cancelled,
        },
    }
    if not options.reproducible:  # wall-clock times differ from run to run
        t = result.timings
        extra["timings"] = {
            "build": round(t.build, 3),
            "solve": round(t.solve, 3),
            "first_solution": None if t.first_solution is None else round(t.first_solution, 3),
            "first_schedule": None if t.first_schedule is None else round(t.first_schedule, 3),
            "total": round(t.total, 3),
        }
    extra["violations"] = [v.as_dict() for v in result.violations]
    extra["moves"] = [
        {
            "batch": m.batch,
            "operation": m.operation,
            "what": m.what,
            "from": m.old,
            "to": m.new,
            "reason": m.reason,
        }
        for m in result.moves
    ]
    extra["explanation"] = list(result.explanation)
    if result.schedule is None:
        return {
            "schema": "floorctl.schedule/1",
            "plan": problem.name,
            "epoch": problem.epoch.isoformat(),
            **extra,
            "operations": [],
        }
    return schedule_to_dict(result.schedule, problem, **extra)


def to_csv(problem: Problem, schedule: Schedule) -> str:
    doc = schedule_to_dict(schedule, problem)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["batch", "operation", "name", "start", "end", "room", "unit", "equipment", "staff"])
    for o in doc["operations"]:
        w.writerow(
            [
                o["batch"],
                o["operation"],
                o["name"],
                o["start"],
                o["end"],
                o["room"] or "",
                o["unit"] or "",
                " ".join(o["equipment"]),
                " ".join(o["staff"]),
            ]
        )
    return buf.getvalue()


_SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def to_gantt(problem: Problem, schedule: Schedule, width: int = 100) -> str:
    """A text Gantt chart: one row per room, unit and piece of equipment; a letter per batch
    ('.' idle, '#' unavailable); a legend below."""
    rows = [
        r
        for r in problem.resources
        if r.kind in (ResourceKind.ROOM, ResourceKind.UNIT, ResourceKind.EQUIPMENT)
    ]
    uses: dict[str, list[tuple[int, int, str]]] = {r.id: [] for r in rows}
    for a in schedule.assignments:
        seen: set[str] = set()
        for rid in a.used():
            if rid not in problem.resource_index:
                continue
            for r in (rid, *(p.id for p in problem.parents(rid))):
                if r in uses and r not in seen:
                    seen.add(r)
                    uses[r].append((a.start, a.end, a.batch))
    busy = [u for v in uses.values() for u in v]
    if not busy:
        return "nothing scheduled on rooms, units or equipment\n"
    t0 = min(u[0] for u in busy)
    t1 = max(u[1] for u in busy)
    label = max(len(r.id) for r in rows) + 1
    cols = max(10, width - label - 1)
    step = max(1, -(-(t1 - t0) // cols))
    sym = {b.id: _SYMBOLS[i % len(_SYMBOLS)] for i, b in enumerate(problem.batches)}
    lines = [
        f"{'':{label}} {problem.time(t0):%a %d %b %H:%M} .. {problem.time(t1):%a %d %b %H:%M}, "
        f"one column = {step} min"
    ]
    for r in rows:
        if not uses[r.id] and r.kind is not ResourceKind.ROOM:
            continue
        blocked = r.unavailable(t1 + 1)
        cells = []
        for c in range(cols):
            a, b = t0 + c * step, t0 + (c + 1) * step
            if a >= t1:
                break
            here = [u for u in uses[r.id] if u[0] < b and a < u[1]]
            if len(here) > 1 and len({u[2] for u in here}) > 1:
                cells.append("*")
            elif here:
                cells.append(sym[here[0][2]])
            elif any(w.overlaps(a, b) for w in blocked):
                cells.append("#")
            else:
                cells.append(".")
        lines.append(f"{r.id:<{label}} {''.join(cells)}")
    legend = "  ".join(
        [f"{sym[b.id]}={b.id}" for b in problem.batches] + ["*=several", "#=unavailable"]
    )
    lines.extend(
        textwrap.wrap(
            legend,
            width,
            initial_indent=" " * (label + 1),
            subsequent_indent=" " * (label + 1),
            break_on_hyphens=False,
        )
    )
    return "\n".join(lines) + "\n"


class _Reporter:
    """Progress on stderr: each new solution, and bound improvements at most twice a second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0
        self.lock = threading.Lock()
        self.best: float | None = None

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        with self.lock:
            if p.objective is not None:
                self.best = p.objective
            now = time.monotonic()
            if p.objective is None and now - self.last < 0.5:
                return
            self.last = now
            obj = "-" if self.best is None else f"{self.best:.0f}"
            gap = "-" if p.gap is None else f"{100 * p.gap:.2f}%"
            bound = "-" if not math.isfinite(p.bound) else f"{p.bound:.0f}"
            source = "" if p.source == "cp-sat" else f"  ({p.source} schedule)"
            click.echo(
                f"{p.elapsed:7.2f}s  solutions {p.solutions:3d}  objective {obj}  "
                f"bound {bound}  gap {gap}{source}",
                err=True,
            )


def register_commands(cli: click.Group) -> None:
    """Add the ``schedule`` group to the floorctl command line."""

    @cli.group("schedule", cls=ScheduleGroup)
    def schedule_group() -> None:
        """Plan 503B batches: `floorctl schedule PLAN`, `floorctl schedule check PLAN
        SCHEDULE`, `floorctl schedule schema` (docs/planning.md)."""

    @schedule_group.command("run")
    @click.argument("plan", type=click.Path(dir_okay=False))
    @click.option(
        "--floor",
        "floor",
        type=click.Path(dir_okay=False),
        help="devices.toml: its rooms, and the out-of-service rooms of the live "
        "floor (retained room status on its broker).",
    )
    @click.option(
        "--previous",
        type=click.Path(dir_okay=False),
        help="The previous schedule (JSON): hint, frozen operations, move penalties.",
    )
    @click.option("--now", "now_text", help="Replanning: the current time (ISO; default: now).")
    @click.option(
        "--freeze",
        type=float,
        default=0.0,
        show_default=True,
        help="Replanning: hours after --now in which the previous schedule stays.",
    )
    @click.option(
        "--room-out",
        multiple=True,
        metavar="ROOM@TIME",
        help="A room out of service from TIME on (repeatable).",
    )
    @click.option(
        "--time-limit",
        type=float,
        default=30.0,
        show_default=True,
        help="Seconds (fast mode) or deterministic time units (--reproducible).",
    )
    @click.option("--workers", type=int, default=2, show_default=True)
    @click.option(
        "--reproducible",
        is_flag=True,
        help="Deterministic search: the same input gives the same schedule.",
    )
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option(
        "--gap",
        "relative_gap",
        type=float,
        default=0.0,
        help="Stop at this relative gap (e.g. 0.01).",
    )
    @click.option("--out", type=click.Path(dir_okay=False), help="Write here (default stdout).")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["json", "csv", "gantt"]),
        default="json",
        show_default=True,
    )
    @click.option(
        "--explain", is_flag=True, help="If infeasible, name the constraint groups at fault."
    )
    @click.option(
        "--mqtt-timeout",
        type=float,
        default=3.0,
        show_default=True,
        help="Seconds to wait for the live floor's room status (--floor).",
    )
    @click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
    @click.option("--log", is_flag=True, help="CP-SAT's search log on stderr.")
    @click.pass_obj
    def run(
        obj: Any,
        plan: str,
        floor: str | None,
        previous: str | None,
        now_text: str | None,
        freeze: float,
        room_out: tuple[str, ...],
        time_limit: float,
        workers: int,
        reproducible: bool,
        seed: int,
        relative_gap: float,
        out: str | None,
        fmt: str,
        explain: bool,
        mqtt_timeout: float,
        quiet: bool,
        log: bool,
    ) -> None:
        """Schedule the batches of PLAN (a facility.toml)."""
        problem = _load(plan, floor)
        prev = _read(previous) if previous else None
        outages = _room_outages(problem, room_out)
        if floor is not None:
            for room, minute, when in floor_room_outages(floor, problem, mqtt_timeout):
                click.echo(f"live floor: {room} out of service since {when}", err=True)
                outages.append((room, minute))
        problem = with_room_outages(problem, outages)
        now: int | None = None
        if prev is not None or now_text is not None:
            try:
                now = (
                    parse_time(now_text, problem)
                    if now_text
                    else problem.minutes(dt.datetime.now(dt.UTC))
                )
            except ValueError:
                raise click.BadParameter(
                    f"{now_text!r} is not an ISO date and time", param_hint="--now"
                ) from None
        options = SolveOptions(
            time_limit=time_limit,
            workers=workers,
            reproducible=reproducible,
            seed=seed,
            relative_gap=relative_gap,
            explain=explain,
            now=now,
            freeze=round(freeze * 60),
            log=log,
        )
        pm = getattr(obj, "pm", None)
        hooks: list[Callable[[SchedulingModel, Problem], None]] = []
        if pm is not None:
            hooks.append(lambda m, p: pm.hook.floorctl_add_schedule_constraints(model=m, problem=p))
        cancel = threading.Event()

        def on_sigint(signum: int, frame: Any) -> None:
            if cancel.is_set():
                raise KeyboardInterrupt
            click.echo(
                "interrupted: stopping the search, keeping the best schedule found "
                "(Ctrl-C again to abort)",
                err=True,
            )
            cancel.set()

        # the solve runs on a worker thread so that the main thread can take Ctrl-C (Python
        # runs signal handlers on the main thread only, never while it is inside CP-SAT)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = solve(
                    problem,
                    options,
                    previous=prev,
                    progress=_Reporter(quiet),
                    cancel=cancel,
                    hooks=hooks,
                )
            except BaseException as exc:  # re-raised on the main thread
                box["error"] = exc

        old = signal.signal(signal.SIGINT, on_sigint)
        try:
            worker = threading.Thread(target=work, name="floorctl-schedule", daemon=True)
            worker.start()
            while worker.is_alive():
                worker.join(0.1)
        finally:
            signal.signal(signal.SIGINT, old)
        if "error" in box:
            raise box["error"]
        result: Result = box["result"]
        _report(problem, result, options, fmt, out)
        if result.schedule is None or result.status in (
            Status.INFEASIBLE,
            Status.UNKNOWN,
            Status.INVALID,
        ):
            sys.exit(EXIT_VIOLATED)
        if any(v.hard for v in result.violations):
            sys.exit(EXIT_VIOLATED)

    @schedule_group.command("check")
    @click.argument("plan", type=click.Path(dir_okay=False))
    @click.argument("schedule", type=click.Path(dir_okay=False))
    @click.option(
        "--floor",
        "floor",
        type=click.Path(dir_okay=False),
        help="devices.toml whose rooms the plan uses.",
    )
    @click.option(
        "--room-out",
        multiple=True,
        metavar="ROOM@TIME",
        help="A room out of service from TIME on (repeatable).",
    )
    def check_cmd(plan: str, schedule: str, floor: str | None, room_out: tuple[str, ...]) -> None:
        """Verify SCHEDULE against PLAN, independently of the solver: list every violated
        constraint; exit 1 if any is hard."""
        problem = _load(plan, floor)
        sched = _read(schedule)
        problem = with_room_outages(problem, _room_outages(problem, room_out))
        found = check(problem, sched)
        for v in found:
            click.echo(v.format())
        hard = sum(v.hard for v in found)
        click.echo(_summary(found, len(sched.assignments)), err=True)
        sys.exit(EXIT_VIOLATED if hard else EXIT_OK)

    @schedule_group.command("schema")
    def schema_cmd() -> None:
        """Print the JSON Schema of the schedule document."""
        click.echo(json.dumps(json_schema(), indent=2))


def _summary(found: list[Violation], n: int) -> str:
    hard = sum(v.hard for v in found)
    soft = len(found) - hard
    return f"{n} operations: {hard} hard violation(s), {soft} soft"


def _report(
    problem: Problem, result: Result, options: SolveOptions, fmt: str, out: str | None
) -> None:
    if fmt == "json":
        text = dumps(result_document(problem, result, options))
    elif result.schedule is None:
        text = ""
    elif fmt == "csv":
        text = to_csv(problem, result.schedule)
    else:
        text = to_gantt(problem, result.schedule)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    o = result.objective
    t = result.timings
    first = "-" if t.first_solution is None else f"{t.first_solution:.2f}s"
    click.echo(
        f"{result.status.value}{' (cancelled)' if result.cancelled else ''}: "
        f"weighted tardiness {o.weighted_tardiness} min, makespan "
        f"{o.makespan / 60:.1f} h, changeover {o.changeover} min, moves {o.moves}; "
        f"first solution {first}, total {t.total:.2f}s",
        err=True,
    )
    for v in result.violations:
        click.echo(v.format(), err=True)
    for m in result.moves:
        click.echo(f"moved: {m.operation} {m.what}: {m.old} -> {m.new} ({m.reason})", err=True)
    if result.explanation:
        click.echo("infeasible because of: " + ", ".join(result.explanation), err=True)
    elif result.status is Status.INFEASIBLE and not options.explain:
        click.echo("infeasible: run with --explain to name the constraints at fault", err=True)
