"""Alarms: what is not normal, by priority then time; shelved, suppressed and out-of-service
alarms in their own lists; acknowledge, shelve, unshelve and reset through the signature modal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input, TabbedContent, TabPane

from floorctl.alarms.actions import ACTIONS, AlarmRequest
from floorctl.commands import Signer
from floorctl.publisher import Topics
from floorctl.tui.format import age, clock_time, number, shelf_until
from floorctl.tui.screens.base import FloorView
from floorctl.tui.screens.signature import SignatureModal, SignRequest
from floorctl.tui.state import Alarm

REQUEST_TIMEOUT = 20.0
#: the lists (tabs): id, title, states (None: every state not normal nor hidden)
LISTS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("shown", "Alarms", None),
    ("shelved", "Shelved", ("shelved",)),
    ("suppressed", "Suppressed", ("suppressed",)),
    ("out-of-service", "Out of service", ("out-of-service",)),
)
COLUMNS = ("Priority", "Alarm", "Room", "State", "Severity", "Value", "Since", "Last")
#: which states each action applies to (the daemon checks again; this only picks the hint)
ACTION_TITLES = {
    "ack": "Acknowledge",
    "shelve": "Shelve",
    "unshelve": "Unshelve",
    "reset": "Reset",
}


def last_text(alarm: Alarm, now: float) -> str:
    """The last transition, for people: cause, who, why; a shelf's end or expiry."""
    last: Mapping[str, Any] | None = alarm.last
    if not last:
        return "-"
    cause = str(last.get("cause") or "")
    parts = [cause.replace("-", " ")]
    if last.get("user"):
        parts.append(f"by {last['user']}")
    if cause == "shelve" or alarm.state == "shelved":
        until = shelf_until(last.get("detail"))
        if until is None:
            parts.append(f"at {clock_time(alarm.since)} (end time not published)")
        else:
            left = until - now
            parts.append(
                f"until {clock_time(until)} (in {age(left)})"
                if left > 0
                else f"until {clock_time(until)} (expiring)"
            )
    elif cause == "shelf-expired":
        parts.append(f"at {clock_time(alarm.since)}")
    if last.get("comment"):
        parts.append(f"“{last['comment']}”")
    return " ".join(parts)


def row_of(alarm: Alarm, now: float) -> tuple[str, ...]:
    value = "-" if alarm.value is None else number(alarm.value)
    return (
        (alarm.priority or "-").upper(),
        alarm.id,
        alarm.room or "-",
        alarm.state_name,
        alarm.severity or "-",
        value,
        f"{clock_time(alarm.since)} ({age(now - alarm.since)} ago)",
        last_text(alarm, now),
    )


