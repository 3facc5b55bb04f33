"""The batch view: one batch's environmental record (docs/batch-record.md) as QA reviews it,
read through the daemon's ``batch-record`` query with the terminal's plan and schedule; and the
signed "record actual start / end" of an operation, shared with the Schedule screen.

The verdict and the items that need QA's attention are drawn above the record, which follows
in full (Markdown, as ``floorctl batch-record --format md`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Markdown, Static

from floorctl.batches import LATE_AFTER, RECORD_ACTUAL, ActualRequest
from floorctl.client import ClientError
from floorctl.commands import Signer
from floorctl.publisher import Topics
from floorctl.tui.format import clock_time, date_time
from floorctl.tui.screens.base import FloorView
from floorctl.tui.screens.signature import SignatureModal, SignRequest

if TYPE_CHECKING:
    from floorctl.tui.app import FloorApp

#: seconds to wait for the daemon's reply to a signed actual
REQUEST_TIMEOUT = 20.0
#: seconds to wait for the batch record (the daemon reads the store for the batch's windows)
QUERY_TIMEOUT = 30.0
OP_COLUMNS = ("Operation", "Where", "Basis", "Start", "End")


def sign_actual(
    app: FloorApp,
    batch: str,
    operation: str,
    event: str,
    *,
    detail: str = "",
    on_recorded: Callable[[], object] | None = None,
) -> None:
    """Open the signature modal for the actual ``event`` ("start" or "end") of
    ``batch/operation``; the signed request goes to ``<prefix>/request/actual`` and the modal
    shows the daemon's answer. ``on_recorded`` runs after the modal closes when it was
    recorded. Refused (with a message) in --read-only."""
    if not app.allows("actual"):
        app.refuse_write(f"recording an actual {event}")
        return
    topics = Topics(app.config.floor.prefix)

    async def send(signer: Signer, args: dict[str, Any]) -> Mapping[str, Any]:
        req = ActualRequest.new(batch, operation, event, signer, args.get("time"))
        return await app.source.request(
            topics.request("actual"), req.payload(), req.id, REQUEST_TIMEOUT
        )

    roles = ", ".join(r.value for r in RECORD_ACTUAL.roles)
    lines = [detail] if detail else []
    lines.append(
        f"Signature meaning: {RECORD_ACTUAL.meaning.value}; who may: {roles}. A correction of "
        f"a recorded {event}, or a time more than {LATE_AFTER / 3600:g} h ago, needs a comment."
    )
    request = SignRequest(
        f"Record actual {event}: {batch}/{operation}",
        "\n".join(lines),
        send,
        ask_time=True,
        accepted_as="recorded",
        clock=app.clock,
    )

    def closed(recorded: bool | None) -> None:
        if recorded and on_recorded is not None:
            on_recorded()

    app.push_screen(SignatureModal(request), closed)


def reply_problem(reply: Any) -> str | None:
    """None for a done reply; else the reply, verbatim, as one line."""
    if isinstance(reply, dict) and reply.get("status") == "done":
        return None
    if not isinstance(reply, dict):
        return f"batch-record query: unexpected reply {reply!r}"
    reason = reply.get("reason")
    why = reply.get("error") or "no reason given"
    status = reply.get("status") or "no status"
    return f"batch-record query {status}" + (f" ({reason})" if reason else "") + f": {why}"


def verdict_text(record: Mapping[str, Any]) -> Text:
    """The verdict and QA's attention list, for the top of the view."""
    attention = [str(a) for a in record.get("attention") or []]
    text = Text()
    if record.get("clean"):
        text.append("CLEAN: nothing needs QA's attention\n", style="bold")
    else:
        text.append(f"NEEDS QA'S ATTENTION: {len(attention)} item(s)\n", style="bold")
    for a in attention:
        text.append(f"  ! {a}\n")
    for v in record.get("verdicts") or []:
        text.append(f"  - {v}\n")
    text.rstrip()
    return text


