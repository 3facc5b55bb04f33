"""The batch environmental record: what QA reviews before releasing a batch (21 CFR 211.188,
211.192), gathered from the plan, the schedule and the record store.

For every operation of the batch: where and when it ran (the technician's signed actuals, or the
schedule, marked *planned*, until they are recorded); per point of its room, ISO 5 unit and
equipment, min / mean / max and the time outside the alert and action limits; every alarm with
its acknowledgement or shelving and the signature; data gaps; the weighings on balances there;
the autoclave cycles of the equipment it used; and the audit entries. Then verdict lines and the
items that need QA's attention. :func:`gather` builds the record; :func:`to_markdown`,
:func:`to_html` and :func:`to_json` render it (docs/batch-record.md).

Nothing here writes: the record is computed from what was recorded, and says where it could not
be (a gap is reported, never hidden).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from floorctl.config import Config
from floorctl.limits import LIMIT_KEYS, PointLimits
from floorctl.model import EventKind, Quality, Reading
from floorctl.store.audit import AuditEntry, AuditTrail
from floorctl.store.db import AlarmTransition, Store, current_actuals
from floorctl.store.users import Users

#: balance kinds whose weighings are attributed to the operation in progress in their room
BALANCE_KINDS = ("mt_sics", "mqtt_balance")
#: a stable weight below this (in the balance's unit) is an empty pan, not a weighing
EMPTY_PAN = 1e-6
#: an autoclave cycle that ended up to this long after the operation still belongs to it
CYCLE_GRACE = 1800.0


@frozen
class Gap:
    device: str
    point: str
    start: float
    end: float
    why: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


@frozen
class PointStats:
    device: str
    point: str
    where: str  # the room or unit the device is in (or "equipment")
    quantity: str | None
    unit: str | None
    limits: dict[str, float | None]
    n: int
    min: float | None
    mean: float | None
    max: float | None
    outside_alert_s: float  # outside the alert limits (action excursions included)
    outside_action_s: float
    source: str  # "raw", "1-minute rollups" or "none"


@frozen
class AlarmLine:
    time: float
    device: str
    point: str
    from_state: str
    to_state: str
    cause: str | None
    severity: str | None
    priority: str | None
    value: Any
    limit: Any
    detail: str | None
    audit_seq: int | None
    signed_by: str | None = None  # printed name
    meaning: str | None = None
    signed_at: str | None = None
    comment: str | None = None


@frozen
class Weighing:
    time: float
    device: str
    value: float
    unit: str | None


@frozen
class Cycle:
    time: float
    device: str
    detail: str

    @property
    def failed(self) -> bool:
        return "result pass" not in self.detail or "aborted" in self.detail


@frozen
class OperationRecord:
    id: str
    name: str
    room: str | None
    unit: str | None
    equipment: tuple[str, ...]
    staff: tuple[str, ...]
    planned: tuple[float, float]
    actual_start: float | None
    actual_end: float | None
    iso5: bool
    points: tuple[PointStats, ...] = ()
    alarms: tuple[AlarmLine, ...] = ()
    gaps: tuple[Gap, ...] = ()
    weighings: tuple[Weighing, ...] = ()
    cycles: tuple[Cycle, ...] = ()

    @property
    def window(self) -> tuple[float, float]:
        """The actuals where recorded, else the plan."""
        start = self.actual_start if self.actual_start is not None else self.planned[0]
        end = self.actual_end if self.actual_end is not None else self.planned[1]
        return start, max(start, end)

    @property
    def basis(self) -> str:
        if self.actual_start is not None and self.actual_end is not None:
            return "actual"
        if self.actual_start is None and self.actual_end is None:
            return "planned"
        return "partly actual"


@frozen
class BatchRecord:
    batch: str
    recipe: str
    quantity: float
    due: float | None
    generated_at: float
    floor: str
    operations: tuple[OperationRecord, ...]
    audit: tuple[AuditEntry, ...]
    chain: str  # the audit trail verification sentence
    chain_ok: bool
    verdicts: tuple[str, ...]
    attention: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.attention


class RecordError(ValueError):
    """The record cannot be made (unknown batch, schedule and plan do not match)."""


# --- gathering ----------------------------------------------------------------------------


def gather(
    batch_id: str,
    *,
    config: Config,
    problem: Any,
    schedule: Any,
    store: Store,
    limits: Mapping[tuple[str, str], PointLimits],
    now: float,
) -> BatchRecord:
    """Everything the record says about ``batch_id``, from what was recorded."""
    from floorctl.scheduler.schedule import assignment_view

    if batch_id not in problem.batch_index:
        known = ", ".join(sorted(problem.batch_index)) or "none"
        raise RecordError(f"no batch {batch_id!r} in the plan (batches: {known})")
    batch = problem.batch(batch_id)
    mine = [a for a in schedule.assignments if a.batch == batch_id]
    if not mine:
        raise RecordError(f"the schedule has no operation of batch {batch_id}")
    actuals = current_actuals(store.actuals(batch_id))
    settings = {k: v for k, (v, _seq, _t) in store.alarm_settings().items()}
    users = Users(store)
    trail = AuditTrail(store)
    ops: list[OperationRecord] = []
    for a in mine:
        view = assignment_view(problem, a, schedule.epoch)
        rec = actuals.get((batch_id, view["name"]), {})
        planned = (
            dt.datetime.fromisoformat(view["start"]).timestamp(),
            dt.datetime.fromisoformat(view["end"]).timestamp(),
        )
        op = OperationRecord(
            id=a.operation,
            name=view["name"],
            room=view["room"],
            unit=view["unit"],
            equipment=tuple(view["equipment"]),
            staff=tuple(view["staff"]),
            planned=planned,
            actual_start=rec["start"].time if "start" in rec else None,
            actual_end=rec["end"].time if "end" in rec else None,
            iso5=_iso5(config, view["unit"] or view["room"]),
        )
        ops.append(_fill(op, config, store, users, limits, settings, now))
    ops.sort(key=lambda o: o.window[0])
    audit = _audit(trail, batch_id, ops)
    result = trail.verify()
    verdicts, attention = _judge(ops, result.ok, result.describe())
    due = None
    if batch.due is not None:
        from floorctl.scheduler.problem import add_minutes

        due = add_minutes(schedule.epoch, batch.due).timestamp()
    return BatchRecord(
        batch=batch_id,
        recipe=batch.recipe,
        quantity=batch.quantity,
        due=due,
        generated_at=now,
        floor=config.floor.id,
        operations=tuple(ops),
        audit=tuple(audit),
        chain=result.describe(),
        chain_ok=result.ok,
        verdicts=tuple(verdicts),
        attention=tuple(attention),
    )


def _iso5(config: Config, room_id: str | None) -> bool:
    room = config.room(room_id)
    return room is not None and room.iso_class.value == 5


def _devices_for(config: Config, op: OperationRecord) -> list[tuple[Any, str]]:
    """(device, where) of the operation: its unit's, its room's, and its equipment's."""
    places = [p for p in (op.unit, op.room) if p]
    out = [(d, d.room) for d in config.devices if d.room in places]
    out += [(d, "equipment") for d in config.devices if d.id in op.equipment]
    return out


