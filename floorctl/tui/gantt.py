"""A text Gantt of a schedule per room and ISO 5 unit over a window (pure; no Textual).

One row per room, with its units below it; one column per ``step`` minutes; a letter per
batch, ``*`` where several batches share a column, ``#`` where the resource is unavailable
(an outage, a certification, out of service), ``.`` idle. The column of "now" is marked in the
header (``v``) and with ``|`` in idle cells; a room out of service on the live floor is named
in its label.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from attrs import frozen

from floorctl.scheduler.problem import Problem, Resource, ResourceKind
from floorctl.scheduler.schedule import Schedule

SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: the zoom levels: minutes shown across the chart
SPANS = (8 * 60, 24 * 60, 3 * 24 * 60, 7 * 24 * 60, 21 * 24 * 60)


@frozen
class GanttRow:
    resource: str
    label: str
    cells: str
    out_of_service: bool


@frozen
class Gantt:
    header: str
    rows: tuple[GanttRow, ...]
    legend: str
    now_column: int | None  # the column index of now, if in the window

    def text(self) -> str:
        return "\n".join([self.header, *(f"{r.label} {r.cells}" for r in self.rows), self.legend])


def rows_of(problem: Problem) -> list[Resource]:
    """Rooms, each followed by the units within it (plan order)."""
    rooms = [r for r in problem.resources if r.kind is ResourceKind.ROOM]
    units = [r for r in problem.resources if r.kind is ResourceKind.UNIT]
    out: list[Resource] = []
    for room in rooms:
        out.append(room)
        out.extend(u for u in units if u.within == room.id)
    out.extend(u for u in units if u.within not in {r.id for r in rooms})
    return out


def symbols(problem: Problem) -> dict[str, str]:
    return {b.id: SYMBOLS[i % len(SYMBOLS)] for i, b in enumerate(problem.batches)}


def render(
    problem: Problem,
    schedule: Schedule | None,
    *,
    start: int,
    span: int,
    width: int,
    now: int | None = None,
    out_of_service: Collection[str] = (),
) -> Gantt:
    """The chart of ``[start, start + span)`` minutes in ``width`` columns of cells."""
    resources = rows_of(problem)
    label_width = max([len(r.id) for r in resources] + [4]) + (6 if out_of_service else 0)
    cols = max(10, width - label_width - 1)
    step = max(1, -(-span // cols))
    cols = -(-span // step)
    uses: dict[str, list[tuple[int, int, str]]] = {r.id: [] for r in resources}
    if schedule is not None:
        for a in schedule.assignments:
            seen: set[str] = set()
            for rid in a.used():
                if rid not in problem.resource_index:
                    continue
                for r in (rid, *(p.id for p in problem.parents(rid))):
                    if r in uses and r not in seen:
                        seen.add(r)
                        uses[r].append((a.start, a.end, a.batch))
    sym = symbols(problem)
    end = start + span
    horizon = max(end, problem.horizon or 0) + 1
    now_col = None
    if now is not None and start <= now < end:
        now_col = (now - start) // step
    rows = []
    for r in resources:
        blocked = r.unavailable(horizon)
        cells = []
        for c in range(cols):
            a, b = start + c * step, start + (c + 1) * step
            here = [u for u in uses[r.id] if u[0] < b and a < u[1]]
            if len({u[2] for u in here}) > 1:
                cells.append("*")
            elif here:
                cells.append(sym.get(here[0][2], "?"))
            elif any(w.overlaps(a, b) for w in blocked):
                cells.append("#")
            elif c == now_col:
                cells.append("|")
            else:
                cells.append(".")
        oos = r.id in out_of_service
        name = f"{r.id} OUT" if oos else r.id
        if r.kind is ResourceKind.UNIT:
            name = f" {name}"
        rows.append(GanttRow(r.id, f"{name:<{label_width}}", "".join(cells), oos))
    t0, t1 = problem.time(start), problem.time(end)
    header = f"{'':<{label_width}} {_when(t0)} .. {_when(t1)}, one column = {_step(step)}"
    if now_col is not None:
        marker = f"{'':<{label_width}} {' ' * now_col}v now"
        header = f"{header}\n{marker}"
    used = sorted({u[2] for v in uses.values() for u in v if u[0] < end and start < u[1]})
    legend_items = [f"{sym[b]}={b}" for b in used if b in sym]
    legend = "  ".join([*legend_items, "*=several", "#=unavailable", ".=idle"])
    if out_of_service:
        legend += "  OUT=out of service on the floor now"
    return Gantt(header, tuple(rows), f"{'':<{label_width}} {legend}", now_col)


def _when(t: dt.datetime) -> str:
    return t.strftime("%a %d %b %H:%M")


def _step(minutes: int) -> str:
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
