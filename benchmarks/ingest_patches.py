"""Experimental monkeypatches of floorctl, for measuring proposed fixes (never on by default).

``benchmarks/ingest.py --patches pace`` applies them inside the daemon worker processes only,
so a proposed change can be measured before anyone edits floorctl/. Each patch is the smallest
stand-in for the fix described in docs/performance.md; its runs go under ``"experiments"`` in
the results file, apart from the real ones.

- ``pace``: after each drain of its dirty points, the state publisher waits ``PACE`` (100 ms)
  before the next, so readings arriving meanwhile coalesce into one message per point: at
  most one message per point per 100 ms, the latest value winning. Since
  ``MqttHub.publish_nowait`` (04963f7) a window is handed to paho at once, so nothing is in
  flight long enough for readings to coalesce: every changed reading becomes a QoS 1 message
  and a PUBACK to read back. (Pacing by paho's outgoing queue instead was tried and did not
  help: the broker acknowledges a window of 100 within a loop turn or two.)

Patches removed because their fixes are now in floorctl (dfc8bd9, 04963f7): ``quiet``
(aiomqtt's pending-calls threshold), ``cancel`` (``floorctl.aio.reraise_cancel``),
``fastdecode`` (``decode.FieldDecoder``); ``stagger`` and ``window20`` (the awaited window of
publishes they reshaped is gone); ``gcfreeze`` (``floorctl run`` freezes, and the workers
now do as it does).
"""

from __future__ import annotations

import asyncio
from typing import Any

PATCHES = ("pace",)


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r} (known: {', '.join(PATCHES)})")
        globals()[f"_patch_{name}"]()


#: the pause after each drain of the state publisher (``pace``)
PACE = 0.1


def _patch_pace() -> None:
    from floorctl.publisher import StatePublisher

    drain = StatePublisher._drain

    async def _drain(self: Any) -> None:
        await drain(self)
        await asyncio.sleep(PACE)  # readings offered meanwhile coalesce in _dirty

    StatePublisher._drain = _drain  # type: ignore[method-assign]