def _fill(
    op: OperationRecord,
    config: Config,
    store: Store,
    users: Users,
    limits: Mapping[tuple[str, str], PointLimits],
    settings: Mapping[str, Mapping[str, Any]],
    now: float,
) -> OperationRecord:
    start, end = op.window
    end_seen = min(end, now)  # nothing can be recorded after now
    points: list[PointStats] = []
    alarms: list[AlarmLine] = []
    gaps: list[Gap] = []
    weighings: list[Weighing] = []
    cycles: list[Cycle] = []
    for d, where in _devices_for(config, op):
        if d.kind in BALANCE_KINDS:
            weighings += _weighings(store, d.id, start, end_seen)
        for f in d.fields:
            pl = limits.get((d.id, f.name))
            if pl is None:
                continue
            lim = {k: pl.get(k).value for k in LIMIT_KEYS}
            lim.update({k: v for k, v in settings.get(f"{d.id}/{f.name}", {}).items() if k in lim})
            if end_seen <= start:
                continue
            stats, point_gaps = _point(store, d, f.name, where, pl, lim, start, end_seen)
            points.append(stats)
            gaps += point_gaps
        names = [f"{d.id}/{f.name}" for f in d.fields] + [f"{d.id}/_comm"]
        for name in names:
            alarms += _alarms(store, users, name, start, end_seen)
        if d.id in op.equipment:
            cycles += [
                Cycle(e.time, e.source, e.detail)
                for e in store.events(start, end + CYCLE_GRACE)
                if e.kind is EventKind.CYCLE and e.source == d.id
            ]
    alarms.sort(key=lambda a: (a.time, a.device, a.point))
    return attrs.evolve(
        op,
        points=tuple(points),
        alarms=tuple(alarms),
        gaps=tuple(sorted(gaps, key=lambda g: (g.start, g.device, g.point))),
        weighings=tuple(sorted(weighings, key=lambda w: w.time)),
        cycles=tuple(cycles),
    )


