"""An accurate OpenAPI description of the REST control plane.

FastAPI describes the routes it sees; the core routes read their bodies and query
parameters by hand (to return the documented error codes), so their shapes are declared
here: path-parameter patterns, query parameters, request bodies, the v4 envelope of every
success and error reply, and the ``Retry-After`` header of 429s. Routes added by other
modules get the path patterns, the error replies and the security scheme automatically,
and keep whatever success schema they declare themselves.

``tests/test_hostile.py`` runs schemathesis against this description, so every reply the
server sends is checked against it.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PREFIX = "/client/v4/accounts/{account_id}/artifacts"

NAMESPACE = {"type": "string", "minLength": 2, "maxLength": 63,
             "pattern": r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9._])?$"}
REPO_NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$",
             "not": {"pattern": r"\.(git|lock)$"}}
BRANCH = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"^[a-zA-Z0-9][a-zA-Z0-9._/-]*$",
          "not": {"anyOf": [{"pattern": r"\.\."}, {"pattern": "//"}, {"pattern": r"/\."},
                            {"pattern": r"[/.]$"}, {"pattern": r"\.lock(/|$)"}]}}
PATH_PARAMS: dict[str, dict] = {
    "account_id": {"type": "string", "pattern": r"^[0-9a-f]{32}$"},
    "namespace": NAMESPACE,
    "name": REPO_NAME,
    "token_id": {"type": "string", "pattern": r"^[0-9a-z]{16}$"},
    "id": {"type": "string", "pattern": r"^[0-9a-z]{16}$"},
    "hash": {"type": "string", "pattern": r"^[0-9a-f]{40}$"},
}

DATE = {"type": "string", "format": "date-time"}
NULLABLE_DATE = {"anyOf": [DATE, {"type": "null"}]}
NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


SCHEMAS: dict[str, dict] = {
    "ApiError": _obj({"code": {"type": "integer"}, "message": {"type": "string"}}),
    "ErrorEnvelope": _obj({
        "result": {"type": "null"},
        "success": {"type": "boolean", "enum": [False]},
        "errors": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ApiError"}},
        "messages": {"type": "array"},
    }),
    "CursorResultInfo": _obj({"cursor": {"type": "string"}, "per_page": {"type": "integer"},
                              "count": {"type": "integer"}}),
    "OffsetResultInfo": _obj({"page": {"type": "integer"}, "per_page": {"type": "integer"},
                              "count": {"type": "integer"}, "total_count": {"type": "integer"},
                              "total_pages": {"type": "integer"}}),
    "Namespace": _obj({"namespace": {"type": "string"},
                       "jurisdiction": {"type": "string", "enum": ["unrestricted", "us", "eu", "fedramp"]},
                       "repo_count": {"type": "integer", "minimum": 0},
                       "created_at": DATE, "updated_at": DATE}),
    "Repo": _obj({
        "id": {"type": "string"}, "name": {"type": "string"}, "description": NULLABLE_STRING,
        "default_branch": {"type": "string"}, "created_at": DATE, "updated_at": DATE,
        "last_push_at": NULLABLE_DATE, "source": NULLABLE_STRING, "read_only": {"type": "boolean"},
        "remote": {"type": "string"},
        "status": {"type": "string", "enum": ["ready", "importing", "forking", "creating", "failed"]},
    }),
    "RepoCreated": _obj({
        "id": {"type": "string"}, "name": {"type": "string"}, "description": NULLABLE_STRING,
        "default_branch": {"type": "string"}, "remote": {"type": "string"},
        "token": {"type": "string", "pattern": r"^art_v1_[0-9a-f]{40}\?expires=[0-9]+$"},
        "read_only": {"type": "boolean"},
    }, required=["id", "name", "description", "default_branch", "remote", "token"]),
    "TokenCreated": _obj({"id": {"type": "string", "pattern": r"^[0-9a-z]{16}$"},
                          "plaintext": {"type": "string"},
                          "scope": {"type": "string", "enum": ["read", "write"]}, "expires_at": DATE}),
    "TokenInfo": _obj({"id": {"type": "string", "pattern": r"^[0-9a-z]{16}$"},
                       "scope": {"type": "string", "enum": ["read", "write"]},
                       "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
                       "created_at": DATE, "expires_at": DATE}),
    "IdResult": _obj({"id": {"type": "string"}}),
}


def envelope(result: dict, info: str | None = None) -> dict:
    props = {"result": result, "success": {"type": "boolean", "enum": [True]},
             "errors": {"type": "array", "maxItems": 0}, "messages": {"type": "array"}}
    if info:
        props["result_info"] = {"$ref": f"#/components/schemas/{info}"}
    return {"type": "object", "properties": props, "required": list(props)}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict:
    return {"type": "array", "items": _ref(name)}


def _q(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


LIMIT = {"type": "integer", "minimum": 1, "maximum": 200}
CURSOR = {"type": "string"}

#: Success reply, query parameters and body of the core routes, by (method, path).
ROUTES: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/namespaces"): {
        "status": "200", "result": _list("Namespace"), "info": "CursorResultInfo",
        "query": [_q("limit", LIMIT), _q("cursor", CURSOR)]},
    ("post", "/namespaces"): {
        "status": "201", "result": _ref("Namespace"),
        # `name` is wrangler's spelling of `namespace`, used only when `namespace` is absent.
        "body": {"type": "object",
                 "properties": {"jurisdiction": {"type": "string",
                                                 "enum": ["unrestricted", "us", "eu", "fedramp"]}},
                 "anyOf": [{"required": ["namespace"], "properties": {"namespace": NAMESPACE}},
                           {"required": ["name"], "properties": {"name": NAMESPACE},
                            "not": {"required": ["namespace"]}}]}},
    ("get", "/namespaces/{namespace}"): {"status": "200", "result": _ref("Namespace")},
    ("delete", "/namespaces/{namespace}"): {"status": "204"},
    ("get", "/namespaces/{namespace}/repos"): {
        "status": "200", "result": _list("Repo"), "info": "CursorResultInfo",
        "query": [_q("limit", LIMIT), _q("cursor", CURSOR), _q("search", {"type": "string"}),
                  _q("sort", {"type": "string", "enum": ["created_at", "updated_at", "last_push_at", "name"]}),
                  _q("direction", {"type": "string", "enum": ["asc", "desc"]})]},
    ("post", "/namespaces/{namespace}/repos"): {
        "status": "201", "result": _ref("RepoCreated"),
        "body": {"type": "object", "required": ["name"],
                 "properties": {"name": REPO_NAME,
                                "description": {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "null"}]},
                                "default_branch": {"anyOf": [BRANCH, {"type": "null"}]},
                                "read_only": {"type": "boolean"}}}},
    ("get", "/namespaces/{namespace}/repos/{name}"): {"status": "200", "result": _ref("Repo")},
    ("delete", "/namespaces/{namespace}/repos/{name}"): {"status": "202", "result": _ref("IdResult")},
    ("get", "/namespaces/{namespace}/repos/{name}/tokens"): {
        "status": "200", "result": _list("TokenInfo"), "info": "OffsetResultInfo",
        "query": [_q("state", {"type": "string", "enum": ["active", "expired", "revoked", "all"]}),
                  _q("page", {"type": "integer", "minimum": 1}),
                  _q("per_page", {"type": "integer", "minimum": 1, "maximum": 100})]},
    ("post", "/namespaces/{namespace}/tokens"): {
        "status": "201", "result": _ref("TokenCreated"),
        "body": {"type": "object", "required": ["repo"],
                 "properties": {"repo": REPO_NAME, "scope": {"type": "string", "enum": ["read", "write"]},
                                "ttl": {"type": "integer", "minimum": 60, "maximum": 31_536_000}}}},
    ("delete", "/namespaces/{namespace}/tokens/{token_id}"): {"status": "200", "result": _ref("IdResult")},
}

ERRORS = {
    "400": "Invalid input (INVALID_INPUT, INVALID_REPO_NAME, INVALID_TTL, ...)",
    "401": "Missing or invalid API token",
    "403": "The token lacks the permission, or cannot access that account or namespace",
    "404": "Not found (NOT_FOUND)",
    "405": "Method not allowed",
    "409": "Conflict (ALREADY_EXISTS, *_IN_PROGRESS, namespace not empty)",
    "413": "Request body too large",
    "429": "Rate limit exceeded; retry after Retry-After seconds",
    "422": "The import source cannot be used (INVALID_URL, REMOTE_AUTH_REQUIRED)",
    "500": "Internal error (INTERNAL_ERROR)",
    "502": "The import source is unavailable (UPSTREAM_UNAVAILABLE)",
    "503": "Busy (storage maintenance); retry",
    "504": "The import timed out",
}


def _error(status: str) -> dict:
    out: dict[str, Any] = {"description": ERRORS[status],
                           "content": {"application/json": {"schema": _ref("ErrorEnvelope")}}}
    if status == "429":
        out["headers"] = {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                                          "description": "Seconds until the rate-limit window ends."}}
    if status == "405":
        out["headers"] = {"Allow": {"required": True, "schema": {"type": "string"}}}
    return out


def describe(api: FastAPI) -> dict:
    spec = get_openapi(title=api.title, version=api.version, routes=api.routes,
                       description="Artifacts-compatible REST control plane of artifactd.")
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    components["securitySchemes"] = {"api_token": {"type": "http", "scheme": "bearer"}}
    for schema_name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(schema_name, None)
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/client/v4/"):
            continue
        rel = path[len(PREFIX):] or "/" if path.startswith(PREFIX) else None
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            route = ROUTES.get((method, rel), {}) if rel else {}
            op["security"] = [{"api_token": []}]
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param["name"] in PATH_PARAMS:
                    param["schema"] = copy.deepcopy(PATH_PARAMS[param["name"]])
            if route.get("query"):
                known = {p["name"] for p in op.get("parameters", [])}
                op.setdefault("parameters", []).extend(
                    copy.deepcopy(q) for q in route["query"] if q["name"] not in known)
            if "body" in route:
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": copy.deepcopy(route["body"])}}}
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status, reply in responses.items():  # a success with no schema: still the envelope
                schema = reply.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema == {}:
                    reply["content"]["application/json"]["schema"] = envelope({})
            if "status" in route:
                status = route["status"]
                for s in [s for s in responses if s.startswith("2")]:
                    responses.pop(s)
                if status == "204":
                    responses[status] = {"description": "Deleted (no content)"}
                else:
                    responses[status] = {"description": "Success", "content": {"application/json": {
                        "schema": envelope(copy.deepcopy(route["result"]), route.get("info"))}}}
            statuses = ["400", "401", "403", "404", "405", "409", "429", "500"]
            if "requestBody" in op:
                statuses.append("413")
            if path.endswith("/fork"):
                statuses.append("503")
            if path.endswith("/import"):
                statuses += ["413", "422", "502", "503", "504"]
            for s in statuses:
                responses.setdefault(s, _error(s))
    return spec


def install(api: FastAPI) -> None:
    """Serve :func:`describe` at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict:
        if api.openapi_schema is None:
            api.openapi_schema = describe(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
