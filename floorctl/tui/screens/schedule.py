"""Schedule: the current schedule as a Gantt per room and unit, batch details with their
operations, and "regenerate": the solver in a worker thread with live progress and cancel, then
a review of what moved before the planner accepts it (written atomically to --schedule). From
here a batch's environmental record opens (the batch view), and a technician records the actual
start and end of the selected operation (signed).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from floorctl.scheduler import (
    Problem,
    Progress,
    Result,
    Schedule,
    ScheduleFileError,
    SolveOptions,
    Status,
    read_schedule,
    solve,
    with_room_outages,
)
from floorctl.scheduler.plan import PlanError, load_plan
from floorctl.scheduler.schedule import dumps, schedule_to_dict
from floorctl.tui import gantt
from floorctl.tui.format import clock_time
from floorctl.tui.screens.base import FloorView
from floorctl.tui.screens.batch import BatchScreen, sign_actual

#: seconds the solver may take when regenerating from the terminal
SOLVE_TIME_LIMIT = 30.0
#: seconds between progress lines drawn (the solver reports far more often)
PROGRESS_INTERVAL = 0.2
BATCH_COLUMNS = ("Batch", "Recipe", "Qty", "Release", "Due", "Deadline", "Start", "End", "Late")
OPERATION_COLUMNS = ("Planned", "Operation", "Where")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a
    part: a temporary file in the same folder, flushed and synced, then renamed over it."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def progress_text(p: Progress) -> str:
    obj = "-" if p.objective is None else f"{p.objective:.0f}"
    gap = "-" if p.gap is None else f"{100 * p.gap:.2f} %"
    return (
        f"solving: {p.elapsed:.1f} s, {p.solutions} solution(s), objective {obj}, "
        f"bound {p.bound:.0f}, gap {gap}  (c: cancel, keeps the best schedule found)"
    )


def result_summary(result: Result) -> str:
    o = result.objective
    hard = sum(v.hard for v in result.violations)
    soft = len(result.violations) - hard
    gap = "-" if result.gap is None else f"{100 * result.gap:.2f} %"
    cancelled = " (cancelled)" if result.cancelled else ""
    return (
        f"{result.status.value}{cancelled}: weighted tardiness {o.weighted_tardiness} min, "
        f"makespan {o.makespan / 60:.1f} h, changeover {o.changeover} min, moves {o.moves}; "
        f"gap {gap}; {result.solutions} solution(s) in {result.timings.total:.2f} s; "
        f"{hard} hard and {soft} soft violation(s)"
    )


class ScheduleReview(ModalScreen[bool]):
    """What the solver proposes against the current schedule; Accept or Discard."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "discard", "Discard", id="review.discard"),
    ]

    def __init__(self, result: Result, *, has_previous: bool, target: Path | None) -> None:
        super().__init__()
        self.result = result
        self.has_previous = has_previous
        self.target = target

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(id="review"):
            yield Static("Regenerated schedule: review before accepting", id="review-title")
            yield Static(result_summary(r), id="review-summary")
            with VerticalScroll(id="review-body"):
                if not self.has_previous:
                    n = 0 if r.schedule is None else len(r.schedule.assignments)
                    yield Static(f"no current schedule to compare with: {n} operations, all new")
                elif not r.moves:
                    yield Static("nothing moved against the current schedule", id="review-nomoves")
                else:
                    yield Static(f"{len(r.moves)} change(s) against the current schedule:")
                    table: DataTable[str] = DataTable(id="review-moves", cursor_type="row")
                    table.add_columns("Batch", "Operation", "What", "From", "To", "Why")
                    for m in r.moves:
                        table.add_row(
                            m.batch, m.operation, m.what, m.old or "-", m.new or "-", m.reason
                        )
                    yield table
                for v in r.violations[:8]:
                    yield Static(v.format(), classes="review-violation")
                if len(r.violations) > 8:
                    yield Static(
                        f"... and {len(r.violations) - 8} more", classes="review-violation"
                    )
                where = (
                    str(self.target) if self.target else "this session only (no --schedule file)"
                )
                yield Static(f"Accept writes: {where}", classes="muted")
            with Horizontal(id="review-buttons"):
                yield Button(
                    "Accept", variant="success", id="review-accept", disabled=r.schedule is None
                )
                yield Button("Discard", variant="error", id="review-discard")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "review-accept")

    def action_discard(self) -> None:
        self.dismiss(False)


