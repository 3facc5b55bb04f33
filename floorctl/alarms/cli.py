"""``floorctl alarms ...``: list the floor's alarms, act on them with a signature, report KPIs.

``list`` and the actions are clients of the running daemon (MQTT: the retained alarm topics,
and signed requests on ``<prefix>/request/alarm/<device>/<point>``); the daemon is the only
writer of alarm state. ``report`` reads the record store. Exit codes: 0 done / accepted,
1 refused or unreachable, 2 usage error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from typing import Any

import click

from floorctl.alarms.actions import ACTIONS, AlarmRequest
from floorctl.commands import Signer
from floorctl.config import Config, parse_duration

DEFAULT_CONFIG = "devices.toml"
_PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2, None: 3}


def config_option(fn: Any) -> Any:
    return click.option(
        "-c",
        "--config",
        "file",
        default=DEFAULT_CONFIG,
        show_default=True,
        envvar="FLOORCTL_CONFIG",
        type=click.Path(dir_okay=False),
        help="The floor's devices.toml (names the broker and the topic prefix).",
    )(fn)


def signature_options(fn: Any) -> Any:
    fn = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password or PIN from the first line of stdin instead of a prompt.",
    )(fn)
    fn = click.option("--comment", default="", help="Why (mandatory at action level).")(fn)
    fn = click.option("--user", "user", required=True, help="Your user id (signature).")(fn)
    return fn


def read_signer(user: str, comment: str, password_stdin: bool) -> Signer:
    """The signature's components: the user id, and the secret from a prompt (no echo) or
    from stdin."""
    if password_stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise click.UsageError("--password-stdin: no password or PIN on stdin")
        secret = line
    else:
        secret = click.prompt(f"Password or PIN of {user}", hide_input=True, err=True)
    return Signer(user, secret, comment)


def parse_assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    """KEY=VALUE arguments; a value that is JSON (a number, true, a list) is taken as such."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"{what} {item!r}: write KEY=VALUE")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


def split_id(alarm_id: str) -> tuple[str, str]:
    device, sep, point = alarm_id.partition("/")
    if not sep or not device or not point or "/" in point:
        raise click.UsageError(f"alarm id {alarm_id!r}: write DEVICE/POINT, e.g. thp-buffer/dp")
    return device, point


def _load(ctx: click.Context, file: str) -> Config:
    return ctx.obj.load(file)


def _age(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, time.time() - t)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def register_commands(cli: click.Group) -> None:
    cli.add_command(alarms)


@click.group("alarms")
def alarms() -> None:
    """The floor's alarms: list, acknowledge, shelve, take out of service, report."""


@alarms.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also alarms in state normal.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the broker.")
@click.pass_context
def list_alarms(
    ctx: click.Context, file: str, show_all: bool, as_json: bool, timeout: float
) -> None:
    """The alarm state the daemon publishes, by priority then time (newest first).

    Shelved, suppressed and out-of-service alarms are listed after the shown ones.
    """
    from floorctl.client import ClientError, retained
    from floorctl.publisher import Topics

    config = _load(ctx, file)
    topics = Topics(config.floor.prefix)
    try:
        docs = asyncio.run(
            retained(config.state_connection, topics.alarm("+", "+"), timeout=timeout)
        )
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    rows = [d for d in docs.values() if isinstance(d, dict) and "state" in d]
    if not rows:
        click.echo(
            "error: no alarm state on the broker: is `floorctl run` running for this floor?",
            err=True,
        )
        sys.exit(1)
    if not show_all:
        rows = [d for d in rows if d["state"] != "normal"]
    hidden_states = {"shelved", "suppressed", "out-of-service"}

    def since(d: dict[str, Any]) -> float:
        last = d.get("last") or {}
        return float(last.get("time") or 0.0)

    def priority(d: dict[str, Any]) -> str | None:
        return (d.get("last") or {}).get("priority")

    rows.sort(
        key=lambda d: (
            d["state"] in hidden_states,
            _PRIORITY_RANK.get(priority(d), 3),
            -since(d),
        )
    )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no alarms (all normal)")
        return
    click.echo(
        f"{'ALARM':<24} {'ROOM':<10} {'STATE':<15} {'SEVERITY':<8} {'PRIORITY':<8} "
        f"{'VALUE':>10}  SINCE"
    )
    for d in rows:
        value = d.get("value")
        shown = "-" if value is None else f"{value:.4g}"
        click.echo(
            f"{d['device'] + '/' + d['point']:<24} {d.get('room') or '-':<10} "
            f"{d['state']:<15} {d.get('severity') or '-':<8} {priority(d) or '-':<8} "
            f"{shown:>10}  {_age(since(d) or None)}"
        )


