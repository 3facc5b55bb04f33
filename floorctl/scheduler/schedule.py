"""A schedule (what runs where and when) and its JSON form (schema ``floorctl.schedule/1``).

A :class:`Schedule` is plain data: an assignment per operation with its start, end and the
resources chosen for each of the operation's requirements. It can come from the solver, from
a file written earlier (``--previous``), or from anywhere else: ``check`` verifies any of them
against the plan.

The JSON document is described in docs/planning.md ("Output") and by the JSON Schema that
``floorctl schedule schema`` prints (:func:`json_schema`). Times are ISO 8601 with offset
(authoritative when read back) plus the minute offsets from ``epoch`` (informative).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from floorctl.scheduler.problem import Problem, ResourceKind, add_minutes

SCHEMA_ID = "floorctl.schedule/1"


@frozen
class Assignment:
    """One scheduled operation.

    :param resources: per requirement group of the operation (in the operation's order), the
        resources chosen for it.
    """

    operation: str
    batch: str
    start: int
    end: int
    resources: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def used(self) -> tuple[str, ...]:
        """Every resource chosen, in requirement order."""
        return tuple(r for _, rs in self.resources for r in rs)

    def chosen(self, group: str) -> tuple[str, ...]:
        for g, rs in self.resources:
            if g == group:
                return rs
        return ()


@frozen
class Schedule:
    """Assignments, sorted by (start, operation id)."""

    epoch: dt.datetime
    assignments: tuple[Assignment, ...]
    plan: str = ""

    @classmethod
    def build(cls, epoch: dt.datetime, assignments: list[Assignment], plan: str = "") -> Schedule:
        return cls(epoch, tuple(sorted(assignments, key=lambda a: (a.start, a.operation))), plan)

    def index(self) -> dict[str, Assignment]:
        return {a.operation: a for a in self.assignments}

    @property
    def makespan(self) -> int:
        return max((a.end for a in self.assignments), default=0)


class ScheduleFileError(ValueError):
    """A schedule file that cannot be read; the message names the file and the key path."""


def _iso(epoch: dt.datetime, minutes: int) -> str:
    return add_minutes(epoch, minutes).isoformat()


def assignment_view(problem: Problem | None, a: Assignment, epoch: dt.datetime) -> dict[str, Any]:
    """The JSON object of one assignment (the room, unit, equipment and staff named by kind
    when the problem is known)."""
    room: str | None = None
    unit: str | None = None
    equipment: list[str] = []
    staff: list[str] = []
    name = a.operation.split("/", 1)[-1]
    if problem is not None and a.operation in problem.operation_index:
        name = problem.operation(a.operation).name
        for rid in a.used():
            r = problem.resource_index.get(rid)
            if r is None:
                continue
            if r.kind is ResourceKind.ROOM and room is None:
                room = rid
            elif r.kind is ResourceKind.UNIT and unit is None:
                unit = rid
                parent = problem.room_of(rid)
                if room is None and parent is not None:
                    room = parent.id
            elif r.kind is ResourceKind.EQUIPMENT:
                equipment.append(rid)
            elif r.kind is ResourceKind.STAFF:
                staff.append(rid)
    return {
        "batch": a.batch,
        "operation": a.operation,
        "name": name,
        "start": _iso(epoch, a.start),
        "end": _iso(epoch, a.end),
        "start_minute": a.start,
        "end_minute": a.end,
        "room": room,
        "unit": unit,
        "equipment": equipment,
        "staff": staff,
        "resources": {g: list(rs) for g, rs in a.resources},
    }


def schedule_to_dict(
    schedule: Schedule, problem: Problem | None = None, **extra: Any
) -> dict[str, Any]:
    """The JSON document of a schedule; ``extra`` keys (status, objective, violations, ...)
    are added after the header, in the order given."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "plan": schedule.plan,
        "epoch": schedule.epoch.isoformat(),
    }
    if problem is not None:
        doc["grid_minutes"] = problem.grid
    doc.update(extra)
    doc["operations"] = [assignment_view(problem, a, schedule.epoch) for a in schedule.assignments]
    return doc


