"""``floorctl audit ...`` and ``floorctl user ...``: the records command groups.

Hooked into the main CLI by :func:`register_commands`. Every command takes ``--db PATH``
(default ``floorctl.db``, or $FLOORCTL_DB). Secrets are prompted for without echo, or read one
per line from stdin with ``--password-stdin``: first the acting admin's (or the user's current)
secret when one is needed, then the new one.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator

import click

from floorctl.store.audit import AuditTrail, file_sha256
from floorctl.store.db import Store, StoreError
from floorctl.store.users import AuthError, Role, ScryptParams, User, UserError, Users

DEFAULT_DB = "floorctl.db"
#: scrypt cost for new secrets (tests lower it by patching; stored per user, so old hashes verify)
SCRYPT_PARAMS = ScryptParams()


def db_option(*, must_exist: bool):
    return click.option(
        "--db",
        "db_path",
        default=DEFAULT_DB,
        show_default=True,
        envvar="FLOORCTL_DB",
        type=click.Path(dir_okay=False, exists=must_exist),
        help="The record store (SQLite file).",
    )


def _open(path: str) -> Store:
    try:
        return Store(path)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


def _system_actor() -> tuple[str, str]:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return "system", f"floorctl CLI (OS user {who})"


class _Secrets:
    """Secrets from prompts or, with --password-stdin, one per line from stdin."""

    def __init__(self, from_stdin: bool) -> None:
        self._lines: Iterator[str] | None = None
        if from_stdin:
            self._lines = iter(sys.stdin.read().splitlines())

    def get(self, prompt: str, *, confirm: bool = False) -> str:
        if self._lines is not None:
            try:
                return next(self._lines)
            except StopIteration:
                raise click.UsageError(f"--password-stdin: no line left for: {prompt}") from None
        return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _admin(users: Users, admin_id: str, secrets: _Secrets) -> User:
    try:
        return users.authenticate(admin_id, secrets.get(f"Password or PIN of {admin_id}"))
    except AuthError as exc:
        _fail(exc)
        raise  # unreachable: _fail exits


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read secrets from stdin, one per line (acting user's first, then the new one).",
)
by_option = click.option("--by", "by_id", metavar="ADMIN", help="The admin doing this.")
reason_option = click.option("--reason", help="Why (recorded in the audit trail).")


# -- audit ---------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """Verify and export the hash-chained audit trail."""


@audit_group.command("verify")
@db_option(must_exist=True)
@click.option("--no-record", is_flag=True, help="Do not record this check in the audit trail.")
def audit_verify(db_path: str, no_record: bool) -> None:
    """Walk the audit chain and the signatures; name the first broken entry.

    Exit 0 when intact, 1 when broken.
    """
    with _open(db_path) as store:
        trail = AuditTrail(store)
        result = trail.verify()
        click.echo(result.describe())
        if not no_record:
            uid, name = _system_actor()
            trail.append(
                user_id=uid,
                printed_name=name,
                action="audit.verify",
                target=str(db_path),
                new_value=result.describe(),
            )
    sys.exit(0 if result.ok else 1)


@audit_group.command("export")
@db_option(must_exist=True)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
def audit_export(db_path: str, fmt: str, out: str) -> None:
    """Write a human-readable copy of the audit trail, with signatures (CSV or JSON)."""
    with _open(db_path) as store:
        trail = AuditTrail(store)
        n = trail.export(out, fmt)
        uid, name = _system_actor()
        trail.append(
            user_id=uid,
            printed_name=name,
            action="audit.export",
            target=str(out),
            new_value=f"{n} entries, {fmt}, sha256 {file_sha256(out)}",
        )
    click.echo(f"{out}: {n} entries ({fmt})")


# -- users ---------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Manage users: add, disable, unlock, change password or PIN, list."""


