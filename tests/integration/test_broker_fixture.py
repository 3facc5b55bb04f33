"""The private-broker fixtures work: round trips, retained messages, persistent sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid

import aiomqtt
import pytest

from tests.conftest import free_port as conftest_free_port
from tests.helpers import Mosquitto, MosquittoError, free_port

pytestmark = pytest.mark.integration

TIMEOUT = 5.0


def _client(broker: Mosquitto, identifier: str, **kwargs) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=identifier, **kwargs)


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _collect(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    received = []
    async for message in client.messages:
        received.append(message)
        if len(received) == count:
            break
    return received


def test_free_port_is_bindable():
    port = free_port()
    assert conftest_free_port is free_port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_round_trip_qos1(mosquitto: Mosquitto):
    assert mosquitto.host == "127.0.0.1"
    assert mosquitto.running
    topic = _uid("t/round-trip")
    async with asyncio.timeout(TIMEOUT):
        async with _client(mosquitto, _uid("sub")) as sub, _client(mosquitto, _uid("pub")) as pub:
            await sub.subscribe(topic, qos=1)
            for i in range(5):
                await pub.publish(topic, f"m{i}".encode(), qos=1)
            received = await _collect(sub, 5)
    assert [m.payload for m in received] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert all(m.qos == 1 and m.topic.matches(topic) for m in received)


async def test_retained_message(session_mosquitto: Mosquitto):
    topic = _uid("t/retained")
    async with asyncio.timeout(TIMEOUT):
        async with _client(session_mosquitto, _uid("pub")) as pub:
            await pub.publish(topic, b"last-state", qos=1, retain=True)
        async with _client(session_mosquitto, _uid("late-sub")) as sub:
            await sub.subscribe(topic, qos=1)
            (message,) = await _collect(sub, 1)
        assert message.payload == b"last-state"
        assert message.retain is True
        # An empty retained payload clears it, so the shared broker is left clean.
        async with _client(session_mosquitto, _uid("pub")) as pub:
            await pub.publish(topic, b"", qos=1, retain=True)


async def test_persistent_session_survives_broker_restart(mosquitto_persistent: Mosquitto):
    broker = mosquitto_persistent
    topic = _uid("t/persist")
    ident = _uid("persistent")
    port = broker.port
    async with asyncio.timeout(4 * TIMEOUT):
        async with _client(broker, ident, clean_session=False) as sub:
            await sub.subscribe(topic, qos=1)

        assert broker.stop(signal.SIGTERM) == 0  # SIGTERM: mosquitto saves its database
        assert not broker.running
        assert broker.db_path.exists()
        broker.restart()
        assert broker.port == port

        async with _client(broker, _uid("pub")) as pub:
            for i in range(50):
                await pub.publish(topic, str(i).encode(), qos=1)

        # Reconnect with the same id and no new subscription: the broker's saved session
        # holds the subscription and the 50 messages queued while we were away.
        async with _client(broker, ident, clean_session=False) as sub:
            received = await _collect(sub, 50)
    assert [int(m.payload) for m in received] == list(range(50))
    assert "Saving in-memory database" in broker.log_tail()


async def test_restart_same_port_right_after_stop_with_clients(mosquitto: Mosquitto):
    """Server-side TIME_WAIT sockets must not block the rebind (mosquitto sets SO_REUSEADDR)."""
    port = mosquitto.port
    topic = _uid("t/reuse")
    async with asyncio.timeout(3 * TIMEOUT):
        async with _client(mosquitto, _uid("a")) as client:
            await client.subscribe(topic, qos=1)
            mosquitto.stop()  # the broker closes the connection first -> TIME_WAIT on its side
        mosquitto.start()
        assert mosquitto.port == port
        async with _client(mosquitto, _uid("b")) as client:
            await client.subscribe(topic, qos=1)
            await client.publish(topic, b"again", qos=1)
            (message,) = await _collect(client, 1)
    assert message.payload == b"again"


def test_kill_and_restart(mosquitto: Mosquitto):
    pid = mosquitto.pid
    assert mosquitto.kill() == -signal.SIGKILL
    assert not mosquitto.running
    mosquitto.restart()
    assert mosquitto.running and mosquitto.pid != pid
    assert "running" in mosquitto.log_tail()


def test_missing_binary_says_make_mosquitto(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSQUITTO_BIN", str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(MosquittoError, match="make mosquitto"):
        Mosquitto(tmp_path)


def test_start_failure_reports_log_tail(tmp_path):
    broker = Mosquitto(tmp_path, extra_config=("no_such_option 1",))
    with pytest.raises(MosquittoError, match="no_such_option"):
        broker.start(timeout=5)
    assert not broker.running


def test_a_broker_that_does_not_stop_is_killed_and_reported(mosquitto: Mosquitto):
    os.kill(mosquitto.pid, signal.SIGSTOP)  # it cannot act on SIGTERM now
    started = time.monotonic()
    with pytest.raises(MosquittoError, match="ignored signal 15 for 3 s; killed it"):
        mosquitto.stop(timeout=3.0)
    assert 3.0 <= time.monotonic() - started < 6.0
    assert not mosquitto.running