class AlarmsScreen(FloorView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "ack", "Acknowledge", id="alarms.ack"),
        Binding("s", "shelve", "Shelve", id="alarms.shelve"),
        Binding("u", "unshelve", "Unshelve", id="alarms.unshelve"),
        Binding("x", "reset", "Reset", id="alarms.reset"),
        Binding("slash", "filter", "Filter", id="alarms.filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", id="alarms.clear", show=False),
        Binding("j", "cursor_down", "Down", id="alarms.down", show=False),
        Binding("k", "cursor_up", "Up", id="alarms.up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._rows: dict[str, list[Alarm]] = {}

    def body(self) -> Iterable[Widget]:
        yield Input(placeholder="filter: any text in a row (esc clears)", id="alarm-filter")
        tabs = TabbedContent(id="alarm-tabs")
        with tabs:
            for ident, title, _states in LISTS:
                with TabPane(title, id=f"tab-{ident}"):
                    table: DataTable[str] = DataTable(
                        id=f"table-{ident}", cursor_type="row", zebra_stripes=True
                    )
                    table.add_columns(*COLUMNS)
                    yield table

    def on_mount(self) -> None:
        self.query_one("#table-shown", DataTable).focus()

    # --- lists ---------------------------------------------------------------------------------

    def update_view(self, changes: frozenset[str]) -> None:
        if not changes & {"alarms", "clock", "filter"}:
            return
        state = self.floor_app.state
        now = self.floor_app.clock()
        for ident, title, states in LISTS:
            alarms = state.shown_alarms() if states is None else state.sorted_alarms(states)
            rows = [(a, row_of(a, now)) for a in alarms]
            if self.filter_text:
                needle = self.filter_text.lower()
                rows = [(a, r) for a, r in rows if any(needle in c.lower() for c in r)]
            self._rows[ident] = [a for a, _ in rows]
            table = self.query_one(f"#table-{ident}", DataTable)
            self._fill(table, [(a.id, r) for a, r in rows])
            pane = self.query_one("#alarm-tabs", TabbedContent).get_tab(f"tab-{ident}")
            pane.label = f"{title} ({len(rows)})"

    @staticmethod
    def _fill(table: DataTable[str], rows: list[tuple[str, tuple[str, ...]]]) -> None:
        """Replace the rows, keeping the cursor on the same alarm where it is still listed."""
        current = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            current = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        table.clear()
        for key, row in rows:
            table.add_row(*row, key=key)
        keys = [k for k, _ in rows]
        if current in keys:
            table.move_cursor(row=keys.index(current), animate=False)

    def selected(self) -> Alarm | None:
        tabs = self.query_one("#alarm-tabs", TabbedContent)
        ident = (tabs.active or "tab-shown").removeprefix("tab-")
        table = self.query_one(f"#table-{ident}", DataTable)
        rows = self._rows.get(ident, [])
        if not rows or not 0 <= table.cursor_row < len(rows):
            return None
        return rows[table.cursor_row]

    # --- filter --------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#alarm-filter", Input)
        box.add_class("shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#alarm-filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.filter_text = ""
        self.update_view(frozenset({"filter"}))
        self.query_one("#alarm-tabs", TabbedContent).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "alarm-filter":
            self.filter_text = event.value.strip()
            self.update_view(frozenset({"filter"}))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "alarm-filter":
            tabs = self.query_one("#alarm-tabs", TabbedContent)
            ident = (tabs.active or "tab-shown").removeprefix("tab-")
            self.query_one(f"#table-{ident}", DataTable).focus()

    def action_cursor_down(self) -> None:
        self._table().action_cursor_down()

    def action_cursor_up(self) -> None:
        self._table().action_cursor_up()

    def _table(self) -> DataTable[str]:
        tabs = self.query_one("#alarm-tabs", TabbedContent)
        ident = (tabs.active or "tab-shown").removeprefix("tab-")
        return self.query_one(f"#table-{ident}", DataTable)

    # --- actions -------------------------------------------------------------------------------

    def action_ack(self) -> None:
        self.sign("ack")

    def action_shelve(self) -> None:
        self.sign("shelve")

    def action_unshelve(self) -> None:
        self.sign("unshelve")

    def action_reset(self) -> None:
        self.sign("reset")

    def sign(self, action: str) -> None:
        app = self.floor_app
        if not app.allows(action):
            app.refuse_write(ACTION_TITLES[action].lower())
            return
        alarm = self.selected()
        if alarm is None:
            self.notify("no alarm selected", severity="warning")
            return
        spec = ACTIONS[action]
        comment_required = spec.comment_required or (action == "ack" and alarm.severity == "action")
        roles = ", ".join(r.value for r in spec.roles)
        detail = (
            f"{alarm.state_name}, severity {alarm.severity or '-'}, priority "
            f"{alarm.priority or '-'}, room {alarm.room or '-'}.\n"
            f"Signature meaning: {spec.meaning.value}; who may: {roles}."
        )
        topics = Topics(app.config.floor.prefix)
        device, point = alarm.device, alarm.point

        async def send(signer: Signer, args: dict[str, Any]) -> Mapping[str, Any]:
            req = AlarmRequest.new(device, point, action, signer, args)
            return await app.source.request(
                topics.alarm_request(device, point), req.payload(), req.id, REQUEST_TIMEOUT
            )

        request = SignRequest(
            f"{ACTION_TITLES[action]} {alarm.id}",
            detail,
            send,
            comment_required=comment_required,
            duration="30m" if action == "shelve" else None,
        )
        app.push_screen(SignatureModal(request))
