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
        self.qos: list[int] = []
        self.times: list[float] = []  # loop time of each hand-over
        self.fail = False

    def publish_nowait(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        if self.fail:
            raise NotConnected("down")
        assert retain
        self.sent.append((topic, json.loads(payload)))
        self.qos.append(qos)
        self.times.append(asyncio.get_running_loop().time())


def r(value: float | None, quality: Quality = Quality.GOOD, point: str = "p") -> Reading:
    return Reading("d", point, value, quality)


async def settle(pub: StatePublisher, timeout: float = 1.0) -> None:
    for _ in range(int(timeout / 0.005)):
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


async def test_ordinary_updates_at_the_point_qos_quality_changes_at_qos_1() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), pace=0.05)  # type: ignore[arg-type]
    assert pub.qos == 0  # the default: retained state that the next round corrects
    task = await run_pub(pub)
    pub.offer(r(1.0))  # the first value of a point: a quality change (none -> good)
    await settle(pub)
    pub.offer(r(2.0))
    await settle(pub)
    pub.offer(r(None, Quality.BAD))
    await settle(pub)
    task.cancel()
    assert [(m["value"], m["quality"]) for _, m in hub.sent] == [
        (1.0, "good"),
        (2.0, "good"),
        (None, "bad"),
    ]
    assert hub.qos == [1, 0, 1]


async def test_a_round_is_spread_over_the_interval_and_a_quality_change_cuts_in() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), pace=2.0)  # type: ignore[arg-type]
    task = await run_pub(pub)
    points = [f"p{i}" for i in range(100)]  # 5 windows of 20
    for p in points:
        pub.offer(r(0.0, point=p))  # first values: quality changes, at once, not a round
    await settle(pub)
    hub.sent.clear()
    hub.times.clear()
    for p in points:
        pub.offer(r(1.0, point=p))
    await asyncio.sleep(0.05)  # inside the round (1 s): its first window went out, not all
    assert 20 <= len(hub.sent) < 100
    pub.offer(r(None, Quality.STALE, point="p99"))  # a quality change does not wait for the round
    await asyncio.sleep(0.05)
    assert any(m["quality"] == "stale" for _, m in hub.sent)
    assert len(hub.sent) < 100
    await settle(pub, timeout=5.0)
    task.cancel()
    good = [t for (_, m), t in zip(hub.sent, hub.times, strict=True) if m["quality"] == "good"]
    # p99's window carries its newest reading, the stale one, which went out already
    assert len(good) == 99
    # the windows are spread over about SPREAD x pace = 1 s: 4 pauses of 0.25 s, the first cut
    # short by the quality change
    assert good[-1] - good[0] >= 0.5


async def test_a_point_moving_during_its_round_waits_for_the_next() -> None:
    hub = FakeHub()
    pub = StatePublisher(hub, Topics("f"), pace=1.0)  # type: ignore[arg-type]
    task = await run_pub(pub)
    points = [f"p{i}" for i in range(60)]  # 3 windows, 0.17 s apart
    for p in points:
        pub.offer(r(0.0, point=p))
    await settle(pub)
    hub.sent.clear()
    for p in points:
        pub.offer(r(1.0, point=p))
    await asyncio.sleep(0.01)  # the first window (p0..p19) is out
    pub.offer(r(2.0, point="p0"))  # moves again: not in this round
    pub.offer(r(2.0, point="p59"))  # not sent yet: its window takes the newest value
    await settle(pub, timeout=5.0)
    first = hub.sent[:60]
    assert [m["point"] for _, m in first] == points
    assert {m["point"]: m["value"] for _, m in first}["p59"] == 2.0
    rest = hub.sent[60:]
    assert [(m["point"], m["value"]) for _, m in rest] == [("p0", 2.0)]
    task.cancel()
