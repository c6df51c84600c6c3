"""REST routes 11-16 (log, commit, tree, blob, file, raw) and archives (reference §3.3).

Hash-addressed replies (commit, tree, blob; file/raw/archive of a full commit hash)
never change, so they carry an immutable ``Cache-Control`` and an ``ETag``; ``private``
keeps shared caches from storing what an API token fetched. ``raw`` serves a sniffed
type with ``nosniff`` and a sandboxing Content-Security-Policy, so an HTML or SVG file
in a repo cannot run script on this origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from urllib.parse import quote

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from artifactd.errors import invalid
from artifactd.gitserver.engine import git_env
from artifactd.http.deps import core_of, principal, query_int
from artifactd.http.envelope import failure, ok
from artifactd.services.apitokens import READ, Principal, require
from artifactd.services.content import FileData, content_of, sniff_type

logger = logging.getLogger("artifactd.http")

router = APIRouter(prefix="/client/v4/accounts/{account_id}/artifacts/namespaces/{namespace}/repos/{name}",
                   tags=["artifacts"])

IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"
RAW_CSP = "default-src 'none'; sandbox; frame-ancestors 'none'"
ARCHIVE_FORMATS = {".tar.gz": ("tar.gz", "application/gzip"), ".zip": ("zip", "application/zip")}
CHUNK = 64 * 1024
_slots: asyncio.Semaphore | None = None


def _not_modified(request: Request, etag: str, cache: str) -> Response | None:
    inm = request.headers.get("if-none-match")
    if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(status_code=304, headers={"etag": etag, "cache-control": cache})
    return None


def _svc(request: Request):
    return content_of(core_of(request))


@router.get("/log")
async def log(account_id: str, namespace: str, name: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    q = request.query_params
    limit = query_int(request, "limit", 50)
    offset = query_int(request, "offset", 0)
    ref = q.get("ref")
    svc = _svc(request)
    items = await run_in_threadpool(lambda: svc.log(account_id, namespace, name, ref=ref, limit=limit, offset=offset))
    return ok(items, result_info={"count": len(items), "per_page": limit, "offset": offset,
                                  "next_offset": offset + len(items) if len(items) == limit else None})


def _immutable_json(request: Request, hash: str, result: object) -> Response:
    """A hash-addressed reply: cacheable forever, with a 304 for a matching ETag."""
    etag = f'"{hash}"'
    if (nm := _not_modified(request, etag, IMMUTABLE)) is not None:
        return nm
    resp = ok(result)
    resp.headers.update({"cache-control": IMMUTABLE, "etag": etag})
    return resp


@router.get("/commit/{hash}")
async def commit(account_id: str, namespace: str, name: str, hash: str, request: Request,
                 who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    svc = _svc(request)
    return _immutable_json(request, hash, await run_in_threadpool(svc.commit, account_id, namespace, name, hash))


@router.get("/tree/{hash}")
async def tree(account_id: str, namespace: str, name: str, hash: str, request: Request,
               who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    svc = _svc(request)
    return _immutable_json(request, hash, await run_in_threadpool(svc.tree, account_id, namespace, name, hash))


@router.get("/blob/{hash}")
async def blob(account_id: str, namespace: str, name: str, hash: str, request: Request,
               who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    svc = _svc(request)
    data = await run_in_threadpool(svc.blob, account_id, namespace, name, hash)
    etag = f'"{hash}"'
    if (nm := _not_modified(request, etag, IMMUTABLE)) is not None:
        return nm
    return Response(data, media_type="application/octet-stream",
                    headers={"cache-control": IMMUTABLE, "etag": etag, "x-content-type-options": "nosniff"})


def _file_response(request: Request, got: FileData, media_type: str, extra: dict[str, str] | None = None) -> Response:
    cache = IMMUTABLE if got.immutable else REVALIDATE
    etag = f'"{got.oid}"'
    if (nm := _not_modified(request, etag, cache)) is not None:
        return nm
    headers = {"cache-control": cache, "etag": etag, "x-content-type-options": "nosniff", **(extra or {})}
    return Response(got.data, media_type=media_type, headers=headers)


@router.get("/file")
async def file(account_id: str, namespace: str, name: str, request: Request, who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    q = request.query_params
    svc = _svc(request)
    got = await run_in_threadpool(svc.file, account_id, namespace, name, q.get("ref"), q.get("path"))
    return _file_response(request, got, "application/octet-stream")


@router.get("/raw/{ref_and_path:path}")
async def raw(account_id: str, namespace: str, name: str, ref_and_path: str, request: Request,
              who: Principal = Depends(principal)):
    require(who, READ, account_id, namespace)
    svc = _svc(request)
    got = await run_in_threadpool(svc.raw, account_id, namespace, name, ref_and_path)
    media = sniff_type(got.path, got.data)
    filename = got.path.rsplit("/", 1)[-1]
    return _file_response(request, got, media, {
        "content-security-policy": RAW_CSP,
        "cross-origin-resource-policy": "same-origin",
        "content-disposition": f"inline; filename*=UTF-8''{quote(filename, safe='')}",
    })


# -- archives (beyond the hosted product) ----------------------------------------------


def _slots_for(request: Request) -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(max(1, core_of(request).settings.max_git_processes))
    return _slots


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@router.get("/archive/{spec:path}")
async def archive(account_id: str, namespace: str, name: str, spec: str, request: Request,
                  who: Principal = Depends(principal)):
    """``archive/{ref}.tar.gz`` or ``archive/{ref}.zip``: the tree of a commit, streamed."""
    require(who, READ, account_id, namespace)
    fmt = next(((ext, v) for ext, v in ARCHIVE_FORMATS.items() if spec.endswith(ext)), None)
    if fmt is None or len(spec) == len(fmt[0]):
        raise invalid("Invalid archive: use archive/<ref>.tar.gz or archive/<ref>.zip.")
    ext, (git_format, media) = fmt
    ref = spec[: -len(ext)]
    core = core_of(request)
    svc = content_of(core)
    path, sha = await run_in_threadpool(svc.archive_commit, account_id, namespace, name, ref)
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or sha[:12]
    prefix = f"{name}-{label}"
    slots = _slots_for(request)
    await slots.acquire()
    try:
        proc = await asyncio.create_subprocess_exec(
            core.settings.git_binary, "--git-dir", str(path), "archive", f"--format={git_format}",
            f"--prefix={prefix}/", sha,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=git_env(core.settings), start_new_session=True, limit=CHUNK)
        assert proc.stdout is not None
        first = await proc.stdout.read(CHUNK)
    except BaseException:
        slots.release()
        raise
    if not first:
        err = await proc.stderr.read() if proc.stderr else b""
        await proc.wait()
        slots.release()
        if proc.returncode != 0:
            logger.error("git archive failed: %s", err[-500:].decode(errors="replace"))
            return failure(500, 10400, "An internal error occurred.")

    async def body():
        try:
            if first:
                yield first
                while chunk := await proc.stdout.read(CHUNK):  # type: ignore[union-attr]
                    yield chunk
            await proc.wait()
        finally:
            if proc.returncode is None:
                _kill(proc)
                with contextlib.suppress(Exception):
                    await proc.wait()
            if first:
                slots.release()

    headers = {
        "content-disposition": f"attachment; filename*=UTF-8''{quote(prefix + ext, safe='')}",
        "cache-control": IMMUTABLE if re.fullmatch(r"[0-9a-fA-F]{40}", ref) else REVALIDATE,
        "x-content-type-options": "nosniff",
        "etag": f'"{sha}{ext}"',
    }
    return StreamingResponse(body(), media_type=media, headers=headers)
