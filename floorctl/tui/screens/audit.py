"""Audit: the newest entries of the audit trail and the result of verifying the chain, read
through the daemon's ``audit`` query (the terminal needs no access to the store)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from floorctl.client import ClientError
from floorctl.tui.format import date_time
from floorctl.tui.screens.base import FloorView

LIMIT = 100
COLUMNS = ("Seq", "Time", "User", "Action", "Target", "Old -> new", "Reason", "Meaning")


def entry_row(e: dict[str, Any]) -> tuple[str, ...]:
    old, new = e.get("old_value"), e.get("new_value")
    change = "-" if old is None and new is None else f"{old or '-'} -> {new or '-'}"
    user = str(e.get("user_id") or "-")
    if e.get("printed_name"):
        user = f"{user} ({e['printed_name']})"
    return (
        str(e.get("seq", "-")),
        date_time(e.get("time")),
        user,
        str(e.get("action") or "-"),
        str(e.get("target") or "-"),
        change,
        str(e.get("reason") or "-"),
        str(e.get("meaning") or "-"),
    )


def verify_text(v: dict[str, Any] | None) -> tuple[bool | None, str]:
    """(ok, the sentence shown) for the reply's ``verify`` object."""
    if not v:
        return None, "chain not verified"
    describe = v.get("describe") or ""
    if v.get("ok"):
        return True, f"CHAIN OK: {describe}"
    return False, f"CHAIN BROKEN: {describe or v.get('problem')}"


class AuditScreen(FloorView):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Reload and verify", id="audit.reload"),
        Binding("j", "cursor_down", "Down", id="audit.down", show=False),
        Binding("k", "cursor_up", "Up", id="audit.up", show=False),
    ]

    def body(self) -> Iterable[Widget]:
        yield Static("loading ...", id="audit-verify")
        table: DataTable[str] = DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    def action_cursor_down(self) -> None:
        self.query_one("#audit-table", DataTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#audit-table", DataTable).action_cursor_up()

    @work(exclusive=True, group="audit")
    async def _load(self) -> None:
        line = self.query_one("#audit-verify", Static)
        for cls in ("verify-ok", "verify-broken", "verify-unknown"):
            line.remove_class(cls)
        try:
            reply = await self.floor_app.source.query(
                "audit", {"limit": LIMIT, "verify": True}, 15.0
            )
        except ClientError as exc:
            line.add_class("verify-unknown")
            line.update(f"audit trail not available: {exc}")
            return
        if not isinstance(reply, dict) or reply.get("status") != "done":
            why = reply.get("error") if isinstance(reply, dict) else reply
            reason = reply.get("reason") if isinstance(reply, dict) else None
            line.add_class("verify-unknown")
            line.update(
                f"audit query {reply.get('status') if isinstance(reply, dict) else ''}"
                f" ({reason}): {why}"
            )
            return
        ok, text = verify_text(reply.get("verify"))
        line.add_class("verify-unknown" if ok is None else "verify-ok" if ok else "verify-broken")
        entries = [e for e in reply.get("entries") or [] if isinstance(e, dict)]
        line.update(f"{text} | {len(entries)} newest entries (r: reload and verify again)")
        table = self.query_one("#audit-table", DataTable)
        table.clear()
        for e in entries:
            table.add_row(*entry_row(e), key=str(e.get("seq")))