@user_group.command("add")
@click.argument("user_id")
@click.option("--name", required=True, help="Printed name, as shown on signatures.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@by_option
@reason_option
@password_stdin_option
@db_option(must_exist=False)
def user_add(
    user_id: str,
    name: str,
    role: str,
    by_id: str | None,
    reason: str | None,
    password_stdin: bool,
    db_path: str,
) -> None:
    """Add a user. The first user of a store must be an admin and needs no --by;
    after that, --by names the admin doing it (asked for their password or PIN)."""
    secrets = _Secrets(password_stdin)
    with _open(db_path) as store:
        users = Users(store, params=SCRYPT_PARAMS)
        if by_id is None and users.count():
            _fail(UserError("give --by ADMIN: only an admin can add users"))
        by = _admin(users, by_id, secrets) if by_id else None
        secret = secrets.get(f"Password or PIN for {user_id}", confirm=True)
        try:
            user = users.add(user_id, name, role, secret, by=by, reason=reason)
        except (AuthError, UserError) as exc:
            _fail(exc)
    click.echo(f"added {user.user_id} ({user.printed_name}, {user.role.value})")


@user_group.command("disable")
@click.argument("user_id")
@by_option
@reason_option
@password_stdin_option
@db_option(must_exist=True)
def user_disable(
    user_id: str, by_id: str | None, reason: str | None, password_stdin: bool, db_path: str
) -> None:
    """Disable a user for good (the id is never reused)."""
    _admin_action("disable", user_id, by_id, reason, password_stdin, db_path)
    click.echo(f"disabled {user_id}")


def _admin_action(
    action: str,
    user_id: str,
    by_id: str | None,
    reason: str | None,
    password_stdin: bool,
    db_path: str,
) -> None:
    """An action only an admin may take on a user, signed in by --by and their secret."""
    if not by_id:
        raise click.UsageError("--by ADMIN is required")
    secrets = _Secrets(password_stdin)
    with _open(db_path) as store:
        users = Users(store, params=SCRYPT_PARAMS)
        admin = _admin(users, by_id, secrets)
        try:
            getattr(users, action)(user_id, by=admin, reason=reason)
        except (AuthError, UserError) as exc:
            _fail(exc)


@user_group.command("unlock")
@click.argument("user_id")
@by_option
@reason_option
@password_stdin_option
@db_option(must_exist=True)
def user_unlock(
    user_id: str, by_id: str | None, reason: str | None, password_stdin: bool, db_path: str
) -> None:
    """Unlock a user locked out after failed attempts (an admin only)."""
    _admin_action("unlock", user_id, by_id, reason, password_stdin, db_path)
    click.echo(f"unlocked {user_id}")


@user_group.command("passwd")
@click.argument("user_id")
@by_option
@reason_option
@password_stdin_option
@db_option(must_exist=True)
def user_passwd(
    user_id: str, by_id: str | None, reason: str | None, password_stdin: bool, db_path: str
) -> None:
    """Change a password or PIN: your own (asks for the current one), or, with --by ADMIN,
    reset someone else's (they must change it before they can sign)."""
    secrets = _Secrets(password_stdin)
    with _open(db_path) as store:
        users = Users(store, params=SCRYPT_PARAMS)
        actor = _admin(users, by_id or user_id, secrets)
        new = secrets.get(f"New password or PIN for {user_id}", confirm=True)
        try:
            users.set_secret(user_id, new, by=actor, reason=reason)
        except (AuthError, UserError) as exc:
            _fail(exc)
    click.echo(f"changed the password or PIN of {user_id}")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@db_option(must_exist=True)
def user_list(as_json: bool, db_path: str) -> None:
    """List users with role and status (active, locked, disabled, must-change-secret)."""
    with _open(db_path) as store:
        users = Users(store, params=SCRYPT_PARAMS).list()
    if as_json:
        rows = [
            {
                "user_id": u.user_id,
                "printed_name": u.printed_name,
                "role": u.role.value,
                "status": u.status,
                "failed_attempts": u.failed_attempts,
                "created_at": u.created_at,
                "secret_changed_at": u.secret_changed_at,
            }
            for u in users
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for u in users:
        click.echo(
            f"{u.user_id:<16} {u.role.value:<11} {u.status:<19} {u.printed_name}"
            f"  (failed attempts: {u.failed_attempts})"
        )


def register_commands(cli: click.Group) -> None:
    """Add the ``audit`` and ``user`` groups to the main ``floorctl`` group."""
    cli.add_command(audit_group)
    cli.add_command(user_group)
