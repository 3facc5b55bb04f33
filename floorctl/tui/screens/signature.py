"""The signature modal: every write action (alarm actions, device commands, actual start and
end of batch operations) goes through it.

It asks for the user id, the password or PIN (hidden) and the comment (and, where the action
takes them, a duration or a time), sends the signed request, and shows the daemon's answer:
accepted / done / recorded, or exactly why it was refused. The secret is cleared from the form
as soon as it has been sent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import click
from attrs import field, frozen
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from floorctl.alarms.cli import parse_when
from floorctl.client import ClientError
from floorctl.commands import Signer
from floorctl.config import parse_duration

#: (signer, args) -> the daemon's reply document
Send = Callable[[Signer, dict[str, Any]], Awaitable[Mapping[str, Any]]]


@frozen
class SignRequest:
    """What the modal asks for and how it sends it.

    :param choices: device commands: the commands to pick from (the choice goes to ``send``
        as ``args["command"]``).
    :param duration: shelving: ask for the duration (``args["duration"]``, seconds).
    :param ask_time: actuals: ask for an optional time (``args["time"]``: UNIX seconds, None
        when left empty, meaning now): an ISO date and time (UTC unless it says) or a duration
        ago ("20m"), as ``floorctl batch start --at`` takes it.
    :param accepted_as: the word an accepted reply is shown with ("recorded"; default: the
        reply's status).
    :param clock: UNIX time now, for a time given as a duration ago (the app's clock).
    """

    title: str
    detail: str
    send: Send
    comment_required: bool = False
    duration: str | None = None
    choices: tuple[tuple[str, str], ...] = ()
    ask_time: bool = False
    accepted_as: str | None = None
    clock: Callable[[], float] = field(default=time.time)


def describe_reply(reply: Mapping[str, Any], accepted_as: str | None = None) -> tuple[bool, str]:
    """(accepted, the sentence shown) for a signed request's reply (alarm action, device
    command, actual); ``accepted_as`` replaces the status word of an accepted reply."""
    status = reply.get("status")
    seq = reply.get("audit_seq")
    entry = f" (audit entry {seq})" if seq is not None else ""
    if status in ("accepted", "done"):
        result = reply.get("result")
        word = accepted_as or status
        return True, f"{word}: {result}{entry}" if result else f"{word}{entry}"
    reason = reply.get("reason")
    error = reply.get("error") or "no reason given"
    return False, f"{status} ({reason}): {error}{entry}" if reason else f"{status}: {error}{entry}"


class SignatureModal(ModalScreen[bool]):
    """Dismissed with True when the daemon accepted (or did) it, False otherwise."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="signature.close"),
    ]

    def __init__(self, request: SignRequest) -> None:
        super().__init__()
        self.request = request
        self.accepted = False

    def compose(self) -> ComposeResult:
        r = self.request
        with Vertical(id="signature"):
            yield Label(r.title, id="sign-title")
            yield Static(r.detail, id="sign-detail")
            if r.choices:
                yield Select(
                    [(label, value) for value, label in r.choices],
                    prompt="command",
                    allow_blank=False,
                    id="sign-command",
                )
            yield Input(placeholder="user id", id="sign-user")
            yield Input(placeholder="password or PIN", password=True, id="sign-secret")
            comment = "comment (required)" if r.comment_required else "comment (optional)"
            yield Input(placeholder=comment, id="sign-comment")
            if r.duration is not None:
                yield Input(
                    value=r.duration, placeholder="duration: 30m, 2h, 90s", id="sign-duration"
                )
            if r.ask_time:
                yield Input(
                    placeholder="time (optional, empty: now): 2026-03-05T14:20 (UTC unless it "
                    "says), or 20m (ago)",
                    id="sign-time",
                )
            yield Static("", id="sign-outcome")
            with Horizontal(id="sign-buttons"):
                yield Button("Sign and send", variant="primary", id="sign-send")
                yield Button("Cancel", id="sign-cancel")

    def on_mount(self) -> None:
        self.query_one("#sign-user", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        order = ["sign-user", "sign-secret", "sign-comment", "sign-duration", "sign-time"]
        present = [i for i in order if self.query(f"#{i}")]
        ident = event.input.id or ""
        if ident in present and present.index(ident) < len(present) - 1:
            self.query_one(f"#{present[present.index(ident) + 1]}", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "sign-send":
            self.submit()
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(self.accepted)

    def _outcome(self, text: str, kind: str) -> None:
        out = self.query_one("#sign-outcome", Static)
        for cls in ("outcome-accepted", "outcome-refused", "outcome-pending"):
            out.remove_class(cls)
        out.add_class(f"outcome-{kind}")
        out.update(text)

    def submit(self) -> None:
        if self.accepted:
            return
        user = self.query_one("#sign-user", Input).value.strip()
        secret = self.query_one("#sign-secret", Input).value
        comment = self.query_one("#sign-comment", Input).value.strip()
        args: dict[str, Any] = {}
        if not user:
            self._outcome("not sent: the user id is required", "refused")
            return
        if not secret:
            self._outcome("not sent: the password or PIN is required", "refused")
            return
        if self.request.comment_required and not comment:
            self._outcome("not sent: a comment is required for this action", "refused")
            return
        if self.request.duration is not None:
            raw = self.query_one("#sign-duration", Input).value.strip()
            try:
                args["duration"] = float(parse_duration(raw))
            except ValueError as exc:
                self._outcome(f"not sent: duration: {exc}", "refused")
                return
        if self.request.ask_time:
            raw = self.query_one("#sign-time", Input).value.strip()
            try:
                args["time"] = parse_when(raw, self.request.clock()) if raw else None
            except click.BadParameter as exc:
                self._outcome(f"not sent: time: {exc.message}", "refused")
                return
        if self.request.choices:
            args["command"] = str(self.query_one("#sign-command", Select).value)
        self.query_one("#sign-secret", Input).value = ""  # the secret is used once
        self._outcome("sent; waiting for the daemon ...", "pending")
        self.query_one("#sign-send", Button).disabled = True
        self._send(Signer(user, secret, comment), args)

    @work(exclusive=True, group="signature")
    async def _send(self, signer: Signer, args: dict[str, Any]) -> None:
        try:
            reply = await self.request.send(signer, args)
        except ClientError as exc:
            ok, text = False, f"not sent: {exc}"
        else:
            ok, text = describe_reply(reply, self.request.accepted_as)
        self.accepted = ok
        self._outcome(text, "accepted" if ok else "refused")
        send = self.query_one("#sign-send", Button)
        send.disabled = ok
        self.query_one("#sign-cancel", Button).label = "Close"
        self.app.notify(f"{self.request.title}: {text}", severity="information" if ok else "error")
        if not ok:
            self.query_one("#sign-secret", Input).focus()