class ScheduleScreen(FloorView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "regenerate", "Regenerate", id="schedule.regenerate"),
        Binding("c", "cancel_solve", "Cancel solve", id="schedule.cancel"),
        Binding(
            "left_square_bracket", "pan(-1)", "Earlier", id="schedule.earlier", key_display="["
        ),
        Binding("right_square_bracket", "pan(1)", "Later", id="schedule.later", key_display="]"),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", id="schedule.zoom-in", key_display="+"),
        Binding("minus", "zoom(1)", "Zoom out", id="schedule.zoom-out", key_display="-"),
        Binding("n", "now", "Now", id="schedule.now"),
        Binding("b", "batch_view", "Batch record", id="schedule.batch"),
        Binding("s", "actual('start')", "Actual start", id="schedule.actual-start"),
        Binding("s", "refuse_write('recording an actual start')", show=False),
        Binding("e", "actual('end')", "Actual end", id="schedule.actual-end"),
        Binding("e", "refuse_write('recording an actual end')", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.problem: Problem | None = None
        self.schedule: Schedule | None = None
        self.message = ""
        self.span_index = 2
        self.start = 0
        self.solving: threading.Event | None = None
        self.last_result: Result | None = None
        self._last_progress = 0.0
        #: the operations listed for the selected batch: (name, planned window and resources)
        self._ops: list[tuple[str, str]] = []
        #: what the operations list was drawn from: (batch, schedule object)
        self._ops_of: tuple[str | None, Schedule | None] | None = None

    # --- loading -------------------------------------------------------------------------------

    def body(self) -> Iterable[Widget]:
        yield Static("", id="schedule-info")
        yield VerticalScroll(Static("", id="gantt"), id="gantt-box")
        yield Static("", id="solve-progress")
        with Horizontal(id="batch-pane"):
            table: DataTable[str] = DataTable(id="batch-table", cursor_type="row")
            table.add_columns(*BATCH_COLUMNS)
            yield table
            with Vertical(id="batch-side"):
                yield Static("", id="batch-detail")
                ops: DataTable[str] = DataTable(id="op-table", cursor_type="row")
                ops.add_columns(*OPERATION_COLUMNS)
                yield ops

    def on_mount(self) -> None:
        self.load()
        self.action_now()
        self.query_one("#solve-progress", Static).display = False

    def load(self) -> None:
        app = self.floor_app
        self.problem = None
        self.schedule = None
        if app.plan_path is None:
            self.message = "no plan: start with --plan PLAN (and --schedule SCHEDULE)"
            return
        try:
            self.problem = load_plan(app.plan_path)
        except PlanError as exc:
            lines = [p.format() for p in exc.problems]
            self.message = f"{len(lines)} problem(s) in the plan:\n" + "\n".join(lines)
            return
        path = app.schedule_path
        if path is None:
            self.message = "no --schedule file: regenerate (g) makes one for this session"
        elif not path.exists():
            self.message = f"{path} does not exist yet: regenerate (g), then accept, writes it"
        else:
            try:
                self.schedule = read_schedule(path)
                self.message = f"current schedule: {path}"
            except ScheduleFileError as exc:
                self.message = f"cannot use the current schedule: {exc}"

    # --- drawing -------------------------------------------------------------------------------

    def now_minute(self) -> int | None:
        """Minutes after the plan's epoch it is now, if now is within the plan's horizon."""
        if self.problem is None:
            return None
        now = dt.datetime.fromtimestamp(self.floor_app.clock(), dt.UTC)
        m = self.problem.minutes(now)
        horizon = self.problem.horizon or (self.schedule.makespan if self.schedule else 0)
        return m if 0 <= m <= horizon else None

    def out_of_service(self) -> dict[str, float]:
        """Rooms of the plan out of service on the live floor: room -> since (UNIX time)."""
        out: dict[str, float] = {}
        if self.problem is None:
            return out
        for room, doc in self.floor_app.state.rooms.items():
            if doc.get("status") == "out-of-service" and room in self.problem.resource_index:
                t = doc.get("time")
                out[room] = float(t) if isinstance(t, int | float) else self.floor_app.clock()
        return out

    def update_view(self, changes: frozenset[str]) -> None:
        if changes & {"rooms", "schedule", "clock"}:
            self._draw()

    def _draw(self) -> None:
        info = self.query_one("#schedule-info", Static)
        chart = self.query_one("#gantt", Static)
        oos = self.out_of_service()
        lines = [self.message]
        if oos:
            lines.append(
                "out of service on the floor: "
                + ", ".join(
                    f"{r} (since {time.strftime('%H:%M', time.localtime(t))})"
                    for r, t in sorted(oos.items())
                )
                + "; regenerate plans around them"
            )
        if self.problem is not None and self.now_minute() is None:
            lines.append("now is outside the plan's horizon")
        info.update("\n".join(lines))
        if self.problem is None:
            chart.update("")
            return
        width = max(40, self.size.width - 4)
        g = gantt.render(
            self.problem,
            self.schedule,
            start=self.start,
            span=gantt.SPANS[self.span_index],
            width=width,
            now=self.now_minute(),
            out_of_service=oos.keys(),
        )
        text = Text(g.header + "\n")
        for row in g.rows:
            text.append(row.label, style="bold reverse" if row.out_of_service else "bold")
            text.append(" " + row.cells + "\n")
        text.append(g.legend)
        chart.update(text)
        self._fill_batches()

    def _fill_batches(self) -> None:
        problem = self.problem
        table = self.query_one("#batch-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        if problem is None:
            return
        ends: dict[str, int] = {}
        starts: dict[str, int] = {}
        if self.schedule is not None:
            for a in self.schedule.assignments:
                ends[a.batch] = max(ends.get(a.batch, a.end), a.end)
                starts[a.batch] = min(starts.get(a.batch, a.start), a.start)
        sym = gantt.symbols(problem)

        def when(m: int | None) -> str:
            return "-" if m is None else problem.time(m).strftime("%d %b %H:%M")

        for b in problem.batches:
            end = ends.get(b.id)
            late = "-" if end is None or b.due is None else f"{max(0, end - b.due)} min"
            table.add_row(
                f"{sym[b.id]} {b.id}",
                b.recipe,
                f"{b.quantity:g}",
                when(b.release),
                when(b.due),
                when(b.deadline),
                when(starts.get(b.id)),
                when(end),
                late,
                key=b.id,
            )
        if problem.batches:
            table.move_cursor(row=min(max(cursor, 0), len(problem.batches) - 1), animate=False)
        self._show_batch()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "batch-table":
            self._show_batch()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "batch-table":
            event.stop()
            self.action_batch_view()

    def selected_batch(self) -> str | None:
        problem = self.problem
        table = self.query_one("#batch-table", DataTable)
        if problem is None or not 0 <= table.cursor_row < len(problem.batches):
            return None
        return problem.batches[table.cursor_row].id

    def _show_batch(self) -> None:
        detail = self.query_one("#batch-detail", Static)
        ops = self.query_one("#op-table", DataTable)
        problem = self.problem
        batch = self.selected_batch()
        if (
            self._ops_of is not None
            and self._ops_of[0] == batch
            and self._ops_of[1] is self.schedule
        ):
            return
        self._ops_of = (batch, self.schedule)
        cursor = ops.cursor_row
        ops.clear()
        self._ops = []
        if problem is None or batch is None:
            detail.update("")
            return
        b = problem.batch(batch)
        line = f"{b.id}: {b.recipe}, {b.quantity:g} units, priority {b.priority}"
        if b.hazardous:
            line += ", hazardous drug"
        if self.schedule is None:
            line += "; not scheduled"
        else:
            for a in self.schedule.assignments:
                if a.batch != b.id:
                    continue
                name = (
                    problem.operation(a.operation).name
                    if a.operation in problem.operation_index
                    else a.operation.split("/", 1)[-1]
                )
                when = f"{problem.time(a.start):%d %b %H:%M}-{problem.time(a.end):%H:%M}"
                used = ", ".join(a.used()) or "-"
                self._ops.append((name, f"planned {when}, {used}"))
                ops.add_row(when, name, used, key=name)
        detail.update(line)
        if self._ops:
            ops.move_cursor(row=min(max(cursor, 0), len(self._ops) - 1), animate=False)

    # --- batch view and actuals ----------------------------------------------------------------

    def action_batch_view(self) -> None:
        batch = self.selected_batch()
        if batch is None:
            self.notify(self.message or "no batch selected", severity="warning")
            return
        self.app.push_screen(BatchScreen(batch))

    def action_actual(self, event: str) -> None:
        batch = self.selected_batch()
        table = self.query_one("#op-table", DataTable)
        if batch is None or not 0 <= table.cursor_row < len(self._ops):
            self.notify(
                "no operation selected: pick a scheduled batch, then its operation",
                severity="warning",
            )
            return
        name, where = self._ops[table.cursor_row]
        sign_actual(
            self.floor_app,
            batch,
            name,
            event,
            detail=f"Batch {batch}, operation {name}: {where}.",
        )

    # --- window --------------------------------------------------------------------------------

    def action_pan(self, direction: int) -> None:
        self.start = max(0, self.start + direction * gantt.SPANS[self.span_index] // 4)
        self._draw()

    def action_zoom(self, direction: int) -> None:
        self.span_index = min(max(self.span_index + direction, 0), len(gantt.SPANS) - 1)
        self._draw()

    def action_now(self) -> None:
        now = self.now_minute()
        if now is None:
            self.start = 0
        else:
            self.start = max(0, now - gantt.SPANS[self.span_index] // 8)
        if self.is_mounted:
            self._draw()

    # --- regenerate ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_solve":
            return self.solving is not None
        if action == "regenerate" and self.solving is not None:
            return None
        return super().check_action(action, parameters)

    def action_regenerate(self) -> None:
        app = self.floor_app
        if not app.allows("regenerate"):
            app.refuse_write("regenerate")
            return
        if self.problem is None:
            self.notify(self.message or "no plan", severity="warning")
            return
        if self.solving is not None:
            return
        problem = self.problem
        outages = []
        for room, since in self.out_of_service().items():
            when = dt.datetime.fromtimestamp(since, dt.UTC)
            outages.append((room, max(problem.minutes(when), 0)))
        problem = with_room_outages(problem, outages)
        now = self.now_minute()
        options = SolveOptions(
            time_limit=SOLVE_TIME_LIMIT,
            workers=2,
            now=now if self.schedule is not None else None,
        )
        self.solving = threading.Event()
        progress = self.query_one("#solve-progress", Static)
        progress.display = True
        progress.update(
            "solving: building the model"
            + (f" (rooms out of service: {', '.join(r for r, _ in outages)})" if outages else "")
        )
        self.refresh_bindings()
        self._solve(problem, options, self.schedule, self.solving)

    def action_cancel_solve(self) -> None:
        if self.solving is not None:
            self.solving.set()
            self.query_one("#solve-progress", Static).update("cancelling: keeping the best found")

    def _progress(self, p: Progress) -> None:
        if self.solving is not None:
            self.query_one("#solve-progress", Static).update(progress_text(p))

    @work(thread=True, exclusive=True, group="solve")
    def _solve(
        self,
        problem: Problem,
        options: SolveOptions,
        previous: Schedule | None,
        cancel: threading.Event,
    ) -> None:
        app = self.app

        def on_progress(p: Progress) -> None:
            now = time.monotonic()
            if p.objective is None and now - self._last_progress < PROGRESS_INTERVAL:
                return
            self._last_progress = now
            app.call_from_thread(self._progress, p)

        try:
            result = solve(problem, options, previous=previous, progress=on_progress, cancel=cancel)
        except Exception as exc:  # shown, never swallowed: the planner must know
            app.call_from_thread(self._solve_failed, f"{type(exc).__name__}: {exc}")
            return
        app.call_from_thread(self._solved, problem, result)

    def _solve_failed(self, text: str) -> None:
        self.solving = None
        self.refresh_bindings()
        self.query_one("#solve-progress", Static).update(f"the solver failed: {text}")

    def _solved(self, problem: Problem, result: Result) -> None:
        self.solving = None
        self.last_result = result
        self.refresh_bindings()
        self.query_one("#solve-progress", Static).update(result_summary(result))
        if result.schedule is None or result.status in (Status.INFEASIBLE, Status.INVALID):
            why = ", ".join(result.explanation) or "no schedule meets the hard constraints"
            self.notify(f"no schedule: {result.status.value}: {why}", severity="error")
            return
        review = ScheduleReview(
            result,
            has_previous=self.schedule is not None,
            target=self.floor_app.schedule_path,
        )
        self.app.push_screen(review, lambda ok: self._reviewed(problem, result, bool(ok)))

    def _reviewed(self, problem: Problem, result: Result, accepted: bool) -> None:
        progress = self.query_one("#solve-progress", Static)
        if not accepted:
            progress.update("discarded: the current schedule stays")
            return
        if not self.floor_app.allows("accept"):
            self.floor_app.refuse_write("accepting a schedule")
            return
        assert result.schedule is not None
        path = self.floor_app.schedule_path
        if path is not None:
            doc: dict[str, Any] = schedule_to_dict(
                result.schedule,
                problem,
                status=result.status.value,
                moves=[
                    {
                        "batch": m.batch,
                        "operation": m.operation,
                        "what": m.what,
                        "from": m.old,
                        "to": m.new,
                        "reason": m.reason,
                    }
                    for m in result.moves
                ],
            )
            try:
                write_atomically(path, dumps(doc))
            except OSError as exc:
                progress.update(f"NOT accepted: cannot write {path}: {exc}")
                self.notify(f"cannot write {path}: {exc}", severity="error")
                return
            self.message = (
                f"current schedule: {path} (accepted {clock_time(self.floor_app.clock())})"
            )
        else:
            self.message = "accepted for this session only (no --schedule file)"
        self.schedule = result.schedule
        progress.update(f"accepted: {result_summary(result)}")
        self.notify("schedule accepted" + (f": written to {path}" if path else ""))
        self._draw()
