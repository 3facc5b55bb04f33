"""`floorctl audit ...` and `floorctl user ...` on real SQLite files (groups invoked directly)."""

from __future__ import annotations

import csv
import json
import sqlite3

import click
import pytest
from click.testing import CliRunner

from floorctl.store import cli as store_cli
from floorctl.store.audit import AuditTrail
from floorctl.store.cli import audit_group, register_commands, user_group
from floorctl.store.db import open_store
from floorctl.store.users import ScryptParams, Users


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch):
    monkeypatch.setattr(store_cli, "SCRYPT_PARAMS", ScryptParams(n=2**10))


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "floorctl.db")


def run(group, args, input=None):
    return CliRunner().invoke(group, args, input=input, catch_exceptions=False)


@pytest.fixture
def populated(db):
    r = run(
        user_group,
        ["add", "admin", "--name", "Ada Admin", "--role", "admin", "--password-stdin", "--db", db],
        input="admin-pw\n",
    )
    assert r.exit_code == 0, r.output
    # interactive: admin's secret, then the new PIN twice, none echoed
    r = run(
        user_group,
        ["add", "tech1", "--name", "Tom Tech", "--role", "technician", "--by", "admin", "--db", db],
        input="admin-pw\n4711\n4711\n",
    )
    assert r.exit_code == 0, r.output
    assert "added tech1 (Tom Tech, technician)" in r.output
    assert "4711" not in r.output and "admin-pw" not in r.output
    return db


def test_user_add_list_disable_passwd_unlock(populated):
    db = populated
    r = run(user_group, ["list", "--db", db])
    assert r.exit_code == 0
    assert "admin" in r.output and "tech1" in r.output and "must-change-secret" in r.output
    # only an admin adds users
    r = run(
        user_group,
        ["add", "x", "--name", "X", "--role", "qa", "--password-stdin", "--db", db],
        input="1234\n",
    )
    assert r.exit_code == 1 and "--by ADMIN" in r.output
    r = run(
        user_group,
        [
            "add",
            "x",
            "--name",
            "X",
            "--role",
            "qa",
            "--by",
            "tech1",
            "--password-stdin",
            "--db",
            db,
        ],
        input="4711\n1234\n",
    )
    assert r.exit_code == 1 and "needs one of: admin" in r.output
    # the user changes the admin-set PIN (current one first, then the new one twice)
    r = run(user_group, ["passwd", "tech1", "--db", db], input="4711\n2468\n2468\n")
    assert r.exit_code == 0, r.output
    # a wrong current secret is refused
    r = run(user_group, ["passwd", "tech1", "--password-stdin", "--db", db], input="0000\n1\n")
    assert r.exit_code == 1 and "4 attempts left" in r.output
    # lock the account, then unlock it as admin
    for _ in range(4):
        run(user_group, ["passwd", "tech1", "--password-stdin", "--db", db], input="0\n")
    rows = json.loads(run(user_group, ["list", "--json", "--db", db]).output)
    tech = next(u for u in rows if u["user_id"] == "tech1")
    assert (tech["status"], tech["failed_attempts"]) == ("locked", 5)
    r = run(
        user_group,
        [
            "unlock",
            "tech1",
            "--by",
            "admin",
            "--reason",
            "ticket 12",
            "--password-stdin",
            "--db",
            db,
        ],
        input="admin-pw\n",
    )
    assert r.exit_code == 0, r.output
    r = run(
        user_group,
        ["disable", "tech1", "--by", "admin", "--password-stdin", "--db", db],
        input="admin-pw\n",
    )
    assert r.exit_code == 0 and "disabled tech1" in r.output
    rows = json.loads(run(user_group, ["list", "--json", "--db", db]).output)
    assert next(u for u in rows if u["user_id"] == "tech1")["status"] == "disabled"
    with open_store(db) as s:
        actions = [e.action for e in AuditTrail(s).entries()]
        assert actions.count("login.failed") == 5 and "user.locked" in actions
        assert actions[-1] == "user.disable"
        assert Users(s).get("tech1").disabled


def test_audit_verify_and_export(populated, tmp_path):
    db = populated
    r = run(audit_group, ["verify", "--db", db])
    assert r.exit_code == 0 and "intact" in r.output
    out = tmp_path / "trail.csv"
    r = run(audit_group, ["export", "--format", "csv", "--out", str(out), "--db", db])
    assert r.exit_code == 0, r.output
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [row["action"] for row in rows][:2] == ["user.bootstrap", "login"]
    assert rows[-1]["action"] == "audit.verify"  # checks are recorded
    r = run(
        audit_group, ["export", "--format", "json", "--out", str(tmp_path / "t.json"), "--db", db]
    )
    assert r.exit_code == 0
    doc = json.loads((tmp_path / "t.json").read_text("utf-8"))
    assert doc["entries"][-1]["action"] == "audit.export"  # the CSV export is recorded


def test_audit_verify_names_the_tampered_entry(populated):
    db = populated
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET printed_name = 'Tom Tecj' WHERE seq = 3")
    raw.close()
    r = run(audit_group, ["verify", "--db", db, "--no-record"])
    assert r.exit_code == 1
    assert "BROKEN at seq 3: hash mismatch" in r.output


def test_missing_store_is_a_usage_error(tmp_path):
    r = run(audit_group, ["verify", "--db", str(tmp_path / "nope.db")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_register_commands_adds_both_groups(db):
    @click.group()
    def cli():
        pass

    register_commands(cli)
    assert {"audit", "user"} <= set(cli.commands)
    r = run(
        cli,
        ["user", "add", "a", "--name", "A", "--role", "admin", "--password-stdin", "--db", db],
        input="secret\n",
    )
    assert r.exit_code == 0, r.output
