"""REST routes the Python binding needs beyond the hosted API (artifactd extensions).

``POST .../namespaces/{namespace}/repos/{name}/tokens/revoke`` with ``{"token": <id or
plaintext>}`` revokes with the binding's ``revokeToken(tokenOrId)`` semantics (reference
§2.3): by id *or* plaintext, scoped to that one repo, ``{"revoked": false}`` when the token
is unknown or already revoked. The hosted REST API revokes by id only (route 19), so a
remote binding could not otherwise revoke a token it holds only as plaintext.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.errors import invalid
from artifactd.http.deps import core_of, json_body, principal
from artifactd.http.envelope import ok
from artifactd.services.apitokens import EDIT, Principal, require

router = APIRouter(prefix="/client/v4/accounts/{account_id}/artifacts", tags=["artifacts (artifactd extensions)"])

_REVOKE_SCHEMA = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": {"type": "string", "description": "A token id or a token's plaintext."}},
}


@router.post("/namespaces/{namespace}/repos/{name}/tokens/revoke", openapi_extra={
    "requestBody": {"required": True, "content": {"application/json": {"schema": _REVOKE_SCHEMA}}}})
async def revoke_repo_token(account_id: str, namespace: str, name: str, request: Request,
                            who: Principal = Depends(principal)):
    """Revoke one of this repo's tokens by id or plaintext: ``{"revoked": bool}``."""
    require(who, EDIT, account_id, namespace)
    body = await json_body(request)
    token = body.get("token")
    if not isinstance(token, str):
        raise invalid("Invalid tokenOrId: must be a token id or artifact token.")
    revoked = await run_in_threadpool(core_of(request).tokens.revoke_for_repo, account_id, namespace, name, token)
    return ok({"revoked": revoked})
