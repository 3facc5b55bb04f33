"""Floor: a tile per room with its ISO 5 units; the selected room's last hour as sparklines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, Sparkline, Static

from floorctl.client import ClientError
from floorctl.config import RoomConfig
from floorctl.limits import Quantity
from floorctl.tui.format import number
from floorctl.tui.screens.base import FloorView
from floorctl.tui.widgets.room_tile import RoomTile
from floorctl.tui.widgets.text import set_text

HOUR = 3600.0
BUCKETS = 60
SPARK_QUANTITIES = (
    (Quantity.DIFFERENTIAL_PRESSURE, "dP"),
    (Quantity.TEMPERATURE, "T"),
    (Quantity.HUMIDITY, "RH"),
    (Quantity.PARTICLES_0_5, "≥0.5µm"),
    (Quantity.PARTICLES_5_0, "≥5.0µm"),
    (Quantity.DOWNFLOW_VELOCITY, "downflow"),
)


class FloorScreen(FloorView):
    """Every room at a glance."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,l", "app.focus_next", "Next room", id="floor.next", show=False),
        Binding("left,h", "app.focus_previous", "Previous room", id="floor.previous", show=False),
        Binding("r", "refresh_history", "Reload history", id="floor.refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        #: (device, point) -> [(bucket start, avg)] from the history query
        self.history: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self.history_note = ""
        #: the sparklines shown: (point, sparkline, its range label)
        self.sparks: list[tuple[tuple[str, str], Sparkline, Label]] = []
        #: every room's tile with its room (ISO 5 units are shown inside their room's)
        self.tiles: list[tuple[RoomTile, RoomConfig]] = []

    def body(self) -> Iterable[Widget]:
        rooms = [r for r in self.floor_app.config.rooms if r.within is None]
        grid = Grid(*(RoomTile(r.id) for r in rooms), id="room-grid")
        yield grid
        yield Vertical(
            Label("", id="spark-title"),
            VerticalScroll(id="sparks"),
            id="spark-panel",
        )

    def on_mount(self) -> None:
        tiles = list(self.query(RoomTile))
        if tiles:
            tiles[0].focus()

    def update_view(self, changes: frozenset[str]) -> None:
        if changes & {"points", "alarms", "rooms", "devices"}:
            state = self.floor_app.state
            if not self.tiles:  # once: a query per tile per redraw costs a selector match
                rooms = {r.id: r for r in self.floor_app.config.rooms}
                self.tiles = [(t, rooms[t.room]) for t in self.query(RoomTile)]
            for tile, room in self.tiles:
                tile.show(state.room_view(room))
        if changes & {"clock", "history"}:
            self._draw_sparks()

    # --- the selected room's last hour ---------------------------------------------------------

    def on_room_tile_selected(self, message: RoomTile.Selected) -> None:
        if message.room == self.selected:
            return
        self.selected = message.room
        self.history = {}
        self.history_note = "loading history ..."
        self.floor_app.state.watch(self._spark_keys())
        self._build_sparks()
        self._load_history()

    def action_refresh_history(self) -> None:
        if self.selected is not None:
            self._load_history()

    def _spark_keys(self) -> list[tuple[str, str]]:
        return [key for key, _ in self._spark_points()]

    def _spark_points(self) -> list[tuple[tuple[str, str], str]]:
        if self.selected is None:
            return []
        state = self.floor_app.state
        rooms = [self.selected] + [
            r.id for r in self.floor_app.config.rooms if r.within == self.selected
        ]
        out = []
        for room in rooms:
            for quantity, label in SPARK_QUANTITIES:
                for key in state.room_points(room, quantity):
                    out.append((key, f"{label} {key[0]}/{key[1]}"))
        return out

    def _build_sparks(self) -> None:
        box = self.query_one("#sparks", VerticalScroll)
        box.remove_children()
        self.sparks = []
        rows = []
        for key, label in self._spark_points():
            spark = Sparkline([], classes="spark")
            rng = Label("", classes="spark-range")
            self.sparks.append((key, spark, rng))
            rows.append(
                Horizontal(Label(label, classes="spark-label"), spark, rng, classes="spark-row")
            )
        if rows:
            box.mount_all(rows)
        else:
            box.mount(Static("no trended points in this room", classes="muted"))
        self._draw_sparks()

    def _draw_sparks(self) -> None:
        if self.selected is None:
            return
        app = self.floor_app
        now = app.clock()
        title = self.query_one("#spark-title", Label)
        set_text(title, f"{self.selected}: the last hour (1-minute buckets) {self.history_note}")
        for key, spark, rng in self.sparks:
            data = app.state.series(key, self.history.get(key, ()), now - HOUR, now, BUCKETS)
            spark.data = data
            if data:
                unit = app.state.points.get(key)
                u = f" {unit.unit}" if unit is not None and unit.unit else ""
                lo, hi = number(min(data)), number(max(data))
                set_text(rng, f"{lo}..{hi}{u} ({len(data)}/{BUCKETS} min)")
            else:
                set_text(rng, "no data in the last hour")

    @work(exclusive=True, group="history")
    async def _load_history(self) -> None:
        app = self.floor_app
        now = app.clock()
        room = self.selected
        got: dict[tuple[str, str], list[tuple[float, float]]] = {}
        note = ""
        for key in self._spark_keys():
            args: dict[str, Any] = {
                "device": key[0],
                "point": key[1],
                "since": now - HOUR,
                "until": now,
                "buckets": BUCKETS,
            }
            try:
                reply = await app.source.query("history", args, 10.0)
            except ClientError as exc:
                note = f"(history not available: {exc}; live values only)"
                break
            if not isinstance(reply, dict) or reply.get("status") != "done":
                why = reply.get("error") if isinstance(reply, dict) else reply
                note = f"(history refused: {why}; live values only)"
                break
            got[key] = [
                (float(row[0]), float(row[2]))
                for row in reply.get("series") or []
                if isinstance(row, list) and len(row) >= 3 and row[2] is not None
            ]
        if room != self.selected:
            return
        self.history = got
        self.history_note = note
        self.update_view(frozenset({"history"}))
