"""Help (``?``): every key of the current screen and of the app, and what read-only means."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "floorctl terminal: a client of the floor's daemon (MQTT). Digits switch screens: "
    "1 Floor, 2 Alarms, 3 Schedule, 4 Devices, 5 Audit. ctrl+p opens the command palette "
    "(screens, actions, themes). On the Schedule screen, b opens the selected batch's "
    "environmental record. Write actions (acknowledge, shelve, device commands, the actual "
    "start and end of an operation) ask for your user id, password or PIN and a comment, and "
    "show the daemon's answer."
)


def help_text(bindings: dict[str, ActiveBinding], read_only: bool) -> Text:
    text = Text(INTRO + "\n\n")
    if read_only:
        text.append(
            "READ-ONLY: this terminal was started with --read-only; write actions are hidden "
            "and refused.\n\n",
            style="bold",
        )
    seen: set[tuple[str, str]] = set()
    rows = []
    for key, active in bindings.items():
        b = active.binding
        what = b.description or b.action
        if (what, b.action) in seen or b.action.startswith("refuse_write"):
            continue
        seen.add((what, b.action))
        shown = b.key_display or key
        rows.append((shown, what, "" if active.enabled else " (not available here)"))
    for shown, what, note in sorted(rows, key=lambda r: r[1].lower()):
        text.append(f"{shown:>14}  ", style="bold")
        text.append(f"{what}{note}\n")
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, bindings: dict[str, ActiveBinding], *, read_only: bool) -> None:
        super().__init__()
        self.bindings = bindings
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("Keys", id="help-title")
            yield Static(help_text(self.bindings, self.read_only), id="help-body")
            yield Static("esc or ? closes this", classes="muted")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