def _outside(v: float, lim: Mapping[str, float | None], level: str) -> bool:
    low, high = lim.get(f"{level}_low"), lim.get(f"{level}_high")
    return (low is not None and v < low) or (high is not None and v > high)


def _point(
    store: Store,
    d: Any,
    point: str,
    where: str,
    pl: PointLimits,
    lim: dict[str, float | None],
    start: float,
    end: float,
) -> tuple[PointStats, list[Gap]]:
    """Statistics of one point over [start, end): sample and hold, each value until the next
    one but at most the device's stale window; longer silences are gaps."""
    hold = d.stale_after
    readings = store.readings(d.id, point, start - hold, end)
    # store-and-forward (historical) values are real values with their own timestamps
    good = [r for r in readings if r.quality is Quality.GOOD and _number(r.value)]
    good.sort(key=_t)
    values = [(_t(r), float(r.value)) for r in good]  # type: ignore[arg-type]
    before = [x for x in values if x[0] < start]
    inside = [x for x in values if x[0] >= start]
    series = ([(start, before[-1][1])] if before else []) + inside
    gaps: list[Gap] = []
    alert_s = action_s = 0.0
    lo = hi = None
    total = 0.0
    weight = 0.0
    cursor = start
    for i, (t, v) in enumerate(series):
        if t - cursor > hold:
            gaps.append(Gap(d.id, point, cursor, t, _why(readings, cursor, t)))
        nxt = series[i + 1][0] if i + 1 < len(series) else end
        held_until = min(nxt, t + hold, end)
        span = max(0.0, held_until - t)
        cursor = held_until
        lo = v if lo is None else min(lo, v)
        hi = v if hi is None else max(hi, v)
        total += v * span
        weight += span
        if _outside(v, lim, "alert") or _outside(v, lim, "action"):
            alert_s += span
        if _outside(v, lim, "action"):
            action_s += span
    if end - cursor > hold or (not series and end > start):
        gaps.append(Gap(d.id, point, cursor, end, _why(readings, cursor, end)))
    source = "raw" if series else "none"
    if not series:  # older than the raw window? the rollups still have min/avg/max
        rolled = store.series(d.id, point, start, end, buckets=1)
        if rolled:
            _t0, lo, avg, hi, n = rolled[0]
            gaps = []
            return (
                PointStats(
                    d.id,
                    point,
                    where,
                    pl.quantity.value,
                    pl.unit,
                    lim,
                    n,
                    lo,
                    avg,
                    hi,
                    math.nan,
                    math.nan,
                    "1-minute rollups",
                ),
                gaps,
            )
    mean = total / weight if weight > 0 else None
    stats = PointStats(
        d.id, point, where, pl.quantity.value, pl.unit, lim, len(inside) + len(before[-1:]),
        lo, mean, hi, alert_s, action_s, source,
    )  # fmt: skip
    return stats, gaps


