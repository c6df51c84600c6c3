"""REST control plane: ``/client/v4/accounts/{account_id}/artifacts/...`` (reference §3).

Each route authenticates, checks the permission group, and calls one core service.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.http.deps import core_of, json_body, principal, query_int, read_call, write_call
from artifactd.http.envelope import no_content, ok
from artifactd.services.apitokens import EDIT, READ, Principal, require

router = APIRouter(prefix="/client/v4/accounts/{account_id}/artifacts", tags=["artifacts"])

_REPO_CREATE_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string", "maxLength": 1024},
        "default_branch": {"type": "string"},
        "read_only": {"type": "boolean"},
    },
}
_TOKEN_CREATE_SCHEMA = {
    "type": "object",
    "required": ["repo"],
    "properties": {
        "repo": {"type": "string"},
        "scope": {"type": "string", "enum": ["read", "write"]},
        "ttl": {"type": "integer", "minimum": 60, "maximum": 31536000},
    },
}
_NAMESPACE_CREATE_SCHEMA = {
    "type": "object",
    "properties": {
        "namespace": {"type": "string"},
        "jurisdiction": {"type": "string", "enum": ["unrestricted", "us", "eu", "fedramp"]},
    },
}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def list_info(items: list, cursor: str | None, limit: int, page: int | None, total: int | None) -> dict:
    """Cursor ``result_info``; with ``?page=`` (wrangler pages that way) the offset fields too."""
    info: dict = {"cursor": cursor or "", "per_page": limit, "count": len(items)}
    if page is not None:
        info.update(page=page, total_count=total or 0, total_pages=max(1, -(-(total or 0) // limit)))
    return info


# -- namespaces (routes 1-4) ---------------------------------------------------------


@router.get("/namespaces")
async def list_namespaces(account_id: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id)
    limit = query_int(request, "limit", query_int(request, "per_page", 100))
    page = query_int(request, "page", 0) if "page" in request.query_params else None
    core = core_of(request)
    only, excluding = who.namespace_scope(READ, account_id)
    items, cursor, total = await read_call(
        core, core.namespaces.list, account_id, limit, request.query_params.get("cursor") or None, page,
        only=only, excluding=excluding,
    )
    return ok(items, result_info=list_info(items, cursor, limit, page, total))


@router.post("/namespaces", status_code=201, openapi_extra=_body(_NAMESPACE_CREATE_SCHEMA))
async def create_namespace(account_id: str, request: Request, who: Principal = Depends(principal)):
    body = await json_body(request)
    # The schema names the field `namespace`; wrangler sends `name`. Accept both.
    name = body.get("namespace", body.get("name"))
    require(who, EDIT, account_id, name if isinstance(name, str) else None)
    result = await run_in_threadpool(core_of(request).namespaces.create, account_id, name, body.get("jurisdiction"))
    return ok(result, status=201)


@router.get("/namespaces/{namespace}")
async def get_namespace(account_id: str, namespace: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    core = core_of(request)
    return ok(await read_call(core, core.namespaces.get, account_id, namespace))


@router.delete("/namespaces/{namespace}", status_code=204)
async def delete_namespace(account_id: str, namespace: str, request: Request, who: Principal = Depends(principal)):
    require(who, EDIT, account_id, namespace)
    await run_in_threadpool(core_of(request).namespaces.delete, account_id, namespace)
    return no_content()


# -- repos (routes 5-8) --------------------------------------------------------------


@router.get("/namespaces/{namespace}/repos")
async def list_repos(account_id: str, namespace: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    core = core_of(request)
    q = request.query_params
    limit = query_int(request, "limit", query_int(request, "per_page", 50))
    page = query_int(request, "page", 0) if "page" in request.query_params else None

    def run():
        rows, cursor, total = core.repos.list(
            account_id, namespace, limit=limit, cursor=q.get("cursor") or None, search=q.get("search") or None,
            sort=q.get("sort", "created_at"), direction=q.get("direction", "desc"), page=page,
        )
        return [core.repos.to_dict(r) for r in rows], cursor, total

    items, cursor, total = await read_call(core, run)
    return ok(items, result_info=list_info(items, cursor, limit, page, total))


@router.post("/namespaces/{namespace}/repos", status_code=201, openapi_extra=_body(_REPO_CREATE_SCHEMA))
async def create_repo(account_id: str, namespace: str, request: Request, who: Principal = Depends(principal)):
    require(who, EDIT, account_id, namespace)
    body = await json_body(request)
    core = core_of(request)

    def run():
        return core.repos.created_dict(core.repos.create(
            account_id, namespace, body.get("name"), description=body.get("description"),
            default_branch=body.get("default_branch"), read_only=body.get("read_only", False), principal=who,
        ))

    return ok(await write_call(core, run), status=201)


@router.get("/namespaces/{namespace}/repos/{name}")
async def get_repo(account_id: str, namespace: str, name: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    core = core_of(request)
    return ok(await read_call(core, core.repos.get, account_id, namespace, name))


@router.delete("/namespaces/{namespace}/repos/{name}", status_code=202)
async def delete_repo(account_id: str, namespace: str, name: str, request: Request,
                      who: Principal = Depends(principal)):
    require(who, EDIT, account_id, namespace)
    repo_id = await run_in_threadpool(core_of(request).repos.delete, account_id, namespace, name)
    await run_in_threadpool(core_of(request).audit.record, "repo.delete", account_id=account_id, principal=who,
                            resource=f"repo:{namespace}/{name}", details={"repo_id": repo_id})
    return ok({"id": repo_id}, status=202)


# -- repo tokens (routes 17-19) ------------------------------------------------------


@router.get("/namespaces/{namespace}/repos/{name}/tokens")
async def list_tokens(account_id: str, namespace: str, name: str, request: Request,
                      who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    page = query_int(request, "page", 1)
    per_page = query_int(request, "per_page", 30)
    items, info = await read_call(
        core_of(request), lambda: core_of(request).tokens.list(
            account_id, namespace, name, state=request.query_params.get("state", "active"),
            page=page, per_page=per_page,
        )
    )
    return ok(items, result_info=info)


@router.post("/namespaces/{namespace}/tokens", status_code=201, openapi_extra=_body(_TOKEN_CREATE_SCHEMA))
async def create_token(account_id: str, namespace: str, request: Request, who: Principal = Depends(principal)):
    require(who, EDIT, account_id, namespace)
    body = await json_body(request)
    core = core_of(request)
    result = await write_call(core, core.tokens.create, account_id, namespace, body.get("repo"),
                              body.get("scope", "write"), body.get("ttl", 86_400))
    return ok(result, status=201)


@router.delete("/namespaces/{namespace}/tokens/{token_id}")
async def revoke_token(account_id: str, namespace: str, token_id: str, request: Request,
                       who: Principal = Depends(principal)):
    require(who, EDIT, account_id, namespace)
    revoked = await run_in_threadpool(core_of(request).tokens.revoke, account_id, namespace, token_id)
    return ok({"id": revoked})
