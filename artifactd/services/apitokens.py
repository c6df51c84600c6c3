"""Control-plane credentials: API tokens, and who is asking with which permissions.

API tokens never open Git; repo tokens never open the control plane.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from artifactd import ids
from artifactd.errors import ArtifactsError, ErrorCode
from artifactd.store.models import Account, ApiToken
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

READ = "Artifacts Read"
EDIT = "Artifacts Edit"
PERMISSION_GROUPS = (READ, EDIT)

TOKEN_PREFIX = "artd_"
_BASE62 = string.digits + string.ascii_letters
_BODY_LEN = 34
_CHECK_LEN = 6


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out))


def generate_api_token() -> str:
    """``artd_`` + 34 random base62 + 6-char CRC32 checksum: scanners can spot it and
    look-alikes are rejected without a database read."""
    body = "".join(secrets.choice(_BASE62) for _ in range(_BODY_LEN))
    return TOKEN_PREFIX + body + _base62(zlib.crc32(body.encode()), _CHECK_LEN)


def well_formed_api_token(token: str) -> bool:
    if not token.startswith(TOKEN_PREFIX) or len(token) != len(TOKEN_PREFIX) + _BODY_LEN + _CHECK_LEN:
        return False
    body = token[len(TOKEN_PREFIX):len(TOKEN_PREFIX) + _BODY_LEN]
    check = token[len(TOKEN_PREFIX) + _BODY_LEN:]
    if any(c not in _BASE62 for c in body):
        return False
    return secrets.compare_digest(check, _base62(zlib.crc32(body.encode()), _CHECK_LEN))


@dataclass(frozen=True)
class Principal:
    """An authenticated control-plane caller."""

    account_id: str
    permissions: frozenset[str]
    #: None: every namespace of the account.
    namespaces: frozenset[str] | None
    token_id: str
    kind: str = "api_token"

    def can(self, permission: str, account_id: str, namespace: str | None = None) -> bool:
        if account_id != self.account_id:
            return False
        granted = permission in self.permissions or (permission == READ and EDIT in self.permissions)
        if not granted:
            return False
        if namespace is not None and self.namespaces is not None:
            return namespace.lower() in self.namespaces
        return True


def unauthenticated(message: str = "Authentication error: missing or invalid API token.") -> ArtifactsError:
    return ArtifactsError(ErrorCode.UNAUTHENTICATED, message)


class ApiTokenService:
    def __init__(self, core: Core):
        self.core = core

    def create_bootstrap(self, s: Session) -> tuple[str, str]:
        """First start: one account and an API token holding Read and Edit on it."""
        account = Account(id=ids.new_account_id(), name="bootstrap")
        s.add(account)
        s.flush()
        plaintext = self.create(s, account.id, "bootstrap", [READ, EDIT])[1]
        return account.id, plaintext

    def create(self, s: Session, account_id: str, name: str, permissions: list[str],
               namespaces: list[str] | None = None, expires_on: dt.datetime | None = None) -> tuple[ApiToken, str]:
        plaintext = generate_api_token()
        row = ApiToken(
            id=ids.new_id(32),
            account_id=account_id,
            name=name,
            digest=ids.digest(plaintext),
            permissions=list(permissions),
            namespaces=[n.lower() for n in namespaces] if namespaces is not None else None,
            status="active",
            expires_on=expires_on,
        )
        s.add(row)
        s.flush()
        return row, plaintext

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization: Bearer`` header to a principal, or raise 401."""
        if not authorization:
            raise unauthenticated("Authentication required: send Authorization: Bearer <API token>.")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthenticated("Authentication error: use Authorization: Bearer <API token>.")
        if not well_formed_api_token(credential):
            raise unauthenticated()
        with self.core.db.session() as s:
            row = s.scalars(select(ApiToken).where(ApiToken.digest == ids.digest(credential))).first()
            now = utcnow()
            if (
                row is None
                or row.status != "active"
                or (row.expires_on is not None and row.expires_on <= now)
                or (row.not_before is not None and row.not_before > now)
            ):
                raise unauthenticated()
            return Principal(
                account_id=row.account_id,
                permissions=frozenset(row.permissions or ()),
                namespaces=frozenset(row.namespaces) if row.namespaces is not None else None,
                token_id=row.id,
            )


def require(principal: Principal, permission: str, account_id: str, namespace: str | None = None) -> None:
    """Raise 403 unless the principal holds ``permission`` on that account (and namespace)."""
    if principal.can(permission, account_id, namespace):
        return
    if account_id != principal.account_id:
        raise ArtifactsError(ErrorCode.FORBIDDEN, "Authentication error: this token cannot access that account.")
    where = f" on namespace {namespace!r}" if namespace and principal.namespaces is not None else ""
    raise ArtifactsError(ErrorCode.FORBIDDEN, f"Insufficient permissions: this token lacks {permission}{where}.")
