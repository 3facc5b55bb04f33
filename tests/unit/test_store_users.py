"""Users, scrypt secrets, lockout, roles and electronic signatures."""

from __future__ import annotations

import sqlite3

import pytest

from floorctl.store.audit import AuditTrail
from floorctl.store.db import open_store
from floorctl.store.users import (
    AuthError,
    Disabled,
    Locked,
    Meaning,
    PermissionDenied,
    Role,
    ScryptParams,
    UnknownUser,
    UserError,
    Users,
    WrongSecret,
    require_role,
)

FAST = ScryptParams(n=2**10)  # tests only: production default is 2**15
T0 = 1_790_000_040.0


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "floorctl.db")
    yield s
    s.close()


@pytest.fixture
def users(store):
    u = Users(store, params=FAST)
    admin = u.add("admin", "Ada Admin", Role.ADMIN, "admin-pw-1", by=None, now=T0)
    u.add("tech1", "Tom Tech", Role.TECHNICIAN, "4711", by=admin, now=T0)
    u.add("qa1", "Quinn Assure", Role.QA, "qa-secret", by=admin, now=T0)
    # a user's own first change clears the must-change flag an admin-set secret carries
    for uid, pw in (("tech1", "4711"), ("qa1", "qa-secret")):
        me = u.authenticate(uid, pw, T0)
        u.set_secret(uid, pw, by=me, now=T0)
    return u


def _actions(store):
    return [(e.action, e.target, e.reason) for e in AuditTrail(store).entries()]


def test_first_user_must_be_an_admin_and_then_admins_add(store):
    u = Users(store, params=FAST)
    with pytest.raises(UserError, match="first user must be an admin"):
        u.add("t", "T", Role.TECHNICIAN, "1234", by=None)
    admin = u.add("admin", "Ada Admin", Role.ADMIN, "pw-admin", by=None)
    with pytest.raises(PermissionDenied):
        u.add("x", "X", Role.QA, "1234", by=None)
    tech = u.add("t", "Tom", "technician", "1234", by=admin)
    assert tech.must_change  # an admin chose the secret
    with pytest.raises(PermissionDenied, match="needs one of: admin"):
        u.add("y", "Y", Role.QA, "1234", by=tech)
    with pytest.raises(UserError, match="never reused"):
        u.add("t", "Another Tom", Role.QA, "1234", by=admin)
    with pytest.raises(UserError, match="at least 4"):
        u.add("z", "Z", Role.QA, "123", by=admin)
    with pytest.raises(ValueError):
        u.add("z", "Z", "janitor", "1234", by=admin)
    assert [a[0] for a in _actions(store)] == ["user.bootstrap", "user.add"]


def test_secrets_are_stored_only_as_scrypt_hashes(tmp_path):
    secret = "correct-horse-battery"
    with open_store(tmp_path / "f.db") as s:
        u = Users(s)  # production parameters
        u.add("admin", "Ada Admin", Role.ADMIN, secret, by=None)
        row = s.conn.execute(
            "SELECT secret_hash, salt, scrypt_n, scrypt_r, scrypt_p FROM users"
        ).fetchone()
        h, salt, n, r, p = row
        assert (len(h), len(salt), n, r, p) == (32, 16, 2**15, 8, 1)
        assert h == ScryptParams(n=n, r=r, p=p).derive(secret, salt)
        u.add("b", "Bo", Role.QA, secret, by=u.get("admin"))
        salts = [r[0] for r in s.conn.execute("SELECT salt FROM users")]
        assert salts[0] != salts[1]  # per-user salt
    blob = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    assert secret.encode() not in blob and secret.encode("utf-16-le") not in blob


def test_authenticate_ok_and_every_failure_audited(users, store):
    assert users.authenticate("tech1", "4711", T0).role is Role.TECHNICIAN
    with pytest.raises(UnknownUser, match="unknown user nobody"):
        users.authenticate("nobody", "x", T0)
    with pytest.raises(WrongSecret, match="4 attempts left"):
        users.authenticate("tech1", "0000", T0)
    fails = [a for a in _actions(store) if a[0] == "login.failed"]
    assert fails == [
        ("login.failed", "user:nobody", "unknown user"),
        ("login.failed", "user:tech1", "wrong secret (1 consecutive)"),
    ]
    # a success resets the count
    users.authenticate("tech1", "4711", T0)
    assert users.get("tech1").failed_attempts == 0


def test_five_wrong_pins_lock_the_account_until_an_admin_unlocks(users, store):
    left = []
    for _ in range(5):
        with pytest.raises(WrongSecret) as info:
            users.authenticate("tech1", "9999", T0)
        left.append(info.value.attempts_left)
    assert left == [4, 3, 2, 1, 0]
    assert "now locked" in str(info.value)
    assert users.get("tech1").locked and users.get("tech1").status == "locked"
    with pytest.raises(Locked, match="admin must unlock"):
        users.authenticate("tech1", "4711", T0)  # even the right PIN
    actions = [a[0] for a in _actions(store)]
    assert actions.count("user.locked") == 1
    assert actions[-7:] == ["login.failed"] * 5 + ["user.locked", "login.failed"]
    with pytest.raises(PermissionDenied):
        users.unlock("tech1", by=users.get("qa1"))
    users.unlock("tech1", by=users.get("admin"), reason="called the help desk")
    assert users.authenticate("tech1", "4711", T0).failed_attempts == 0
    assert ("user.unlock", "user:tech1", "called the help desk") in _actions(store)
    assert AuditTrail(store).verify().ok


