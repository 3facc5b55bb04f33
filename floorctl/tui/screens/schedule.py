"""Schedule: the current schedule as a text Gantt per room and unit (filled in below)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget
from textual.widgets import Static

from floorctl.tui.screens.base import FloorView


class ScheduleScreen(FloorView):
    def body(self) -> Iterable[Widget]:
        app = self.floor_app
        if app.plan_path is None:
            yield Static("no plan: start with --plan PLAN (and --schedule SCHEDULE)", id="gantt")
        else:
            yield Static(f"plan {app.plan_path}", id="gantt")
