"""API token management, as a user (``/user/tokens``) or an account admin
(``/accounts/{account_id}/tokens``) does it: create, list, get, update, roll, delete, verify.

A token carries Cloudflare-shaped policies::

    {"effect": "allow" | "deny",
     "permission_groups": [{"id": ...} | {"name": "Artifacts Read"}],
     "resources": {"com.cloudflare.api.account.<account_id>": "*"
                   | {"com.cloudflare.api.account.artifacts.namespace.<name>": "*", ...},
                   "com.cloudflare.api.user.<user_id>": "*"}}

plus ``not_before`` / ``expires_on``, ``condition.request_ip.in`` / ``not_in`` (CIDRs),
and ``status`` (``active`` | ``disabled``). The secret is shown once (create, roll);
only its SHA-256 digest is stored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from artifactd import ids, validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.services.apitokens import (
    ACCOUNT_RESOURCE,
    ALL_PERMISSION_GROUPS,
    ARTIFACT_GROUPS,
    EDIT,
    NAMESPACE_RESOURCE,
    READ,
    TOKEN_GROUPS,
    TOKENS_READ,
    TOKENS_WRITE,
    USER_RESOURCE,
    Principal,
    generate_api_token,
)
from artifactd.store.models import ApiToken
from artifactd.store.types import isoformat, utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

_GROUP_BY_ID = {v: k for k, v in ALL_PERMISSION_GROUPS.items()}
MAX_POLICIES = 50
MAX_CIDRS = 100


@dataclass(frozen=True)
class Owner:
    """Whose tokens: a user's own (``user_id``) or an account's (``account_id``)."""

    user_id: str | None = None
    account_id: str | None = None

    @property
    def label(self) -> str:
        return f"user {self.user_id}" if self.user_id else f"account {self.account_id}"


def forbidden(message: str) -> ArtifactsError:
    return ArtifactsError(ErrorCode.FORBIDDEN, message)


def parse_time(value: Any, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid {name}: expected an ISO-8601 date-time such as 2030-01-01T00:00:00Z.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Invalid {name}: expected an ISO-8601 date-time such as 2030-01-01T00:00:00Z.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def parse_condition(raw: Any) -> dict | None:
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict) or set(raw) - {"request_ip"}:
        raise invalid("Invalid condition: only request_ip is supported.")
    rules = raw.get("request_ip") or {}
    if not isinstance(rules, dict) or set(rules) - {"in", "not_in"}:
        raise invalid("Invalid condition.request_ip: expected {\"in\": [CIDR...], \"not_in\": [CIDR...]}.")
    out: dict[str, list[str]] = {}
    for key in ("in", "not_in"):
        cidrs = rules.get(key) or []
        if not isinstance(cidrs, list) or len(cidrs) > MAX_CIDRS:
            raise invalid(f"Invalid condition.request_ip.{key}: expected a list of at most {MAX_CIDRS} CIDRs.")
        norm = []
        for c in cidrs:
            try:
                norm.append(str(ipaddress.ip_network(str(c).strip(), strict=False)))
            except ValueError:
                raise invalid(f"Invalid condition.request_ip.{key}: {c!r} is not an IP address or CIDR.") from None
        if norm:
            out[key] = norm
    return {"request_ip": out} if out else None


class UserTokenService:
    def __init__(self, core: Core):
        self.core = core

    # -- who may do what -----------------------------------------------------------------

    def authorize(self, who: Principal, owner: Owner, write: bool) -> None:
        perm = TOKENS_WRITE if write else TOKENS_READ
        if owner.user_id is not None:
            if who.user_id != owner.user_id:
                raise forbidden("Authentication error: this credential does not belong to a user.")
            if not who.can_on_user(perm, owner.user_id):
                raise forbidden(f"Insufficient permissions: this credential lacks {perm} on your user.")
            return
        account_id = owner.account_id or ""
        if not who.can(perm, account_id):
            raise forbidden(f"Insufficient permissions: this credential lacks {perm} on account {account_id}.")
        if who.user_id is not None and who.roles.get(account_id) != "admin":
            raise forbidden("Insufficient permissions: only account admins manage the account's tokens.")

    # -- policies ------------------------------------------------------------------------

    def parse_policies(self, s: Session, raw: Any, owner: Owner) -> list[dict]:
        if not isinstance(raw, list) or not raw or len(raw) > MAX_POLICIES:
            raise invalid(f"Invalid policies: expected a list of 1 to {MAX_POLICIES} policies.")
        roles: dict[str, str] = {}
        if owner.user_id is not None:
            from artifactd.store.models_identity import Membership

            roles = dict(s.execute(select(Membership.account_id, Membership.role)
                                   .where(Membership.user_id == owner.user_id)).all())
        out = []
        for i, p in enumerate(raw):
            where = f"policies[{i}]"
            if not isinstance(p, dict):
                raise invalid(f"Invalid {where}: expected an object.")
            effect = p.get("effect", "allow")
            if effect not in ("allow", "deny"):
                raise invalid(f"Invalid {where}.effect: must be allow or deny.")
            groups_raw = p.get("permission_groups")
            if not isinstance(groups_raw, list) or not groups_raw:
                raise invalid(f"Invalid {where}.permission_groups: expected a non-empty list.")
            groups: list[str] = []
            for g in groups_raw:
                name = None
                if isinstance(g, dict):
                    name = _GROUP_BY_ID.get(g.get("id")) if g.get("id") else g.get("name")
                elif isinstance(g, str):
                    name = _GROUP_BY_ID.get(g, g)
                if name not in ALL_PERMISSION_GROUPS:
                    raise invalid(f"Invalid {where}.permission_groups: unknown permission group {g!r}. "
                                  f"Known: {', '.join(ALL_PERMISSION_GROUPS)}.")
                if name not in groups:
                    groups.append(name)
            resources = p.get("resources")
            if not isinstance(resources, dict) or not resources:
                raise invalid(f"Invalid {where}.resources: expected a non-empty object.")
            norm_res: dict[str, Any] = {}
            for key, value in resources.items():
                if not isinstance(key, str):
                    raise invalid(f"Invalid {where}.resources.")
                if key.startswith(USER_RESOURCE):
                    uid = key[len(USER_RESOURCE):]
                    if owner.user_id is None or uid != owner.user_id:
                        raise invalid(f"Invalid {where}.resources: {key} is not the token owner's user.")
                    if any(g in ARTIFACT_GROUPS for g in groups):
                        raise invalid(f"Invalid {where}: Artifacts permissions apply to accounts, not users.")
                    if value != "*":
                        raise invalid(f"Invalid {where}.resources.{key}: must be \"*\".")
                    norm_res[key] = "*"
                    continue
                if not key.startswith(ACCOUNT_RESOURCE) or key.startswith(NAMESPACE_RESOURCE):
                    raise invalid(f"Invalid {where}.resources: unknown resource {key!r}. Use "
                                  f"{ACCOUNT_RESOURCE}<account_id> or {USER_RESOURCE}<user_id>.")
                acct = key[len(ACCOUNT_RESOURCE):]
                if acct == "*":
                    if owner.user_id is None:
                        raise invalid(f"Invalid {where}.resources: an account token applies to its own account.")
                elif owner.account_id is not None:
                    if acct != owner.account_id:
                        raise invalid(f"Invalid {where}.resources: an account token applies to its own account.")
                elif acct not in roles:
                    raise forbidden(f"Insufficient permissions: you are not a member of account {acct}.")
                if effect == "allow" and any(g in TOKEN_GROUPS for g in groups) and acct != "*" \
                        and owner.user_id is not None and roles.get(acct) != "admin":
                    raise forbidden(f"Insufficient permissions: only admins of account {acct} may grant "
                                    "API Tokens permissions on it.")
                if value == "*":
                    norm_res[key] = "*"
                elif isinstance(value, dict) and value:
                    if any(g in TOKEN_GROUPS for g in groups):
                        raise invalid(f"Invalid {where}: API Tokens permissions cannot be narrowed to namespaces.")
                    nss = {}
                    for nkey, nval in value.items():
                        if not isinstance(nkey, str) or not nkey.startswith(NAMESPACE_RESOURCE) or nval != "*":
                            raise invalid(f"Invalid {where}.resources.{key}: expected "
                                          f"{{\"{NAMESPACE_RESOURCE}<name>\": \"*\"}}.")
                        name = validation.namespace_name(nkey[len(NAMESPACE_RESOURCE):])
                        nss[NAMESPACE_RESOURCE + name.lower()] = "*"
                    norm_res[key] = nss
                else:
                    raise invalid(f"Invalid {where}.resources.{key}: must be \"*\" or an object of namespaces.")
            out.append({
                "id": p.get("id") if isinstance(p.get("id"), str) and len(p["id"]) <= 64 else ids.new_id(32),
                "effect": effect,
                "permission_groups": [{"id": ALL_PERMISSION_GROUPS[g], "name": g} for g in groups],
                "resources": norm_res,
            })
        return out

    # -- operations ----------------------------------------------------------------------

    def _query(self, owner: Owner):
        q = select(ApiToken)
        if owner.user_id is not None:
            return q.where(ApiToken.user_id == owner.user_id)
        return q.where(ApiToken.account_id == owner.account_id, ApiToken.user_id.is_(None))

    def _require(self, s: Session, owner: Owner, token_id: str) -> ApiToken:
        row = s.scalars(self._query(owner).where(ApiToken.id == token_id)).first() if isinstance(token_id, str) else None
        if row is None:
            raise not_found(f"API token not found: {token_id}.")
        return row

    def _check_dates(self, not_before: dt.datetime | None, expires_on: dt.datetime | None) -> None:
        if not_before and expires_on and expires_on <= not_before:
            raise invalid("Invalid expires_on: must be later than not_before.")
        max_days = self.core.settings.api_token_max_ttl_days
        if max_days > 0:
            limit = utcnow() + dt.timedelta(days=max_days)
            if expires_on is None or expires_on > limit:
                raise invalid(f"Invalid expires_on: tokens on this server must expire within {max_days} days.")

    def create(self, who: Principal, owner: Owner, body: dict) -> dict:
        self.authorize(who, owner, write=True)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 120:
            raise invalid("Invalid name: 1 to 120 characters.")
        not_before = parse_time(body.get("not_before"), "not_before")
        expires_on = parse_time(body.get("expires_on"), "expires_on")
        self._check_dates(not_before, expires_on)
        condition = parse_condition(body.get("condition"))
        plaintext = generate_api_token()
        with self.core.db.session() as s:
            policies = self.parse_policies(s, body.get("policies"), owner)
            home = owner.account_id or self._home_account(s, policies, who)
            now = utcnow()
            row = ApiToken(id=ids.new_id(32), account_id=home, name=name.strip(), digest=ids.digest(plaintext),
                           permissions=self._summary(policies), namespaces=None, status="active",
                           not_before=not_before, expires_on=expires_on, user_id=owner.user_id,
                           policies=policies, condition=condition, created_at=now, modified_on=now)
            s.add(row)
            s.flush()
            result = self.to_dict(row)
        result["value"] = plaintext
        self.core.audit.record("token.create", account_id=home, principal=who, resource=f"api_token:{row.id}",
                               details={"name": row.name, "owner": owner.label, "created_token_id": row.id})
        return result

    def _home_account(self, s: Session, policies: list[dict], who: Principal) -> str:
        for p in policies:
            for key in p["resources"]:
                if key.startswith(ACCOUNT_RESOURCE) and not key.endswith(".*"):
                    return key[len(ACCOUNT_RESOURCE):]
        if who.account_id:
            return who.account_id
        raise invalid("Invalid policies: name at least one account.")

    @staticmethod
    def _summary(policies: list[dict]) -> list[str]:
        names: list[str] = []
        for p in policies:
            if p["effect"] == "allow":
                for g in p["permission_groups"]:
                    if g["name"] not in names:
                        names.append(g["name"])
        return names

    def list(self, who: Principal, owner: Owner, page: int = 1, per_page: int = 20,
             direction: str = "desc") -> tuple[list[dict], dict]:
        self.authorize(who, owner, write=False)
        validation.integer(page, "page", 1, 1_000_000)
        validation.integer(per_page, "per_page", 5, 50, message="Invalid per_page: must be between 5 and 50.")
        if direction not in ("asc", "desc"):
            raise invalid("Invalid direction: must be asc or desc.")
        order = ApiToken.created_at.asc() if direction == "asc" else ApiToken.created_at.desc()
        with self.core.db.session() as s:
            total = s.scalar(select(func.count()).select_from(self._query(owner).subquery())) or 0
            rows = s.scalars(self._query(owner).order_by(order, ApiToken.id)
                             .offset((page - 1) * per_page).limit(per_page)).all()
            items = [self.to_dict(r) for r in rows]
        info = {"page": page, "per_page": per_page, "count": len(items), "total_count": total,
                "total_pages": (total + per_page - 1) // per_page}
        return items, info

    def get(self, who: Principal, owner: Owner, token_id: str) -> dict:
        self.authorize(who, owner, write=False)
        with self.core.db.session() as s:
            return self.to_dict(self._require(s, owner, token_id))

    def update(self, who: Principal, owner: Owner, token_id: str, body: dict) -> dict:
        self.authorize(who, owner, write=True)
        with self.core.db.session() as s:
            row = self._require(s, owner, token_id)
            before_status = row.status
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not name.strip() or len(name) > 120:
                    raise invalid("Invalid name: 1 to 120 characters.")
                row.name = name.strip()
            if "policies" in body:
                row.policies = self.parse_policies(s, body["policies"], owner)
                row.permissions = self._summary(row.policies)
            if "status" in body:
                if body["status"] not in ("active", "disabled"):
                    raise invalid("Invalid status: must be active or disabled.")
                row.status = body["status"]
            if "condition" in body:
                row.condition = parse_condition(body["condition"])
            not_before = parse_time(body["not_before"], "not_before") if "not_before" in body else row.not_before
            expires_on = parse_time(body["expires_on"], "expires_on") if "expires_on" in body else row.expires_on
            if "not_before" in body or "expires_on" in body:
                if not_before and expires_on and expires_on <= not_before:
                    raise invalid("Invalid expires_on: must be later than not_before.")
                row.not_before, row.expires_on = not_before, expires_on
            row.modified_on = utcnow()
            result = self.to_dict(row)
            account_id = row.account_id
        action = "token.revoke" if before_status == "active" and result["status"] == "disabled" else "token.update"
        self.core.audit.record(action, account_id=account_id, principal=who, resource=f"api_token:{token_id}",
                               details={"owner": owner.label, "fields": sorted(body)})
        return result

    def roll(self, who: Principal, owner: Owner, token_id: str) -> str:
        self.authorize(who, owner, write=True)
        plaintext = generate_api_token()
        with self.core.db.session() as s:
            row = self._require(s, owner, token_id)
            row.digest = ids.digest(plaintext)
            row.modified_on = utcnow()
            account_id = row.account_id
        self.core.audit.record("token.roll", account_id=account_id, principal=who, resource=f"api_token:{token_id}",
                               details={"owner": owner.label})
        return plaintext

    def delete(self, who: Principal, owner: Owner, token_id: str) -> dict:
        self.authorize(who, owner, write=True)
        with self.core.db.session() as s:
            row = self._require(s, owner, token_id)
            account_id = row.account_id
            s.delete(row)
        self.core.audit.record("token.delete", account_id=account_id, principal=who,
                               resource=f"api_token:{token_id}", details={"owner": owner.label})
        return {"id": token_id}

    def verify(self, who: Principal, owner_kind: str, account_id: str | None = None) -> dict:
        """``/user/tokens/verify`` answers for user credentials, ``/accounts/{id}/tokens/verify``
        for that account's own tokens (and says which one the caller is not, with code 1000)."""
        if owner_kind == "user" and who.kind == "account_token":
            raise ArtifactsError(ErrorCode.INVALID_API_TOKEN, "Invalid API Token")
        if owner_kind == "account" and (who.kind != "account_token" or who.account_id != account_id):
            raise ArtifactsError(ErrorCode.INVALID_API_TOKEN, "Invalid API Token")
        from artifactd.store.models import Account

        with self.core.db.session() as s:
            row = s.get(ApiToken, who.token_id) if who.kind != "oauth" else None
            not_before = row.not_before if row else None
            # OAuth scopes apply to every account the user belongs to; a token to its policies' accounts.
            shown = list(who.roles) if who.kind == "oauth" else who.account_ids
            accts = {a.id: a.name for a in s.scalars(select(Account).where(Account.id.in_(shown)))}
        out = {
            "id": who.token_id,
            "status": "active",
            "not_before": isoformat(not_before),
            "expires_on": isoformat(who.expires_on),
            # artifactd extension: what the credential is (introspection of the caller's own token).
            "kind": who.kind,
            "accounts": [{"id": a, "name": accts.get(a), "role": who.roles.get(a)} for a in shown],
        }
        if who.user_id:
            out["user"] = {"id": who.user_id, "email": who.user_email}
        if who.kind == "oauth":
            out["scopes"] = sorted(who.scopes)
            out["client_id"] = who.client_id
        return out

    @staticmethod
    def status_of(row: ApiToken) -> str:
        if row.status == "active" and row.expires_on is not None and row.expires_on <= utcnow():
            return "expired"
        return row.status

    @classmethod
    def to_dict(cls, row: ApiToken) -> dict:
        return {
            "id": row.id,
            "name": row.name,
            "status": cls.status_of(row),
            "issued_on": isoformat(row.created_at),
            "modified_on": isoformat(row.modified_on or row.created_at),
            "not_before": isoformat(row.not_before),
            "expires_on": isoformat(row.expires_on),
            "last_used_on": isoformat(row.last_used_on),
            "last_used_ip": row.last_used_ip,
            "policies": row.policies or legacy_policies(row),
            "condition": row.condition or {},
        }


