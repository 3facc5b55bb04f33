"""Actual start and end of batch operations: the signed request, its checks, and the CLI.

Until a technician records an operation's actual start and end, the schedule stands in for it
(marked planned, not actual) in the batch record. A technician records them with a signature:
``floorctl batch start BATCH OPERATION --user U`` (or the TUI), which sends a signed request on
``<prefix>/request/actual``; the daemon checks it against what is already recorded, records it
with its signature and replies (docs/mqtt.md). A second record of the same event is a correction
and needs a comment; the latest record counts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import click
from attrs import frozen

from floorctl.alarms.actions import ActionSpec
from floorctl.commands import BadRequest, Signer, parse_document, parse_signer
from floorctl.model import SCHEMA_VERSION
from floorctl.store.db import Actual, current_actuals
from floorctl.store.users import Meaning, Role

#: who may record actuals, and what the signature means
RECORD_ACTUAL = ActionSpec((Role.TECHNICIAN, Role.SUPERVISOR), Meaning.PERFORMED, False)
#: an actual more than this far in the past is "recorded late" and needs a comment
LATE_AFTER = 3600.0
#: clocks differ a little; an actual more than this far in the future is refused
FUTURE_SLACK = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@frozen
class ActualRequest:
    id: str
    batch: str
    operation: str
    event: str  # "start" | "end"
    time: float | None  # None: now
    signer: Signer

    def payload(self) -> bytes:
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": self.id,
            "batch": self.batch,
            "operation": self.operation,
            "event": self.event,
            **self.signer.fields(),
        }
        if self.time is not None:
            doc["time"] = self.time
        return json.dumps(doc).encode()

    @classmethod
    def new(
        cls, batch: str, operation: str, event: str, signer: Signer, when: float | None = None
    ) -> ActualRequest:
        return cls(uuid.uuid4().hex, batch, operation, event, when, signer)


def parse_actual_request(payload: bytes) -> ActualRequest:
    doc, request_id = parse_document(payload)
    for key in ("batch", "operation"):
        value = doc.get(key)
        if not isinstance(value, str) or not _NAME.match(value):
            raise BadRequest(f"{key}: required; letters, digits, '_', '.', ':', '-'", request_id)
    event = doc.get("event")
    if event not in ("start", "end"):
        raise BadRequest(f"event: 'start' or 'end', got {event!r}", request_id)
    when = doc.get("time")
    if when is not None and (isinstance(when, bool) or not isinstance(when, int | float)):
        raise BadRequest("time: UNIX seconds (or leave it out for now)", request_id)
    signer = parse_signer(doc, request_id)
    return ActualRequest(
        request_id,
        doc["batch"],
        doc["operation"],
        event,
        None if when is None else float(when),
        signer,
    )


class ActualRefused(ValueError):
    """The request does not fit what is recorded; the message says why."""


def check_actual(
    req: ActualRequest, recorded: Iterable[Actual], now: float
) -> tuple[float, Actual | None]:
    """The time to record and the record it corrects (if any); ActualRefused if it cannot be
    recorded: an end without a start, an end before its start, a time in the future, a
    correction or a late record without a comment."""
    when = now if req.time is None else req.time
    if when > now + FUTURE_SLACK:
        raise ActualRefused(f"{req.event} at {iso(when)} is in the future (now {iso(now)})")
    current = current_actuals(recorded).get((req.batch, req.operation), {})
    previous = current.get(req.event)
    if previous is not None and not req.signer.comment:
        raise ActualRefused(
            f"{req.batch}/{req.operation} {req.event} is recorded already "
            f"({iso(previous.time)} by {previous.user_id}): a correction needs a comment"
        )
    if now - when > LATE_AFTER and not req.signer.comment:
        raise ActualRefused(
            f"{req.event} at {iso(when)} is recorded more than {LATE_AFTER / 3600:g} h late: "
            "say why in a comment"
        )
    if req.event == "end":
        start = current.get("start")
        if start is None:
            raise ActualRefused(f"{req.batch}/{req.operation} has no recorded start")
        if when < start.time:
            raise ActualRefused(f"end {iso(when)} is before the recorded start {iso(start.time)}")
    elif (end := current.get("end")) is not None and when > end.time:
        raise ActualRefused(f"start {iso(when)} is after the recorded end {iso(end.time)}")
    return when, previous


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- command line -----------------------------------------------------------------------------


def register_commands(cli: click.Group) -> None:
    cli.add_command(batch)
    cli.add_command(batch_record)


@click.group("batch")
def batch() -> None:
    """Record the actual start and end of batch operations (signed), list what is recorded."""


def _when(text: str | None) -> float | None:
    if text is None:
        return None
    from floorctl.alarms.cli import parse_when

    try:
        return parse_when(text, time.time())
    except click.BadParameter as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None


def _record(event: str):  # type: ignore[no-untyped-def]
    from floorctl.alarms.cli import config_option, read_signer, signature_options

    @batch.command(
        event, help=f"Record the actual {event} of an operation (technician, supervisor)."
    )
    @click.argument("batch_id", metavar="BATCH")
    @click.argument("operation")
    @click.option(
        "--at", default=None, help=f"When it {event}ed: ISO time or '20m' (ago); default now."
    )
    @config_option
    @signature_options
    @click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait.")
    @click.pass_context
    def command(
        ctx: click.Context,
        batch_id: str,
        operation: str,
        at: str | None,
        file: str,
        user: str,
        comment: str,
        password_stdin: bool,
        timeout: float,
    ) -> None:
        from floorctl.alarms.cli import send_signed
        from floorctl.publisher import Topics

        when = _when(at)
        config = ctx.obj.load(file)
        signer = read_signer(user, comment, password_stdin)
        req = ActualRequest.new(batch_id, operation, event, signer, when)
        send_signed(
            config,
            Topics(config.floor.prefix).request("actual"),
            req.payload(),
            req.id,
            what=f"{batch_id}/{operation} {event}",
            done="recorded",
            timeout=timeout,
        )


_record("start")
_record("end")


@batch.command("actuals")
@click.argument("batch_id", metavar="[BATCH]", required=False)
@click.option(
    "--db",
    "db_path",
    default="floorctl.db",
    show_default=True,
    envvar="FLOORCTL_DB",
    type=click.Path(dir_okay=False, exists=True),
    help="The record store.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_actuals(batch_id: str | None, db_path: str, as_json: bool) -> None:
    """Every actual recorded (of one batch), corrections included, oldest first."""
    from floorctl.store.db import Store

    with Store(db_path) as store:
        rows = store.actuals(batch_id)
    if as_json:
        click.echo(json.dumps([attrs.asdict(r) for r in rows], indent=2))
        return
    if not rows:
        click.echo("no actuals recorded")
        return
    current = {id(a) for ev in current_actuals(rows).values() for a in ev.values()}
    for a in rows:
        mark = "" if id(a) in current else "  (corrected later)"
        note = f"  [{a.comment}]" if a.comment else ""
        click.echo(
            f"{a.batch:<10} {a.operation:<16} {a.event:<5} {iso(a.time)}  by {a.user_id:<8} "
            f"audit {a.audit_seq}{note}{mark}"
        )


@click.command("batch-record")
@click.argument("batch_id", metavar="BATCH")
@click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The plan the batch was scheduled from (docs/planning.md).",
)
@click.option(
    "--schedule",
    "schedule_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="The schedule it ran on (JSON).",
)
@click.option(
    "-c",
    "--config",
    "file",
    default=None,
    type=click.Path(dir_okay=False),
    help="The floor's devices.toml (default: the plan's `floor`).",
)
@click.option(
    "--db",
    "db_path",
    default=None,
    envvar="FLOORCTL_DB",
    type=click.Path(dir_okay=False, exists=True),
    help="The record store (default: devices.toml's [floor] store).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write here instead of stdout.",
)
@click.pass_obj
def batch_record(
    obj: Any, batch_id: str, plan_path: str, schedule_path: str, file: str | None,
    db_path: str | None, fmt: str, out: str | None,
) -> None:  # fmt: skip
    """The batch environmental record QA reviews before release: per operation, the room, unit
    and time window, every point's min / mean / max and time outside its limits, alarms with
    their signatures, data gaps, weighings, autoclave cycles and audit entries; verdict lines and
    what needs QA's attention (docs/batch-record.md). Exit 0 clean, 1 items need attention,
    2 bad input."""
    from pathlib import Path

    from floorctl import batchrecord
    from floorctl.limits import resolve_limits
    from floorctl.scheduler import ScheduleFileError, read_schedule
    from floorctl.scheduler.plan import PlanError, load_plan
    from floorctl.store.db import Store, StoreError

    try:
        problem = load_plan(plan_path, floor=file)
        schedule = read_schedule(schedule_path)
    except (PlanError, ScheduleFileError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    floor_file = file or problem_floor(plan_path)
    if floor_file is None:
        raise click.UsageError("the plan names no floor: give -c devices.toml")
    config = obj.load(str(floor_file))
    store_path = db_path or config.floor.store_path(config.path)
    if store_path is None or not Path(store_path).exists():
        raise click.UsageError(
            f"no record store: give --db (devices.toml's [floor] store is {store_path})"
        )
    try:
        with Store(store_path) as store:
            rec = batchrecord.gather(
                batch_id, config=config, problem=problem, schedule=schedule, store=store,
                limits=resolve_limits(config, obj.kinds), now=time.time(),
            )  # fmt: skip
            text = {
                "md": batchrecord.to_markdown,
                "json": batchrecord.to_json,
                "html": lambda r: batchrecord.to_html(r, store),
            }[fmt](rec)
    except batchrecord.RecordError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
        click.echo(f"{batch_id}: {len(rec.attention)} item(s) need attention; written to {out}")
    else:
        click.echo(text)
    sys.exit(0 if rec.clean else 1)


def problem_floor(plan_path: str) -> Any:
    """The devices.toml a plan names (its ``[plan] floor``, relative to the plan)."""
    import tomllib
    from pathlib import Path

    try:
        doc = tomllib.loads(Path(plan_path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    floor = doc.get("plan", {}).get("floor")
    return None if not isinstance(floor, str) else Path(plan_path).parent / floor
