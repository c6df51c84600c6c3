"""The ASGI application: Git smart HTTP under ``/git/``, everything else REST."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from artifactd import __version__
from artifactd.errors import ArtifactsError, ErrorCode
from artifactd.http import openapi, rest, rest_content, rest_forks
from artifactd.http.envelope import error_response, failure
from artifactd.http.git import GitHTTP
from artifactd.http import rest_binding
from artifactd.services import Core
from artifactd.services.jobs import install as install_jobs

log = logging.getLogger("artifactd.http")


def create_api(core: Core) -> FastAPI:
    # No slash redirects: a redirect built from the client's Host header helps no client.
    api = FastAPI(title="artifactd", version=__version__, docs_url="/docs", redoc_url=None, redirect_slashes=False)
    api.state.core = core
    api.include_router(rest.router)
    from artifactd.http import oauth_pages, rest_user  # identity: users, API tokens, OAuth

    api.include_router(rest_user.router)
    api.include_router(oauth_pages.router)
    api.include_router(rest_forks.router)
    api.include_router(rest_content.router)
    install_jobs(api, core)
    api.router.add_event_handler("startup", core.db.start_checkpointer)
    api.include_router(rest_binding.router)
    openapi.install(api)

    @api.exception_handler(ArtifactsError)
    async def _artifacts_error(_: Request, exc: ArtifactsError):
        return error_response(exc)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"Invalid {where}: {first.get('msg', 'invalid input')}" if where else "Invalid input."
        return failure(400, ErrorCode.INVALID_INPUT.numeric, message)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return failure(404, ErrorCode.NOT_FOUND.numeric, "No route matches this path.")
        if exc.status_code == 405:
            return failure(405, ErrorCode.INVALID_INPUT.numeric, "Method not allowed.", headers=exc.headers)
        return failure(exc.status_code, ErrorCode.INVALID_INPUT.numeric, str(exc.detail))

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled error")
        return failure(500, ErrorCode.INTERNAL_ERROR.numeric, "An internal error occurred.")

    @api.get("/healthz", include_in_schema=False)
    async def _health():
        return {"ok": True}

    return api


def create_app(core: Core):
    """One ASGI callable; Git requests skip the web framework entirely."""
    api = create_api(core)
    git = GitHTTP(core)

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/git/"):
            await git(scope, receive, send)
        else:
            await api(scope, receive, send)

    app.api = api  # type: ignore[attr-defined]
    app.core = core  # type: ignore[attr-defined]
    return app


SUPERVISOR_PID_ENV = "ARTIFACTD_SUPERVISOR_PID"


def _die_with_parent() -> None:
    """A worker of ``--workers N`` ends when the process that started it does, even if
    that one was killed with SIGKILL: otherwise orphaned workers keep the port and the
    next start fails with "address already in use" (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes
    import os
    import signal

    # The supervisor's pid comes from the environment, not getppid() here: the parent may
    # die while this worker still imports, and then getppid() already names init.
    parent = int(os.environ.get(SUPERVISOR_PID_ENV) or os.getppid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def app_from_env():
    """uvicorn factory for multi-worker serving: settings from ``ARTIFACTD_*``."""
    _die_with_parent()
    core = Core()
    core.storage.prepare()
    core.register()
    return create_app(core)
