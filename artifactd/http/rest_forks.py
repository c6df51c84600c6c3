"""REST routes 9 (fork) and 10 (import) (reference §3.3)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.http.deps import core_of, json_body, principal
from artifactd.http.envelope import ok
from artifactd.services.apitokens import EDIT, Principal, require
from artifactd.services.forks import _UNSET, forks_of
from artifactd.services.imports import imports_of, source_of

router = APIRouter(prefix="/client/v4/accounts/{account_id}/artifacts", tags=["artifacts"])

_FORK_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string", "maxLength": 1024},
        "read_only": {"type": "boolean"},
        "default_branch_only": {"type": "boolean", "default": True},
    },
}
_IMPORT_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "branch": {"type": "string"},
        "depth": {"type": "integer", "minimum": 1},
        "read_only": {"type": "boolean"},
        "description": {"type": "string", "maxLength": 1024},
    },
}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/namespaces/{namespace}/repos/{name}/fork", status_code=201, openapi_extra=_body(_FORK_SCHEMA))
async def fork_repo(account_id: str, namespace: str, name: str, request: Request,
                    who: Principal = Depends(principal)):
    """Fork ``{name}`` into a new repo ``body.name`` in the same namespace."""
    require(who, EDIT, account_id, namespace)
    body = await json_body(request)
    core = core_of(request)
    svc = forks_of(core)

    def run():
        out = svc.fork(account_id, namespace, name, body.get("name"),
                       description=body["description"] if "description" in body else _UNSET,
                       read_only=body.get("read_only", False),
                       default_branch_only=body.get("default_branch_only", True))
        core.audit.record("repo.fork", account_id=account_id, principal=who,
                          resource=f"repo:{namespace}/{out['name']}",
                          details={"repo_id": out["id"], "source": f"artifacts:{namespace}/{name}"})
        return out

    return ok(await run_in_threadpool(run), status=201)


@router.post("/namespaces/{namespace}/repos/{name}/import", status_code=201, openapi_extra=_body(_IMPORT_SCHEMA))
async def import_repo(account_id: str, namespace: str, name: str, request: Request,
                      who: Principal = Depends(principal)):
    """Create ``{name}`` by cloning ``body.url`` in the background (status ``importing``)."""
    require(who, EDIT, account_id, namespace)
    body = await json_body(request)
    core = core_of(request)
    svc = imports_of(core)

    def run():
        out = svc.start(account_id, namespace, name, body.get("url"), branch=body.get("branch"),
                        depth=body.get("depth"), read_only=body.get("read_only", False),
                        description=body.get("description"))
        # source_of() drops credentials, query and fragment (the URL was validated by start()).
        core.audit.record("repo.import", account_id=account_id, principal=who, resource=f"repo:{namespace}/{name}",
                          details={"repo_id": out["id"], "source": source_of(body["url"])})
        return out

    return ok(await run_in_threadpool(run), status=201)
