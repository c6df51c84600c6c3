"""Cloudflare v4 identity routes: ``/user``, ``/user/tokens``, ``/accounts``,
``/accounts/{id}/tokens``, ``/accounts/{id}/members``, ``/memberships`` and the audit log.
Each route authenticates, checks, and calls one core service.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.http.deps import core_of, json_body, principal, query_int
from artifactd.http.envelope import ok
from artifactd.services.apitokens import ALL_PERMISSION_GROUPS, TOKENS_READ, TOKENS_WRITE, Principal
from artifactd.services.user_tokens import Owner
from artifactd.store.models import Account
from artifactd.store.models_identity import Membership, User
from artifactd.store.types import isoformat

router = APIRouter(prefix="/client/v4", tags=["identity"])

_TOKEN_SCHEMA = {
    "type": "object",
    "required": ["name", "policies"],
    "properties": {
        "name": {"type": "string"},
        "policies": {"type": "array", "items": {"type": "object"}},
        "not_before": {"type": "string", "format": "date-time"},
        "expires_on": {"type": "string", "format": "date-time"},
        "condition": {"type": "object"},
        "status": {"type": "string", "enum": ["active", "disabled"]},
    },
}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _no_access(what: str) -> ArtifactsError:
    return ArtifactsError(ErrorCode.UNAUTHORIZED_RESOURCE, f"Unauthorized to access requested resource: {what}.")


def _user_credential(who: Principal) -> str:
    if who.user_id is None:
        raise _no_access("this credential does not belong to a user")
    return who.user_id


def _user_owner(who: Principal) -> Owner:
    if who.user_id is None:
        raise ArtifactsError(ErrorCode.INVALID_API_TOKEN, "Invalid API Token")
    return Owner(user_id=who.user_id)


def _can_list_accounts(who: Principal) -> bool:
    if who.kind == "oauth":
        return bool(who.scopes & {"account:read", "artifacts:read", "artifacts:write"})
    return True


def _pages(items: list, request: Request, default: int = 20) -> tuple[list, dict]:
    page = query_int(request, "page", 1)
    per_page = query_int(request, "per_page", default)
    if page < 1 or not 1 <= per_page <= 1000:
        raise invalid("Invalid page or per_page.")
    chunk = items[(page - 1) * per_page: page * per_page]
    return chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(items),
                   "total_pages": (len(items) + per_page - 1) // per_page}


# -- /user ---------------------------------------------------------------------------------


@router.get("/user")
async def get_user(request: Request, who: Principal = Depends(principal)):
    uid = _user_credential(who)
    if who.kind == "oauth" and "user:read" not in who.scopes:
        raise _no_access("the user:read scope is needed")
    core = core_of(request)

    def run():
        with core.db.session() as s:
            return core.users.user_dict(core.users.require(s, uid))

    return ok(await run_in_threadpool(run))


@router.get("/memberships")
async def list_memberships(request: Request, who: Principal = Depends(principal)):
    if who.user_id is None:
        raise ArtifactsError(ErrorCode.UNAUTHENTICATED, "Memberships belong to users; this is an account token.",
                             status=403)
    if not _can_list_accounts(who):
        raise _no_access("the account:read scope is needed")
    core = core_of(request)

    def run():
        with core.db.session() as s:
            rows = s.execute(select(Membership, Account.name).join(Account, Account.id == Membership.account_id)
                             .where(Membership.user_id == who.user_id).order_by(Membership.created_at)).all()
            return [core.users.membership_dict(m, name) for m, name in rows]

    items, info = _pages(await run_in_threadpool(run), request)
    return ok(items, result_info=info)


# -- /accounts -----------------------------------------------------------------------------


def _account_dict(a: Account, role: str | None = None) -> dict:
    out = {"id": a.id, "name": a.name, "type": "standard", "created_on": isoformat(a.created_at),
           "settings": {"enforce_twofactor": False}}
    if role:
        out["role"] = role
    return out


@router.get("/accounts")
async def list_accounts(request: Request, who: Principal = Depends(principal)):
    if not _can_list_accounts(who):
        raise _no_access("the account:read scope is needed")
    core = core_of(request)

    def run():
        with core.db.session() as s:
            wanted = set(who.account_ids) | (set(who.roles) if who.kind == "oauth" else set())
            rows = s.scalars(select(Account).where(Account.id.in_(wanted)).order_by(Account.created_at)).all()
            return [_account_dict(a, who.roles.get(a.id)) for a in rows]

    items, info = _pages(await run_in_threadpool(run), request)
    return ok(items, result_info=info)


@router.get("/accounts/{account_id}")
async def get_account(account_id: str, request: Request, who: Principal = Depends(principal)):
    if not who.knows_account(account_id) and account_id not in who.roles:
        raise ArtifactsError(ErrorCode.FORBIDDEN, "Authentication error: this token cannot access that account.")
    core = core_of(request)

    def run():
        with core.db.session() as s:
            return _account_dict(core.users.require_account(s, account_id), who.roles.get(account_id))

    return ok(await run_in_threadpool(run))


# -- members -------------------------------------------------------------------------------


def _member_dict(core, m: Membership, u: User, account_name: str) -> dict:
    d = core.users.membership_dict(m, account_name, u)
    d["email"] = u.email
    return d


@router.get("/accounts/{account_id}/members")
async def list_members(account_id: str, request: Request, who: Principal = Depends(principal)):
    core = core_of(request)
    core.user_tokens.authorize(who, Owner(account_id=account_id), write=False)

    def run():
        with core.db.session() as s:
            acct = core.users.require_account(s, account_id)
            return [_member_dict(core, m, u, acct.name) for m, u in core.users.members(s, account_id)]

    items, info = _pages(await run_in_threadpool(run), request)
    return ok(items, result_info=info)


@router.post("/accounts/{account_id}/members", status_code=201)
async def add_member(account_id: str, request: Request, who: Principal = Depends(principal)):
    core = core_of(request)
    core.user_tokens.authorize(who, Owner(account_id=account_id), write=True)
    body = await json_body(request)
    email, role = body.get("email"), body.get("role", "member")
    if not isinstance(email, str):
        raise invalid("Invalid email: an existing user's e-mail address is required.")

    def run():
        with core.db.session() as s:
            m = core.users.add_member(s, account_id, email, role)
            u = s.get(User, m.user_id)
            out = _member_dict(core, m, u, core.users.require_account(s, account_id).name)
        core.audit.record("member.add", account_id=account_id, principal=who, resource=f"user:{out['user']['id']}",
                          details={"email": out["email"], "role": role})
        return out

    return ok(await run_in_threadpool(run), status=201)


@router.put("/accounts/{account_id}/members/{member_id}")
async def update_member(account_id: str, member_id: str, request: Request, who: Principal = Depends(principal)):
    core = core_of(request)
    core.user_tokens.authorize(who, Owner(account_id=account_id), write=True)
    body = await json_body(request)

    def run():
        with core.db.session() as s:
            m = s.get(Membership, member_id)
            if m is None or m.account_id != account_id:
                raise not_found(f"Member not found: {member_id}.")
            u = s.get(User, m.user_id)
            m = core.users.add_member(s, account_id, u.id, body.get("role", m.role))
            out = _member_dict(core, m, u, core.users.require_account(s, account_id).name)
        core.audit.record("member.update", account_id=account_id, principal=who, resource=f"user:{u.id}",
                          details={"role": out["role"]})
        return out

    return ok(await run_in_threadpool(run))


@router.delete("/accounts/{account_id}/members/{member_id}")
async def remove_member(account_id: str, member_id: str, request: Request, who: Principal = Depends(principal)):
    core = core_of(request)
    core.user_tokens.authorize(who, Owner(account_id=account_id), write=True)

    def run():
        with core.db.session() as s:
            m = s.get(Membership, member_id)
            if m is None or m.account_id != account_id:
                raise not_found(f"Member not found: {member_id}.")
            uid = m.user_id
            core.users.remove_member(s, account_id, uid)
        core.audit.record("member.remove", account_id=account_id, principal=who, resource=f"user:{uid}")
        return {"id": member_id}

    return ok(await run_in_threadpool(run))


# -- audit log -----------------------------------------------------------------------------


@router.get("/accounts/{account_id}/audit_logs")
async def audit_logs(account_id: str, request: Request, who: Principal = Depends(principal)):
    core = core_of(request)
    core.user_tokens.authorize(who, Owner(account_id=account_id), write=False)
    limit = query_int(request, "per_page", 100)
    before = request.query_params.get("before")
    if before is not None and not before.isdigit():
        raise invalid("Invalid before: an event id.")
    items, next_before = await run_in_threadpool(
        lambda: core.audit.list(account_id, limit=limit, before=int(before) if before else None,
                                action=request.query_params.get("action") or None))
    return ok(items, result_info={"per_page": limit, "count": len(items),
                                  "cursor": str(next_before) if next_before else ""})


# -- API tokens: /user/tokens and /accounts/{id}/tokens ---------------------------------------


def _groups() -> list[dict]:
    scopes = {"Artifacts Read": "com.cloudflare.api.account", "Artifacts Edit": "com.cloudflare.api.account",
              TOKENS_READ: "com.cloudflare.api.user", TOKENS_WRITE: "com.cloudflare.api.user"}
    return [{"id": gid, "name": name, "scopes": [scopes[name]]} for name, gid in ALL_PERMISSION_GROUPS.items()]


def _token_routes(prefix: str, owner_of):
    """Register the seven token routes under ``prefix``; ``owner_of(who, request)``."""

    @router.get(prefix + "/verify")
    async def verify(request: Request, who: Principal = Depends(principal)):
        account_id = request.path_params.get("account_id")
        kind = "account" if account_id else "user"
        return ok(await run_in_threadpool(core_of(request).user_tokens.verify, who, kind, account_id))

    @router.get(prefix + "/permission_groups")
    async def permission_groups(request: Request, who: Principal = Depends(principal)):
        return ok(_groups())

    @router.get(prefix)
    async def list_tokens(request: Request, who: Principal = Depends(principal)):
        page, per_page = query_int(request, "page", 1), query_int(request, "per_page", 20)
        items, info = await run_in_threadpool(
            core_of(request).user_tokens.list, who, owner_of(who, request), page, per_page,
            request.query_params.get("direction") or "desc")
        return ok(items, result_info=info)

    @router.post(prefix, status_code=200, openapi_extra=_body(_TOKEN_SCHEMA))
    async def create_token(request: Request, who: Principal = Depends(principal)):
        body = await json_body(request)
        return ok(await run_in_threadpool(core_of(request).user_tokens.create, who, owner_of(who, request), body))

    @router.get(prefix + "/{token_id}")
    async def get_token(token_id: str, request: Request, who: Principal = Depends(principal)):
        return ok(await run_in_threadpool(core_of(request).user_tokens.get, who, owner_of(who, request), token_id))

    @router.put(prefix + "/{token_id}", openapi_extra=_body(_TOKEN_SCHEMA))
    async def update_token(token_id: str, request: Request, who: Principal = Depends(principal)):
        body = await json_body(request)
        return ok(await run_in_threadpool(core_of(request).user_tokens.update, who, owner_of(who, request),
                                          token_id, body))

    @router.put(prefix + "/{token_id}/value")
    async def roll_token(token_id: str, request: Request, who: Principal = Depends(principal)):
        await json_body(request, required=False)
        return ok(await run_in_threadpool(core_of(request).user_tokens.roll, who, owner_of(who, request), token_id))

    @router.delete(prefix + "/{token_id}")
    async def delete_token(token_id: str, request: Request, who: Principal = Depends(principal)):
        return ok(await run_in_threadpool(core_of(request).user_tokens.delete, who, owner_of(who, request),
                                          token_id))


_token_routes("/user/tokens", lambda who, _r: _user_owner(who))
_token_routes("/accounts/{account_id}/tokens", lambda who, r: Owner(account_id=r.path_params["account_id"]))
