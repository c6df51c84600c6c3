"""Control-plane credentials: API tokens and OAuth access tokens, and who is asking with
which permissions.

API tokens never open Git; repo tokens never open the control plane.

Token shapes (all: a typed prefix, 34 random base62 characters and a 6-character CRC32
checksum, so secret scanners find leaked ones and look-alikes are rejected without a
database read):

- ``artd_``  API token (user- or account-owned)
- ``artdo_`` OAuth access token
- ``artdr_`` OAuth refresh token (only ever sent to the token and revocation endpoints)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import string
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from artifactd import ids
from artifactd.errors import ArtifactsError, ErrorCode
from artifactd.store.db import Executor
from artifactd.store.models import Account, ApiToken
from artifactd.store.models_identity import Membership, User
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

READ = "Artifacts Read"
EDIT = "Artifacts Edit"
TOKENS_READ = "API Tokens Read"
TOKENS_WRITE = "API Tokens Write"
PERMISSION_GROUPS = (READ, EDIT)
#: Every permission group a token policy may carry, with a stable id for each.
ALL_PERMISSION_GROUPS = {
    READ: "7f0d2b9c5e1a4c8f9a3b6d2e1c4f8a01",
    EDIT: "7f0d2b9c5e1a4c8f9a3b6d2e1c4f8a02",
    TOKENS_READ: "7f0d2b9c5e1a4c8f9a3b6d2e1c4f8a03",
    TOKENS_WRITE: "7f0d2b9c5e1a4c8f9a3b6d2e1c4f8a04",
}
#: Permission groups that apply to an account's artifacts (and may be narrowed to namespaces).
ARTIFACT_GROUPS = (READ, EDIT)
#: Permission groups about managing tokens: on a user (their own tokens) or an account.
TOKEN_GROUPS = (TOKENS_READ, TOKENS_WRITE)

TOKEN_PREFIX = "artd_"
ACCESS_PREFIX = "artdo_"
REFRESH_PREFIX = "artdr_"
_BASE62 = string.digits + string.ascii_letters
_BODY_LEN = 34
_CHECK_LEN = 6


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out))


def generate_token(prefix: str) -> str:
    body = "".join(secrets.choice(_BASE62) for _ in range(_BODY_LEN))
    return prefix + body + _base62(zlib.crc32(body.encode()), _CHECK_LEN)


def well_formed(token: str, prefix: str) -> bool:
    if not isinstance(token, str) or not token.startswith(prefix) or len(token) != len(prefix) + _BODY_LEN + _CHECK_LEN:
        return False
    body = token[len(prefix):len(prefix) + _BODY_LEN]
    check = token[len(prefix) + _BODY_LEN:]
    if any(c not in _BASE62 for c in body):
        return False
    return secrets.compare_digest(check, _base62(zlib.crc32(body.encode()), _CHECK_LEN))


def generate_api_token() -> str:
    """``artd_`` + 34 random base62 + 6-char CRC32 checksum: scanners can spot it and
    look-alikes are rejected without a database read."""
    return generate_token(TOKEN_PREFIX)


def well_formed_api_token(token: str) -> bool:
    return well_formed(token, TOKEN_PREFIX)


@dataclass(frozen=True)
class Grant:
    """One resolved policy line: an effect, permission groups, and one resource."""

    effect: str
    permissions: frozenset[str]
    #: The account this applies to; None for a user resource.
    account_id: str | None = None
    #: Narrowed to these (lower-cased) namespaces; None: every namespace.
    namespaces: frozenset[str] | None = None
    #: The user this applies to (token-management groups on a user's own tokens).
    user_id: str | None = None


#: Grants of a credential whose policies resolve to nothing (e.g. its user left the account).
NOTHING = (Grant("allow", frozenset()),)


def _allows(perms: frozenset[str], wanted: str) -> bool:
    return (wanted in perms or (wanted == READ and EDIT in perms)
            or (wanted == TOKENS_READ and TOKENS_WRITE in perms))


def _denies(perms: frozenset[str], wanted: str) -> bool:
    # Denying read also denies edit: edit without read is not a thing.
    return (wanted in perms or (wanted == EDIT and READ in perms)
            or (wanted == TOKENS_WRITE and TOKENS_READ in perms))


@dataclass(frozen=True)
class Principal:
    """An authenticated control-plane caller."""

    #: The token's home account (the first account it grants something on).
    account_id: str
    permissions: frozenset[str]
    #: None: every namespace of the account.
    namespaces: frozenset[str] | None
    token_id: str
    #: api_token | account_token | oauth
    kind: str = "api_token"
    user_id: str | None = None
    user_email: str | None = None
    #: Resolved policies; empty: the legacy single-account fields above apply.
    grants: tuple[Grant, ...] = ()
    #: OAuth: the granted scopes.
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None
    expires_on: dt.datetime | None = None
    client_ip: str | None = None
    #: account id -> role, for user credentials (memberships at authentication time).
    roles: dict = field(default_factory=dict, compare=False, hash=False)

    def _grant_list(self) -> tuple[Grant, ...]:
        if self.grants:
            return self.grants
        return (Grant("allow", self.permissions, self.account_id, self.namespaces),)

    def can(self, permission: str, account_id: str, namespace: str | None = None) -> bool:
        ns = namespace.lower() if namespace is not None else None
        grants = [g for g in self._grant_list() if g.account_id == account_id]
        for g in grants:
            if g.effect == "deny" and _denies(g.permissions, permission) and (
                g.namespaces is None or (ns is not None and ns in g.namespaces)
            ):
                return False
        for g in grants:
            if g.effect == "allow" and _allows(g.permissions, permission) and (
                ns is None or g.namespaces is None or ns in g.namespaces
            ):
                return True
        return False

    def namespace_scope(self, permission: str, account_id: str) -> tuple[frozenset[str] | None, frozenset[str]]:
        """The namespaces of an account that ``permission`` reaches, as (allowed: None
        for every one; denied): what a list of namespaces may show this caller."""
        allowed: set[str] | None = set()
        denied: set[str] = set()
        for g in self._grant_list():
            if g.account_id != account_id:
                continue
            if g.effect == "deny" and _denies(g.permissions, permission) and g.namespaces is not None:
                denied |= g.namespaces
            elif g.effect == "allow" and _allows(g.permissions, permission) and allowed is not None:
                if g.namespaces is None:
                    allowed = None
                else:
                    allowed |= g.namespaces
        return (None if allowed is None else frozenset(allowed)), frozenset(denied)

    def can_on_user(self, permission: str, user_id: str) -> bool:
        grants = [g for g in self._grant_list() if g.user_id is not None and g.user_id == user_id]
        if any(g.effect == "deny" and _denies(g.permissions, permission) for g in grants):
            return False
        return any(g.effect == "allow" and _allows(g.permissions, permission) for g in grants)

    @property
    def account_ids(self) -> list[str]:
        """Accounts this credential grants anything on, in a stable order."""
        seen: dict[str, None] = {}
        for g in self._grant_list():
            if g.effect == "allow" and g.account_id is not None:
                seen.setdefault(g.account_id, None)
        return list(seen)

    def knows_account(self, account_id: str) -> bool:
        return account_id in self.account_ids


def unauthenticated(message: str = "Authentication error: missing or invalid API token.") -> ArtifactsError:
    return ArtifactsError(ErrorCode.UNAUTHENTICATED, message)


# -- policies: Cloudflare shape <-> grants -----------------------------------------------

ACCOUNT_RESOURCE = "com.cloudflare.api.account."
USER_RESOURCE = "com.cloudflare.api.user."
NAMESPACE_RESOURCE = "com.cloudflare.api.account.artifacts.namespace."


def grants_from_policies(policies: list, member_accounts: dict[str, str] | None) -> tuple[Grant, ...]:
    """Resolve stored policies. ``member_accounts`` (account id -> role) bounds a user
    token to the accounts its user belongs to now; None for account-owned tokens."""
    out: list[Grant] = []
    for p in policies or ():
        effect = p.get("effect", "allow")
        perms = frozenset(g["name"] for g in p.get("permission_groups", ()))
        for key, value in (p.get("resources") or {}).items():
            namespaces = None
            if isinstance(value, dict):
                namespaces = frozenset(k[len(NAMESPACE_RESOURCE):].lower() for k in value
                                       if k.startswith(NAMESPACE_RESOURCE))
            if key.startswith(USER_RESOURCE):
                out.append(Grant(effect, perms & frozenset(TOKEN_GROUPS), user_id=key[len(USER_RESOURCE):]))
            elif key == ACCOUNT_RESOURCE + "*":
                for acct in (member_accounts or {}):
                    out.append(Grant(effect, perms, acct, namespaces))
            elif key.startswith(ACCOUNT_RESOURCE):
                acct = key[len(ACCOUNT_RESOURCE):]
                if member_accounts is None or acct in member_accounts or effect == "deny":
                    out.append(Grant(effect, perms, acct, namespaces))
    return tuple(out)


def ip_allowed(condition: dict | None, client_ip: str | None) -> bool:
    """A token's request_ip condition: fail closed when the client IP is unknown."""
    rules = (condition or {}).get("request_ip") or {}
    allow, deny = rules.get("in") or [], rules.get("not_in") or []
    if not allow and not deny:
        return True
    if not client_ip:
        return False
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped

    def hit(cidrs: list[str]) -> bool:
        for c in cidrs:
            net = ipaddress.ip_network(c, strict=False)
            if ip.version == net.version and ip in net:
                return True
        return False

    if deny and hit(deny):
        return False
    return hit(allow) if allow else True