def legacy_policies(row: ApiToken) -> list[dict]:
    """The policies equivalent to a token made before policies existed."""
    res: Any = "*" if row.namespaces is None else {NAMESPACE_RESOURCE + n: "*" for n in row.namespaces}
    groups = [g for g in (row.permissions or []) if g in ALL_PERMISSION_GROUPS]
    return [{"id": "legacy", "effect": "allow",
             "permission_groups": [{"id": ALL_PERMISSION_GROUPS[g], "name": g} for g in groups],
             "resources": {ACCOUNT_RESOURCE + row.account_id: res}}]


def bootstrap_policies(account_id: str, user_id: str) -> list[dict]:
    """The bootstrap token: Artifacts Read + Edit and API Tokens Write on the account, and
    API Tokens Write on the admin's own user."""
    return [
        {"id": ids.new_id(32), "effect": "allow",
         "permission_groups": [{"id": ALL_PERMISSION_GROUPS[g], "name": g} for g in (READ, EDIT, TOKENS_WRITE)],
         "resources": {ACCOUNT_RESOURCE + account_id: "*"}},
        {"id": ids.new_id(32), "effect": "allow",
         "permission_groups": [{"id": ALL_PERMISSION_GROUPS[TOKENS_WRITE], "name": TOKENS_WRITE}],
         "resources": {USER_RESOURCE + user_id: "*"}},
    ]
