"""Plan files -> :class:`~floorctl.scheduler.problem.Problem` (docs/planning.md).

A plan is a TOML file (facility, staff, recipes, and the batches inline or in a CSV / TOML
file it names). Rooms use the ids of devices.toml: with a floor (``--floor`` or the plan's
``floor`` key) each ``[[room]]`` of the plan adds planning attributes to a room of the floor
(ISO class, pressure and ``within`` come from devices.toml); without one, the plan describes
its rooms itself.

Loading follows devices.toml's approach (floorctl.config): tomllib, the same strict cattrs
converter, every problem collected and reported at once with its file, key path and line.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import math
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from attrs import field, frozen

from floorctl.config import (
    ConfigError,
    Duration,
    Ident,
    PathT,
    _Collector,
    _enum,
    _find_line,
    describe_value,
    line_index,
    make_converter,
    structure_pruned,
)
from floorctl.limits import PressureRegime
from floorctl.scheduler.problem import (
    Batch,
    Changeover,
    Operation,
    Precedence,
    Problem,
    Relation,
    Requirement,
    Resource,
    ResourceKind,
    Weights,
    Window,
    minutes_between,
)

# --- errors ----------------------------------------------------------------------------------


@frozen
class PlanProblem:
    """One problem in a plan: the file, the key path (``batch[B003].due``), the line."""

    file: str
    path: str
    message: str
    line: int | None = None

    def format(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PlanError(Exception):
    """Every problem found in a plan (``problems``), each naming file, key path and line."""

    def __init__(self, problems: list[PlanProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.format() for p in problems))


# --- the plan file's shape ---------------------------------------------------------------------


class Weekday(enum.Enum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class TimeOfDay(str):
    """ "HH:MM" (24 h)."""


@frozen
class WindowSpec:
    start: dt.datetime
    end: dt.datetime
    reason: str = ""


@frozen
class PlanSection:
    name: str
    start: dt.datetime
    horizon: Duration = Duration(28 * 86400.0)
    grid: Duration = Duration(900.0)
    timezone: str = "UTC"
    #: devices.toml (relative to the plan file) whose rooms the plan uses
    floor: str | None = None
    #: a CSV or TOML file of batches (relative to the plan file)
    batches: str | None = None
    decontamination: Duration = Duration(0.0)


@frozen
class ReplanSection:
    moved_batch: int = 60
    reassigned: int = 30
    move_tolerance: Duration = Duration(0.0)


@frozen
class RoomSpec:
    id: Ident
    name: str = ""
    #: concurrent operations (default: the number of units inside it, at least 1)
    capacity: int | None = None
    headcount: int | None = None
    # only without a floor (else devices.toml's values are used)
    iso_class: int | None = None
    pressure: PressureRegime | None = None
    within: Ident | None = None
    outages: list[WindowSpec] = field(factory=list)


@frozen
class EquipmentSpec:
    id: Ident
    type: str
    name: str = ""
    capacity: int = 1
    outages: list[WindowSpec] = field(factory=list)


@frozen
class ShiftSpec:
    id: Ident
    start: TimeOfDay
    end: TimeOfDay
    days: list[Weekday] = field(factory=lambda: list(Weekday)[:5])


@frozen
class StaffSpec:
    id: Ident
    name: str = ""
    qualifications: list[str] = field(factory=list)
    shifts: list[Ident] = field(factory=list)
    absences: list[WindowSpec] = field(factory=list)


@frozen
class OperationSpec:
    name: Ident
    duration: Duration = Duration(0.0)
    per_unit: Duration = Duration(0.0)
    rooms: list[Ident] | None = None
    room_class: int | None = None
    units: list[Ident] | None = None
    unit_class: int | None = None
    equipment: list[str] = field(factory=list)
    qualifications: list[str] = field(factory=list)
    headcount: int = 0
    after: list[Ident] | None = None
    min_lag: Duration = Duration(0.0)
    max_lag: Duration | None = None
    #: null: the max lag is hard; a number: soft, points per minute over
    max_lag_penalty: int | None = None
    lag_from: Relation = Relation.END_START


@frozen
class ChangeoverSpec:
    to: str
    duration: Duration
    resources: list[Ident] = field(factory=list)
    # "from" is a Python keyword: renamed on the way in
    from_family: str = "*"


@frozen
class RecipeSpec:
    id: Ident
    family: str | None = None
    hazardous: bool = False
    operation: list[OperationSpec] = field(factory=list)


@frozen
class BatchSpec:
    id: Ident
    recipe: Ident
    quantity: float = 1.0
    release: dt.datetime | None = None
    due: dt.datetime | None = None
    deadline: dt.datetime | None = None
    priority: int = 1


@frozen
class PlanFile:
    plan: PlanSection
    replan: ReplanSection = ReplanSection()
    room: list[RoomSpec] = field(factory=list)
    equipment: list[EquipmentSpec] = field(factory=list)
    shift: list[ShiftSpec] = field(factory=list)
    staff: list[StaffSpec] = field(factory=list)
    recipe: list[RecipeSpec] = field(factory=list)
    changeover: list[ChangeoverSpec] = field(factory=list)
    batch: list[BatchSpec] = field(factory=list)


@frozen
class BatchFile:
    batch: list[BatchSpec] = field(factory=list)


def _datetime(value: object, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(
        f"expected a date and time such as 2025-03-03T06:00:00, got {describe_value(value)}"
    )


def _time_of_day(value: object, _: type) -> TimeOfDay:
    if isinstance(value, dt.time):
        return TimeOfDay(value.strftime("%H:%M"))
    if isinstance(value, str):
        try:
            t = dt.time.fromisoformat(value)
            return TimeOfDay(t.strftime("%H:%M"))
        except ValueError:
            pass
    raise ValueError(f'expected a time of day such as "06:00", got {describe_value(value)}')


def _converter():
    c = make_converter()
    c.register_structure_hook(dt.datetime, _datetime)
    c.register_structure_hook(TimeOfDay, _time_of_day)
    c.register_structure_hook(Weekday, _enum(Weekday, "day"))
    c.register_structure_hook(Relation, _enum(Relation, "lag_from"))
    return c


CONVERTER = _converter()


def _structure(cls: type, raw: dict[str, Any]) -> tuple[Any, list[tuple[PathT, str]]]:
    """floorctl.config.structure_pruned with the plan converter (it uses its module's
    converter; plans are loaded on one thread, so the swap is safe)."""
    import floorctl.config as config

    saved = config.CONVERTER
    config.CONVERTER = CONVERTER
    try:
        return structure_pruned(cls, raw, {})
    finally:
        config.CONVERTER = saved


# --- loading -------------------------------------------------------------------------------


class _Problems:
    """Problems across the plan's files."""

    def __init__(self) -> None:
        self.items: list[PlanProblem] = []

    def add(self, file: str, path: str, message: str, line: int | None = None) -> None:
        p = PlanProblem(file, path, message, line)
        if p not in self.items:
            self.items.append(p)

    def raise_if_any(self) -> None:
        if self.items:
            raise PlanError(
                sorted(self.items, key=lambda p: (p.file, p.line or 0, p.path, p.message))
            )