def send_signed(
    config: Config,
    topic: str,
    payload: bytes,
    request_id: str,
    *,
    what: str,
    done: str,
    timeout: float,
) -> None:
    """Send a signed request to the daemon and print its answer: ``<what>: <done>: result
    (audit entry N)``, exit 0; or the refusal's status, reason and error, exit 1."""
    from floorctl.client import ClientError, request
    from floorctl.publisher import Topics

    try:
        answer = asyncio.run(
            request(
                config.state_connection,
                topic,
                payload,
                reply_topic=Topics(config.floor.prefix).reply(request_id),
                request_id=request_id,
                timeout=timeout,
            )
        )
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if answer.get("status") == "accepted":
        click.echo(
            f"{what}: {done}: {answer.get('result')} (audit entry {answer.get('audit_seq')})"
        )
        return
    click.echo(
        f"{what}: {answer.get('status')} ({answer.get('reason')}): {answer.get('error')}",
        err=True,
    )
    sys.exit(1)


def _send(ctx: click.Context, file: str, req: AlarmRequest, timeout: float) -> None:
    from floorctl.publisher import Topics

    config = _load(ctx, file)
    send_signed(
        config,
        Topics(config.floor.prefix).alarm_request(req.device, req.point),
        req.payload(),
        req.id,
        what=f"{req.device}/{req.point} {req.action}",
        done="accepted",
        timeout=timeout,
    )


def _action_command(action: str, help_text: str) -> None:
    @alarms.command(action, help=help_text)
    @click.argument("alarm_id", metavar="DEVICE/POINT")
    @config_option
    @signature_options
    @click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait.")
    @click.pass_context
    def command(
        ctx: click.Context,
        alarm_id: str,
        file: str,
        user: str,
        comment: str,
        password_stdin: bool,
        timeout: float,
    ) -> None:
        device, point = split_id(alarm_id)
        if ACTIONS[action].comment_required and not comment.strip():
            raise click.UsageError(f"{action} needs --comment (the reason)")
        signer = read_signer(user, comment, password_stdin)
        _send(ctx, file, AlarmRequest.new(device, point, action, signer), timeout)


_action_command(
    "ack",
    "Acknowledge an alarm (technician, supervisor). A comment is mandatory once the alarm "
    "reached action level.",
)
_action_command("reset", "Reset a latched, acknowledged alarm (technician, supervisor).")
_action_command("unshelve", "Unshelve an alarm before its shelf expires (supervisor).")
_action_command(
    "out-of-service",
    "Remove an alarm from service, e.g. for maintenance (supervisor, qa; --comment required).",
)
_action_command(
    "return-to-service", "Return an alarm to service (supervisor, qa; --comment required)."
)


@alarms.command("shelve")
@click.argument("alarm_id", metavar="DEVICE/POINT")
@click.option(
    "--for", "duration", required=True, help="How long: '30m', '2h' (at most the point's limit)."
)
@config_option
@signature_options
@click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def shelve(
    ctx: click.Context,
    alarm_id: str,
    duration: str,
    file: str,
    user: str,
    comment: str,
    password_stdin: bool,
    timeout: float,
) -> None:
    """Shelve an alarm for a limited time (supervisor; --comment is the reason). It returns
    by itself when the time is up."""
    device, point = split_id(alarm_id)
    if not comment.strip():
        raise click.UsageError("shelve needs --comment (the reason for shelving)")
    try:
        seconds = float(parse_duration(duration))
    except ValueError as exc:
        raise click.UsageError(f"--for: {exc}") from None
    signer = read_signer(user, comment, password_stdin)
    req = AlarmRequest.new(device, point, "shelve", signer, {"duration": seconds})
    _send(ctx, file, req, timeout)


@alarms.command("set-limits")
@click.argument("alarm_id", metavar="DEVICE/POINT")
@click.argument("settings", nargs=-1, required=True, metavar="KEY=VALUE...")
@config_option
@signature_options
@click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait.")
@click.pass_context
def set_limits(
    ctx: click.Context,
    alarm_id: str,
    settings: tuple[str, ...],
    file: str,
    user: str,
    comment: str,
    password_stdin: bool,
    timeout: float,
) -> None:
    """Change a point's alarm limits or settings at runtime (qa; --comment required), e.g.
    `alert_high=25 action_on_delay=2m`. The change is kept in the store and survives restarts
    (docs/alarms.md)."""
    device, point = split_id(alarm_id)
    if not comment.strip():
        raise click.UsageError("set-limits needs --comment (the reason for the change)")
    values = parse_assignments(settings, "setting")
    signer = read_signer(user, comment, password_stdin)
    req = AlarmRequest.new(device, point, "set-limits", signer, {"settings": values})
    _send(ctx, file, req, timeout)