def operation_rows(record: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """(operation name, row) for the operations table: where, basis, the window."""
    rows = []
    for op in record.get("operations") or []:
        if not isinstance(op, dict):
            continue
        where = str(op.get("room") or "-")
        if op.get("unit"):
            where += f" / {op['unit']}"
        window = op.get("window") or [None, None]
        rows.append(
            (
                str(op.get("name")),
                (
                    str(op.get("name")),
                    where,
                    str(op.get("basis") or "-"),
                    date_time(window[0]),
                    date_time(window[1]),
                ),
            )
        )
    return rows


class BatchScreen(FloorView):
    """One batch's environmental record, from the daemon; opened from the Schedule screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="batch.back"),
        Binding("r", "reload", "Refresh", id="batch.reload"),
        Binding("s", "actual('start')", "Actual start", id="batch.actual-start"),
        Binding("s", "refuse_write('recording an actual start')", show=False),
        Binding("e", "actual('end')", "Actual end", id="batch.actual-end"),
        Binding("e", "refuse_write('recording an actual end')", show=False),
        Binding("j", "cursor_down", "Down", id="batch.down", show=False),
        Binding("k", "cursor_up", "Up", id="batch.up", show=False),
    ]

    def __init__(self, batch: str) -> None:
        super().__init__()
        self.batch = batch
        #: the last ``done`` reply's record (the JSON document), None before one arrived
        self.record: dict[str, Any] | None = None
        #: the line shown above the record: what was asked, when it came, or what went wrong
        self.status = "loading ..."
        self._ops: list[str] = []

    def body(self) -> Iterable[Widget]:
        yield Static(f"Batch {self.batch}: loading ...", id="batch-title")
        yield Static("", id="batch-verdict")
        table: DataTable[str] = DataTable(id="batch-ops", cursor_type="row")
        table.add_columns(*OP_COLUMNS)
        yield table
        with VerticalScroll(id="batch-record-box"):
            yield Markdown("", id="batch-record")

    def on_mount(self) -> None:
        self.query_one("#batch-ops", DataTable).focus()
        self.action_reload()

    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self._load()

    def action_batch_view(self) -> None:
        """The palette's "Schedule: Batch record" while this view is open: refresh it."""
        self._load()

    def action_cursor_down(self) -> None:
        self.query_one("#batch-ops", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#batch-ops", DataTable).action_cursor_up()

    def query_args(self) -> dict[str, str] | str:
        """The query's arguments, or why it cannot be asked."""
        app = self.floor_app
        if app.plan_path is None or app.schedule_path is None:
            return (
                "no batch record: the daemon reads the plan and the schedule from files; start "
                "the terminal with --plan PLAN --schedule SCHEDULE"
            )
        return {
            "batch": self.batch,
            "plan": str(app.plan_path.resolve()),
            "schedule": str(app.schedule_path.resolve()),
        }

    @work(exclusive=True, group="batch-record")
    async def _load(self) -> None:
        title = self.query_one("#batch-title", Static)
        verdict = self.query_one("#batch-verdict", Static)
        args = self.query_args()
        if isinstance(args, str):
            await self._show_problem(args)
            return
        title.update(f"Batch {self.batch}: asking the daemon for the record ...")
        try:
            reply = await self.floor_app.source.query("batch-record", args, QUERY_TIMEOUT)
        except ClientError as exc:
            await self._show_problem(f"batch record not available: {exc}")
            return
        problem = reply_problem(reply)
        if problem is not None:
            await self._show_problem(problem)
            return
        record = reply.get("record")
        self.record = record if isinstance(record, dict) else {}
        clean = bool(self.record.get("clean", reply.get("clean")))
        app = self.floor_app
        self.status = (
            f"Batch {self.batch}: batch environmental record from the daemon at "
            f"{clock_time(app.clock())} (r: refresh, esc: back); plan {app.plan_path}, "
            f"schedule {app.schedule_path}"
        )
        title.update(self.status)
        verdict.set_classes("verdict-clean" if clean else "verdict-attention")
        verdict.update(verdict_text({**self.record, "clean": clean}))
        self._fill_ops(operation_rows(self.record))
        await self.query_one("#batch-record", Markdown).update(str(reply.get("markdown") or ""))

    async def _show_problem(self, text: str) -> None:
        self.record = None
        self.status = text
        self.query_one("#batch-title", Static).update(f"Batch {self.batch}")
        verdict = self.query_one("#batch-verdict", Static)
        verdict.set_classes("verdict-unknown")
        verdict.update(text)
        self._fill_ops([])
        await self.query_one("#batch-record", Markdown).update("")

    def _fill_ops(self, rows: list[tuple[str, tuple[str, ...]]]) -> None:
        table = self.query_one("#batch-ops", DataTable)
        cursor = table.cursor_row
        table.clear()
        self._ops = [name for name, _ in rows]
        for name, row in rows:
            table.add_row(*row, key=name)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)

    def selected_operation(self) -> str | None:
        table = self.query_one("#batch-ops", DataTable)
        if not self._ops or not 0 <= table.cursor_row < len(self._ops):
            return None
        return self._ops[table.cursor_row]

    def action_actual(self, event: str) -> None:
        op = self.selected_operation()
        if op is None:
            self.notify("no operation selected (the record has not arrived)", severity="warning")
            return
        sign_actual(
            self.floor_app,
            self.batch,
            op,
            event,
            detail=f"Batch {self.batch}, operation {op}.",
            on_recorded=self._load,
        )
