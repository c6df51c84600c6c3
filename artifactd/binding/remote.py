"""The remote backend: the binding's operations over the REST API (reference §3).

Each operation is written once, as a generator that yields HTTP requests (and pauses)
and receives responses ("sans-IO"); :class:`RemoteBackend` drives it with a blocking
``httpx.Client``, :class:`AsyncRemoteBackend` with ``httpx.AsyncClient``. Results are
the REST shapes; :mod:`artifactd.binding.client` turns them into typed results. Errors
are the server's envelope errors, raised as the one :class:`ArtifactsError`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from artifactd import __version__
from artifactd.errors import ArtifactsError, ErrorCode
from artifactd.validation import TOKEN_ID_RE

USER_AGENT = f"artifactd-binding/{__version__}"
BUSY = (ErrorCode.IMPORT_IN_PROGRESS, ErrorCode.FORK_IN_PROGRESS, ErrorCode.CREATE_IN_PROGRESS)
#: NOT_FOUND messages that name the repo or namespace (not a missing object in it).
_CONTAINER_MISSING = ("Repository not found", "Namespace not found", "No route")

_BY_STATUS = {
    400: ErrorCode.INVALID_INPUT, 401: ErrorCode.UNAUTHENTICATED, 403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND, 409: ErrorCode.CONFLICT, 413: ErrorCode.MEMORY_LIMIT,
    422: ErrorCode.INVALID_URL, 429: ErrorCode.RATE_LIMITED, 502: ErrorCode.UPSTREAM_UNAVAILABLE,
    503: ErrorCode.UPSTREAM_UNAVAILABLE, 504: ErrorCode.UPSTREAM_UNAVAILABLE,
}


@dataclass
class Req:
    method: str
    #: Relative to ``/client/v4/accounts/<account>/artifacts``, unless it starts with ``/client/``.
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    #: Success answers carry bytes (blob, file), not an envelope.
    raw: bool = False


@dataclass
class Resp:
    status: int
    content_type: str
    content: bytes


@dataclass
class Sleep:
    seconds: float


Op = Generator[Any, Any, Any]


def seg(value: Any) -> str:
    """One path segment, percent-encoded (``/`` included)."""
    return quote(str(value), safe="")


def error_from(resp: Resp, body: Any) -> ArtifactsError:
    first = {}
    if isinstance(body, dict):
        errors = body.get("errors") or []
        if errors and isinstance(errors[0], dict):
            first = errors[0]
        elif body.get("error"):
            first = {"message": str(body["error"]), "code": body.get("code")}
    numeric = first.get("code")
    numeric = numeric if isinstance(numeric, int) and not isinstance(numeric, bool) else None
    message = str(first.get("message") or f"HTTP {resp.status} from the server.")
    code = ErrorCode.from_numeric(numeric) or _BY_STATUS.get(resp.status) or ErrorCode.INTERNAL_ERROR
    return ArtifactsError(code, message, status=resp.status, numeric=numeric)


def unwrap(resp: Resp, raw: bool = False) -> tuple[Any, Any]:
    """``(result, result_info)`` of a success envelope, ``((bytes, type), None)`` of a raw
    answer; raises the envelope's error otherwise."""
    is_json = resp.content_type.split(";")[0].strip().lower() == "application/json"
    if raw and 200 <= resp.status < 300 and not is_json:
        return (resp.content, resp.content_type), None
    if resp.status in (204, 205) and not resp.content.strip():
        return None, None
    try:
        body = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        if resp.status >= 400:
            raise error_from(resp, None)
        raise ArtifactsError(ErrorCode.INTERNAL_ERROR,
                             f"Malformed response from the server (HTTP {resp.status}).", status=502)
    if body.get("success") is True and resp.status < 400:
        return body.get("result"), body.get("result_info")
    raise error_from(resp, body)


def call(req: Req) -> Op:
    resp = yield req
    return unwrap(resp, req.raw)


def result(req: Req) -> Op:
    res, _ = yield from call(req)
    return res


def missing_object(e: ArtifactsError) -> bool:
    """A NOT_FOUND about a commit, tree, blob or file (not about the repo or the route)."""
    return e.code == ErrorCode.NOT_FOUND and not e.message.startswith(_CONTAINER_MISSING)