def parse_when(text: str, now: float) -> float:
    """'7d' / '90m' (that long ago), or an ISO 8601 date or time (UTC unless it says)."""
    try:
        return now - float(parse_duration(text))
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: a duration ago ('7d', '12h') or an ISO date/time ('2026-11-01T08:00')"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@alarms.command("report")
@click.option(
    "--db",
    "db_path",
    default="floorctl.db",
    show_default=True,
    envvar="FLOORCTL_DB",
    type=click.Path(dir_okay=False, exists=True),
    help="The record store (the file [floor] store names).",
)
@click.option("--since", default="7d", show_default=True, help="'7d', '12h' or an ISO time.")
@click.option("--until", default=None, help="ISO time or a duration ago (default: now).")
@click.option("--top", default=10, show_default=True, help="How many bad actors to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report(db_path: str, since: str, until: str | None, top: int, as_json: bool) -> None:
    """Alarm KPIs after ISA-18.2 / EEMUA 191 over a window, from the record store: alarms per
    10 minutes, floods, chattering, fleeting and standing alarms, bad actors, priorities."""
    from floorctl.alarms import kpi
    from floorctl.store.db import Store, StoreError

    now = time.time()
    start = parse_when(since, now)
    end = now if until is None else parse_when(until, now)
    if end <= start:
        raise click.BadParameter("the window must end after it starts", param_hint="--until")
    try:
        with Store(db_path) as store:
            inside = [_transition(r) for r in store.alarm_history(start=start, end=end)]
            # alarms active since before the window count as standing too
            before = [_transition(r) for r in store.activations_standing_at(start)]
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    rep = kpi.report(inside, start, end, top)
    standing = kpi.standing([*before, *inside], end)
    if as_json:
        click.echo(json.dumps(_report_json(rep, standing), indent=2))
        return
    click.echo(_report_text(rep, standing, len(inside)))


def _transition(row: Any) -> Any:
    from floorctl.alarms.engine import Cause, Priority, Severity, Transition
    from floorctl.alarms.states import AlarmState

    device, _, point = row.point.partition("/")
    return Transition(
        device=device,
        point=point,
        from_state=AlarmState(row.from_state),
        to_state=AlarmState(row.to_state),
        cause=Cause(row.cause),
        time=row.time,
        severity=None if row.severity is None else Severity(row.severity),
        priority=None if row.priority is None else Priority(row.priority),
    )


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _report_json(rep: Any, standing: list[Any]) -> dict[str, Any]:
    return {
        "since": rep.since,
        "until": rep.until,
        "rate": {
            "annunciations": rep.rate.total,
            "per_10_minutes": rep.rate.average,
            "peak_10_minutes": rep.rate.peak,
            "peak_start": rep.rate.peak_start,
        },
        "floods": [{"start": f.start, "end": f.end, "count": f.count} for f in rep.floods],
        "chattering": [
            {"alarm": "/".join(c.key), "count": c.count, "first": c.first} for c in rep.chattering
        ],
        "fleeting": [
            {"alarm": "/".join(i.key), "start": i.start, "seconds": i.duration}
            for i in rep.fleeting
        ],
        "standing": [
            {"alarm": "/".join(i.key), "start": i.start, "hours": i.duration / 3600}
            for i in standing
        ],
        "bad_actors": [
            {"alarm": "/".join(b.key), "activations": b.activations, "share": b.share}
            for b in rep.bad_actors
        ],
        "priorities": {p.value: share for p, share in rep.priorities.items()},
    }


def _report_text(rep: Any, standing: list[Any], n: int) -> str:
    lines = [
        f"Alarm report {_iso(rep.since)} .. {_iso(rep.until)} ({n} transitions)",
        "",
        f"Annunciations: {rep.rate.total}; {rep.rate.average:.2f} per 10 minutes on average "
        "(EEMUA 191: about 1 is manageable, more than 2 is demanding)",
        f"Busiest 10 minutes: {rep.rate.peak}"
        + (f" from {_iso(rep.rate.peak_start)}" if rep.rate.peak_start is not None else ""),
        f"Floods (more than 10 in 10 minutes): {len(rep.floods)}",
    ]
    lines += [f"  {_iso(f.start)} .. {_iso(f.end)}: {f.count} alarms" for f in rep.floods]
    lines.append(f"Chattering (3 or more activations in 60 s): {len(rep.chattering)}")
    lines += [f"  {'/'.join(c.key)}: {c.count} from {_iso(c.first)}" for c in rep.chattering]
    lines.append(f"Fleeting (cleared within 10 s): {len(rep.fleeting)}")
    lines.append(f"Standing (active over 24 h): {len(standing)}")
    lines += [
        f"  {'/'.join(i.key)}: since {_iso(i.start)} ({i.duration / 3600:.1f} h)" for i in standing
    ]
    lines.append("Bad actors (activations):")
    lines += [
        f"  {'/'.join(b.key):<28} {b.activations:>5}  {b.share:6.1%}" for b in rep.bad_actors
    ] or ["  none"]
    lines.append(
        "Priority distribution (EEMUA: about 80 % low, 15 % medium, 5 % high): "
        + ", ".join(f"{p.value} {share:.0%}" for p, share in rep.priorities.items())
    )
    return "\n".join(lines)
