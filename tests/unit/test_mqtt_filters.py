"""The MQTT hub's topic-filter matching (floorctl.hubs.mqtt.filter_matches): MQTT 3.1.1
section 4.7, and the same answers as aiomqtt's ``Topic.matches`` wherever that follows it."""

from __future__ import annotations

import gc

import aiomqtt
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from floorctl.hubs.mqtt import filter_levels, filter_matches


def matches(topic_filter: str, topic: str) -> bool:
    return filter_matches(filter_levels(topic_filter), topic.split("/"))


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # '#' includes the parent
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "sport/tennis", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),  # '+' matches an empty level
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("floorctl/+/state", "floorctl/env-1/state", True),
        ("floorctl/+/state", "floorctl/env-1/stats", False),
        ("floorctl/+/state", "floorctl/env-1/state/x", False),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        # a filter starting with a wildcard does not match a '$' topic (4.7.2)
        ("#", "$SYS/broker/load", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("$share/g/floorctl/+/state", "floorctl/env-1/state", True),
    ],
)
def test_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


level = st.sampled_from(["a", "b", "", "env-1", "$x"])
filter_level = st.sampled_from(["a", "b", "", "+", "env-1"])


@given(
    topic=st.lists(level, min_size=1, max_size=5).map("/".join).filter(bool),  # MQTT: >= 1 char
    body=st.lists(filter_level, min_size=1, max_size=5),
    hash_end=st.booleans(),
)
def test_agrees_with_aiomqtt(topic: str, body: list[str], hash_end: bool) -> None:
    topic_filter = "/".join([*body, "#"] if hash_end else body)
    assume(topic_filter)  # an empty filter is not a filter
    expected = aiomqtt.Topic(topic).matches(topic_filter)
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        expected = False  # 4.7.2, which aiomqtt does not apply
    assert matches(topic_filter, topic) is expected


def test_matching_leaves_no_reference_cycles() -> None:
    levels = filter_levels("floorctl/+/state/#")
    topic = "floorctl/env-1/state/dp".split("/")
    gc.collect()
    gc.disable()
    try:
        for _ in range(1000):
            assert filter_matches(levels, topic)
        assert gc.collect() == 0  # aiomqtt's Topic.matches leaves 2 objects per call here
    finally:
        gc.enable()