def _t(r: Reading) -> float:
    return r.source_time if r.source_time is not None else r.receive_time


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _why(readings: Sequence[Reading], a: float, b: float) -> str:
    bad = [r for r in readings if a <= _t(r) < b and r.quality is not Quality.GOOD]
    if bad:
        kinds = sorted({r.quality.value for r in bad})
        return f"no good value ({', '.join(kinds)} readings)"
    return "no reading"


def _weighings(store: Store, device: str, start: float, end: float) -> list[Weighing]:
    """Stable weights (good quality) that differ from the balance's previous stable weight;
    the same weight read again is the same weighing, an empty pan is none."""
    out: list[Weighing] = []
    last: float | None = None
    for r in store.readings(device, "weight", start, end):
        if r.quality is not Quality.GOOD or not _number(r.value):
            continue
        v = float(r.value)  # type: ignore[arg-type]
        if last is not None and abs(v - last) <= EMPTY_PAN:
            continue
        last = v
        if abs(v) > EMPTY_PAN:
            out.append(Weighing(_t(r), device, v, r.unit))
    return out


def _alarms(store: Store, users: Users, name: str, start: float, end: float) -> list[AlarmLine]:
    device, _, point = name.partition("/")
    rows: list[AlarmTransition] = [
        r for r in store.activations_standing_at(start) if r.point == name
    ] + store.alarm_history(name, start, end)
    out = []
    for r in rows:
        sig = users.signatures(r.audit_seq)[:1] if r.audit_seq is not None else []
        s = sig[0] if sig else None
        out.append(
            AlarmLine(
                r.time,
                device,
                point,
                r.from_state,
                r.to_state,
                r.cause,
                r.severity,
                r.priority,
                r.value,
                r.limit,
                r.detail,
                r.audit_seq,
                s.printed_name if s else None,
                s.meaning if s else None,
                s.time if s else None,
                s.comment if s else None,
            )
        )
    return out


def _audit(trail: AuditTrail, batch_id: str, ops: Sequence[OperationRecord]) -> list[AuditEntry]:
    """The batch's own entries (actuals), and the alarm actions and device commands on its
    operations' points and devices within their windows."""
    devices = {a.device for op in ops for a in op.alarms} | {
        p.device for op in ops for p in op.points
    }
    windows = [op.window for op in ops]
    out = []
    for e in trail.entries():
        if e.target.startswith(f"batch:{batch_id}/"):
            out.append(e)
            continue
        kind, _, what = e.target.partition(":")
        if kind not in ("alarm", "device") or what.split("/", 1)[0] not in devices:
            continue
        if e.user_id == "system":
            continue  # process transitions are in the alarm lines
        t = dt.datetime.fromisoformat(e.time.replace("Z", "+00:00")).timestamp()
        if any(a <= t <= b for a, b in windows):
            out.append(e)
    return out


# --- verdicts ------------------------------------------------------------------------------


