"""Checks on a technician's actual start and end of an operation (pure logic)."""

from __future__ import annotations

import pytest

from floorctl.batches import ActualRefused, ActualRequest, check_actual, parse_actual_request
from floorctl.commands import BadRequest, Signer
from floorctl.store.db import Actual

NOW = 1_800_000_000.0


def req(event: str, when: float | None = None, comment: str = "") -> ActualRequest:
    return ActualRequest.new("B1", "fill", event, Signer("tech", "1111", comment), when)


def rec(event: str, when: float, user: str = "tech") -> Actual:
    return Actual("B1", "fill", event, when, when, user, None, 1)


def test_start_then_end() -> None:
    assert check_actual(req("start"), [], NOW) == (NOW, None)
    assert check_actual(req("end", NOW - 5), [rec("start", NOW - 60)], NOW) == (NOW - 5, None)


@pytest.mark.parametrize(
    ("request_", "recorded", "message"),
    [
        (req("end"), [], "has no recorded start"),
        (req("end", NOW - 120), [rec("start", NOW - 60)], "is before the recorded start"),
        (req("start", NOW + 600), [], "is in the future"),
        (req("start"), [rec("start", NOW - 60)], "a correction needs a comment"),
        (req("start", NOW - 7200), [], "recorded more than 1 h late: say why"),
        (
            req("start", NOW - 30, "fix"),
            [rec("start", NOW - 90), rec("end", NOW - 60)],
            "after the recorded end",
        ),
    ],
)
def test_refusals_say_why(request_, recorded, message) -> None:
    with pytest.raises(ActualRefused, match=message):
        check_actual(request_, recorded, NOW)


def test_a_correction_with_a_comment_names_what_it_corrects() -> None:
    first = rec("start", NOW - 60)
    when, previous = check_actual(req("start", NOW - 90, "started earlier"), [first], NOW)
    assert (when, previous) == (NOW - 90, first)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b'{"id": "a", "operation": "fill", "event": "start"}', "batch: required"),
        (b'{"id": "a", "batch": "B 1", "operation": "fill", "event": "start"}', "batch: required"),
        (
            b'{"id": "a", "batch": "B1", "operation": "fill", "event": "pause"}',
            "event: 'start' or 'end'",
        ),
        (
            b'{"id": "a", "batch": "B1", "operation": "fill", "event": "end", "time": "noon"}',
            "time: UNIX",
        ),
        (b'{"id": "a", "batch": "B1", "operation": "fill", "event": "end"}', "user: required"),
    ],
)
def test_bad_requests(doc: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_actual_request(doc)


def test_round_trip() -> None:
    r = req("end", NOW, "x")
    back = parse_actual_request(r.payload())
    assert (back.batch, back.operation, back.event, back.time, back.signer) == (
        "B1", "fill", "end", NOW, r.signer
    )  # fmt: skip
