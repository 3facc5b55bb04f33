"""Device commands over MQTT: the request and reply documents (docs/mqtt.md).

A client publishes a request on ``<prefix>/command/<device>``; the daemon, the only process
that talks to the device, runs it through the device's driver and publishes the reply on
``<prefix>/reply/<request id>``. The CLI (``floorctl device``) and the terminal UI are clients.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from attrs import frozen

from floorctl.model import SCHEMA_VERSION

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_COMMAND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class BadRequest(ValueError):
    """A request that cannot be run; the message says why. ``request_id`` is set when the
    request named one (so a refusal can still be replied to)."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@frozen
class CommandRequest:
    id: str
    device: str
    command: str
    args: dict[str, Any]

    def payload(self) -> bytes:
        return json.dumps(
            {"v": SCHEMA_VERSION, "id": self.id, "command": self.command, "args": self.args}
        ).encode()

    @classmethod
    def new(cls, device: str, command: str, args: dict[str, Any] | None = None) -> CommandRequest:
        return cls(uuid.uuid4().hex, device, command, dict(args or {}))


def parse_request(device: str, payload: bytes) -> CommandRequest:
    """Validate a request document; raise BadRequest naming what is wrong."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"not a JSON document: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request must be a JSON object")
    request_id = doc.get("id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise BadRequest("id: required; letters, digits, '_', '-', '.', at most 64")
    command = doc.get("command")
    if not isinstance(command, str) or not _COMMAND.match(command):
        raise BadRequest("command: required, a lower-case command name", request_id)
    args = doc.get("args", {})
    if not isinstance(args, dict):
        raise BadRequest("args: must be an object", request_id)
    if doc.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise BadRequest(f"v: this daemon speaks version {SCHEMA_VERSION}", request_id)
    return CommandRequest(request_id, device, command, args)


class Status:
    DONE = "done"  # the device did it
    REFUSED = "refused"  # not run: unknown device or command, device not running, bad request
    FAILED = "failed"  # run, and the device or the driver reported an error


def reply(
    request_id: str,
    device: str,
    command: str | None,
    status: str,
    *,
    result: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "id": request_id,
        "device": device,
        "command": command,
        "status": status,
        "result": result,
        "error": error,
        "time": time.time(),
    }
