"""Users, roles, authentication and electronic signatures (21 CFR 11.10(d)(g), 11.50-11.300).

Secrets (passwords or PINs) are stored only as scrypt hashes with a per-user salt and the
scrypt parameters beside them; comparison is constant-time. Five consecutive failures lock the
account until an admin unlocks it. Every failure, lock, unlock, disable, secret change and
signature is written to the audit trail.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from typing import Any

from attrs import frozen

from floorctl.store.audit import SIGNATURE_FIELDS, AuditEntry, AuditTrail, canonical_json, utc_iso
from floorctl.store.audit import sha256_hex as _sha256_hex
from floorctl.store.db import Store

MAX_FAILED_ATTEMPTS = 5
MIN_SECRET_LENGTH = 4  # a 4-digit PIN is the shortest accepted secret


class Role(enum.StrEnum):
    TECHNICIAN = "technician"
    SUPERVISOR = "supervisor"
    PLANNER = "planner"
    QA = "qa"
    ADMIN = "admin"


class Meaning(enum.StrEnum):
    """The meaning of an electronic signature (11.50(a)(3))."""

    PERFORMED = "performed"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    VERIFIED = "verified"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    AUTHORED = "authored"


@frozen
class ScryptParams:
    """scrypt cost: memory is 128 * n * r bytes (the default uses 32 MiB, about 0.1 s)."""

    n: int = 2**15
    r: int = 8
    p: int = 1
    dklen: int = 32

    def derive(self, secret: str, salt: bytes) -> bytes:
        return hashlib.scrypt(
            secret.encode(),
            salt=salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=self.dklen,
            maxmem=2 * 128 * self.n * self.r * self.p + (1 << 20),
        )


@frozen
class User:
    user_id: str
    printed_name: str
    role: Role
    failed_attempts: int
    locked: bool
    disabled: bool
    must_change: bool  # secret was set by an admin: the user must change it before signing
    created_at: str
    secret_changed_at: str

    @property
    def status(self) -> str:
        if self.disabled:
            return "disabled"
        if self.locked:
            return "locked"
        return "must-change-secret" if self.must_change else "active"


@frozen
class Signature:
    id: int
    time: str
    user_id: str
    printed_name: str
    meaning: str
    comment: str | None
    record_seq: int
    record_hash: str
    hash: str

    def manifest(self) -> str:
        """The human-readable manifestation (11.50): printed name, date and time, meaning."""
        text = f"Signed by {self.printed_name} ({self.user_id}) at {self.time}: {self.meaning}"
        return text + (f" - {self.comment}" if self.comment else "")


class AuthError(Exception):
    """Authentication or authorisation failed; the message says why, for people."""


class UnknownUser(AuthError):
    pass


class WrongSecret(AuthError):
    def __init__(self, user_id: str, attempts_left: int) -> None:
        self.user_id = user_id
        self.attempts_left = attempts_left
        left = (
            f"{attempts_left} attempt{'s' if attempts_left != 1 else ''} left before lockout"
            if attempts_left
            else "the account is now locked; an admin must unlock it"
        )
        super().__init__(f"wrong password or PIN for {user_id}: {left}")


class Locked(AuthError):
    pass


class Disabled(AuthError):
    pass


class PermissionDenied(AuthError):
    pass


class UserError(ValueError):
    """A user-management request that cannot be done (duplicate id, weak secret ...)."""


def require_role(user: User, *roles: Role | str) -> User:
    """Return ``user`` if it is active and holds one of ``roles``; else raise PermissionDenied."""
    if user.disabled:
        raise Disabled(f"user {user.user_id} is disabled")
    allowed = {Role(r) for r in roles}
    if user.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise PermissionDenied(
            f"user {user.user_id} has role {user.role.value}; this needs one of: {names}"
        )
    return user


_COLUMNS = (
    "user_id, printed_name, role, failed_attempts, locked, disabled, must_change, "
    "created_at, secret_changed_at"
)


def _user(row: tuple[Any, ...]) -> User:
    uid, name, role, failed, locked, disabled, must_change, created, changed = row
    return User(
        user_id=uid,
        printed_name=name,
        role=Role(role),
        failed_attempts=failed,
        locked=bool(locked),
        disabled=bool(disabled),
        must_change=bool(must_change),
        created_at=created,
        secret_changed_at=changed,
    )


class Users:
    """User accounts and signatures in one :class:`Store`."""

    def __init__(self, store: Store, *, params: ScryptParams | None = None) -> None:
        self.store = store
        self.audit = AuditTrail(store)
        self.params = params or ScryptParams()

    # -- queries ---------------------------------------------------------------------------

    def get(self, user_id: str) -> User | None:
        row = self.store.conn.execute(
            f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", (user_id,)
        ).fetchone()
        return _user(row) if row else None

    def list(self) -> list[User]:
        rows = self.store.conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY user_id")
        return [_user(r) for r in rows]

    def count(self) -> int:
        return self.store.conn.execute("SELECT count(*) FROM users").fetchone()[0]

    # -- administration --------------------------------------------------------------------

    def add(
        self,
        user_id: str,
        printed_name: str,
        role: Role | str,
        secret: str,
        *,
        by: User | None,
        now: float | None = None,
        reason: str | None = None,
    ) -> User:
        """Create a user. ``by`` is the admin doing it; None only for the very first user,
        who must be an admin (bootstrap). Ids are never reused, even of disabled users."""
        role = Role(role)
        user_id = user_id.strip()
        if not user_id or not printed_name.strip():
            raise UserError("a user needs an id and a printed name")
        _check_secret(secret)
        with self.store.transaction() as c:
            if by is None:
                if self.count():
                    raise PermissionDenied("only an admin can add users (give the admin's id)")
                if role is not Role.ADMIN:
                    raise UserError("the first user must be an admin")
                actor_id, actor_name = user_id, printed_name
            else:
                require_role(by, Role.ADMIN)
                actor_id, actor_name = by.user_id, by.printed_name
            if self.get(user_id) is not None:
                raise UserError(f"user id {user_id} exists already (ids are never reused)")
            salt = secrets.token_bytes(16)
            stamp = utc_iso(now)
            c.execute(
                "INSERT INTO users (user_id, printed_name, role, secret_hash, salt, scrypt_n, "
                "scrypt_r, scrypt_p, must_change, created_at, secret_changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    printed_name.strip(),
                    role.value,
                    self.params.derive(secret, salt),
                    salt,
                    self.params.n,
                    self.params.r,
                    self.params.p,
                    int(by is not None and by.user_id != user_id),
                    stamp,
                    stamp,
                ),
            )
            self.audit.append(
                user_id=actor_id,
                printed_name=actor_name,
                action="user.add" if by else "user.bootstrap",
                target=f"user:{user_id}",
                new_value={"printed_name": printed_name.strip(), "role": role.value},
                reason=reason,
                when=now,
            )
        user = self.get(user_id)
        assert user is not None
        return user

    def disable(
        self, user_id: str, *, by: User, reason: str | None = None, now: float | None = None
    ) -> User:
        require_role(by, Role.ADMIN)
        user = self._existing(user_id)
        with self.store.transaction() as c:
            c.execute("UPDATE users SET disabled = 1 WHERE user_id = ?", (user_id,))
            self.audit.append(
                user_id=by.user_id,
                printed_name=by.printed_name,
                action="user.disable",
                target=f"user:{user_id}",
                old_value=user.status,
                new_value="disabled",
                reason=reason,
                when=now,
            )
        return self._existing(user_id)

    def unlock(
        self, user_id: str, *, by: User, reason: str | None = None, now: float | None = None
    ) -> User:
        """Reset the failure counter and lock (an admin only)."""
        require_role(by, Role.ADMIN)
        user = self._existing(user_id)
        with self.store.transaction() as c:
            c.execute(
                "UPDATE users SET locked = 0, failed_attempts = 0 WHERE user_id = ?", (user_id,)
            )
            self.audit.append(
                user_id=by.user_id,
                printed_name=by.printed_name,
                action="user.unlock",
                target=f"user:{user_id}",
                old_value=f"locked={user.locked} failed_attempts={user.failed_attempts}",
                new_value="locked=False failed_attempts=0",
                reason=reason,
                when=now,
            )
        return self._existing(user_id)

    def set_secret(
        self,
        user_id: str,
        new_secret: str,
        *,
        by: User,
        reason: str | None = None,
        now: float | None = None,
    ) -> User:
        """Change a password or PIN. ``by`` is the user themself (already authenticated with
        the old secret) or an admin (a reset: the user must change it before signing)."""
        _check_secret(new_secret)
        user = self._existing(user_id)
        own = by.user_id == user_id
        if not own:
            require_role(by, Role.ADMIN)
        salt = secrets.token_bytes(16)
        with self.store.transaction() as c:
            c.execute(
                "UPDATE users SET secret_hash = ?, salt = ?, scrypt_n = ?, scrypt_r = ?, "
                "scrypt_p = ?, must_change = ?, secret_changed_at = ? WHERE user_id = ?",
                (
                    self.params.derive(new_secret, salt),
                    salt,
                    self.params.n,
                    self.params.r,
                    self.params.p,
                    int(not own),
                    utc_iso(now),
                    user_id,
                ),
            )
            self.audit.append(
                user_id=by.user_id,
                printed_name=by.printed_name,
                action="user.passwd" if own else "user.passwd-reset",
                target=f"user:{user.user_id}",
                reason=reason,
                when=now,
            )
        return self._existing(user_id)

    # -- authentication --------------------------------------------------------------------

    def authenticate(
        self, user_id: str, secret: str, now: float | None = None, *, record_success: bool = True
    ) -> User:
        """Check both components (user id + secret); return the user or raise AuthError.

        Every failure is audited; the fifth consecutive wrong secret locks the account.
        """
        if self.store.in_transaction:
            # a failure raised through an outer transaction would roll back its own record
            raise RuntimeError("authenticate() must not run inside a store transaction")
        now = time.time() if now is None else now
        with self.store.transaction() as c:
            row = c.execute(
                "SELECT secret_hash, salt, scrypt_n, scrypt_r, scrypt_p FROM users "
                "WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            user = self.get(user_id)
            if row is None or user is None:
                # spend the same work as a real check, so timing does not reveal valid ids
                self.params.derive(secret, b"\0" * 16)
                self._fail(user_id, user_id, "unknown user", now)
                error: AuthError = UnknownUser(f"unknown user {user_id}")
            elif user.disabled:
                self._fail(user_id, user.printed_name, "user disabled", now)
                error = Disabled(f"user {user_id} is disabled")
            elif user.locked:
                self._fail(user_id, user.printed_name, "user locked", now)
                error = Locked(
                    f"user {user_id} is locked after {MAX_FAILED_ATTEMPTS} failed attempts; "
                    "an admin must unlock it"
                )
            else:
                stored, salt, n, r, p = row
                derived = ScryptParams(n=n, r=r, p=p, dklen=len(stored)).derive(secret, salt)
                if hmac.compare_digest(derived, stored):
                    if user.failed_attempts:
                        c.execute(
                            "UPDATE users SET failed_attempts = 0 WHERE user_id = ?", (user_id,)
                        )
                    if record_success:
                        self.audit.append(
                            user_id=user_id,
                            printed_name=user.printed_name,
                            action="login",
                            target=f"user:{user_id}",
                            when=now,
                        )
                    return self._existing(user_id)
                failed = user.failed_attempts + 1
                lock = failed >= MAX_FAILED_ATTEMPTS
                c.execute(
                    "UPDATE users SET failed_attempts = ?, locked = ? WHERE user_id = ?",
                    (failed, int(lock), user_id),
                )
                self._fail(user_id, user.printed_name, f"wrong secret ({failed} consecutive)", now)
                if lock:
                    self.audit.append(
                        user_id=user_id,
                        printed_name=user.printed_name,
                        action="user.locked",
                        target=f"user:{user_id}",
                        old_value="unlocked",
                        new_value="locked",
                        reason=f"{failed} consecutive failed attempts",
                        when=now,
                    )
                error = WrongSecret(user_id, MAX_FAILED_ATTEMPTS - failed)
        # raised after the commit, so the failure (and any lock) stays recorded
        raise error

    def _fail(self, user_id: str, name: str, why: str, now: float) -> None:
        self.audit.append(
            user_id=user_id,
            printed_name=name,
            action="login.failed",
            target=f"user:{user_id}",
            reason=why,
            when=now,
        )

    # -- electronic signatures -------------------------------------------------------------

    def sign(
        self,
        user_id: str,
        secret: str,
        meaning: Meaning | str,
        record_ref: int,
        comment: str | None = None,
        now: float | None = None,
    ) -> Signature:
        """Sign the audit entry ``record_ref`` (its seq). Both components are required every
        time (11.200(a)(1)(ii)); the signature stores the entry's hash (11.70)."""
        meaning = Meaning(meaning)
        user = self._signer(user_id, secret, now)
        with self.store.transaction():
            record = self.audit.get(record_ref)
            if record is None:
                raise UserError(f"no audit entry with seq {record_ref} to sign")
            return self._signature(user, meaning, record, comment, now, own_entry=False)

    def signed_action(
        self,
        user_id: str,
        secret: str,
        meaning: Meaning | str,
        *,
        action: str,
        target: str,
        comment: str | None = None,
        old_value: Any = None,
        new_value: Any = None,
        roles: tuple[Role | str, ...] = (),
        now: float | None = None,
    ) -> tuple[AuditEntry, Signature]:
        """Authenticate, check the role, then record the action and its signature together
        (one transaction). A refused role is itself audited."""
        meaning = Meaning(meaning)
        user = self._signer(user_id, secret, now)
        if roles:
            try:
                require_role(user, *roles)
            except PermissionDenied as exc:
                self.audit.append(
                    user_id=user.user_id,
                    printed_name=user.printed_name,
                    action=f"{action}.refused",
                    target=target,
                    reason=str(exc),
                    when=now,
                )
                raise
        with self.store.transaction():
            entry = self.audit.append(
                user_id=user.user_id,
                printed_name=user.printed_name,
                action=action,
                target=target,
                old_value=old_value,
                new_value=new_value,
                reason=comment,
                meaning=meaning.value,
                when=now,
            )
            return entry, self._signature(user, meaning, entry, comment, now, own_entry=True)

    def _signer(self, user_id: str, secret: str, now: float | None) -> User:
        user = self.authenticate(user_id, secret, now, record_success=False)
        if user.must_change:
            why = f"user {user_id} must change the password or PIN an admin set before signing"
            self.audit.append(
                user_id=user.user_id,
                printed_name=user.printed_name,
                action="signature.refused",
                target=f"user:{user_id}",
                reason=why,
                when=now,
            )
            raise AuthError(why)
        return user

    def _signature(
        self,
        user: User,
        meaning: Meaning,
        record: AuditEntry,
        comment: str | None,
        now: float | None,
        *,
        own_entry: bool,
    ) -> Signature:
        fields = {
            "time": utc_iso(now),
            "user_id": user.user_id,
            "printed_name": user.printed_name,
            "meaning": meaning.value,
            "comment": comment,
            "record_seq": record.seq,
            "record_hash": record.hash,
        }
        assert tuple(fields) == SIGNATURE_FIELDS
        sig_hash = _sha256_hex(canonical_json(fields))
        cur = self.store.conn.execute(
            f"INSERT INTO signatures ({', '.join(fields)}, hash) "
            f"VALUES ({', '.join('?' * len(fields))}, ?)",
            (*fields.values(), sig_hash),
        )
        sig = Signature(id=cur.lastrowid, **fields, hash=sig_hash)  # type: ignore[arg-type]
        if not own_entry:
            # a signature on an earlier entry gets its own entry in the trail
            self.audit.append(
                user_id=user.user_id,
                printed_name=user.printed_name,
                action="signature",
                target=f"audit:{record.seq}",
                new_value=sig_hash,
                reason=comment,
                meaning=meaning.value,
                when=now,
            )
        return sig

    def signatures(self, record_seq: int | None = None) -> list[Signature]:
        where, args = ("", ()) if record_seq is None else ("WHERE record_seq = ?", (record_seq,))
        rows = self.store.conn.execute(
            f"SELECT id, {', '.join(SIGNATURE_FIELDS)}, hash FROM signatures {where} ORDER BY id",
            args,
        )
        return [Signature(*row) for row in rows]

    def _existing(self, user_id: str) -> User:
        user = self.get(user_id)
        if user is None:
            raise UnknownUser(f"unknown user {user_id}")
        return user


def _check_secret(secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        raise UserError(f"a password or PIN needs at least {MIN_SECRET_LENGTH} characters")
