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

from attrs import field, frozen

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
class Signer:
    """The two components of an electronic signature (user id, password or PIN) and the
    comment (the signature's "why"). The secret is never logged, stored or echoed."""

    user: str
    secret: str = field(repr=False)
    comment: str = ""

    def fields(self) -> dict[str, str]:
        return {"user": self.user, "secret": self.secret, "comment": self.comment}


def parse_signer(doc: dict[str, Any], request_id: str | None) -> Signer:
    """The user, secret and comment of a request document."""
    user, secret, comment = doc.get("user"), doc.get("secret"), doc.get("comment", "")
    if not isinstance(user, str) or not user.strip():
        raise BadRequest("user: required (a signed request needs the user id)", request_id)
    if not isinstance(secret, str) or not secret:
        raise BadRequest("secret: required (the user's password or PIN)", request_id)
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise BadRequest("comment: must be a string", request_id)
    if len(comment) > 2000:
        raise BadRequest("comment: at most 2000 characters", request_id)
    return Signer(user.strip(), secret, comment.strip())


@frozen
class CommandRequest:
    id: str
    device: str
    command: str
    args: dict[str, Any]
    signer: Signer | None = None  # required by the daemon; the CLI's --direct runs unsigned

    def payload(self) -> bytes:
        doc = {"v": SCHEMA_VERSION, "id": self.id, "command": self.command, "args": self.args}
        if self.signer is not None:
            doc.update(self.signer.fields())
        return json.dumps(doc).encode()

    @classmethod
    def new(
        cls,
        device: str,
        command: str,
        args: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> CommandRequest:
        return cls(uuid.uuid4().hex, device, command, dict(args or {}), signer)


def parse_document(payload: bytes) -> tuple[dict[str, Any], str]:
    """The request document and its id (every request kind); BadRequest names what is wrong."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"not a JSON document: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the request must be a JSON object")
    request_id = doc.get("id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise BadRequest("id: required; letters, digits, '_', '-', '.', at most 64")
    if doc.get("v", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise BadRequest(f"v: this daemon speaks version {SCHEMA_VERSION}", request_id)
    if not isinstance(doc.get("args", {}), dict):
        raise BadRequest("args: must be an object", request_id)
    return doc, request_id


def parse_request(device: str, payload: bytes) -> CommandRequest:
    """Validate a request document; raise BadRequest naming what is wrong."""
    doc, request_id = parse_document(payload)
    command = doc.get("command")
    if not isinstance(command, str) or not _COMMAND.match(command):
        raise BadRequest("command: required, a lower-case command name", request_id)
    args = doc.get("args", {})
    signer = parse_signer(doc, request_id) if "user" in doc or "secret" in doc else None
    return CommandRequest(request_id, device, command, args, signer)


class Status:
    DONE = "done"  # the device did it
    ACCEPTED = "accepted"  # an alarm action: signed, recorded and applied
    REFUSED = "refused"  # not run: bad request or signature, role, state; `error` says why
    FAILED = "failed"  # run, and the device or the driver reported an error


def reply(
    request_id: str,
    device: str,
    command: str | None,
    status: str,
    *,
    result: str | None = None,
    error: str | None = None,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The reply document. ``reason`` is a refusal's code (docs/mqtt.md: ``bad-request``,
    ``no-store``, ``auth``, ``locked``, ``disabled``, ``role``, ``state``, ``device``)."""
    return {
        "v": SCHEMA_VERSION,
        "id": request_id,
        "device": device,
        "command": command,
        "status": status,
        "result": result,
        "error": error,
        "reason": reason,
        **extra,
        "time": time.time(),
    }
