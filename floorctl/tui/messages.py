"""Messages of the terminal UI (children tell parents; the app tells screens by attributes)."""

from __future__ import annotations

from textual.message import Message


class FloorUpdated(Message):
    """The state model changed. Posted by the live worker when the model goes from clean to
    dirty; bursts coalesce (at most one is waiting), and the app redraws at most a few times a
    second."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FloorUpdated)


class SourceStatus(Message):
    """The live source's connection changed (connected, unreachable and retrying)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SourceStatus)


class SourceEnded(Message):
    """A recorded source has no more messages (a live one never ends)."""
