"""What every floor screen shares: the status bar, the footer, and redraws from the state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from floorctl.tui.state import TOPIC_KINDS
from floorctl.tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from floorctl.tui.app import FloorApp

ALL_CHANGES = frozenset(TOPIC_KINDS) | {"clock", "source"}


class FloorView(Screen[None]):
    """A screen fed from the app's FloorState. Subclasses compose ``body()`` and redraw in
    ``update_view(changes)``; ``changes`` names what changed (state.TOPIC_KINDS, "clock")."""

    @property
    def floor_app(self) -> FloorApp:
        return cast("FloorApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield from self.body()
        yield Footer()

    def body(self) -> Iterable[Widget]:
        return ()

    def on_screen_resume(self) -> None:
        self.refresh_floor(ALL_CHANGES)

    def refresh_floor(self, changes: frozenset[str]) -> None:
        bars = self.query(StatusBar)
        if not self.is_mounted or not bars:  # not composed yet, or being torn down
            return
        bars.first().update_status()
        self.update_view(changes)

    def update_view(self, changes: frozenset[str]) -> None:
        """Redraw what depends on ``changes``."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # write actions are hidden in --read-only (the app's fallback keys say why; a screen's
        # own hidden ``refuse_write`` binding on the same key says it for that screen's keys)
        if action == "refuse_write":
            return self.floor_app.read_only
        return self.floor_app.allows(action)

    def action_refuse_write(self, what: str) -> None:
        self.floor_app.refuse_write(what)
