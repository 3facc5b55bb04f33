"""Shared fixtures: private mosquitto brokers on free 127.0.0.1 ports.

Tests never use the machine's own broker on 1883. If the mosquitto binary is missing the
fixtures fail (never skip) and say to run ``make mosquitto``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Mosquitto, MosquittoError, find_mosquitto, free_port

__all__ = ["Mosquitto", "MosquittoError", "free_port"]


def _start_broker(workdir, *, persistence: bool) -> Mosquitto:
    if find_mosquitto() is None:
        pytest.fail(
            "mosquitto binary not found (looked at $MOSQUITTO_BIN, PATH, /usr/sbin): "
            "run `make mosquitto` to install it",
            pytrace=False,
        )
    broker = Mosquitto(workdir, persistence=persistence)
    try:
        broker.start()
    except MosquittoError as exc:
        pytest.fail(str(exc), pytrace=False)
    return broker


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[Mosquitto]:
    """A fresh broker for this test (persistence off); stopped at teardown."""
    broker = _start_broker(tmp_path / "mosquitto", persistence=False)
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_persistent(tmp_path) -> Iterator[Mosquitto]:
    """A fresh broker with persistence on (``autosave_interval 1``), for restart tests."""
    broker = _start_broker(tmp_path / "mosquitto", persistence=True)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def session_mosquitto(tmp_path_factory) -> Iterator[Mosquitto]:
    """One broker shared by the whole session: only for tests that never stop or kill it.

    Use unique topics / client ids per test, since state (retained messages, sessions)
    carries over between tests.
    """
    broker = _start_broker(tmp_path_factory.mktemp("session_mosquitto"), persistence=False)
    yield broker
    broker.stop()