def no_route(e: ArtifactsError) -> bool:
    """The server has no such route (an older artifactd, or not artifactd at all)."""
    return e.status in (404, 405) and "route" in e.message.lower()


def file_type(path: str, data: bytes, sent: str = "application/octet-stream") -> str:
    """``read_file``'s MIME type: REST route 15 always sends octet-stream, so type the bytes
    with the same rule the local backend (and the raw route) uses."""
    try:
        from artifactd.services.content import sniff_type
    except ImportError:  # a build without the content service
        return sent
    return sniff_type(path, data)


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class Ops:
    """Every operation of the binding and the CLI, as request generators."""

    # -- namespaces ---------------------------------------------------------------------

    @staticmethod
    def list_namespaces(limit: int = 100, cursor: str | None = None) -> Op:
        items, info = yield from call(Req("GET", "/namespaces", _drop_none({"limit": limit, "cursor": cursor})))
        return items, (info or {}).get("cursor") or None

    @staticmethod
    def get_namespace(namespace: str) -> Op:
        return (yield from result(Req("GET", f"/namespaces/{seg(namespace)}")))

    @staticmethod
    def create_namespace(namespace: str, jurisdiction: str | None = None) -> Op:
        body = _drop_none({"namespace": namespace, "jurisdiction": jurisdiction})
        return (yield from result(Req("POST", "/namespaces", json=body)))

    @staticmethod
    def delete_namespace(namespace: str) -> Op:
        yield from call(Req("DELETE", f"/namespaces/{seg(namespace)}"))
        return None

    # -- repos ----------------------------------------------------------------------------

    @staticmethod
    def create_repo(namespace: str, name: str, *, description: str | None = None, default_branch: str | None = None,
                    read_only: bool = False) -> Op:
        body = _drop_none({"name": name, "description": description, "default_branch": default_branch,
                           "read_only": read_only})
        return (yield from result(Req("POST", f"/namespaces/{seg(namespace)}/repos", json=body)))

    @staticmethod
    def get_repo(namespace: str, name: str) -> Op:
        return (yield from result(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(name)}")))

    @staticmethod
    def list_repos(namespace: str, limit: int = 50, cursor: str | None = None) -> Op:
        """``(items, next_cursor, total)``; the total is the namespace's ``repo_count``."""
        try:
            ns = yield from result(Req("GET", f"/namespaces/{seg(namespace)}"))
        except ArtifactsError as e:
            if e.code == ErrorCode.NOT_FOUND and not no_route(e):
                # An unknown namespace holds no repos; still check the arguments.
                yield from call(Req("GET", f"/namespaces/{seg(namespace)}/repos",
                                    _drop_none({"limit": limit, "cursor": cursor})))
                return [], None, 0
            raise
        items, info = yield from call(Req("GET", f"/namespaces/{seg(namespace)}/repos",
                                          _drop_none({"limit": limit, "cursor": cursor})))
        return items, (info or {}).get("cursor") or None, int(ns.get("repo_count") or 0)

    @staticmethod
    def delete_repo(namespace: str, name: str) -> Op:
        try:
            yield from call(Req("DELETE", f"/namespaces/{seg(namespace)}/repos/{seg(name)}"))
        except ArtifactsError as e:
            if e.code == ErrorCode.NOT_FOUND and not no_route(e):
                return False
            raise
        return True

    @staticmethod
    def fork_repo(namespace: str, name: str, target: str, *, description: str | None = None, read_only: bool = False,
                  default_branch_only: bool = True) -> Op:
        body = _drop_none({"name": target, "description": description, "read_only": read_only,
                           "default_branch_only": default_branch_only})
        return (yield from result(Req("POST", f"/namespaces/{seg(namespace)}/repos/{seg(name)}/fork", json=body)))

    @staticmethod
    def import_repo(namespace: str, name: str, url: str, *, branch: str | None = None, depth: int | None = None,
                    read_only: bool = False, description: str | None = None) -> Op:
        body = _drop_none({"url": url, "branch": branch, "depth": depth, "read_only": read_only,
                           "description": description})
        return (yield from result(Req("POST", f"/namespaces/{seg(namespace)}/repos/{seg(name)}/import", json=body)))

    @staticmethod
    def wait_ready(namespace: str, name: str, timeout: float = 600, on_wait: Callable[[ArtifactsError], None] | None
                   = None) -> Op:
        """Poll until the repo is ready (its info) or failed (its error); BUSY past ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                return (yield from result(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(name)}")))
            except ArtifactsError as e:
                if e.code not in BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise ArtifactsError(e.code, f"{e.message} (still not ready after {timeout:g} s)",
                                         status=e.status) from None
                if on_wait is not None:
                    on_wait(e)
                yield Sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- repo tokens ----------------------------------------------------------------------

    @staticmethod
    def create_token(namespace: str, repo: str, scope: str = "write", ttl: int = 86_400) -> Op:
        body = {"repo": repo, "scope": scope, "ttl": ttl}
        return (yield from result(Req("POST", f"/namespaces/{seg(namespace)}/tokens", json=body)))

    @staticmethod
    def list_tokens(namespace: str, repo: str, *, state: str = "active", page: int = 1, per_page: int = 30) -> Op:
        items, info = yield from call(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(repo)}/tokens",
                                          {"state": state, "page": page, "per_page": per_page}))
        return items, info or {}

    @staticmethod
    def revoke_token(namespace: str, repo: str, token_or_id: str) -> Op:
        """Binding semantics: by id or plaintext; False if unknown or already revoked."""
        try:
            res = yield from result(Req("POST", f"/namespaces/{seg(namespace)}/repos/{seg(repo)}/tokens/revoke",
                                        json={"token": token_or_id}))
            return bool(res["revoked"])
        except ArtifactsError as e:
            if not no_route(e):
                raise
        # A server without artifactd's extension route revokes by id only.
        if not isinstance(token_or_id, str) or not TOKEN_ID_RE.match(token_or_id):
            raise ArtifactsError(ErrorCode.INVALID_INPUT, "This server revokes repo tokens by id only.")
        try:
            yield from call(Req("DELETE", f"/namespaces/{seg(namespace)}/tokens/{seg(token_or_id)}"))
        except ArtifactsError as e:
            if e.code == ErrorCode.NOT_FOUND:
                return False
            raise
        return True

    @staticmethod
    def revoke_token_id(namespace: str, token_id: str) -> Op:
        """REST route 19: revoke by id anywhere in the namespace (NOT_FOUND if unknown)."""
        return (yield from result(Req("DELETE", f"/namespaces/{seg(namespace)}/tokens/{seg(token_id)}")))

    # -- content --------------------------------------------------------------------------

    @staticmethod
    def log(namespace: str, repo: str, *, ref: str | None = None, limit: int = 50, offset: int = 0) -> Op:
        params = _drop_none({"ref": ref, "limit": limit, "offset": offset})
        return (yield from result(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(repo)}/log", params)))

    @staticmethod
    def _object(namespace: str, repo: str, kind: str, hash: str, raw: bool = False) -> Op:
        try:
            return (yield from result(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(repo)}/{kind}/{seg(hash)}",
                                          raw=raw)))
        except ArtifactsError as e:
            if missing_object(e):
                return None
            raise

    @staticmethod
    def commit(namespace: str, repo: str, hash: str) -> Op:
        return (yield from Ops._object(namespace, repo, "commit", hash))

    @staticmethod
    def tree(namespace: str, repo: str, hash: str) -> Op:
        return (yield from Ops._object(namespace, repo, "tree", hash))

    @staticmethod
    def blob(namespace: str, repo: str, hash: str) -> Op:
        got = yield from Ops._object(namespace, repo, "blob", hash, raw=True)
        return None if got is None else (got[0], "")

    @staticmethod
    def file(namespace: str, repo: str, ref: str, path: str) -> Op:
        try:
            data, media = yield from result(Req("GET", f"/namespaces/{seg(namespace)}/repos/{seg(repo)}/file",
                                                {"ref": ref, "path": path}, raw=True))
        except ArtifactsError as e:
            if missing_object(e):
                return None
            raise
        return data, file_type(path, data, media)

    # -- accounts (only to find the account id when none is configured) -------------------

    @staticmethod
    def accounts() -> Op:
        return (yield from result(Req("GET", "/client/v4/accounts", {"page": 1, "per_page": 50})))


OPERATIONS = frozenset(n for n in vars(Ops) if not n.startswith("_"))


class _Driver:
    """What both drivers share: the base URL, the account, the credential."""

    def __init__(self, url: str, account_id: str | None, token: str | Callable[[], str] | None, timeout: float):
        self.url = url.rstrip("/")
        self._account_id = account_id or None
        self._token = token
        self.timeout = timeout

    def _bearer(self) -> str | None:
        t = self._token() if callable(self._token) else self._token
        return t or None

    def _headers(self) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        bearer = self._bearer()
        if bearer:
            h["Authorization"] = f"Bearer {bearer}"
        return h

    def _url(self, path: str, account_id: str | None) -> str:
        if path.startswith("/client/"):
            return self.url + path
        return f"{self.url}/client/v4/accounts/{seg(account_id)}/artifacts{path}"

    def _unreachable(self, exc: Exception) -> ArtifactsError:
        return ArtifactsError(ErrorCode.UPSTREAM_UNAVAILABLE,
                              f"Cannot reach the artifactd server at {self.url}: {type(exc).__name__}: {exc}",
                              status=503)

    @staticmethod
    def _pick_account(accounts: Any) -> str:
        if isinstance(accounts, list) and len(accounts) == 1 and isinstance(accounts[0], dict):
            return str(accounts[0]["id"])
        n = len(accounts) if isinstance(accounts, list) else 0
        raise ArtifactsError(
            ErrorCode.INVALID_INPUT,
            "No account id configured and the credential can see "
            + ("no account" if n == 0 else f"{n} accounts")
            + ": set ARTIFACTD_ACCOUNT_ID (or CLOUDFLARE_ACCOUNT_ID) or pass account_id=.",
        )


class RemoteBackend(_Driver):
    """The operations over a blocking ``httpx.Client``."""

    def __init__(self, url: str, account_id: str | None = None, token: str | Callable[[], str] | None = None, *,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        super().__init__(url, account_id, token, timeout)
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    @property
    def account_id(self) -> str:
        if not self._account_id:
            self._account_id = self._pick_account(self._run(Ops.accounts()))
        return self._account_id

    def _send(self, req: Req) -> Resp:
        account = None if req.path.startswith("/client/") else self.account_id
        try:
            r = self._client.request(req.method, self._url(req.path, account), params=req.params, json=req.json,
                                     headers=self._headers())
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        return Resp(r.status_code, r.headers.get("content-type", ""), r.content)

    def _run(self, op: Op) -> Any:
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    resp = self._send(step)
                except ArtifactsError as e:
                    step = op.throw(e)
                    continue
                step = op.send(resp)
        except StopIteration as stop:
            return stop.value

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in OPERATIONS:
            raise AttributeError(name)
        fn = getattr(Ops, name)

        def run(*a: Any, **kw: Any) -> Any:
            try:
                return self._run(fn(*a, **kw))
            except ArtifactsError as e:
                raise e.with_traceback(None) from None  # the caller's frames, not the plumbing

        return run

    def close(self) -> None:
        self._client.close()


class AsyncRemoteBackend(_Driver):
    """The same operations over ``httpx.AsyncClient``; every method is a coroutine."""

    def __init__(self, url: str, account_id: str | None = None, token: str | Callable[[], str] | None = None, *,
                 timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(url, account_id, token, timeout)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)

    async def _account(self) -> str:
        if not self._account_id:
            self._account_id = self._pick_account(await self._run(Ops.accounts()))
        return self._account_id

    async def _send(self, req: Req) -> Resp:
        account = None if req.path.startswith("/client/") else await self._account()
        try:
            headers = await asyncio.to_thread(self._headers) if callable(self._token) else self._headers()
            r = await self._client.request(req.method, self._url(req.path, account), params=req.params,
                                           json=req.json, headers=headers)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        return Resp(r.status_code, r.headers.get("content-type", ""), r.content)

    async def _run(self, op: Op) -> Any:
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    resp = await self._send(step)
                except ArtifactsError as e:
                    step = op.throw(e)
                    continue
                step = op.send(resp)
        except StopIteration as stop:
            return stop.value

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in OPERATIONS:
            raise AttributeError(name)
        fn = getattr(Ops, name)

        async def run(*a: Any, **kw: Any) -> Any:
            try:
                return await self._run(fn(*a, **kw))
            except ArtifactsError as e:
                raise e.with_traceback(None) from None

        return run

    async def aclose(self) -> None:
        await self._client.aclose()
