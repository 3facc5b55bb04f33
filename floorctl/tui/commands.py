"""Command palette (ctrl+p): the screens and the actions of the current screen, titled
"noun: Verb". Themes come from Textual's own system commands."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from floorctl.tui.app import FloorApp

SCREEN_COMMANDS = (
    ("floor", "Screen: Floor", "rooms, their units and the last hour (1)"),
    ("alarms", "Screen: Alarms", "alarms by priority; shelved, suppressed (2)"),
    ("schedule", "Screen: Schedule", "Gantt, batches, regenerate (3)"),
    ("devices", "Screen: Devices", "connection state, counters, commands (4)"),
    ("audit", "Screen: Audit", "audit trail and chain verification (5)"),
)
#: (screen mode, action, title, help); write actions are left out in --read-only. An action
#: runs on the mode's top screen (the batch view, when open over the Schedule screen, has
#: ``batch_view`` (refresh) and ``actual`` of its own).
ACTION_COMMANDS = (
    ("alarms", "ack", "Alarm: Acknowledge", "the selected alarm, signed"),
    ("alarms", "shelve", "Alarm: Shelve", "the selected alarm for a while, signed"),
    ("alarms", "unshelve", "Alarm: Unshelve", "the selected alarm, signed"),
    ("alarms", "reset", "Alarm: Reset", "the selected latched alarm, signed"),
    ("alarms", "filter", "Alarms: Filter", "show only rows containing a text"),
    ("devices", "device_command", "Device: Run command", "tare, zero, ... signed"),
    ("schedule", "regenerate", "Schedule: Regenerate", "run the solver, then review"),
    ("schedule", "batch_view", "Schedule: Batch record", "the selected batch's record, for QA (b)"),
    (
        "schedule",
        "actual('start')",
        "Batch: Record actual start",
        "of the selected operation, signed (s)",
    ),
    (
        "schedule",
        "actual('end')",
        "Batch: Record actual end",
        "of the selected operation, signed (e)",
    ),
    ("audit", "reload", "Audit: Reload and verify", "the newest entries, chain verified"),
    ("floor", "refresh_history", "Floor: Reload history", "the selected room's last hour"),
)


class FloorCommands(Provider):
    """Screens and actions for the palette."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = cast("FloorApp", self.app)
        out: list[tuple[str, str, Callable[[], object]]] = [
            (title, help_text, partial(app.switch_mode, mode))
            for mode, title, help_text in SCREEN_COMMANDS
        ]
        for mode, action, title, help_text in ACTION_COMMANDS:
            if not app.allows(action.split("(", 1)[0]):
                continue
            out.append((title, help_text, partial(app.run_on_mode, mode, action)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
