"""Records: the SQLite store (WAL), the hash-chained audit trail, users and signatures.

See docs/records.md.
"""

from floorctl.store.audit import AuditEntry, AuditTrail, VerifyResult, file_sha256
from floorctl.store.db import AlarmTransition, Rollup, Store, StoreError, open_store
from floorctl.store.users import (
    AuthError,
    Disabled,
    Locked,
    Meaning,
    PermissionDenied,
    Role,
    ScryptParams,
    Signature,
    UnknownUser,
    User,
    Users,
    WrongSecret,
    require_role,
)

__all__ = [
    "AlarmTransition",
    "AuditEntry",
    "AuditTrail",
    "AuthError",
    "Disabled",
    "Locked",
    "Meaning",
    "PermissionDenied",
    "Role",
    "Rollup",
    "ScryptParams",
    "Signature",
    "Store",
    "StoreError",
    "UnknownUser",
    "User",
    "Users",
    "VerifyResult",
    "WrongSecret",
    "file_sha256",
    "open_store",
    "require_role",
]