def _read_toml(path: Path, problems: _Problems) -> tuple[dict[str, Any], str] | None:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        problems.add(str(path), "", f"cannot read file: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        problems.add(str(path), "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        problems.add(str(path), "", f"TOML syntax error: {msg}", int(m.group(1)) if m else None)
        return None


def _rename_from(raw: dict[str, Any]) -> dict[str, Any]:
    """``[[changeover]] from = ...`` -> ``from_family`` (``from`` is a Python keyword)."""
    items = raw.get("changeover")
    if isinstance(items, list):
        raw = {
            **raw,
            "changeover": [
                {("from_family" if k == "from" else k): v for k, v in c.items()}
                if isinstance(c, dict)
                else c
                for c in items
            ],
        }
    return raw


def load_plan(path: str | Path, *, floor: str | Path | None = None) -> Problem:
    """Read a plan; raise :class:`PlanError` listing every problem.

    :param floor: devices.toml whose rooms the plan uses; default: the plan's ``floor`` key
        (relative to the plan file), else none (the plan describes its rooms itself).
    """
    problems = _Problems()
    p = Path(path)
    fname = str(p)
    got = _read_toml(p, problems)
    problems.raise_if_any()
    assert got is not None
    raw, text = got
    raw = _rename_from(raw)
    index = line_index(text)
    col = _Collector(raw, index)
    spec, errors = _structure(PlanFile, raw)
    col.extend((), errors)
    col.failed.update(pp for pp, _ in errors)
    for pr in col.problems():
        problems.add(fname, pr.path.replace("from_family", "from"), pr.message, pr.line)
    if spec is None:
        problems.raise_if_any()
        raise PlanError([PlanProblem(fname, "plan", "required table [plan] is missing")])
    return _Builder(spec, p, raw, index, problems, floor).build()


class _Builder:
    def __init__(
        self,
        spec: PlanFile,
        path: Path,
        raw: dict[str, Any],
        index: dict[PathT, int],
        problems: _Problems,
        floor: str | Path | None,
    ) -> None:
        self.spec = spec
        self.path = path
        self.file = str(path)
        self.raw = raw
        self.index = index
        self.problems = problems
        self.floor_arg = floor
        self.col = _Collector(raw, index)
        self.tz: dt.tzinfo = dt.UTC

    # problem reporting at a raw key path of the plan file
    def err(self, path: PathT, message: str) -> None:
        self.problems.add(self.file, self.col.pretty(path), message, _find_line(self.index, path))

    def aware(self, t: dt.datetime) -> dt.datetime:
        return t if t.tzinfo is not None else t.replace(tzinfo=self.tz)

    def build(self) -> Problem:
        spec = self.spec
        try:
            self.tz = ZoneInfo(spec.plan.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.err(("plan", "timezone"), f"unknown time zone {spec.plan.timezone!r}")
        self.epoch = self.aware(spec.plan.start)
        self.grid = max(1, math.ceil(spec.plan.grid / 60))
        if spec.plan.grid < 60 or spec.plan.grid % 60:
            self.err(("plan", "grid"), "the grid must be a whole number of minutes, >= 1m")
        self.horizon = math.ceil(spec.plan.horizon / 60)
        if self.horizon <= 0:
            self.err(("plan", "horizon"), "must be longer than 0")
        resources = self.rooms() + self.equipment() + self.staff()
        self.res = {r.id: r for r in resources}
        batches = self.batches()
        ops, precs = self.operations(batches)
        changeovers = self.changeovers()
        self.problems.raise_if_any()
        w = spec.replan
        return Problem(
            name=spec.plan.name,
            epoch=self.epoch,
            resources=tuple(resources),
            batches=tuple(batches),
            operations=tuple(ops),
            precedences=tuple(precs),
            changeovers=tuple(changeovers),
            grid=self.grid,
            horizon=self.horizon,
            decontamination=math.ceil(spec.plan.decontamination / 60),
            weights=Weights(w.moved_batch, w.reassigned, math.ceil(w.move_tolerance / 60)),
            source=self.file,
        )

    def minutes(self, t: dt.datetime) -> int:
        return minutes_between(self.epoch, self.aware(t))

    def windows(self, specs: Iterable[WindowSpec], path: PathT) -> tuple[Window, ...]:
        out = []
        for i, w in enumerate(specs):
            s, e = self.minutes(w.start), self.minutes(w.end)
            if e <= s:
                self.err((*path, i, "end"), "ends before it starts")
                continue
            out.append(Window(s, e, w.reason))
        return tuple(out)

    # --- rooms -------------------------------------------------------------------------------

    def rooms(self) -> list[Resource]:
        spec = self.spec
        floor_path: Path | None = None
        if self.floor_arg is not None:
            floor_path = Path(self.floor_arg)
        elif spec.plan.floor:
            floor_path = self.path.parent / spec.plan.floor
        rooms: dict[str, dict[str, Any]] = {}
        if floor_path is not None:
            for r in self.floor_rooms(floor_path):
                rooms[r.id] = {
                    "name": r.name,
                    "iso_class": r.iso_class.value if isinstance(r.iso_class.value, int) else None,
                    "pressure": r.pressure,
                    "within": r.within,
                }
        for i, r in enumerate(spec.room):
            path: PathT = ("room", i)
            if floor_path is not None:
                if r.id not in rooms:
                    self.err((*path, "id"), f"no room {r.id!r} in {floor_path}")
                    continue
                for key in ("iso_class", "pressure", "within"):
                    if getattr(r, key) is not None:
                        self.err((*path, key), f"comes from {floor_path}; remove it here")
            else:
                if r.id in rooms:
                    self.err((*path, "id"), f"duplicate room {r.id!r}")
                rooms[r.id] = {
                    "name": r.name,
                    "iso_class": r.iso_class,
                    "pressure": r.pressure,
                    "within": r.within,
                }
            rooms[r.id]["spec"] = (r, path)
        if not rooms:
            self.err(("room",), "no rooms: give a floor (devices.toml) or [[room]] tables")
        for info in rooms.values():
            w = info.get("within")
            if w is not None and w not in rooms:
                where = info.get("spec", (None, ("room",)))[1]
                self.err((*where, "within"), f"unknown room {w!r}")
                info["within"] = None
        out = []
        for rid, info in rooms.items():
            r, path = info.get("spec", (None, ("room",)))
            is_unit = info["within"] is not None
            inside = sum(1 for o in rooms.values() if o.get("within") == rid)
            capacity = r.capacity if r is not None and r.capacity is not None else max(1, inside)
            if capacity < 1:
                self.err((*path, "capacity"), "must be >= 1")
                capacity = 1
            out.append(
                Resource(
                    id=rid,
                    kind=ResourceKind.UNIT if is_unit else ResourceKind.ROOM,
                    capacity=1 if is_unit else capacity,
                    name=(r.name if r is not None and r.name else info["name"]) or "",
                    headcount=r.headcount if r is not None else None,
                    iso_class=info["iso_class"],
                    pressure=info["pressure"],
                    within=info["within"],
                    outages=self.windows(r.outages, (*path, "outages")) if r else (),
                )
            )
        return out

    def floor_rooms(self, floor_path: Path) -> list[Any]:
        from floorctl.config import load_config
        from floorctl.pluginmanager import collect_kinds, get_plugin_manager

        try:
            config = load_config(floor_path, collect_kinds(get_plugin_manager()))
        except ConfigError as exc:
            for pr in exc.problems:
                self.problems.add(exc.filename or str(floor_path), pr.path, pr.message, pr.line)
            return []
        return list(config.rooms)

    # --- equipment and staff -------------------------------------------------------------------

    def equipment(self) -> list[Resource]:
        return [
            Resource(
                id=e.id,
                kind=ResourceKind.EQUIPMENT,
                capacity=max(1, e.capacity),
                name=e.name,
                tags=frozenset({e.type}),
                outages=self.windows(e.outages, ("equipment", i, "outages")),
            )
            for i, e in enumerate(self.spec.equipment)
        ]

    def staff(self) -> list[Resource]:
        shifts = {s.id: s for s in self.spec.shift}
        out = []
        for i, s in enumerate(self.spec.staff):
            calendar: list[Window] = []
            for j, sid in enumerate(s.shifts):
                if sid not in shifts:
                    self.err(("staff", i, "shifts", j), f"unknown shift {sid!r}")
                    continue
                calendar.extend(self.expand_shift(shifts[sid]))
            out.append(
                Resource(
                    id=s.id,
                    kind=ResourceKind.STAFF,
                    name=s.name,
                    tags=frozenset(s.qualifications),
                    calendar=tuple(calendar),
                    outages=self.windows(s.absences, ("staff", i, "absences")),
                )
            )
        return out

    def expand_shift(self, shift: ShiftSpec) -> list[Window]:
        days = {list(Weekday).index(d) for d in shift.days}
        start_t = dt.time.fromisoformat(shift.start)
        end_t = dt.time.fromisoformat(shift.end)
        local0 = self.epoch.astimezone(self.tz).date() - dt.timedelta(days=1)
        out = []
        for k in range(self.horizon // (24 * 60) + 3):
            day = local0 + dt.timedelta(days=k)
            if day.weekday() not in days:
                continue
            s = dt.datetime.combine(day, start_t, tzinfo=self.tz)
            e = dt.datetime.combine(day, end_t, tzinfo=self.tz)
            if e <= s:
                e += dt.timedelta(days=1)
            sm, em = self.minutes(s), self.minutes(e)
            if em > 0 and sm < self.horizon:
                out.append(Window(max(sm, 0), em, f"shift {shift.id}"))
        return out

    # --- batches --------------------------------------------------------------------------

    def batches(self) -> list[Batch]:
        spec = self.spec
        entries: list[tuple[BatchSpec, str, str, int | None]] = []  # spec, file, path, line
        for i, b in enumerate(spec.batch):
            entries.append(
                (b, self.file, self.col.pretty(("batch", i)), _find_line(self.index, ("batch", i)))
            )
        if spec.plan.batches:
            bpath = self.path.parent / spec.plan.batches
            if bpath.suffix.lower() == ".csv":
                entries.extend(self.csv_batches(bpath))
            else:
                entries.extend(self.toml_batches(bpath))
        recipes = {r.id: r for r in spec.recipe}
        out: list[Batch] = []
        seen: dict[str, str] = {}
        for b, file, path, line in entries:
            if b.id in seen:
                self.problems.add(
                    file, f"{path}.id", f"duplicate batch {b.id!r} ({seen[b.id]})", line
                )
                continue
            seen[b.id] = f"first at {file}:{line}" if line else f"first in {file}"
            r = recipes.get(b.recipe)
            if r is None:
                known = ", ".join(sorted(recipes)) or "none"
                self.problems.add(
                    file, f"{path}.recipe", f"unknown recipe {b.recipe!r} (known: {known})", line
                )
                continue
            if b.quantity <= 0 or not math.isfinite(b.quantity):
                self.problems.add(file, f"{path}.quantity", "must be a number > 0", line)
            if b.priority < 1:
                self.problems.add(file, f"{path}.priority", "must be >= 1", line)
            release = self.minutes(b.release) if b.release else 0
            due = self.minutes(b.due) if b.due else None
            deadline = self.minutes(b.deadline) if b.deadline else None
            if due is not None and due < release:
                self.problems.add(file, f"{path}.due", "is before the batch's release", line)
            if deadline is not None and deadline < release:
                self.problems.add(file, f"{path}.deadline", "is before the batch's release", line)
            out.append(
                Batch(
                    id=b.id,
                    recipe=r.id,
                    family=r.family or r.id,
                    quantity=b.quantity,
                    release=max(release, 0),
                    due=due,
                    deadline=deadline,
                    priority=max(b.priority, 1),
                    hazardous=r.hazardous,
                )
            )
        self.batch_lines = {b.id: (file, path, line) for b, file, path, line in entries}
        return out

    def csv_batches(self, bpath: Path) -> list[tuple[BatchSpec, str, str, int | None]]:
        file = str(bpath)
        try:
            text = bpath.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.add(file, "", f"cannot read file: {getattr(exc, 'strerror', exc)}")
            return []
        reader = csv.reader(io.StringIO(text))
        rows = list(reader)
        if not rows:
            self.problems.add(file, "", "empty: expected a header row (id,recipe,...)", 1)
            return []
        header = [h.strip() for h in rows[0]]
        known = {f.name for f in BatchSpec.__attrs_attrs__}  # type: ignore[attr-defined]
        for h in header:
            if h not in known:
                self.problems.add(
                    file, h, f"unknown column (expected {', '.join(sorted(known))})", 1
                )
        out = []
        ints = {"priority"}
        floats = {"quantity"}
        for n, row in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in row):
                continue
            i = len(out)
            label = row[0].strip() if row and row[0].strip() else str(i)
            path = f"batch[{label}]"
            if len(row) != len(header):
                self.problems.add(file, path, f"{len(row)} fields, the header has {len(header)}", n)
                continue
            item: dict[str, Any] = {}
            bad = False
            for h, cell in zip(header, row, strict=True):
                cell = cell.strip()
                if h not in known or cell == "":
                    continue
                try:
                    item[h] = int(cell) if h in ints else float(cell) if h in floats else cell
                except ValueError:
                    what = "an integer" if h in ints else "a number"
                    self.problems.add(file, f"{path}.{h}", f"expected {what}, got {cell!r}", n)
                    bad = True
            obj, errors = _structure(BatchSpec, item)
            for p, msg in errors:
                self.problems.add(file, ".".join([path, *map(str, p)]), msg, n)
            if obj is not None and not errors and not bad:
                out.append((obj, file, path, n))
        return out

    def toml_batches(self, bpath: Path) -> list[tuple[BatchSpec, str, str, int | None]]:
        got = _read_toml(bpath, self.problems)
        if got is None:
            return []
        raw, text = got
        index = line_index(text)
        col = _Collector(raw, index)
        spec, errors = _structure(BatchFile, raw)
        col.extend((), errors)
        for pr in col.problems():
            self.problems.add(str(bpath), pr.path, pr.message, pr.line)
        if spec is None:
            return []
        return [
            (b, str(bpath), col.pretty(("batch", i)), _find_line(index, ("batch", i)))
            for i, b in enumerate(spec.batch)
        ]

    # --- operations -----------------------------------------------------------------------

    def operations(self, batches: list[Batch]) -> tuple[list[Operation], list[Precedence]]:
        recipes = {r.id: (i, r) for i, r in enumerate(self.spec.recipe)}
        templates: dict[str, list[tuple[OperationSpec, list[Requirement], list[str]]]] = {}
        for rid, (i, r) in recipes.items():
            templates[rid] = self.recipe_template(i, r)
        ops: list[Operation] = []
        precs: list[Precedence] = []
        for b in batches:
            _, recipe = recipes[b.recipe]
            for spec, reqs, after in templates[b.recipe]:
                minutes = math.ceil((spec.duration + spec.per_unit * b.quantity) / 60)
                oid = f"{b.id}/{spec.name}"
                ops.append(
                    Operation(
                        id=oid,
                        batch=b.id,
                        name=spec.name,
                        duration=minutes,
                        requirements=tuple(reqs),
                        headcount=spec.headcount,
                        family=b.family,
                        hazardous=b.hazardous,
                    )
                )
                for prev in after:
                    precs.append(
                        Precedence(
                            before=f"{b.id}/{prev}",
                            after=oid,
                            min_lag=math.ceil(spec.min_lag / 60),
                            max_lag=(
                                math.floor(spec.max_lag / 60) if spec.max_lag is not None else None
                            ),
                            relation=spec.lag_from,
                            max_lag_penalty=spec.max_lag_penalty,
                            label=f"{recipe.id}.{spec.name}",
                        )
                    )
        return ops, precs

    def recipe_template(
        self, i: int, r: RecipeSpec
    ) -> list[tuple[OperationSpec, list[Requirement], list[str]]]:
        out = []
        names = [o.name for o in r.operation]
        if not r.operation:
            self.err(("recipe", i), "a recipe needs at least one [[recipe.operation]]")
        seen: set[str] = set()
        for j, o in enumerate(r.operation):
            path: PathT = ("recipe", i, "operation", j)
            if o.name in seen:
                self.err((*path, "name"), f"duplicate operation {o.name!r}")
            seen.add(o.name)
            after = o.after if o.after is not None else ([names[j - 1]] if j > 0 else [])
            for k, a in enumerate(after):
                if a not in names:
                    self.err((*path, "after", k), f"unknown operation {a!r} of this recipe")
                elif names.index(a) >= j:
                    self.err((*path, "after", k), f"{a!r} must be listed before {o.name!r}")
            if o.max_lag is not None and o.max_lag < o.min_lag:
                self.err((*path, "max_lag"), "is shorter than min_lag")
            if o.max_lag is not None and not after:
                self.err((*path, "max_lag"), "needs a preceding operation (after)")
            reqs = self.requirements(o, r, path)
            if o.duration == 0 and o.per_unit == 0 and reqs:
                self.err((*path, "duration"), "an operation that uses resources needs a duration")
            out.append((o, reqs, [a for a in after if a in names]))
        return out

    def requirements(self, o: OperationSpec, r: RecipeSpec, path: PathT) -> list[Requirement]:
        reqs: list[Requirement] = []
        rooms = [x for x in self.res.values() if x.kind is ResourceKind.ROOM]
        units = [x for x in self.res.values() if x.kind is ResourceKind.UNIT]

        def pick(
            key: str, ids: list[str] | None, cls: int | None, pool: list[Resource]
        ) -> list[str] | None:
            if ids is not None and cls is not None:
                self.err((*path, key), f"give {key} or {key[:-1]}_class, not both")
            if ids is not None:
                for k, x in enumerate(ids):
                    if x not in {p.id for p in pool}:
                        what = "ISO 5 unit" if key == "units" else "room"
                        self.err((*path, key, k), f"unknown {what} {x!r}")
                return [x for x in ids if x in {p.id for p in pool}]
            if cls is not None:
                found = [p.id for p in pool if p.iso_class == cls]
                if not found:
                    self.err((*path, f"{key[:-1]}_class"), f"no {key} of ISO class {cls}")
                return found
            return None

        room_ids = pick("rooms", o.rooms, o.room_class, rooms)
        unit_ids = pick("units", o.units, o.unit_class, units)
        if unit_ids is not None:
            if room_ids is not None:  # units inside the eligible rooms
                unit_ids = [u for u in unit_ids if self.res[u].within in room_ids]
                if not unit_ids:
                    self.err((*path, "units"), "none of these units stands in an eligible room")
            cands = self.hd_filter(unit_ids, r, path, "units")
            if cands:
                reqs.append(Requirement("unit", tuple(cands)))
        elif room_ids is not None:
            cands = self.hd_filter(room_ids, r, path, "rooms")
            if cands:
                reqs.append(Requirement("room", tuple(cands)))
        for k, e in enumerate(o.equipment):
            cands = [
                x.id
                for x in self.res.values()
                if x.kind is ResourceKind.EQUIPMENT and (x.id == e or e in x.tags)
            ]
            if not cands:
                self.err((*path, "equipment", k), f"no equipment with id or type {e!r}")
                continue
            reqs.append(Requirement(f"equipment:{e}", tuple(cands)))
        if o.headcount < 0:
            self.err((*path, "headcount"), "must be >= 0")
        elif o.headcount > 0:
            need = set(o.qualifications)
            staff = [
                x.id for x in self.res.values() if x.kind is ResourceKind.STAFF and need <= x.tags
            ]
            if len(staff) < o.headcount:
                q = ", ".join(sorted(need)) or "no qualification"
                self.err(
                    (*path, "headcount"),
                    f"needs {o.headcount} people ({q}), {len(staff)} on staff qualify",
                )
            else:
                reqs.append(Requirement("staff", tuple(staff), count=o.headcount))
        elif o.qualifications:
            self.err((*path, "qualifications"), "qualifications without headcount")
        return reqs

    def hd_filter(self, ids: list[str], r: RecipeSpec, path: PathT, key: str) -> list[str]:
        if not r.hazardous:
            return ids
        ok = [x for x in ids if _negative(self.res, x)]
        if ids and not ok:
            self.err(
                (*path, key),
                f"recipe {r.id!r} is hazardous: it needs a negative-pressure room, and none of "
                f"{', '.join(ids)} is",
            )
        return ids

    def changeovers(self) -> list[Changeover]:
        out = []
        for i, c in enumerate(self.spec.changeover):
            for k, rid in enumerate(c.resources):
                if rid not in self.res:
                    self.err(("changeover", i, "resources", k), f"unknown resource {rid!r}")
            out.append(
                Changeover(c.from_family, c.to, math.ceil(c.duration / 60), tuple(c.resources))
            )
        return out


def _negative(res: dict[str, Resource], rid: str) -> bool:
    r = res[rid]
    while r.within is not None and r.pressure is None:
        r = res[r.within]
    return r.pressure is PressureRegime.NEGATIVE


def parse_time(text: str, problem: Problem) -> int:
    """An ISO date-time (naive: in the epoch's zone) -> minutes after the problem's epoch."""
    t = dt.datetime.fromisoformat(text.strip())
    if t.tzinfo is None:
        t = t.replace(tzinfo=problem.epoch.tzinfo)
    return problem.minutes(t)


#: for docs and tests: the structured classes of a plan file
PLAN_CLASSES: tuple[Callable[..., Any], ...] = (PlanFile, BatchFile)