def _hm(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _judge(
    ops: Sequence[OperationRecord], chain_ok: bool, chain: str
) -> tuple[list[str], list[str]]:
    verdicts: list[str] = []
    attention: list[str] = []
    for op in ops:
        where = op.unit or op.room or "-"
        for p in op.points:
            if p.outside_action_s > 0:
                attention.append(
                    f"{op.name} ({where}): {p.device}/{p.point} outside its ACTION limits for "
                    f"{_hm(p.outside_action_s)} (max {p.max:g}, min {p.min:g} {p.unit or ''})"
                )
            elif p.outside_alert_s > 0:
                attention.append(
                    f"{op.name} ({where}): {p.device}/{p.point} outside its alert limits for "
                    f"{_hm(p.outside_alert_s)}"
                )
            if p.source == "1-minute rollups":
                attention.append(
                    f"{op.name}: {p.device}/{p.point} raw readings no longer kept; min/mean/max "
                    "from 1-minute rollups, time outside limits not computed"
                )
            if p.source == "none" and not any(
                g.device == p.device and g.point == p.point for g in op.gaps
            ):
                attention.append(f"{op.name}: {p.device}/{p.point} has no value at all")
        for g in op.gaps:
            attention.append(
                f"{op.name} ({where}): data gap on {g.device}/{g.point} from {_iso(g.start)} to "
                f"{_iso(g.end)} ({_hm(g.seconds)}, {g.why})"
            )
        unacked = [a for a in op.alarms if a.to_state in ("unack", "rtn-unack", "latched-unack")]
        acked_later = {(a.device, a.point) for a in op.alarms if a.cause == "ack"}
        for a in unacked:
            if (a.device, a.point) not in acked_later:
                attention.append(
                    f"{op.name}: alarm {a.device}/{a.point} ({a.severity or '-'}) at "
                    f"{_iso(a.time)} not acknowledged within the operation"
                )
        for a in op.alarms:
            if a.to_state in ("shelved", "out-of-service") or a.cause == "suppress":
                attention.append(
                    f"{op.name}: alarm {a.device}/{a.point} {a.to_state} at {_iso(a.time)}"
                    + (f" by {a.signed_by}: {a.comment}" if a.signed_by else "")
                )
        for c in op.cycles:
            if c.failed:
                attention.append(f"{op.name}: autoclave {c.device}: {c.detail}")
        if op.basis != "actual":
            missing = (
                "start and end"
                if op.basis == "planned"
                else "end"
                if op.actual_start is not None
                else "start"
            )
            attention.append(f"{op.name}: {op.basis} times only (no signed actual {missing})")
    iso5 = [op for op in ops if op.iso5]
    action_iso5 = [op for op in iso5 if any(p.outside_action_s > 0 for p in op.points)]
    if iso5:
        verdicts.append(
            "no action-level excursion during ISO 5 operations"
            if not action_iso5
            else "ACTION-LEVEL EXCURSION during ISO 5 operation(s): "
            + ", ".join(o.name for o in action_iso5)
        )
    any_action = [op for op in ops if any(p.outside_action_s > 0 for p in op.points)]
    verdicts.append(
        "no action-level excursion during any operation"
        if not any_action
        else f"action-level excursions during: {', '.join(o.name for o in any_action)}"
    )
    n_gaps = sum(len(op.gaps) for op in ops)
    verdicts.append("no data gaps" if not n_gaps else f"{n_gaps} data gap(s): see below")
    n_alarms = sum(1 for op in ops for a in op.alarms if a.cause == "activate")
    verdicts.append(
        "no alarms during the batch's operations"
        if not n_alarms
        else f"{n_alarms} alarm activation(s) during the batch's operations"
    )
    planned = [op.name for op in ops if op.basis != "actual"]
    verdicts.append(
        "every operation has signed actual start and end times"
        if not planned
        else f"times from the schedule (not actual) for: {', '.join(planned)}"
    )
    verdicts.append(chain if chain_ok else f"AUDIT TRAIL NOT INTACT: {chain}")
    if not chain_ok:
        attention.append(f"audit trail: {chain}")
    return verdicts, attention


# --- rendering -----------------------------------------------------------------------------


def _iso(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "-"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def to_json(rec: BatchRecord) -> str:
    doc = attrs.asdict(rec)
    doc["schema"] = "floorctl.batch-record/1"
    doc["clean"] = rec.clean
    for op, src in zip(doc["operations"], rec.operations, strict=True):
        op["basis"] = src.basis
        op["window"] = list(src.window)
    return json.dumps(_clean(doc), indent=2, ensure_ascii=False)


def _limits_text(lim: Mapping[str, float | None]) -> str:
    parts = [f"{k.replace('_', ' ')} {v:g}" for k, v in lim.items() if v is not None]
    return ", ".join(parts) or "none"


def to_markdown(rec: BatchRecord) -> str:
    L: list[str] = [
        f"# Batch environmental record: {rec.batch}",
        "",
        f"Recipe {rec.recipe}, quantity {rec.quantity:g}, due {_iso(rec.due)}. Floor {rec.floor}. "
        f"Generated {_iso(rec.generated_at)} by floorctl from the record store; times UTC.",
        "",
        "## Verdict",
        "",
        *[f"- {v}" for v in rec.verdicts],
        "",
        "## Needs QA's attention",
        "",
        *([f"- {a}" for a in rec.attention] or ["- nothing: the record is clean"]),
        "",
    ]
    for op in rec.operations:
        a, b = op.window
        L += [
            f"## {op.name}",
            "",
            f"- where: room {op.room or '-'}"
            + (f", unit {op.unit}" if op.unit else "")
            + (" (ISO 5)" if op.iso5 else "")
            + (f"; equipment {', '.join(op.equipment)}" if op.equipment else "")
            + (f"; staff {', '.join(op.staff)}" if op.staff else ""),
            f"- when: {_iso(a)} to {_iso(b)} ("
            + (
                "planned: no actual start or end recorded"
                if op.basis == "planned"
                else f"{op.basis}; planned {_iso(op.planned[0])} to {_iso(op.planned[1])}"
            )
            + ")",
            "",
        ]
        if op.points:
            L += [
                "| point | where | min | mean | max | unit | outside alert | outside action "
                "| limits |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for p in op.points:
                alert = _hm(p.outside_alert_s) if math.isfinite(p.outside_alert_s) else "-"
                action = _hm(p.outside_action_s) if math.isfinite(p.outside_action_s) else "-"
                L.append(
                    f"| {p.device}/{p.point} | {p.where} | {_num(p.min)} | {_num(p.mean)} | "
                    f"{_num(p.max)} | {p.unit or ''} | {alert} | {action} | "
                    f"{_limits_text(p.limits)} |"
                )
            L.append("")
        L.append("Alarms:" if op.alarms else "Alarms: none.")
        for x in op.alarms:
            sig = (
                f"; signed by {x.signed_by} ({x.meaning}) at {x.signed_at}"
                + (f': "{x.comment}"' if x.comment else "")
                if x.signed_by
                else ""
            )
            value = _num(x.value) if _number(x.value) else x.value
            L.append(
                f"- {_iso(x.time)} {x.device}/{x.point}: {x.from_state} -> {x.to_state} "
                f"({x.cause}; {x.severity or '-'}, value {value}, limit {x.limit}){sig} "
                f"[audit {x.audit_seq}]"
            )
        L.append("")
        L.append("Data gaps:" if op.gaps else "Data gaps: none.")
        L += [
            f"- {g.device}/{g.point}: {_iso(g.start)} to {_iso(g.end)} ({_hm(g.seconds)}, {g.why})"
            for g in op.gaps
        ]
        L.append("")
        if op.weighings:
            L.append("Weighings:")
            L += [f"- {_iso(w.time)} {w.device}: {w.value:g} {w.unit or ''}" for w in op.weighings]
            L.append("")
        if op.cycles:
            L.append("Autoclave cycles:")
            L += [f"- {c.device}: {c.detail}" for c in op.cycles]
            L.append("")
    L += ["## Audit entries", ""]
    L += [
        f"- {e.seq} {e.time} {e.printed_name} ({e.user_id}) {e.action} {e.target}"
        + (f" [{e.meaning}]" if e.meaning else "")
        + (f": {e.reason}" if e.reason else "")
        for e in rec.audit
    ] or ["- none"]
    L += ["", f"Audit trail: {rec.chain}", ""]
    return "\n".join(L)


def _svg(
    series: Sequence[Sequence[float]], lim: Mapping[str, float | None], a: float, b: float,
    marks: Iterable[tuple[float, float]] = (),
) -> str:  # fmt: skip
    """A small trend plot: the min-max band, the mean, the limits dashed (alert amber, action
    red), the operations' windows shaded."""
    W, H, pad = 640, 140, 28
    values = [x for row in series for x in (row[1], row[3])]
    values += [v for v in lim.values() if v is not None]
    if not values:
        return "<p>no values</p>"
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    lo, hi = lo - 0.08 * span, hi + 0.08 * span

    def x(t: float) -> float:
        return pad + (W - 2 * pad) * (t - a) / max(b - a, 1e-9)

    def y(v: float) -> float:
        return H - pad / 2 - (H - pad) * (v - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" class="trend">']
    parts.append(f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff" stroke="#999"/>')
    for s, e in marks:
        parts.append(
            f'<rect x="{x(s):.1f}" y="0" width="{max(1.0, x(e) - x(s)):.1f}" height="{H}" '
            'fill="#e8f0ff"/>'
        )
    for key, v in lim.items():
        if v is None:
            continue
        colour = "#c00" if key.startswith("action") else "#d80"
        parts.append(
            f'<line x1="{pad}" x2="{W - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{colour}" '
            f'stroke-dasharray="5,3"><title>{key} {v:g}</title></line>'
        )
        parts.append(
            f'<text x="{W - pad + 2}" y="{y(v) + 3:.1f}" font-size="9" fill="{colour}">{v:g}</text>'
        )
    if series:
        band = " ".join(f"{x(r[0]):.1f},{y(r[3]):.1f}" for r in series)
        band += " " + " ".join(f"{x(r[0]):.1f},{y(r[1]):.1f}" for r in reversed(series))
        parts.append(f'<polygon points="{band}" fill="#9bc" opacity="0.5"/>')
        line = " ".join(f"{x(r[0]):.1f},{y(r[2]):.1f}" for r in series)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#036" stroke-width="1.2"/>')
    parts.append(
        f'<text x="{pad}" y="{H - 2}" font-size="9">{_iso(a)}</text>'
        f'<text x="{W - pad}" y="{H - 2}" font-size="9" text-anchor="end">{_iso(b)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def to_html(rec: BatchRecord, store: Store) -> str:
    """Printable HTML: the markdown record's content, plus a trend plot per point of each room
    over the batch's window with its limits drawn."""
    esc = html.escape
    a = min(op.window[0] for op in rec.operations)
    b = max(op.window[1] for op in rec.operations)
    b = min(b, rec.generated_at)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Batch record {esc(rec.batch)}</title>",
        "<style>body{font:12px/1.4 sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px}h2{page-break-before:auto}"
        ".attn li{color:#a00}.ok{color:#060}@media print{.trend{page-break-inside:avoid}}</style>",
        "</head><body>",
        f"<h1>Batch environmental record: {esc(rec.batch)}</h1>",
        f"<p>Recipe {esc(rec.recipe)}, quantity {rec.quantity:g}, due {_iso(rec.due)}. "
        f"Floor {esc(rec.floor)}. Generated {_iso(rec.generated_at)}; times UTC.</p>",
        "<h2>Verdict</h2><ul>",
        *[f"<li>{esc(v)}</li>" for v in rec.verdicts],
        "</ul><h2>Needs QA's attention</h2><ul class='attn'>",
        *([f"<li>{esc(x)}</li>" for x in rec.attention] or ["<li class='ok'>nothing: clean</li>"]),
        "</ul>",
    ]
    by_room: dict[str, dict[tuple[str, str], PointStats]] = {}
    for op in rec.operations:
        for p in op.points:
            by_room.setdefault(p.where, {})[(p.device, p.point)] = p
    marks = [op.window for op in rec.operations]
    if b > a:
        out.append("<h2>Trends over the batch</h2>")
        for room, pts in sorted(by_room.items()):
            out.append(f"<h3>{esc(room)}</h3>")
            for (device, point), p in sorted(pts.items()):
                series = store.series(device, point, a, b, buckets=200)
                out.append(f"<p>{esc(device)}/{esc(point)} ({esc(p.unit or '')})</p>")
                out.append(_svg(series, p.limits, a, b, marks))
    body = to_markdown(rec).split("\n## ", 3)
    # the per-operation detail, as preformatted text under the plots (print-friendly)
    out.append("<h2>Operations, alarms, gaps, audit</h2><pre>")
    out.append(esc("## " + body[-1] if len(body) > 1 else body[0]))
    out.append("</pre></body></html>")
    return "\n".join(out)
