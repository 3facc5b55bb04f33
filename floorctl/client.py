"""A client of the running daemon over MQTT: request/reply, and the retained floor state.

The CLI (``floorctl device``, ``floorctl alarms``) uses it; so can any terminal. The daemon is
the only writer of floor state: clients read the retained topics and send requests
(docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt

from floorctl.config import MqttConnection
from floorctl.hubs.mqtt import make_client


class ClientError(Exception):
    """The daemon or the broker could not be reached; the message says which and how."""


async def request(
    conn: MqttConnection,
    topic: str,
    payload: bytes,
    *,
    reply_topic: str,
    request_id: str,
    timeout: float,
) -> dict[str, Any]:
    """Publish one request and wait for the reply that carries ``request_id``."""
    try:
        async with asyncio.timeout(timeout):
            async with make_client(conn, identifier=f"floorctl-cli-{request_id[:12]}") as client:
                await client.subscribe(reply_topic, qos=1)
                await client.publish(topic, payload, qos=1)
                async for message in client.messages:
                    try:
                        body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("id") == request_id:
                        return body
    except TimeoutError:
        raise ClientError(
            f"no reply within {timeout:g}s: is `floorctl run` running for this floor?"
        ) from None
    except aiomqtt.MqttError as exc:
        raise ClientError(f"cannot reach the broker {conn.host}:{conn.port}: {exc}") from None
    raise ClientError("the broker closed the connection")


async def retained(
    conn: MqttConnection, topic_filter: str, *, settle: float = 0.5, timeout: float = 10.0
) -> dict[str, Any]:
    """The retained messages under ``topic_filter`` (JSON documents by topic): everything the
    broker sends until nothing more arrives for ``settle`` seconds."""
    out: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            ident = f"floorctl-cli-{uuid.uuid4().hex[:12]}"
            async with make_client(conn, identifier=ident) as client:
                await client.subscribe(topic_filter, qos=1)
                while True:
                    try:
                        message = await asyncio.wait_for(anext(client.messages), settle)
                    except TimeoutError:
                        return out
                    if not message.retain or not message.topic.matches(topic_filter):
                        continue  # amqtt also sends retained messages of others' filters
                    try:
                        body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    except ValueError:
                        continue
                    out[str(message.topic)] = body
    except TimeoutError:
        return out
    except aiomqtt.MqttError as exc:
        raise ClientError(f"cannot reach the broker {conn.host}:{conn.port}: {exc}") from None


def new_id() -> str:
    return uuid.uuid4().hex


async def query(
    conn: MqttConnection, prefix: str, kind: str, args: dict[str, Any], *, timeout: float = 10.0
) -> dict[str, Any]:
    """A read-only query of the daemon's records (``history``, ``audit``; docs/mqtt.md)."""
    request_id = new_id()
    body = {"v": 1, "id": request_id, **args}
    return await request(
        conn,
        f"{prefix}/request/{kind}",
        json.dumps(body).encode(),
        reply_topic=f"{prefix}/reply/{request_id}",
        request_id=request_id,
        timeout=timeout,
    )