def test_disabled_user_cannot_log_in_or_sign(users, store):
    record = AuditTrail(store).append(
        user_id="system", printed_name="floorctl", action="alarm.raise", target="alarm:r1/dp"
    )
    users.disable("tech1", by=users.get("admin"), reason="left the company")
    assert users.get("tech1").status == "disabled"
    with pytest.raises(Disabled):
        users.authenticate("tech1", "4711", T0)
    with pytest.raises(Disabled):
        users.sign("tech1", "4711", Meaning.ACKNOWLEDGED, record.seq, "seen")
    with pytest.raises(Disabled):
        require_role(users.get("tech1"), Role.TECHNICIAN)
    assert users.signatures() == []
    assert ("login.failed", "user:tech1", "user disabled") in _actions(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("DELETE FROM users WHERE user_id = 'tech1'")


def test_signature_links_to_its_record(users, store):
    trail = AuditTrail(store)
    record = trail.append(
        user_id="system",
        printed_name="floorctl",
        action="alarm.raise",
        target="alarm:r1/dp",
        new_value="unack",
        when=T0,
    )
    sig = users.sign("tech1", "4711", "acknowledged", record.seq, "door left open", T0 + 30)
    assert (sig.record_seq, sig.record_hash) == (record.seq, record.hash)
    assert sig.manifest() == (
        "Signed by Tom Tech (tech1) at 2026-09-21T14:14:30.000000Z: acknowledged - door left open"
    )
    head = trail.head()
    assert (head.action, head.target, head.meaning, head.new_value) == (
        "signature",
        f"audit:{record.seq}",
        "acknowledged",
        sig.hash,
    )
    assert users.signatures(record.seq) == [sig]
    assert trail.verify().ok
    # the signature cannot be moved onto another record
    raw = sqlite3.connect(store.path, isolation_level=None)
    raw.execute("DROP TRIGGER signatures_no_update")
    raw.execute("UPDATE signatures SET record_seq = 1")
    raw.close()
    result = trail.verify()
    assert not result.ok and "signature 1" in result.problem


def test_wrong_secret_cannot_sign_and_counts_towards_lockout(users, store):
    record = AuditTrail(store).append(
        user_id="system", printed_name="floorctl", action="alarm.raise", target="alarm:r1/dp"
    )
    with pytest.raises(WrongSecret):
        users.sign("tech1", "0000", Meaning.ACKNOWLEDGED, record.seq)
    assert users.get("tech1").failed_attempts == 1 and users.signatures() == []
    with pytest.raises(UserError, match="no audit entry"):
        users.sign("tech1", "4711", Meaning.ACKNOWLEDGED, 999)
    with pytest.raises(ValueError):
        users.sign("tech1", "4711", "liked", record.seq)


def test_signed_action_records_action_and_signature_together(users, store):
    entry, sig = users.signed_action(
        "qa1",
        "qa-secret",
        Meaning.APPROVED,
        action="limit.change",
        target="room-3/dp",
        old_value=-2.5,
        new_value=-3.0,
        comment="CC-204",
        roles=(Role.QA, Role.ADMIN),
        now=T0,
    )
    assert (entry.meaning, entry.reason, entry.printed_name) == (
        "approved",
        "CC-204",
        "Quinn Assure",
    )
    assert sig.record_seq == entry.seq and sig.record_hash == entry.hash
    assert AuditTrail(store).head() == entry  # no extra "signature" entry for its own action
    # the wrong role is refused, and the refusal is audited
    with pytest.raises(PermissionDenied):
        users.signed_action(
            "tech1",
            "4711",
            Meaning.APPROVED,
            action="limit.change",
            target="room-3/dp",
            roles=(Role.QA,),
        )
    assert _actions(store)[-1][:2] == ("limit.change.refused", "room-3/dp")
    assert len(users.signatures()) == 1
    assert AuditTrail(store).verify().ok


def test_admin_reset_secret_must_be_changed_before_signing(users, store):
    record = AuditTrail(store).append(
        user_id="system", printed_name="floorctl", action="batch.release", target="batch:B-7"
    )
    users.set_secret("qa1", "temp-1234", by=users.get("admin"), reason="forgotten")
    assert users.get("qa1").must_change
    with pytest.raises(AuthError, match="must change"):
        users.sign("qa1", "temp-1234", Meaning.REVIEWED, record.seq)
    me = users.authenticate("qa1", "temp-1234")
    users.set_secret("qa1", "my-own-secret", by=me)
    sig = users.sign("qa1", "my-own-secret", Meaning.REVIEWED, record.seq)
    assert sig.printed_name == "Quinn Assure"
    assert [a[0] for a in _actions(store)][-5:] == [
        "user.passwd-reset",
        "signature.refused",
        "login",
        "user.passwd",
        "signature",
    ]


def test_require_role(users):
    tech = users.get("tech1")
    assert require_role(tech, Role.TECHNICIAN, Role.SUPERVISOR) is tech
    with pytest.raises(PermissionDenied, match="role technician"):
        require_role(tech, "qa", "admin")


def test_authenticate_refuses_to_run_inside_a_transaction(users, store):
    # a failure record must never be rolled back together with an outer transaction
    with pytest.raises(RuntimeError, match="inside a store transaction"), store.transaction():
        users.authenticate("tech1", "0000", T0)
    assert users.get("tech1").failed_attempts == 0
