"""The scheduling problem: frozen attrs classes, independent of any file format or solver.

A :class:`Problem` is fully expanded: every operation of every batch is listed with its
duration already computed from the batch quantity, and every requirement already lists its
eligible resources. The plan loader (:mod:`floorctl.scheduler.plan`) builds one from
facility.toml + batches.csv; a benchmark adapter (PSPLIB) builds one directly.

**Time.** Every time in a problem is an integer number of *minutes* after ``Problem.epoch``
(an aware datetime). The solver works on a coarser grid of ``Problem.grid`` minutes per tick:
durations, lags and changeovers are rounded *up* to the grid, release times and the start of
an unavailability window are rounded so that the solver never uses time the plan does not
allow (docs/planning.md, "Time grid"). :func:`floorctl.scheduler.check` works on the exact
minutes.

**Generic core.** The same types carry a 503B plan and a PSPLIB RCPSP instance:

- :class:`Resource` is a renewable resource with an integer ``capacity``. Capacity 1 and
  demand 1 gives a disjunctive resource (a hood, an autoclave, a person); more gives a
  cumulative one (a room's concurrent operations, a pool). ``kind`` only says how the plan
  and the outputs name it (room, unit, equipment, staff, pool).
- :class:`Requirement` asks for ``count`` distinct resources out of ``candidates``, each
  used with ``demand`` units of its capacity for the whole operation. One candidate with a
  demand is an RCPSP resource requirement; several candidates are alternatives.
- :class:`Precedence` is a generalised precedence: a minimum and an optional maximum time
  lag between the end (or start) of one operation and the start of another, across batches
  if need be (RCPSP/max). Operations form any DAG, not only a chain.
- With no due dates, no changeovers and no previous schedule, the objective is the
  makespan (the latest end of any operation).

**503B specifics layered on top** (each one optional): a unit (``within`` a room) uses its
room as well; ``headcount`` people of an operation count against the room's ``headcount``
limit; ``hazardous`` operations only go into negative-pressure rooms and the units inside
them, and leave a ``decontamination`` time on every disjunctive resource they used before the
next batch; ``family`` changeovers apply between consecutive operations of different batches
on a disjunctive resource; staff and rooms have calendars (available windows) and outages.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property

from attrs import field, frozen

from floorctl.limits import PressureRegime

__all__ = [
    "Batch",
    "Changeover",
    "Operation",
    "Precedence",
    "PressureRegime",
    "Problem",
    "Relation",
    "Requirement",
    "Resource",
    "ResourceKind",
    "Weights",
    "Window",
]

#: minutes per day / hour, for readers of this module
HOUR = 60
DAY = 24 * HOUR


class ResourceKind(enum.StrEnum):
    """How a resource is named in the plan and in the outputs; the model treats all alike."""

    ROOM = "room"
    UNIT = "unit"  # an ISO 5 unit (hood, BSC, isolator) standing in a room
    EQUIPMENT = "equipment"  # autoclave, filling line, depyrogenation oven, ...
    STAFF = "staff"  # one person, assigned by name
    POOL = "pool"  # a generic renewable resource (RCPSP), e.g. a pool of trolleys


class Relation(enum.StrEnum):
    """What a precedence's lags are measured from: the end or the start of ``before``."""

    END_START = "end-start"
    START_START = "start-start"


def _non_negative(_: object, attribute: object, value: int) -> None:
    if value < 0:
        raise ValueError(f"{getattr(attribute, 'name', '?')} must be >= 0, got {value}")


def _positive(_: object, attribute: object, value: int) -> None:
    if value < 1:
        raise ValueError(f"{getattr(attribute, 'name', '?')} must be >= 1, got {value}")


