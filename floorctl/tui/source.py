"""Where the terminal's floor state comes from: the daemon's MQTT topics, or a recording.

A :class:`StateSource` yields ``(topic, payload)`` pairs (the payload decoded from JSON; None
for an empty payload, which clears a retained topic) and carries requests to the daemon. The
live source is :class:`MqttSource`; tests, snapshots and benchmarks use :class:`RecordedSource`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import aiomqtt

from floorctl.client import ClientError, query, request
from floorctl.config import MqttConnection
from floorctl.hubs.mqtt import make_client

log = logging.getLogger(__name__)

#: the state topics a terminal reads (docs/mqtt.md). Not ``<prefix>/#``: the request topics
#: carry signatures (user id and PIN) that no terminal should receive.
STATE_FILTERS = ("status", "stats", "events", "point/#", "device/#", "alarm/#", "room/#")


def decode(payload: bytes | bytearray | str | None) -> Any:
    """A payload as the state model takes it: the JSON document, None for an empty payload
    (a cleared retained topic), or the raw text when it is not JSON (the model counts it)."""
    if payload is None:
        return None
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes | bytearray) else payload
    if raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@runtime_checkable
class StateSource(Protocol):
    """The terminal's line to the floor."""

    #: shown in the status line: where the state comes from
    description: str

    def messages(self) -> AsyncIterator[tuple[str, Any]]:
        """Every state message, in order; ends only for a finite recording."""
        ...

    async def request(self, topic: str, payload: bytes, request_id: str, timeout: float) -> Any:
        """Publish a signed request and return the daemon's reply (raises ClientError)."""
        ...

    async def query(self, kind: str, args: dict[str, Any], timeout: float) -> Any:
        """A read-only query of the records (``history``, ``audit``); raises ClientError."""
        ...


class MqttSource:
    """The live floor: one subscription to the daemon's state topics, reconnecting with backoff.
    Requests and queries go through :mod:`floorctl.client` (one short connection each)."""

    def __init__(
        self,
        conn: MqttConnection,
        prefix: str,
        *,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.prefix = prefix
        self.on_status = on_status or (lambda text: None)
        self.description = f"mqtt {conn.host}:{conn.port} {prefix}"

    async def messages(self) -> AsyncIterator[tuple[str, Any]]:
        delay = 0.5
        ident = f"floorctl-tui-{uuid.uuid4().hex[:12]}"
        while True:
            try:
                async with make_client(self.conn, identifier=ident, clean_session=True) as client:
                    for f in STATE_FILTERS:
                        await client.subscribe(f"{self.prefix}/{f}", qos=1)
                    self.on_status(f"connected to {self.conn.host}:{self.conn.port}")
                    delay = 0.5
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray | str):
                            payload = None if payload is None else str(payload)
                        yield str(message.topic), decode(payload)
            except aiomqtt.MqttError as exc:
                self.on_status(
                    f"broker {self.conn.host}:{self.conn.port} unreachable ({exc}); "
                    f"retrying in {delay:g}s"
                )
                log.debug("tui source: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def request(self, topic: str, payload: bytes, request_id: str, timeout: float) -> Any:
        return await request(
            self.conn,
            topic,
            payload,
            reply_topic=f"{self.prefix}/reply/{request_id}",
            request_id=request_id,
            timeout=timeout,
        )

    async def query(self, kind: str, args: dict[str, Any], timeout: float) -> Any:
        return await query(self.conn, self.prefix, kind, args, timeout=timeout)


class RecordedSource:
    """A recorded floor: the messages given, then nothing more. Queries are answered from
    ``replies`` (by kind: ``audit``, ``history``; a value or a function of the arguments);
    requests are refused with a ClientError (there is no daemon to sign with)."""

    def __init__(
        self,
        messages: Iterable[tuple[str, Any]],
        *,
        replies: Mapping[str, Any] | None = None,
        description: str = "recorded state",
    ) -> None:
        self.recorded = [
            (t, decode(p) if not isinstance(p, dict | list) else p) for t, p in messages
        ]
        self.replies = dict(replies or {})
        self.description = description

    async def messages(self) -> AsyncIterator[tuple[str, Any]]:
        for item in self.recorded:
            yield item

    async def request(self, topic: str, payload: bytes, request_id: str, timeout: float) -> Any:
        raise ClientError(f"{self.description}: no daemon to send the request to")

    async def query(self, kind: str, args: dict[str, Any], timeout: float) -> Any:
        if kind not in self.replies:
            raise ClientError(f"{self.description}: no {kind} records")
        reply = self.replies[kind]
        return reply(args) if callable(reply) else reply