def dumps(doc: Mapping[str, Any]) -> str:
    """Stable JSON text: two-space indent, keys in insertion order, a final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_schedule(
    path: str | Path, schedule: Schedule, problem: Problem | None = None, **extra: Any
) -> None:
    Path(path).write_text(dumps(schedule_to_dict(schedule, problem, **extra)), encoding="utf-8")


def _parse_time(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ScheduleFileError(f"{where}: expected an ISO 8601 time string, got {value!r}")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleFileError(f"{where}: not an ISO 8601 time: {value!r}") from None
    if t.tzinfo is None:
        raise ScheduleFileError(f"{where}: the time {value!r} has no UTC offset")
    return t


def schedule_from_dict(doc: Any, filename: str = "schedule") -> Schedule:
    """Read a schedule document; raise ScheduleFileError naming the key path at fault."""
    if not isinstance(doc, dict):
        raise ScheduleFileError(f"{filename}: expected a JSON object")
    if doc.get("schema") != SCHEMA_ID:
        raise ScheduleFileError(
            f"{filename}: schema: expected {SCHEMA_ID!r}, got {doc.get('schema')!r}"
        )
    epoch = _parse_time(doc.get("epoch"), f"{filename}: epoch")
    ops = doc.get("operations")
    if not isinstance(ops, list):
        raise ScheduleFileError(f"{filename}: operations: expected an array")
    out: list[Assignment] = []
    seen: set[str] = set()
    for i, item in enumerate(ops):
        where = f"{filename}: operations[{i}]"
        if not isinstance(item, dict):
            raise ScheduleFileError(f"{where}: expected an object")
        for key in ("operation", "batch"):
            if not isinstance(item.get(key), str):
                raise ScheduleFileError(f"{where}.{key}: expected a string")
        if item["operation"] in seen:
            raise ScheduleFileError(f"{where}.operation: {item['operation']!r} appears twice")
        seen.add(item["operation"])
        start = _parse_time(item.get("start"), f"{where}.start")
        end = _parse_time(item.get("end"), f"{where}.end")
        res = item.get("resources", {})
        if not isinstance(res, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in res.values()
        ):
            raise ScheduleFileError(
                f"{where}.resources: expected an object of arrays of resource ids"
            )
        out.append(
            Assignment(
                operation=item["operation"],
                batch=item["batch"],
                start=_offset(epoch, start, f"{where}.start"),
                end=_offset(epoch, end, f"{where}.end"),
                resources=tuple((g, tuple(v)) for g, v in res.items()),
            )
        )
    plan = doc.get("plan", "")
    return Schedule.build(epoch, out, plan if isinstance(plan, str) else "")


def _offset(epoch: dt.datetime, t: dt.datetime, where: str) -> int:
    seconds = (t.astimezone(dt.UTC) - epoch.astimezone(dt.UTC)).total_seconds()
    if seconds % 60:
        raise ScheduleFileError(f"{where}: not on a whole minute")
    return int(seconds // 60)


def read_schedule(path: str | Path) -> Schedule:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleFileError(f"{p}: cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScheduleFileError(f"{p}: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleFileError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    return schedule_from_dict(doc, str(p))


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a schedule document (docs/planning.md)."""
    time = {"type": "string", "format": "date-time"}
    ids = {"type": "array", "items": {"type": "string"}}
    operation = {
        "type": "object",
        "required": ["batch", "operation", "start", "end", "resources"],
        "properties": {
            "batch": {"type": "string"},
            "operation": {"type": "string", "description": "<batch>/<operation name>"},
            "name": {"type": "string"},
            "start": time,
            "end": time,
            "start_minute": {"type": "integer", "description": "minutes after epoch"},
            "end_minute": {"type": "integer"},
            "room": {"type": ["string", "null"]},
            "unit": {"type": ["string", "null"]},
            "equipment": ids,
            "staff": ids,
            "resources": {
                "type": "object",
                "description": "requirement group -> chosen resource ids",
                "additionalProperties": ids,
            },
        },
    }
    violation = {
        "type": "object",
        "required": ["kind", "hard", "subject", "message"],
        "properties": {
            "kind": {"type": "string"},
            "hard": {"type": "boolean"},
            "subject": {"type": "string"},
            "message": {"type": "string"},
            "amount": {"type": ["integer", "null"], "description": "minutes, where it applies"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://floorctl.local/schema/schedule-1.json",
        "title": "floorctl schedule",
        "type": "object",
        "required": ["schema", "epoch", "operations"],
        "properties": {
            "schema": {"const": SCHEMA_ID},
            "plan": {"type": "string"},
            "epoch": time,
            "grid_minutes": {"type": "integer", "minimum": 1},
            "status": {
                "enum": ["optimal", "feasible", "fallback", "infeasible", "unknown", "invalid"]
            },
            "objective": {
                "type": "object",
                "properties": {
                    k: {"type": "integer"}
                    for k in (
                        "weighted_tardiness",
                        "soft_penalty",
                        "moves",
                        "makespan",
                        "changeover",
                        "value",
                    )
                },
            },
            "bound": {"type": ["number", "null"]},
            "gap": {"type": ["number", "null"]},
            "makespan_bound": {
                "type": ["integer", "null"],
                "description": "minutes: a lower bound of the makespan from the load of the "
                "last shifts (docs/planning.md, Modes)",
            },
            "solver": {"type": "object"},
            "timings": {"type": "object"},
            "violations": {"type": "array", "items": violation},
            "moves": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["batch", "operation", "what", "reason"],
                    "properties": {
                        "batch": {"type": "string"},
                        "operation": {"type": "string"},
                        "what": {"type": "string"},
                        "reason": {"type": "string"},
                        "from": {"type": ["string", "null"]},
                        "to": {"type": ["string", "null"]},
                    },
                },
            },
            "explanation": {"type": "array", "items": {"type": "string"}},
            "operations": {"type": "array", "items": operation},
        },
    }
