"""Experimental monkeypatches of floorctl, for measuring proposed fixes (never on by default).

``benchmarks/ingest.py --patches NAME`` applies them inside the daemon worker processes only,
so a proposed change can be measured before anyone edits floorctl/. Each patch is the smallest
stand-in for the fix described in docs/performance.md; its runs go under ``"experiments"`` in
the results file, apart from the real ones.

No patch is pending: every measured fix is in floorctl.

Patches removed because their fixes are now in floorctl: ``pace`` (the state publisher's
paced, coalescing rounds, ``publisher.PACE``), ``quiet``
(aiomqtt's pending-calls threshold), ``cancel`` (``floorctl.aio.reraise_cancel``),
``fastdecode`` (``decode.FieldDecoder``); ``stagger`` and ``window20`` (the awaited window of
publishes they reshaped is gone); ``gcfreeze`` (``floorctl run`` freezes, and the workers
now do as it does).
"""

from __future__ import annotations

PATCHES: tuple[str, ...] = ()


def apply(names: list[str]) -> None:
    for name in names:
        if name not in PATCHES:
            raise SystemExit(f"unknown patch {name!r} (known: {', '.join(PATCHES)})")
        globals()[f"_patch_{name}"]()
