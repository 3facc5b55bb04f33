"""PolledDriver's schedule and SubscribedDriver's error handling (pure logic, no transport)."""

from __future__ import annotations

import asyncio
import time

from floorctl.config import DeviceConfig, Duration, FieldConfig, Ident
from floorctl.driver import (
    DeviceContext,
    DeviceUnavailable,
    PolledDriver,
    SubscribedDriver,
    phase_offset,
)
from floorctl.model import Quality, Reading


def device(interval: float, timeout: float | None = None) -> DeviceConfig:
    return DeviceConfig(
        id=Ident("dev1"),
        kind="test",
        interval=Duration(interval),
        timeout=None if timeout is None else Duration(timeout),
        fields=(FieldConfig(name=Ident("x"), unit="Pa"), FieldConfig(name=Ident("y"))),
    )


class Clocked(PolledDriver):
    def __init__(self, ctx: DeviceContext, work: list[float]) -> None:
        super().__init__(ctx)
        self.work = work
        self.starts: list[float] = []

    async def poll(self) -> list[Reading]:
        self.starts.append(time.monotonic())
        w = self.work.pop(0) if self.work else 0.0
        if w < 0:
            raise DeviceUnavailable("refused")
        await asyncio.sleep(w)
        return [Reading("dev1", "x", 1.0, Quality.GOOD)]


async def collect(driver: PolledDriver, seconds: float) -> list[list[Reading]]:
    out: list[list[Reading]] = []

    async def run() -> None:
        async for batch in driver.readings():
            out.append(batch)

    task = asyncio.create_task(run())
    await asyncio.sleep(seconds)
    task.cancel()
    return out


async def test_fixed_rate_without_drift() -> None:
    ctx = DeviceContext(device(0.05), None, None)
    d = Clocked(ctx, [0.02] * 100)  # each poll takes 20 ms of a 50 ms period
    await collect(d, 0.5 + phase_offset("dev1", 0.05))
    gaps = [b - a for a, b in zip(d.starts, d.starts[1:], strict=False)]
    assert len(gaps) >= 7
    # fixed rate: the period holds despite 20 ms polls (sleeping after each would give 70 ms)
    assert abs(sum(gaps) / len(gaps) - 0.05) < 0.008
    assert ctx.counters.overruns == 0
    assert max(ctx.counters.jitter) < 0.03


async def test_overrun_skips_missed_ticks_and_counts_them() -> None:
    ctx = DeviceContext(device(0.05, timeout=0.04), None, None)
    d = Clocked(ctx, [0.0, 0.03, 0.0, 0.0])
    await collect(d, 0.3 + phase_offset("dev1", 0.05))
    assert ctx.counters.polls >= 4
    # a timed-out poll is an error, not a reading, and nothing bursts to catch up
    d2_ctx = DeviceContext(device(0.05, timeout=0.01), None, None)
    d2 = Clocked(d2_ctx, [0.2, 0.0, 0.0])
    batches = await collect(d2, 0.4 + phase_offset("dev1", 0.05))
    assert d2_ctx.counters.errors >= 1
    assert "no answer within" in (d2_ctx.counters.last_error or "")
    assert len(batches) >= 2


async def test_unavailable_device_counts_errors_and_yields_nothing() -> None:
    ctx = DeviceContext(device(0.02), None, None)
    d = Clocked(ctx, [-1.0] * 100)
    batches = await collect(d, 0.2)
    assert batches == []
    assert ctx.counters.errors >= 3 and ctx.counters.last_error == "refused"


class Exploding(SubscribedDriver):
    def subscriptions(self) -> list[tuple[str, int]]:
        return []

    def parse(self, topic: str, payload: bytes, received: float) -> list[Reading]:
        raise ValueError("bad frame")


async def test_parse_exception_becomes_bad_reading_per_field() -> None:
    ctx = DeviceContext(device(1.0), None, None)
    d = Exploding(ctx)
    d._on_message("t/x", b"\x00")
    batch = await anext(d.readings())
    assert [(r.point, r.quality, r.value) for r in batch] == [
        ("x", Quality.BAD, None),
        ("y", Quality.BAD, None),
    ]
    assert batch[0].unit == "Pa" and batch[0].detail == "ValueError: bad frame"
    assert ctx.counters.errors == 1


def test_phase_offset_is_stable_and_within_interval() -> None:
    offsets = {phase_offset(f"dev{i}", 1.0) for i in range(500)}
    assert all(0 <= o < 1.0 for o in offsets)
    assert len(offsets) > 450  # spread out, not all at once
    assert phase_offset("dev7", 2.0) == phase_offset("dev7", 2.0)


def test_driver_status_goes_into_device_status() -> None:
    from floorctl.daemon import _driver_status

    class WithStatus:
        def status(self):
            return {"serial": "B123456789"}

    class Broken:
        def status(self):
            raise RuntimeError("bug")

    assert _driver_status(WithStatus()) == {"serial": "B123456789"}  # type: ignore[arg-type]
    assert _driver_status(Broken()) is None  # type: ignore[arg-type]
    assert _driver_status(None) is None
