"""The batch scheduler: CP-SAT against rooms, units, equipment and qualified staff.

Public API (stable; additions only):

- Problem types (:mod:`floorctl.scheduler.problem`, frozen attrs): :class:`Problem`,
  :class:`Resource` / :class:`ResourceKind`, :class:`Operation`, :class:`Requirement`,
  :class:`Precedence` / :class:`Relation`, :class:`Batch`, :class:`Changeover`,
  :class:`Window`, :class:`Weights`. A PSPLIB RCPSP instance maps onto them directly: one
  ``POOL`` resource per renewable resource, one operation per job with one single-candidate
  requirement per resource it uses, one precedence per arc, ``grid=1``, one batch without a
  due date (the objective is then the makespan).
- ``load_plan(path, *, floor=None) -> Problem``: read a plan (facility.toml with recipes,
  batches in TOML or CSV; docs/planning.md). Raises :class:`PlanError` whose ``problems``
  each name the file, the key path and the line.
- ``solve(problem, options, *, previous=None, progress=None, cancel=None) -> Result``: the
  CP-SAT model (:mod:`floorctl.scheduler.model`). ``progress`` gets :class:`Progress`
  reports from the solver's threads (keep it quick); setting ``cancel`` (a
  ``threading.Event``) stops the search and keeps the best schedule found.
- ``check(problem, schedule) -> list[Violation]``: verifies any schedule against the problem,
  independently of the solver.
- Schedule JSON (schema ``floorctl.schedule/1``): :func:`read_schedule`,
  :func:`write_schedule`, :func:`schedule_to_dict`, :func:`schedule_from_dict`,
  :func:`json_schema`.
- ``with_room_outages(problem, outages) -> Problem``: rooms out of service from a time on
  (replanning).
"""

from __future__ import annotations

from floorctl.scheduler.check import Violation, check, tardiness
from floorctl.scheduler.model import SchedulingModel, solve, with_room_outages
from floorctl.scheduler.plan import PlanError, load_plan
from floorctl.scheduler.problem import (
    Batch,
    Changeover,
    Operation,
    Precedence,
    PressureRegime,
    Problem,
    Relation,
    Requirement,
    Resource,
    ResourceKind,
    Weights,
    Window,
)
from floorctl.scheduler.result import (
    Move,
    ObjectiveTerms,
    Progress,
    Result,
    SolveOptions,
    Status,
    Timings,
)
from floorctl.scheduler.schedule import (
    SCHEMA_ID,
    Assignment,
    Schedule,
    ScheduleFileError,
    json_schema,
    read_schedule,
    schedule_from_dict,
    schedule_to_dict,
    write_schedule,
)

__all__ = [
    "SCHEMA_ID",
    "Assignment",
    "Batch",
    "Changeover",
    "Move",
    "ObjectiveTerms",
    "Operation",
    "PlanError",
    "Precedence",
    "PressureRegime",
    "Problem",
    "Progress",
    "Relation",
    "Requirement",
    "Resource",
    "ResourceKind",
    "Result",
    "Schedule",
    "ScheduleFileError",
    "SchedulingModel",
    "SolveOptions",
    "Status",
    "Timings",
    "Violation",
    "Weights",
    "Window",
    "check",
    "json_schema",
    "load_plan",
    "read_schedule",
    "schedule_from_dict",
    "schedule_to_dict",
    "solve",
    "tardiness",
    "with_room_outages",
    "write_schedule",
]
