"""asyncio helpers."""

from __future__ import annotations

import asyncio


def reraise_cancel() -> None:
    """Raise CancelledError if the current task was cancelled while its await still returned.

    On Python 3.11, ``asyncio.wait_for`` (used inside pymodbus and aiomqtt) returns the result
    instead of raising when the result and a cancellation arrive together (CPython gh-86296,
    fixed in 3.12): the task loses its only cancellation and a clean stop hangs. Call this after
    awaiting such a library call.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
