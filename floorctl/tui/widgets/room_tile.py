"""A room's tile: ISO class, readings, status as text and colour, active alarms, its units."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from floorctl.tui.state import RoomView
from floorctl.tui.widgets.text import keeps_height

STATUS_LABELS = {
    "ok": "OK",
    "alert": "ALERT",
    "action": "ACTION",
    "no-data": "NO DATA",
    "out-of-service": "OUT OF SERVICE",
    "unknown": "NO STATUS",
}
STATUS_CLASSES = tuple(f"status-{s}" for s in STATUS_LABELS)


def tile_text(view: RoomView) -> Text:
    """The tile's lines (plain text; the status colour comes from the tile's CSS class)."""
    text = Text()
    alarms = f"{view.active_alarms} alarm{'s' if view.active_alarms != 1 else ''}"
    text.append(f"{view.iso_class}  [{STATUS_LABELS.get(view.status, view.status)}]  {alarms}\n")
    for r in view.readings:
        text.append(f"{r.label:<14} ")
        text.append(r.text + "\n", style="italic" if r.stale else "")
    for unit in view.units:
        status = STATUS_LABELS.get(unit.status, unit.status)
        text.append(f"└ {unit.id} {unit.iso_class} [{status}]", style="bold")
        if unit.active_alarms:
            text.append(f" {unit.active_alarms} alarm{'s' if unit.active_alarms != 1 else ''}")
        text.append("\n")
        for r in unit.readings:
            text.append(f"   {r.label:<11} ")
            text.append(r.text + "\n", style="italic" if r.stale else "")
    text.rstrip()
    return text


class RoomTile(Static, can_focus=True):
    """One room. Focus it (arrows, tab) to see its last hour below.

    Redraws are cheap when little changed (the Floor screen shows every tile four times a
    second while readings arrive): a tile whose :class:`RoomView` is unchanged does nothing,
    and a changed text that keeps the tile's height is repainted without a layout of the
    screen (a layout re-measures every tile). The height is kept when the line count is the
    same and no line, old or new, is wider than the tile (a wider line wraps)."""

    class Selected(Message):
        def __init__(self, room: str) -> None:
            super().__init__()
            self.room = room

    def __init__(self, room: str) -> None:
        super().__init__(id=f"tile-{room}", classes="room-tile")
        self.room = room
        self._view: RoomView | None = None
        self._shown: tuple[str, str] | None = None
        #: text updates that needed a layout / that did not (tests and benchmarks read them)
        self.layouts = 0
        self.repaints = 0

    def show(self, view: RoomView) -> None:
        if view == self._view:
            return
        self._view = view
        text = tile_text(view)
        key = (view.status, text.plain)
        if key == self._shown:
            return
        old = self._shown
        self._shown = key
        status_changed = old is None or old[0] != view.status
        if status_changed:
            self.border_title = f"{view.name} ({view.id})"
            self.border_subtitle = STATUS_LABELS.get(view.status, view.status)
            for cls in STATUS_CLASSES:
                self.remove_class(cls)
            self.add_class(f"status-{view.status}")
        layout = not keeps_height(self, None if old is None else old[1], text.plain)
        if layout:
            self.layouts += 1
        else:
            self.repaints += 1
        self.update(text, layout=layout)

    def on_focus(self) -> None:
        self.post_message(self.Selected(self.room))

    def on_click(self) -> None:
        self.focus()
