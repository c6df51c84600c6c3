"""Request plumbing shared by REST routes: the core, the caller, JSON bodies."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from artifactd.errors import ArtifactsError, ErrorCode, invalid, rate_limited
from artifactd.services import Core
from artifactd.services.apitokens import Principal, Rejection
from artifactd.services.ratelimit import CONTROL_PLANE, Decision

MAX_JSON_BODY = 1024 * 1024
T = TypeVar("T")


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


async def read_call(core: Core, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service call that only reads the store (and otherwise touches nothing but
    memory). On SQLite it runs right here on the event loop: a WAL read never waits for
    a writer, takes ~0.1-0.5 ms, and a worker-thread hop cost ~1 ms of CPU per request in
    GIL hand-offs (docs/benchmarks.md). Elsewhere (a database over the network) it
    runs in a worker thread."""
    if core.db.inline_reads:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def write_call(core: Core, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short service call that writes the store (a few rows, no files). On SQLite,
    when no thread or process is writing, it runs right here on the event loop holding
    the writers' queue, so it cannot wait on a lock: the GIL hand-offs of a worker thread
    cost more CPU than the write itself (docs/benchmarks.md). Otherwise, and on other
    databases, it runs in a worker thread, which may wait its turn."""
    with core.db.writer_if_free() as free:  # never free on other databases
        if free:
            return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def rate_limit_hit(core: Core, kind: str, key: str) -> Decision:
    """Count a request against its rate limit: right here when the counters are in
    memory, in a worker thread when they are in Redis or the database."""
    limits = core.rate_limits
    if not limits.blocking or limits.limits[kind] <= 0:
        return limits.hit(kind, key)
    return await run_in_threadpool(limits.hit, kind, key)


async def principal(request: Request) -> Principal:
    """The authenticated control-plane caller (401 envelope otherwise), within its rate
    limit (429 envelope with ``Retry-After`` otherwise; counted per namespace, or per
    account for routes without one)."""
    core = core_of(request)
    who = await read_call(core, core.api_tokens.verify, request.headers.get("authorization"), client_ip(request))
    if isinstance(who, Rejection):
        await run_in_threadpool(core.api_tokens.reject, who)  # raises 401 or 403
    params = request.query_params
    for key in params:
        if len(params.getlist(key)) > 1:  # ambiguous: which one would count?
            raise invalid(f"Invalid {key[:40]}: the parameter is given more than once.")
    namespace = request.path_params.get("namespace")
    limits = core.rate_limits
    key = limits.control_plane_key(who.account_id, namespace if isinstance(namespace, str) else None)
    decision = await rate_limit_hit(core, CONTROL_PLANE, key)
    if not decision.allowed:
        raise rate_limited(decision.retry_after, f"namespace {namespace!r}" if namespace else "this account")
    return who


class _NotJSON(ValueError):
    """A number standard JSON does not have (Python's parser accepts them)."""


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJSON(f"{text[:40]} is out of range")
    return value


def _too_large(limit: int) -> ArtifactsError:
    return ArtifactsError(ErrorCode.INVALID_INPUT, f"Request body too large (limit {limit} bytes).", status=413)


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """A JSON object body, or INVALID_INPUT; an empty body is ``{}`` when not required.

    The body is read up to the configured limit and no further: a huge body is refused
    (413) without being held in memory."""
    limit = core_of(request).settings.max_json_body_bytes or MAX_JSON_BODY
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    idle = core_of(request).settings.body_idle_timeout_seconds or None
    loop = asyncio.get_running_loop()
    try:
        # One deadline moved on by every chunk (cheaper than a wait_for task per chunk).
        async with asyncio.timeout(idle) as deadline:
            async for chunk in request.stream():
                if idle:
                    deadline.reschedule(loop.time() + idle)
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ArtifactsError(ErrorCode.INVALID_INPUT, "Request body stalled; closing the connection.",
                             status=408, headers={"Connection": "close"}) from None
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise invalid("Request body must be a JSON object.")
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:  # ~1,000 nested brackets: a few KiB, far below the size limit
        raise invalid("Malformed JSON in request body: nested too deeply.") from None
    except (ValueError, UnicodeDecodeError) as e:
        detail = f": {e.args[0]}" if isinstance(e, _NotJSON) else "."
        raise invalid(f"Malformed JSON in request body{detail}") from None
    if not isinstance(data, dict):
        raise invalid("Request body must be a JSON object.")
    return data


def query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid(f"Invalid {name}: must be an integer.") from None
