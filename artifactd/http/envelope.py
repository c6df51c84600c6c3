"""The Cloudflare v4 envelope: ``{result, success, errors, messages, result_info}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from artifactd.errors import ArtifactsError


def ok(result: Any, status: int = 200, result_info: dict | None = None) -> JSONResponse:
    body: dict[str, Any] = {"result": result, "success": True, "errors": [], "messages": []}
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status_code=status)


def failure(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"result": None, "success": False, "errors": [{"code": code, "message": message}], "messages": []},
        status_code=status,
        headers=headers,
    )


def error_response(err: ArtifactsError) -> JSONResponse:
    return failure(err.status, err.numeric_code, err.message, headers=err.headers)


def no_content() -> Response:
    return Response(status_code=204)