@dataclass(frozen=True)
class Rejection:
    """A refused credential, for :meth:`ApiTokenService.reject` to record."""

    client_ip: str | None
    prefix: str = ""
    token_row: Any = None  # set when a valid token came from a refused address


#: Built once: every authenticated REST request runs them. Columns, not ORM objects:
#: building two mapped instances cost more than the query.
_API_TOKEN = (select(*ApiToken.__table__.c, User.status.label("user_status"), User.email.label("user_email"))
              .outerjoin(User, User.id == ApiToken.user_id)
              .where(ApiToken.digest == bindparam("digest")))
_ROLES = (select(Membership.account_id, Membership.role).where(Membership.user_id == bindparam("user_id"))
          .order_by(Membership.created_at))


def roles_of(s: Executor, user_id: str) -> dict[str, str]:
    """A user's role by account, oldest membership first."""
    return dict(s.execute(_ROLES, {"user_id": user_id}).all())


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

    def authenticate(self, authorization: str | None, client_ip: str | None = None) -> Principal:
        """Resolve an ``Authorization: Bearer`` header (API token or OAuth access token)
        to a principal, or raise 401 (403 for a token used from a refused address,
        429 while the client is being slowed down after repeated failures)."""
        result = self.verify(authorization, client_ip)
        if isinstance(result, Rejection):
            self.reject(result)
        return result

    def verify(self, authorization: str | None, client_ip: str | None = None) -> Principal | Rejection:
        """:meth:`authenticate` without the writes a refusal makes (audit event, failure
        count): it only reads, so the HTTP layer may run it on the event loop and the
        refusal (:meth:`reject`) in a worker thread. A malformed header raises at once."""
        if not authorization:
            raise unauthenticated("Authentication required: send Authorization: Bearer <API token>.")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthenticated("Authentication error: use Authorization: Bearer <API token>.")
        if credential.startswith(ACCESS_PREFIX):
            if not well_formed(credential, ACCESS_PREFIX):
                raise unauthenticated()
            principal = self.core.oauth.authenticate_access(credential, client_ip)
        else:
            if not well_formed_api_token(credential):
                raise unauthenticated()
            principal = self._authenticate_api_token(credential, client_ip)
        if principal is None:
            return Rejection(client_ip, prefix=credential[:6])
        return principal

    def reject(self, rejection: Rejection) -> NoReturn:
        """Record a refused token (audit log, failure count) and raise its error."""
        if rejection.token_row is not None:  # a valid token used from a refused address
            row = rejection.token_row
            self.core.audit.record("auth.ip_refused", outcome="failure", account_id=row.account_id,
                                   actor_user_id=row.user_id, actor_kind="api_token", token_id=row.id,
                                   client_ip=rejection.client_ip)
            raise ArtifactsError(ErrorCode.FORBIDDEN,
                                 f"Cannot use this API token from location: {rejection.client_ip or 'unknown'}.")
        self.core.audit.record("auth.token_rejected", outcome="failure", client_ip=rejection.client_ip,
                               details={"prefix": rejection.prefix})
        self.core.throttle.fail("token", rejection.client_ip)
        raise unauthenticated()

    def _authenticate_api_token(self, credential: str, client_ip: str | None) -> Principal | Rejection | None:
        now = utcnow()
        with self.core.db.read_connection() as s:
            row = s.execute(_API_TOKEN, {"digest": ids.digest(credential)}).first()
            if row is None:
                return None
            if (
                row.status != "active"
                or (row.expires_on is not None and row.expires_on <= now)
                or (row.not_before is not None and row.not_before > now)
            ):
                return None
            if not ip_allowed(row.condition, client_ip):
                return Rejection(client_ip, token_row=row)
            roles: dict[str, str] = {}
            email = None
            if row.user_id is not None:
                if row.user_status != "active":  # None: the user is gone
                    return None
                email = row.user_email
                roles = roles_of(s, row.user_id)
        self.record_use(ApiToken, row, now, client_ip)
        grants = (grants_from_policies(row.policies, roles if row.user_id else None) or NOTHING) \
            if row.policies else ()
        return Principal(
            account_id=row.account_id,
            permissions=frozenset(row.permissions or ()),
            namespaces=frozenset(row.namespaces) if row.namespaces is not None else None,
            token_id=row.id,
            kind="api_token" if row.user_id else "account_token",
            user_id=row.user_id,
            user_email=email,
            grants=grants,
            expires_on=row.expires_on,
            client_ip=client_ip,
            roles=roles,
        )

    def record_use(self, model: Any, row: Any, now: dt.datetime, client_ip: str | None) -> None:
        """Record last use, at most once per ``token_last_used_resolution`` seconds (or
        when the client IP changes), so a busy token does not write on every request:
        authentication itself only reads."""
        resolution = dt.timedelta(seconds=self.core.settings.token_last_used_resolution)
        if row.last_used_on is None or now - row.last_used_on >= resolution or (
            client_ip and row.last_used_ip != client_ip and now - row.last_used_on >= dt.timedelta(seconds=1)
        ):
            with self.core.db.session() as s:
                s.execute(update(model).where(model.id == row.id)
                          .values(last_used_on=now, last_used_ip=client_ip))


def require(principal: Principal, permission: str, account_id: str, namespace: str | None = None) -> None:
    """Raise 403 unless the principal holds ``permission`` on that account (and namespace)."""
    if principal.can(permission, account_id, namespace):
        return
    if not principal.knows_account(account_id):
        raise ArtifactsError(ErrorCode.FORBIDDEN, "Authentication error: this token cannot access that account.")
    restricted = any(g.namespaces is not None for g in principal._grant_list())
    where = f" on namespace {namespace!r}" if namespace and restricted else ""
    raise ArtifactsError(ErrorCode.FORBIDDEN, f"Insufficient permissions: this token lacks {permission}{where}.")
