"""Signed operator actions on alarms: the request document, who may do what, and the dry run.

A client (the CLI, the terminal UI) publishes a request on
``<prefix>/request/alarm/<device>/<point>``; the daemon, the only writer of alarm state, checks
it, authenticates the user (both components: user id and password or PIN), checks the role,
records the action with its electronic signature in the audit trail, applies it, and replies on
``<prefix>/reply/<request id>`` with ``accepted`` or ``refused`` and exactly why (docs/mqtt.md).

Pure logic here: parsing, the role table and the dry run on a copy of the alarm point. The
daemon (floorctl/daemon.py) does the I/O.
"""

from __future__ import annotations

import copy
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen

from floorctl.alarms.engine import (
    ActionRefused,
    AlarmPoint,
    AlarmPointConfig,
    Transition,
    _normalise,
)
from floorctl.alarms.states import InvalidTransition
from floorctl.commands import BadRequest, Signer, parse_document, parse_signer
from floorctl.model import SCHEMA_VERSION
from floorctl.store.users import Meaning, Role

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@frozen
class ActionSpec:
    """Who may do an action and what their signature means."""

    roles: tuple[Role, ...]
    meaning: Meaning
    comment_required: bool  # always; "ack" needs one only at action level (the engine says)


R = Role
#: The site's alarm philosophy in one table (docs/alarms.md, "Who may do what").
ACTIONS: Mapping[str, ActionSpec] = {
    "ack": ActionSpec((R.TECHNICIAN, R.SUPERVISOR), Meaning.ACKNOWLEDGED, False),
    "reset": ActionSpec((R.TECHNICIAN, R.SUPERVISOR), Meaning.PERFORMED, False),
    "shelve": ActionSpec((R.SUPERVISOR,), Meaning.APPROVED, True),
    "unshelve": ActionSpec((R.SUPERVISOR,), Meaning.APPROVED, False),
    "remove-from-service": ActionSpec((R.SUPERVISOR, R.QA), Meaning.APPROVED, True),
    "return-to-service": ActionSpec((R.SUPERVISOR, R.QA), Meaning.APPROVED, True),
    "set-limits": ActionSpec((R.QA,), Meaning.APPROVED, True),
}
#: Device commands (tare, zero, autoclave cycles) through the daemon.
DEVICE_COMMAND = ActionSpec((R.TECHNICIAN, R.SUPERVISOR), Meaning.PERFORMED, False)


@frozen
class AlarmRequest:
    id: str
    device: str
    point: str
    action: str
    signer: Signer
    args: dict[str, Any]

    def payload(self) -> bytes:
        return json.dumps(
            {
                "v": SCHEMA_VERSION,
                "id": self.id,
                "action": self.action,
                "user": self.signer.user,
                "secret": self.signer.secret,
                "comment": self.signer.comment,
                "args": self.args,
            }
        ).encode()

    @classmethod
    def new(
        cls,
        device: str,
        point: str,
        action: str,
        signer: Signer,
        args: Mapping[str, Any] | None = None,
    ) -> AlarmRequest:
        return cls(uuid.uuid4().hex, device, point, action, signer, dict(args or {}))

    @property
    def target(self) -> str:
        return f"alarm:{self.device}/{self.point}"


def parse_alarm_request(device: str, point: str, payload: bytes) -> AlarmRequest:
    """Validate a request document; raise BadRequest naming what is wrong."""
    doc, request_id = parse_document(payload)
    action = doc.get("action")
    if action not in ACTIONS:
        raise BadRequest(f"action: one of {', '.join(ACTIONS)}; got {action!r}", request_id)
    args = doc.get("args", {})
    signer = parse_signer(doc, request_id)
    if ACTIONS[action].comment_required and not signer.comment:
        what = "the reason for shelving" if action == "shelve" else "the reason"
        raise BadRequest(f"comment: required for {action} ({what})", request_id)
    return AlarmRequest(request_id, device, point, action, signer, args)


def _duration(args: Mapping[str, Any]) -> float:
    from floorctl.config import parse_duration

    raw = args.get("duration")
    if raw is None:
        raise ActionRefused("shelve: args.duration is required (seconds, or '30m', '2h')")
    try:
        value = float(parse_duration(raw)) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError) as exc:
        raise ActionRefused(f"shelve: args.duration: {exc}") from None
    if isinstance(raw, bool) or not math.isfinite(value):
        raise ActionRefused(f"shelve: args.duration: not a duration: {raw!r}")
    return value


def limit_settings(point: AlarmPoint, args: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a set-limits request, checked against the point (raises
    ActionRefused naming the bad key)."""
    settings = args.get("settings")
    if not isinstance(settings, dict) or not settings:
        raise ActionRefused(
            "set-limits: args.settings must be a non-empty object of alarm settings, "
            'e.g. {"alert_high": 25.0}'
        )
    try:
        attrs.evolve(point.config, **_normalise(settings, where="args.settings"))
    except (TypeError, ValueError) as exc:
        raise ActionRefused(f"set-limits: {exc}") from None
    return dict(settings)


def apply(
    point: AlarmPoint,
    req: AlarmRequest,
    now: float,
    *,
    role: str = "",
    config: AlarmPointConfig | None = None,
) -> list[Transition]:
    """Apply ``req`` to ``point``; raises ActionRefused or InvalidTransition, leaving the point
    unchanged. ``config`` is the new configuration of a set-limits request."""
    user, comment = req.signer.user, req.signer.comment
    match req.action:
        case "ack":
            return point.acknowledge(user, comment, now)
        case "reset":
            return point.reset(user, comment, now)
        case "shelve":
            return point.shelve(_duration(req.args), comment, role, now, user=user)
        case "unshelve":
            return point.unshelve(user, now, comment)
        case "remove-from-service":
            return point.set_out_of_service(True, user, comment, now)
        case "return-to-service":
            return point.set_out_of_service(False, user, comment, now)
        case "set-limits":
            if config is None:
                raise ActionRefused("set-limits: no new configuration")
            out = point.tick(now)
            point.replace_config(config)
            return out
    raise ActionRefused(f"unknown action {req.action!r}")


def config_with(base: AlarmPointConfig, settings: Mapping[str, Any]) -> AlarmPointConfig:
    """``base`` (devices.toml's) with signed limit changes on top; raises ValueError."""
    return attrs.evolve(base, **_normalise(settings, where="settings"))


def dry_run(
    point: AlarmPoint,
    req: AlarmRequest,
    now: float,
    *,
    role: str = "supervisor",
    config: AlarmPointConfig | None = None,
) -> list[Transition]:
    """What ``req`` would do now: the transitions, or ActionRefused / InvalidTransition. The
    point is not touched (it runs on a copy)."""
    return apply(copy.deepcopy(point), req, now, role=role, config=config)


__all__ = [
    "ACTIONS",
    "DEVICE_COMMAND",
    "ActionRefused",
    "ActionSpec",
    "AlarmRequest",
    "InvalidTransition",
    "Signer",
    "apply",
    "config_with",
    "dry_run",
    "limit_settings",
    "parse_alarm_request",
    "parse_signer",
]