@frozen
class Window:
    """A half-open time window ``[start, end)`` in minutes after the epoch."""

    start: int
    end: int
    reason: str = ""

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    def overlaps(self, start: int, end: int) -> bool:
        return start < self.end and self.start < end

    def contains(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end


@frozen
class Resource:
    """A renewable resource. See the module docstring for how capacity and demand combine.

    :param capacity: how many units of demand it serves at once (rooms: concurrent
        operations; units, equipment and people: 1; pools: any).
    :param headcount: rooms only: the most people in it at once (None: no limit).
    :param iso_class: 5, 7, 8 or None (unclassified); informative for the model, used by
        the plan loader to resolve ``room_class`` eligibility.
    :param pressure: the room's pressure regime; for a unit, its room's (hazardous
        operations need ``negative``). None: unknown / not a room.
    :param within: the room a unit stands in (devices.toml ``within``); using the unit uses
        the room too (one concurrent operation and the operation's headcount).
    :param tags: qualifications of a person, the type of a piece of equipment
        (``autoclave``), free labels otherwise.
    :param calendar: the windows in which it is available (shifts); empty: always.
    :param outages: windows in which it is not available (maintenance, certification, out
        of service), on top of the calendar.
    """

    id: str
    kind: ResourceKind = ResourceKind.POOL
    capacity: int = field(default=1, validator=_positive)
    name: str = ""
    headcount: int | None = None
    iso_class: int | None = None
    pressure: PressureRegime | None = None
    within: str | None = None
    tags: frozenset[str] = frozenset()
    calendar: tuple[Window, ...] = ()
    outages: tuple[Window, ...] = ()

    def unavailable(self, horizon: int) -> list[Window]:
        """Every window in ``[0, horizon)`` in which the resource cannot be used, merged and
        sorted: outside the calendar (if there is one) plus the outages."""
        blocked: list[Window] = []
        if self.calendar:
            t = 0
            for w in sorted(self.calendar, key=lambda w: w.start):
                if w.start > t:
                    blocked.append(Window(t, w.start, "off calendar"))
                t = max(t, w.end)
            if t < horizon:
                blocked.append(Window(t, max(horizon, t), "off calendar"))
        blocked.extend(self.outages)
        return merge_windows(blocked)

    def is_available(self, start: int, end: int, horizon: int | None = None) -> Window | None:
        """The first window that forbids using the resource during ``[start, end)``, or None."""
        h = max(end, horizon or 0) + 1
        for w in self.unavailable(h):
            if w.overlaps(start, end) or (start == end and w.start <= start < w.end):
                return w
        return None


def add_minutes(epoch: dt.datetime, minutes: int) -> dt.datetime:
    """``epoch`` plus elapsed minutes, in the epoch's zone. Arithmetic is on UTC: adding a
    timedelta to a zoned datetime in Python moves the wall clock, which is off by the DST
    change when the span crosses one."""
    return (epoch.astimezone(dt.UTC) + dt.timedelta(minutes=minutes)).astimezone(epoch.tzinfo)


def minutes_between(epoch: dt.datetime, when: dt.datetime) -> int:
    """Elapsed minutes from ``epoch`` to ``when`` (both aware; rounded down), across DST."""
    return int((when.astimezone(dt.UTC) - epoch.astimezone(dt.UTC)).total_seconds() // 60)


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Sort and merge overlapping or touching windows (the first reason wins)."""
    out: list[Window] = []
    for w in sorted(windows, key=lambda w: (w.start, w.end)):
        if w.end <= w.start:
            continue
        if out and w.start <= out[-1].end:
            last = out[-1]
            if w.end > last.end:
                out[-1] = Window(last.start, w.end, last.reason)
        else:
            out.append(w)
    return out


@frozen
class Requirement:
    """``count`` distinct resources out of ``candidates``, each with ``demand`` units.

    :param group: a label for explanations and outputs ("room", "unit", "staff:aseptic",
        "R1" ...); unique within its operation.
    """

    group: str
    candidates: tuple[str, ...]
    count: int = field(default=1, validator=_positive)
    demand: int = field(default=1, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"requirement {self.group!r}: a candidate is listed twice")
        if self.count > len(self.candidates):
            raise ValueError(
                f"requirement {self.group!r} needs {self.count} resources, "
                f"has {len(self.candidates)} candidates"
            )


@frozen
class Operation:
    """One operation of one batch, with its duration already resolved.

    :param id: unique in the problem, by convention ``<batch>/<name>``.
    :param name: the recipe operation's name.
    :param duration: minutes (0 for a milestone such as the release after the sterility hold).
    :param release: earliest start, minutes (the batch's release date, or a fixed start).
    :param headcount: people in the room during the operation (room ``headcount`` limit).
    :param family: product family, for changeovers (copied from the batch's recipe).
    :param hazardous: a hazardous-drug operation: negative-pressure rooms only, and
        ``Problem.decontamination`` after it on every disjunctive resource it used.
    """

    id: str
    batch: str
    name: str
    duration: int = field(validator=_non_negative)
    requirements: tuple[Requirement, ...] = ()
    release: int = 0
    headcount: int = field(default=0, validator=_non_negative)
    family: str = ""
    hazardous: bool = False

    @property
    def milestone(self) -> bool:
        return self.duration == 0 and not self.requirements


@frozen
class Precedence:
    """``after`` starts at least ``min_lag`` and at most ``max_lag`` minutes after the end
    (``END_START``) or the start (``START_START``) of ``before``.

    :param max_lag_penalty: None: the maximum lag is hard. A number: it is soft, and every
        minute over it costs that many tier-1 points (the same scale as one minute of
        tardiness of a priority-1 batch), and the schedule lists the violation.
    :param label: a name for explanations ("hold time", "sterility hold").
    """

    before: str
    after: str
    min_lag: int = 0
    max_lag: int | None = None
    relation: Relation = Relation.END_START
    max_lag_penalty: int | None = None
    label: str = ""

    def __attrs_post_init__(self) -> None:
        if self.max_lag is not None and self.max_lag < self.min_lag:
            raise ValueError(
                f"precedence {self.before} -> {self.after}: max_lag {self.max_lag} "
                f"< min_lag {self.min_lag}"
            )


@frozen
class Batch:
    """A batch (an order) of one recipe.

    :param priority: the weight of its tardiness (minutes late x priority).
    :param due: the date it should be released by (its last operation's end); soft:
        lateness costs tardiness, and is listed as a violation.
    :param deadline: the date it must be released by (beyond-use dating); hard.
    """

    id: str
    recipe: str = ""
    family: str = ""
    quantity: float = 1.0
    release: int = 0
    due: int | None = None
    deadline: int | None = None
    priority: int = field(default=1, validator=_positive)
    hazardous: bool = False


@frozen
class Changeover:
    """Time needed on a disjunctive resource between an operation of family ``from_family``
    and the next one, of another batch, of family ``to_family``. ``"*"`` matches any family;
    the most specific rule wins (exact pair, then ``from *``, then ``* to``, then ``* *``).

    :param resources: the resources it applies to; empty: every disjunctive resource.
    """

    from_family: str
    to_family: str
    minutes: int = field(validator=_non_negative)
    resources: tuple[str, ...] = ()


#: the resources changeovers and decontamination apply to
CHANGEOVER_KINDS = frozenset({ResourceKind.ROOM, ResourceKind.UNIT, ResourceKind.EQUIPMENT})


@frozen
class Weights:
    """Objective weights for replanning, in tier-1 points (one minute of tardiness of a
    priority-1 batch is one point). docs/planning.md, "Objective"."""

    moved_batch: int = 60
    reassigned: int = 30
    #: a start moved by more than this many minutes counts as moved
    move_tolerance: int = 0


@frozen
class Problem:
    """A complete scheduling problem. Build with keyword arguments; use the lookups below.

    :param epoch: time 0 (an aware datetime); every time is minutes after it.
    :param grid: minutes per solver tick (1 for PSPLIB, 15 by default for plans).
    :param horizon: the latest end of anything, minutes; None: derived by the model.
    :param decontamination: minutes of decontamination after a hazardous operation on a
        disjunctive resource, before an operation of another batch.
    """

    name: str
    epoch: dt.datetime
    resources: tuple[Resource, ...] = ()
    batches: tuple[Batch, ...] = ()
    operations: tuple[Operation, ...] = ()
    precedences: tuple[Precedence, ...] = ()
    changeovers: tuple[Changeover, ...] = ()
    grid: int = field(default=15, validator=_positive)
    horizon: int | None = None
    decontamination: int = 0
    weights: Weights = Weights()
    #: where it came from (plan file), for messages and the schedule's provenance
    source: str = ""

    def __attrs_post_init__(self) -> None:
        if self.epoch.tzinfo is None:
            raise ValueError("Problem.epoch must be an aware datetime")
        for what, ids in (
            ("resource", [r.id for r in self.resources]),
            ("batch", [b.id for b in self.batches]),
            ("operation", [o.id for o in self.operations]),
        ):
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    raise ValueError(f"duplicate {what} id {i!r}")
                seen.add(i)
        for o in self.operations:
            if o.batch not in self.batch_index:
                raise ValueError(f"operation {o.id!r}: unknown batch {o.batch!r}")
            for req in o.requirements:
                for c in req.candidates:
                    if c not in self.resource_index:
                        raise ValueError(f"operation {o.id!r}: unknown resource {c!r}")
        for p in self.precedences:
            for ref in (p.before, p.after):
                if ref not in self.operation_index:
                    raise ValueError(f"precedence {p.before}->{p.after}: unknown operation {ref!r}")
        for r in self.resources:
            if r.within is not None and r.within not in self.resource_index:
                raise ValueError(f"resource {r.id!r}: within unknown resource {r.within!r}")

    # --- lookups (computed once; the instance is frozen) -------------------------------------

    @cached_property
    def resource_index(self) -> Mapping[str, Resource]:
        return {r.id: r for r in self.resources}

    @cached_property
    def batch_index(self) -> Mapping[str, Batch]:
        return {b.id: b for b in self.batches}

    @cached_property
    def operation_index(self) -> Mapping[str, Operation]:
        return {o.id: o for o in self.operations}

    @cached_property
    def operations_by_batch(self) -> Mapping[str, tuple[Operation, ...]]:
        out: dict[str, list[Operation]] = {b.id: [] for b in self.batches}
        for o in self.operations:
            out[o.batch].append(o)
        return {k: tuple(v) for k, v in out.items()}

    def resource(self, rid: str) -> Resource:
        return self.resource_index[rid]

    def operation(self, oid: str) -> Operation:
        return self.operation_index[oid]

    def batch(self, bid: str) -> Batch:
        return self.batch_index[bid]

    def room_of(self, rid: str) -> Resource | None:
        """The room a resource is (a room itself, or the room a unit stands ``within``)."""
        r = self.resource_index[rid]
        if r.kind is ResourceKind.ROOM:
            return r
        if r.within is not None:
            return self.room_of(r.within)
        return None

    def parents(self, rid: str) -> Iterator[Resource]:
        """The resources that using ``rid`` uses too: its ``within`` chain."""
        r = self.resource_index[rid]
        while r.within is not None:
            r = self.resource_index[r.within]
            yield r

    def is_disjunctive(self, rid: str) -> bool:
        """Capacity 1: operations on it are sequenced (NoOverlap, changeovers)."""
        return self.resource_index[rid].capacity == 1

    def changeover(self, rid: str, before: Operation, after: Operation) -> int:
        """Minutes needed on ``rid`` between ``before`` and ``after`` (of another batch):
        the family changeover, or the decontamination after a hazardous operation, whichever
        is longer. Zero within a batch, and on people and pools."""
        if before.batch == after.batch:
            return 0
        if self.resource_index[rid].kind not in CHANGEOVER_KINDS:
            return 0  # people and pools carry no product between batches
        best: tuple[int, int] | None = None  # (specificity, minutes)
        for c in self.changeovers:
            if c.resources and rid not in c.resources:
                continue
            if c.from_family not in ("*", before.family) or c.to_family not in ("*", after.family):
                continue
            spec = (c.from_family != "*") * 2 + (c.to_family != "*") + bool(c.resources) * 4
            if best is None or spec > best[0]:
                best = (spec, c.minutes)
        minutes = best[1] if best else 0
        if before.hazardous:
            minutes = max(minutes, self.decontamination)
        return minutes

    @cached_property
    def has_changeovers(self) -> bool:
        return any(c.minutes > 0 for c in self.changeovers) or (
            self.decontamination > 0 and any(o.hazardous for o in self.operations)
        )

    def hazardous_allowed(self, rid: str) -> bool:
        """Whether a hazardous operation may use ``rid``: a room, or a unit in a room, must
        be negative-pressure; other resources (equipment, people, pools) carry no rule."""
        r = self.resource_index[rid]
        if r.kind not in (ResourceKind.ROOM, ResourceKind.UNIT):
            return True
        room = self.room_of(rid)
        pressure = room.pressure if room is not None else r.pressure
        return pressure is PressureRegime.NEGATIVE

    def time(self, minutes: int) -> dt.datetime:
        """The datetime ``minutes`` after the epoch."""
        return add_minutes(self.epoch, minutes)

    def minutes(self, when: dt.datetime) -> int:
        """Minutes after the epoch of an aware datetime (rounded down)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.epoch.tzinfo)
        return minutes_between(self.epoch, when)

    def batch_end(self, bid: str, ends: Mapping[str, int]) -> int:
        return max(ends[o.id] for o in self.operations_by_batch[bid])
