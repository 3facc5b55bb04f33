"""State publishing logic: coalescing, deadband, quality transitions, republish."""

from __future__ import annotations

import asyncio
import json

from floorctl.hubs.mqtt import NotConnected
from floorctl.model import Quality, Reading
from floorctl.publisher import StatePublisher, Topics


class FakeHub:
    """Records what is handed over; can refuse (no connection, queue full)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.sent: list[tuple[str, dict]] = []
        self.fail = False

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        if self.fail:
            raise NotConnected("down")
        assert retain
        self.sent.append((topic, json.loads(payload)))


def r(value: float | None, quality: Quality = Quality.GOOD, point: str = "p") -> Reading:
    return Reading("d", point, value, quality)


async def settle(pub: StatePublisher) -> None:
    for _ in range(200):
        await asyncio.sleep(0.005)
        if pub.backlog == 0:
            await asyncio.sleep(0.01)
            return
    raise AssertionError("publisher did not drain")


async def run_pub(pub: StatePublisher):
    return asyncio.create_task(pub.run())


async def test_first_value_then_deadband_suppresses_small_moves() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), deadbands={("d", "p"): 0.5})  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(10.0))
    await settle(pub)
    pub.offer(r(10.3))  # within the deadband
    pub.offer(r(10.4))
    await settle(pub)
    pub.offer(r(11.0))  # beyond it
    await settle(pub)
    task.cancel()
    assert [m["value"] for _, m in hub.sent] == [10.0, 11.0]
    assert pub.counters.suppressed == 2
    assert hub.sent[0][0] == "f/point/d/p"


async def test_updates_coalesce_between_publishing_rounds() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"))  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(0.0))
    for i in range(1, 101):  # all before the publisher's next turn
        pub.offer(r(float(i)))
    await settle(pub)
    task.cancel()
    values = [m["value"] for _, m in hub.sent]
    assert values[0] == 0.0 and values[-1] == 100.0
    assert len(values) <= 3  # 101 readings, at most a few messages
    assert pub.counters.coalesced >= 97


async def test_quality_transitions_are_never_coalesced() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"))  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(1.0))
    seq = [
        Quality.STALE,
        Quality.GOOD,
        Quality.BAD,
        Quality.GOOD,
        Quality.DEVICE_ERROR,
        Quality.GOOD,
    ]
    for q in seq:
        pub.offer(r(2.0 if q is Quality.GOOD else None, q))
    await settle(pub)
    task.cancel()
    qualities = [m["quality"] for _, m in hub.sent]
    assert qualities == ["good", *[q.value for q in seq]]


async def test_failed_publishes_are_retried_after_reconnect() -> None:
    hub = FakeHub()
    hub.fail = True
    pub = StatePublisher(hub, Topics("f"))  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(1.0))
    pub.offer(r(1.0, Quality.STALE))
    await asyncio.sleep(0.1)
    assert hub.sent == []
    hub.fail = False
    await settle(pub)
    task.cancel()
    assert [m["quality"] for _, m in hub.sent] == ["good", "stale"]


async def test_republish_marks_quiet_points_due() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), republish=0.05)  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(5.0, point="a"))
    pub.offer(r(6.0, point="b"))
    await settle(pub)
    await asyncio.sleep(0.06)
    assert pub.due_for_republish() == 2
    await settle(pub)
    task.cancel()
    assert sorted(t for t, _ in hub.sent) == [
        "f/point/d/a",
        "f/point/d/a",
        "f/point/d/b",
        "f/point/d/b",
    ]


async def test_nothing_is_sent_while_disconnected_and_backlog_is_per_point() -> None:
    hub = FakeHub()
    hub.connected.clear()
    pub = StatePublisher(hub, Topics("f"))  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(1.0))
    for i in range(1000):  # a long outage with a fast point: one pending entry, not 1000
        pub.offer(r(float(i)))
    await asyncio.sleep(0.02)
    assert hub.sent == [] and pub.backlog == 2
    hub.connected.set()
    pub._wake.set()
    await settle(pub)
    task.cancel()
    assert [m["value"] for _, m in hub.sent] == [1.0, 999.0]


async def test_resync_republishes_every_point() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"))  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(5.0, point="a"))
    pub.offer(r(6.0, point="b"))
    await settle(pub)
    hub.sent.clear()
    pub.resync()  # a reconnect: the broker may have lost the retained state
    await settle(pub)
    task.cancel()
    assert sorted((t, m["value"]) for t, m in hub.sent) == [
        ("f/point/d/a", 5.0),
        ("f/point/d/b", 6.0),
    ]


async def test_updates_go_in_paced_rounds_but_quality_changes_do_not_wait() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), pace=0.2)  # type: ignore[arg-type]
    task = await run_pub(pub)
    pub.offer(r(0.0))
    await settle(pub)
    start = asyncio.get_running_loop().time()
    for i in range(1, 41):  # a fast point: 40 updates over ~0.4 s
        pub.offer(r(float(i)))
        await asyncio.sleep(0.01)
    values = [m["value"] for _, m in hub.sent]
    # ~ one message per 0.2 s round, not 40 (a loaded machine stretches the loop: more rounds)
    rounds = (asyncio.get_running_loop().time() - start) / 0.2
    assert len(values) <= max(5, int(rounds) + 2), values
    pub.offer(r(None, Quality.STALE))  # a quality change goes out at once
    await asyncio.sleep(0.02)
    assert hub.sent[-1][1]["quality"] == "stale"
    assert asyncio.get_running_loop().time() - start < 1.0
    await settle(pub)
    task.cancel()
