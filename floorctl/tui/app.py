"""FloorApp: the terminal UI of a floor (docs/tui.md).

The app is a client of the daemon: a worker reads the state topics from a
:class:`~floorctl.tui.source.StateSource` into a pure :class:`~floorctl.tui.state.FloorState`,
and the screens redraw from it at most :data:`REDRAW_INTERVAL` apart. Signed actions go to the
daemon as requests through the same source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.timer import Timer

from floorctl.config import Config
from floorctl.kinds import KindRegistry
from floorctl.tui.commands import FloorCommands
from floorctl.tui.messages import FloorUpdated, SourceEnded, SourceStatus
from floorctl.tui.screens.alarms import AlarmsScreen
from floorctl.tui.screens.audit import AuditScreen
from floorctl.tui.screens.base import FloorView
from floorctl.tui.screens.devices import DevicesScreen
from floorctl.tui.screens.floor import FloorScreen
from floorctl.tui.screens.help import HelpScreen
from floorctl.tui.screens.schedule import ScheduleScreen
from floorctl.tui.source import MqttSource, StateSource
from floorctl.tui.state import TOPIC_KINDS, FloorState

#: seconds between redraws while messages keep arriving (coalescing)
REDRAW_INTERVAL = 0.25
#: seconds between redraws of clock-driven text (ages, shelf expiry) when nothing arrives
TICK_INTERVAL = 1.0

#: the actions that change the floor or a file: hidden, and refused, in --read-only
WRITE_ACTIONS = frozenset(
    {"ack", "shelve", "unshelve", "reset", "device_command", "regenerate", "accept", "actual"}
)
SCREENS = (
    ("floor", "1", "Floor"),
    ("alarms", "2", "Alarms"),
    ("schedule", "3", "Schedule"),
    ("devices", "4", "Devices"),
    ("audit", "5", "Audit"),
)


class FloorApp(App[None]):
    """The floor's terminal UI. See floorctl/tui/__init__.py for the stable interface."""

    CSS_PATH = "floorctl.tcss"
    TITLE = "floorctl"
    MODES: ClassVar[dict[str, Any]] = {
        "floor": FloorScreen,
        "alarms": AlarmsScreen,
        "schedule": ScheduleScreen,
        "devices": DevicesScreen,
        "audit": AuditScreen,
    }
    DEFAULT_MODE = "floor"
    COMMANDS = App.COMMANDS | {FloorCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"show('{mode}')", title, id=f"screen.{mode}", show=False)
            for mode, key, title in SCREENS
        ),
        Binding("question_mark,f1", "help", "Help", id="help", key_display="?"),
        Binding("q", "quit", "Quit", id="quit"),
        # in --read-only the screens' write keys are hidden; these say why nothing happens
        *(
            Binding(key, f"refuse_write('{what}')", what, show=False, id=f"read-only.{key}")
            for key, what in (
                ("a", "acknowledge"),
                ("s", "shelve"),
                ("u", "unshelve"),
                ("x", "reset"),
                ("c", "device commands"),
                ("g", "regenerate"),
            )
        ),
    ]

    def __init__(
        self,
        config: Config,
        *,
        read_only: bool = False,
        plan: Path | None = None,
        schedule: Path | None = None,
        banner: str | None = None,
        source: StateSource | None = None,
        clock: Callable[[], float] = time.time,
        kinds: KindRegistry | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        #: the device kinds (for each device's commands); default: the installed plugins'
        self.kinds = kinds
        self.read_only = read_only
        self.plan_path = plan
        self.schedule_path = schedule
        self.banner = banner
        self.clock = clock
        self.state = FloorState(config)
        self.source_status = "connecting"
        if source is None:
            source = MqttSource(
                config.state_connection,
                config.floor.prefix,
                on_status=lambda text: self.post_message(SourceStatus(text)),
            )
        self.source: StateSource = source
        self.source_status = f"{source.description}: connecting"
        self._last_redraw = 0.0
        self._redraw_timer: Timer | None = None
        #: redraws done (benchmarks/tui.py reads it)
        self.redraws = 0

    # --- live data ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.run_worker(self._read_source(), name="floor-source", exclusive=True, group="source")
        self.set_interval(TICK_INTERVAL, self._tick)

    async def _read_source(self) -> None:
        state = self.state
        async for topic, payload in self.source.messages():
            clean = not state.changed
            state.apply(topic, payload)
            if clean and state.changed:
                self.post_message(FloorUpdated())
        self.post_message(SourceEnded())

    def on_floor_updated(self, _: FloorUpdated) -> None:
        wait = self._last_redraw + REDRAW_INTERVAL - time.monotonic()
        if wait <= 0:
            self.redraw()
        elif self._redraw_timer is None:
            self._redraw_timer = self.set_timer(wait, self.redraw)

    def on_source_status(self, message: SourceStatus) -> None:
        self.source_status = message.text
        self.redraw(frozenset({"source"}))

    def on_source_ended(self, _: SourceEnded) -> None:
        self.source_status = f"{self.source.description} (no live updates)"
        self.redraw(frozenset({"source"}))

    def _tick(self) -> None:
        self.redraw(frozenset({"clock"}))

    def redraw(self, extra: frozenset[str] = frozenset()) -> None:
        """Push what changed down to the screens of the current mode."""
        self._redraw_timer = None
        self._last_redraw = time.monotonic()
        changes = self.state.take_changes() | extra
        if not changes:
            return
        self.redraws += 1
        for screen in self.screen_stack:
            if isinstance(screen, FloorView):
                screen.refresh_floor(changes)

    def redraw_all(self) -> None:
        self.redraw(frozenset(TOPIC_KINDS) | {"clock", "source"})

    # --- actions -----------------------------------------------------------------------------

    def action_show(self, mode: str) -> None:
        self.switch_mode(mode)

    async def run_on_mode(self, mode: str, action: str) -> None:
        """Switch to ``mode`` and run one of its screen's actions (palette commands)."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        await self.run_action(action, self.screen)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.active_bindings, read_only=self.read_only))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refuse_write":
            return self.read_only
        return True

    def action_refuse_write(self, what: str) -> None:
        self.refuse_write(what)

    def refuse_write(self, what: str) -> None:
        self.notify(
            f"read-only terminal: {what} is not available (started with --read-only)",
            title="read-only",
            severity="warning",
        )

    def allows(self, action: str) -> bool:
        """Whether a write action may run here (False in --read-only)."""
        return not (self.read_only and action in WRITE_ACTIONS)
