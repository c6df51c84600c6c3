"""Git smart HTTP on the four endpoints, with C git as the engine (DESIGN.md).

Authorization is decided before git runs, following the status policy; after the 200
is sent, failures are git's own in-band messages. Request and response bodies stream
through pipes in both directions: a pack never sits in Python memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool

from artifactd.gitserver.engine import git_env, valid_git_protocol
from artifactd.gitserver.pushreport import PushReport
from artifactd.http.deps import rate_limit_hit, read_call, write_call
from artifactd.http.gitauth import parse_authorization
from artifactd.services import Core
from artifactd.services.ratelimit import GIT
from artifactd.services.tokens import GitAccess

log = logging.getLogger("artifactd.git")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

PATH_RE = re.compile(
    r"^/git/(?:(?P<account>[0-9a-f]{32})/)?(?P<ns>[A-Za-z0-9][A-Za-z0-9._-]*)/"
    r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*?)(?:\.git)?/"
    r"(?P<action>info/refs|git-upload-pack|git-receive-pack)$"
)
SERVICES = ("git-upload-pack", "git-receive-pack")
CHUNK = 64 * 1024
#: What git says when the fault is the server's (storage, memory, permissions), not the
#: request's. A git that exits with an error before answering and says none of these
#: refused what the client sent (a malformed pkt-line stream): 400, not 500.
SERVER_FAULT_RE = re.compile(
    r"not a git repository|No space left|Permission denied|Read-only file system|out of memory|"
    r"[Cc]annot allocate|corrupt|unable to (read|write|create|open|access)|could not (read|write|open|create)|"
    r"Input/output error|Too many open files|[Ss]egmentation|[Ii]nternal error|BUG:"
)
#: Aborts of C git (``BUG()``) that a request body can trigger: still the client's fault.
#: git 2.39 aborts on a response-end packet (``0002``) in a protocol v2 request.
INPUT_BUG_RE = re.compile(r"BUG: serve\.c:\d+: unexpected response end packet")
#: Room for the ref-update commands in front of the pack of a push.
PUSH_COMMANDS_ALLOWANCE = 16 * 1024 * 1024
NO_CACHE = [
    (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
    (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
    (b"pragma", b"no-cache"),
]
CHALLENGE = (b"www-authenticate", b'Basic realm="artifacts"')
#: On replies sent before the request body was read to its end.
CLOSE = (b"connection", b"close")


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class ClientStalled(Exception):
    pass


class BadBody(Exception):
    pass


async def send_text(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = (text.rstrip("\n") + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def _kill(proc: asyncio.subprocess.Process) -> None:
    """End git and everything it started (pack-objects, index-pack)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class GitHTTP:
    def __init__(self, core: Core):
        self.core = core
        self.settings = core.settings
        self._slots: asyncio.Semaphore | None = None
        self._host_re = self._compile_host_template(self.settings.git_host_template)
        #: Protocol v2 capability advertisements, by (Git-Protocol, the repo's config file).
        self._v2_caps: dict[tuple[str, bytes], bytes] = {}

    @staticmethod
    def _compile_host_template(template: str) -> re.Pattern[str] | None:
        if not template:
            return None
        pattern = re.escape(template).replace(re.escape("{account_id}"), "(?P<account>[0-9a-f]{32})")
        return re.compile(f"^{pattern}(?::\\d+)?$", re.IGNORECASE)

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_git_processes)
        return self._slots

    def _account_from_host(self, scope: Scope) -> str | None:
        if self._host_re is None:
            return None
        for name, value in scope.get("headers", []):
            if name == b"host":
                m = self._host_re.match(value.decode("latin-1"))
                return m.group("account").lower() if m else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = PATH_RE.match(scope["path"])
        account = (m.group("account") if m else None) or (self._account_from_host(scope) if m else None)
        if m is None or account is None:
            await send_text(send, 404, "Not found")
            return
        method = scope["method"]
        action = m.group("action")
        if action == "info/refs":
            if method not in ("GET", "HEAD"):
                await send_text(send, 405, "Method not allowed", [(b"allow", b"GET")])
                return
            service = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("service", [None])[0]
            if service not in SERVICES:
                await send_text(send, 403, "Only the smart HTTP protocol is supported; use a current Git client.")
                return
        else:
            if method != "POST":
                await send_text(send, 405, "Method not allowed", [(b"allow", b"POST")])
                return
            service = action

        headers = {k: v for k, v in scope.get("headers", [])}
        access = await self._authorize(send, headers.get(b"authorization"), account, m.group("ns"),
                                       m.group("repo"), service)
        if access is None:
            return
        decision = await rate_limit_hit(self.core, GIT, access.repo_id)
        if not decision.allowed:
            await send_text(send, 429, f"Rate limit exceeded for this repository; retry after "
                            f"{decision.retry_after} s", [(b"retry-after", str(decision.retry_after).encode())])
            return
        path = self.core.storage.path(access.storage_path)
        try:
            if not self.core.storage.exists(path):  # a new repo's first request (GitStorage.ensure)
                await run_in_threadpool(self.core.storage.ensure, access.storage_path, access.default_branch)
        except OSError:
            log.exception("storage of repo %s is unavailable", access.repo_id)
            await send_text(send, 500, "Repository storage unavailable")
            return
        env = git_env(self.settings)
        proto = valid_git_protocol(headers.get(b"git-protocol", b"").decode("latin-1"))
        if service == "git-receive-pack" and proto and "version=2" in proto:
            proto = None  # push has no v2; git falls back to v0, so must we
        if proto:
            env["GIT_PROTOCOL"] = proto
        if action == "info/refs":
            await self._advertise(send, service, path, env, proto)
        else:
            await self._rpc(scope, receive, send, service, path, env, headers, access)

    async def _authorize(self, send: Send, header: bytes | None, account: str, ns: str, repo: str,
                         service: str) -> GitAccess | None:
        creds = parse_authorization(header)
        if creds is None:
            await send_text(send, 401, "Authentication required", [CHALLENGE])
            return None
        access = None
        if creds.secret:
            access = await read_call(self.core, self.core.tokens.authenticate_git, creds.secret, account, ns, repo)
        if access is None:
            # Bad Basic credentials get a fresh challenge so credential helpers drop them.
            if creds.scheme == "basic":
                await send_text(send, 401, "Invalid or expired token", [CHALLENGE])
            else:
                await send_text(send, 403, "Invalid or expired token")
            return None
        if access.status != "ready":
            await send_text(send, 409, f"Repository is not ready ({access.status}); retry shortly")
            return None
        if service == "git-receive-pack":
            if access.scope != "write":
                await send_text(send, 403, "Insufficient permissions")
                return None
            if access.read_only:
                await send_text(send, 403, "Repository is read-only")
                return None
        return access

    async def _advertise(self, send: Send, service: str, path: Path, env: dict[str, str], proto: str | None) -> None:
        v2 = service == "git-upload-pack" and bool(proto) and "version=2" in proto  # type: ignore[operator]
        # Under protocol v2 the discovery reply lists no refs, only capabilities, which
        # depend on nothing but the git binary, the server's config (fixed for this
        # process), the Git-Protocol value and the repo's own config file (object format,
        # upload-pack settings). So it is computed once per distinct pair: every v2
        # clone, fetch and ls-remote runs git once less (~3 ms, bench/README.md).
        key = None
        if v2:
            try:
                key = (proto or "", (path / "config").read_bytes())
            except OSError:
                key = None
            cached = self._v2_caps.get(key) if key is not None else None
            if cached is not None:
                await self._send_advertisement(send, service, cached)
                return
        args = [self.settings.git_binary, service[4:], "--stateless-rpc", "--http-backend-info-refs", str(path)]
        async with self.slots:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
            )
            out, err = await proc.communicate()
        if proc.returncode != 0:
            log.error("%s advertisement failed (%s): %s", service, proc.returncode, err[-2000:].decode(errors="replace"))
            await send_text(send, 500, "Repository unavailable")
            return
        body = out
        if key is not None:
            if len(self._v2_caps) >= 64:  # distinct repo configs are few; stay bounded anyway
                self._v2_caps.clear()
            self._v2_caps[key] = body
        if not v2:
            line = f"# service={service}\n".encode()
            body = f"{len(line) + 4:04x}".encode() + line + b"0000" + out
        await self._send_advertisement(send, service, body)

    @staticmethod
    async def _send_advertisement(send: Send, service: str, body: bytes) -> None:
        headers = [
            (b"content-type", f"application/x-{service}-advertisement".encode()),
            (b"content-length", str(len(body)).encode()),
            *NO_CACHE,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _rpc(self, scope: Scope, receive: Receive, send: Send, service: str, path: Path,
                   env: dict[str, str], headers: dict[bytes, bytes], access: GitAccess) -> None:
        encoding = headers.get(b"content-encoding", b"").decode("latin-1").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            await send_text(send, 415, f"Unsupported Content-Encoding: {encoding[:40]}")
            return
        gzipped = encoding in ("gzip", "x-gzip")
        limit = self.request_limit(service, gzipped)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_text(send, 413, f"Request body exceeds the limit of {limit} bytes")
            return

        record_if_pushed: Callable[[bytes], Awaitable[None]] | None = None
        if service == "git-receive-pack":
            env = {**env, "ARTIFACTD_MAX_FILE_BYTES": str(self.settings.max_file_bytes),
                   "ARTIFACTD_MAX_REPO_BYTES": str(self.settings.max_repo_bytes)}
            report = PushReport()

            async def record(chunk: bytes) -> None:
                # Before the bytes that tell the client a ref moved: a push it sees
                # succeed always has its metadata written (gitserver/pushreport.py).
                if not report.updated and report.feed(chunk):  # the chunk with the first "ok"
                    await write_call(self.core, self.core.repos.record_push, access.repo_id)

            record_if_pushed = record

        async with self.slots:
            await self._pump(receive, send, service, path, env, gzipped, limit, on_output=record_if_pushed)

    def request_limit(self, service: str, gzipped: bool) -> int:
        """The largest request body of a service, counted after gzip inflation.

        For a push this is a little above ``max_push_bytes`` so that git's own
        ``receive.maxInputSize`` refuses an oversized pack first, in-band."""
        s = self.settings
        if service == "git-receive-pack":
            limit = s.max_push_bytes + PUSH_COMMANDS_ALLOWANCE
        else:
            limit = s.max_negotiation_bytes
        return min(limit, s.max_inflated_request_bytes) if gzipped else limit

    async def _pump(self, receive: Receive, send: Send, service: str, path: Path, env: dict[str, str],
                    gzipped: bool, limit: int, on_output: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            self.settings.git_binary, service[4:], "--stateless-rpc", str(path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, start_new_session=True, limit=CHUNK,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        stderr_tail = bytearray()

        async def drain_stderr() -> None:
            while chunk := await proc.stderr.read(CHUNK):  # type: ignore[union-attr]
                stderr_tail.extend(chunk)
                del stderr_tail[:-4096]

        idle = self.settings.body_idle_timeout_seconds or None

        body = {"raw": 0, "ended": False}  # bytes received; whether the body was read to its end

        async def next_message() -> dict:
            try:
                message = await asyncio.wait_for(receive(), idle)
            except asyncio.TimeoutError:
                raise ClientStalled from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            body["raw"] += len(message.get("body", b""))
            if body["raw"] > limit:
                raise BodyTooLarge
            if not message.get("more_body", False):
                body["ended"] = True
            return message

        async def feed() -> None:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
            total = 0  # bytes handed to git (inflated)
            while True:
                message = await next_message()
                data = message.get("body", b"")
                pieces = [data]
                if inflater is not None and data:
                    if inflater.eof:
                        raise BadBody  # bytes after the end of the gzip stream
                    pieces = []
                    buf = data
                    while buf:
                        out = inflater.decompress(buf, CHUNK)
                        pieces.append(out)
                        buf = inflater.unconsumed_tail
                        if total + sum(map(len, pieces)) > limit:
                            raise BodyTooLarge
                    if inflater.unused_data:
                        raise BadBody
                for piece in pieces:
                    total += len(piece)
                    if total > limit:
                        raise BodyTooLarge
                    if piece:
                        try:
                            proc.stdin.write(piece)  # type: ignore[union-attr]
                            await proc.stdin.drain()  # type: ignore[union-attr]
                        except (BrokenPipeError, ConnectionResetError):
                            # git stopped reading (e.g. receive.maxInputSize); its reply
                            # says why. The rest of the body is not read.
                            return
                if not message.get("more_body", False):
                    break
            if inflater is not None and not inflater.eof:
                raise BadBody  # truncated gzip stream
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.close()  # type: ignore[union-attr]

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            raise ClientGone

        stderr_task = asyncio.create_task(drain_stderr())
        feed_task = asyncio.create_task(feed())
        watcher: asyncio.Task | None = None
        started = False
        try:
            while True:
                read = asyncio.create_task(proc.stdout.read(CHUNK))
                waiting = {read, feed_task} if not feed_task.done() else {read}
                if watcher is not None:
                    waiting.add(watcher)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if feed_task in done:
                    feed_task.result()  # re-raise BodyTooLarge / ClientGone
                    watcher = asyncio.create_task(watch_disconnect())
                if watcher is not None and watcher in done:
                    watcher.result()
                if read not in done:
                    chunk = await read
                else:
                    chunk = read.result()
                if not chunk:
                    break
                if not started:
                    started = True
                    await send({"type": "http.response.start", "status": 200, "headers": [
                        (b"content-type", f"application/x-{service}-result".encode()), *NO_CACHE]})
                if on_output is not None:
                    await on_output(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not started and not body["ended"]:
                # git answered nothing and stopped reading before the body's end (it had
                # what it needed): read the rest, so that a body over the limit is a 413
                # whatever the timing, as when git is still reading.
                if watcher is not None:
                    watcher.cancel()
                    watcher = None
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await feed_task
                while not body["ended"]:
                    await next_message()
            code = await proc.wait()
            await stderr_task
            stderr_text = stderr_tail.decode(errors="replace")
            client_fault = ((code > 0 and not SERVER_FAULT_RE.search(stderr_text))
                            or bool(INPUT_BUG_RE.search(stderr_text)))
            if code != 0:
                log.log(logging.INFO if client_fault else logging.WARNING, "%s exited %s: %s", service, code,
                        stderr_text.strip()[-1000:])
            if not started:
                if code != 0:
                    if client_fault:
                        # git refused what the client sent (a malformed pkt-line stream).
                        await send_text(send, 400, "Invalid Git request: the request body is not a valid "
                                        f"{service} request")
                    else:
                        await send_text(send, 500, f"{service} failed")
                    return
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", f"application/x-{service}-result".encode()), *NO_CACHE]})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BodyTooLarge:
            _kill(proc)
            if not started:
                await send_text(send, 413, f"Request body exceeds the limit of {limit} bytes", [CLOSE])
        except ClientGone:
            _kill(proc)
        except ClientStalled:
            _kill(proc)
            if not started:
                await send_text(send, 408, "Request body stalled; closing the connection", [CLOSE])
        except (zlib.error, BadBody):
            _kill(proc)
            if not started:
                await send_text(send, 400, "Request body is not valid gzip")
        finally:
            for task in (feed_task, watcher, stderr_task):
                if task is not None and not task.done():
                    task.cancel()
            if proc.returncode is None:
                _kill(proc)
                with contextlib.suppress(Exception):
                    await proc.wait()
