"""Request plumbing shared by REST routes: the core, the caller, JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.errors import invalid
from artifactd.services import Core
from artifactd.services.apitokens import Principal

MAX_JSON_BODY = 1024 * 1024


def core_of(request: Request) -> Core:
    return request.app.state.core


def client_ip(request: Request) -> str | None:
    """The caller's address: the socket peer, or the last untrusted hop of
    X-Forwarded-For when the peer is one of ``ARTIFACTD_TRUSTED_PROXIES``."""
    import ipaddress

    peer = request.client.host if request.client else None
    proxies = core_of(request).settings.trusted_proxy_networks()
    if not peer or not proxies:
        return peer

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in proxies)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None  # garbage from a trusted proxy: unknown, so IP rules fail closed
    return hops[0] if hops else peer


async def principal(request: Request) -> Principal:
    """The authenticated control-plane caller (401 envelope otherwise)."""
    core = core_of(request)
    return await run_in_threadpool(core.api_tokens.authenticate, request.headers.get("authorization"),
                                   client_ip(request))


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """A JSON object body, or INVALID_INPUT; an empty body is ``{}`` when not required."""
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise invalid("Request body too large.")
    if not raw.strip():
        if required:
            raise invalid("Request body must be a JSON object.")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("Malformed JSON in request body.") from None
    if not isinstance(data, dict):
        raise invalid("Request body must be a JSON object.")
    return data


def query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid(f"Invalid {name}: must be an integer.") from None
