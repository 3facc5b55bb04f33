"""The line at the top of every screen: floor, daemon, connection, mode, time, banner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from floorctl.tui.format import age, clock_time
from floorctl.tui.widgets.text import set_text

if TYPE_CHECKING:
    from floorctl.tui.app import FloorApp


class StatusBar(Vertical):
    """Floor name, daemon state (text and colour), the source, READ-ONLY, the time; the banner
    (the demo's users) on a second line when there is one."""

    def compose(self) -> ComposeResult:
        yield Static(id="status-line")
        yield Static(id="banner-line")

    def on_mount(self) -> None:
        self.update_status()

    def update_status(self) -> None:
        app = cast("FloorApp", self.app)
        state = app.state
        now = app.clock()
        floor = app.config.floor.name or app.config.floor.id
        daemon: dict[str, Any] | None = state.daemon
        line = self.query_one("#status-line", Static)
        if daemon is None:
            text = "daemon: no status yet"
            shown = "daemon-unknown"
        elif daemon.get("state") == "online":
            since = daemon.get("since")
            up = age(now - since) if isinstance(since, int | float) else "-"
            text = f"daemon ONLINE (up {up})"
            shown = "daemon-online"
        else:
            text = f"daemon {str(daemon.get('state') or 'unknown').upper()}"
            shown = "daemon-offline"
        # only what changed: the bar is redrawn with every redraw of the screen
        for cls in ("daemon-online", "daemon-offline", "daemon-unknown"):
            line.set_class(cls == shown, cls)
        parts = [f"floorctl {floor}", text, app.source_status]
        if app.read_only:
            parts.append("READ-ONLY")
        parts.append(clock_time(now))
        set_text(line, " | ".join(parts))
        banner = self.query_one("#banner-line", Static)
        banner.display = bool(app.banner)
        if app.banner:
            set_text(banner, app.banner)
