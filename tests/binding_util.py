"""Helpers shared by the binding, CLI and credential-helper tests."""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from pathlib import Path

import httpx
import pytest

from artifactd.binding import Artifacts
from artifactd.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def remote_binding(server: ServerProcess, namespace: str | None = None) -> Artifacts:
    return Artifacts(namespace or unique("ns"), url=server.base_url, account_id=server.account_id,
                     api_token=server.api_token)


def route_exists(server: ServerProcess, method: str, path: str) -> bool:
    """Whether the server knows a REST route (404 "No route ..." when it does not)."""
    if path.startswith("/client/"):
        r = httpx.request(method, server.base_url + path, headers={"Authorization": f"Bearer {server.api_token}"})
    else:
        with server.api() as c:
            r = c.request(method, path)
    if r.status_code not in (404, 405):
        return True
    try:
        message = r.json()["errors"][0]["message"]
    except (ValueError, KeyError, IndexError):
        return False
    return "route" not in message.lower()


def require_service(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in this build yet (forks/imports/content land from branch `forks`)")


def require_route(art: Artifacts, server: ServerProcess, kind: str) -> None:
    """Skip a content/fork/import test when that part of artifactd has not landed."""
    module = {"content": "artifactd.services.content", "fork": "artifactd.services.forks",
              "import": "artifactd.services.imports"}[kind]
    if art.mode == "local":
        require_service(module)
        return
    probe = {"content": ("GET", "/namespaces/default/repos/probe-x/log"),
             "fork": ("POST", "/namespaces/default/repos/probe-x/fork"),
             "import": ("POST", "/namespaces/default/repos/probe-x/import")}[kind]
    if not route_exists(server, *probe):
        pytest.skip(f"the server has no {kind} route yet (it answers 404 'No route'; lands from branch `forks`)")


def cli_env(server: ServerProcess, **extra: str) -> dict[str, str]:
    """An environment for the artifactd CLI: the server and its API token, nothing inherited
    that could point elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARTIFACTD_", "CLOUDFLARE_", "CF_"))}
    env.update(ARTIFACTD_URL=server.base_url, ARTIFACTD_API_TOKEN=server.api_token,
               ARTIFACTD_ACCOUNT_ID=server.account_id, **extra)
    return env


def artifactd_cmd() -> list[str]:
    return [sys.executable, "-m", "artifactd"]


def eventually(fn, timeout: float = 30, what: str = "condition"):
    """fn()'s first truthy value, polling. For state a server records just after it has
    answered (``last_push_at`` is written after the push's last byte went out)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.05)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
