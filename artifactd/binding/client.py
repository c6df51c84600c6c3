"""``Artifacts`` / ``AsyncArtifacts``: the hosted binding's methods, in Python style.

An instance is bound to one namespace, like ``env.ARTIFACTS``; the calling code passes no
token. The backend is either remote (the REST API of an artifactd server, or anything that
speaks it) or local (the core services in-process on a data directory); the methods,
defaults, ranges, results and errors are the same on both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifactd.binding.types import (
    Blob,
    CommitMetadata,
    CreateRepoResult,
    CreateTokenResult,
    RepoInfo,
    RepoListResult,
    TokenInfo,
    TokenListResult,
    TreeEntry,
)
from artifactd.errors import ArtifactsError, ErrorCode

DEFAULT_TTL = 86_400
IMPORT_TIMEOUT = 600.0


def _repo_list(res: tuple) -> RepoListResult:
    items, cursor, total = res
    return RepoListResult(repos=[RepoInfo.from_rest(d) for d in items], total=int(total), cursor=cursor or None)


def _token_list(res: tuple) -> TokenListResult:
    items, info = res
    return TokenListResult(tokens=[TokenInfo.from_rest(d) for d in items],
                           total=int(info.get("total_count", len(items))))


def _opt(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _blob(v: tuple[bytes, str]) -> Blob:
    return Blob(data=v[0], type=v[1])


def _remote_backend(url, account_id, api_token, timeout, *, config_url=None, config_account_id=None, is_async=False):
    from artifactd.binding.remote import AsyncRemoteBackend, RemoteBackend
    from artifactd.credentials import resolve_connection

    conn = resolve_connection(url, account_id, api_token, config_url=config_url,
                              config_account_id=config_account_id)
    cls = AsyncRemoteBackend if is_async else RemoteBackend
    return cls(conn.url, conn.account_id, conn.token, timeout=timeout)


class _Base:
    """What the sync and async facades share: construction and configuration."""

    _is_async = False

    def __init__(self, namespace: str = "default", *, url: str | None = None, account_id: str | None = None,
                 api_token: str | None = None, timeout: float = 60.0, backend: Any = None):
        """Bind to ``namespace`` on a server. ``url``/``account_id``/``api_token`` default to
        the environment and then to ``artifactd login``'s stored credentials."""
        if not isinstance(namespace, str) or not namespace:
            raise ArtifactsError(ErrorCode.INVALID_INPUT, "namespace is required.")
        self.namespace = namespace
        self._local = None
        self._owner = True
        if backend is None:
            backend = _remote_backend(url, account_id, api_token, timeout, is_async=self._is_async)
        self._backend = backend

    @classmethod
    def local(cls, data_dir: str | os.PathLike[str], namespace: str = "default", *, serve: bool = False,
              database_url: str = "", port: int | None = None, settings: dict[str, Any] | None = None):
        """In-process on ``data_dir`` (no server, no token). ``serve=True`` (or :meth:`serve`)
        starts a Git server over the same data so that ``remote`` URLs answer. ``settings``
        overrides server settings (e.g. ``{"import_allow_http": True}``) on both sides."""
        from artifactd.binding.local import LocalBackend

        local = LocalBackend(data_dir, database_url=database_url, port=port, settings=settings)
        obj = cls._on_local(local, namespace)
        if serve:
            local.serve()
        return obj

    @classmethod
    def _on_local(cls, local: Any, namespace: str):
        obj = cls(namespace, backend=_AsyncLocal(local) if cls._is_async else local)
        obj._local = local
        return obj

    def with_namespace(self, namespace: str):
        """The same binding (same backend, same server) bound to another namespace. Closing
        it does not close the backend; close the original."""
        obj = type(self)(namespace, backend=self._backend)
        obj._local = self._local
        obj._owner = False
        return obj

    @classmethod
    def from_config(cls, binding: str | None = None, *, path: str | os.PathLike[str] | None = None,
                    env: str | None = None, remote: bool | None = None, timeout: float = 60.0):
        """The binding named in ``wrangler.jsonc`` / ``wrangler.json`` / ``wrangler.toml`` or
        ``artifactd.toml`` (see :mod:`artifactd.binding.config`); credentials as for
        ``Artifacts()``. ``remote`` overrides the file's ``remote``."""
        from artifactd.binding.config import load_binding

        cfg = load_binding(binding, path=path, env=env)
        use_remote = cfg.remote if remote is None else remote
        if not use_remote:
            assert cfg.data_dir is not None
            return cls.local(cfg.data_dir, cfg.namespace)
        backend = _remote_backend(None, None, None, timeout, config_url=cfg.url, config_account_id=cfg.account_id,
                                  is_async=cls._is_async)
        return cls(cfg.namespace, backend=backend)

    @property
    def mode(self) -> str:
        """``"local"`` or ``"remote"``."""
        return "local" if self._local is not None else "remote"

    @property
    def data_dir(self) -> Path | None:
        return self._local.data_dir if self._local is not None else None

    def serve(self) -> str:
        """Local mode: start (once) the Git server over the data directory; its base URL."""
        if self._local is None:
            raise ArtifactsError(ErrorCode.INVALID_INPUT, "serve() is for local mode; a remote binding has a server.")
        return self._local.serve().url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, mode={self.mode!r})"


class Artifacts(_Base):
    """The binding, blocking calls. Use as a context manager or call :meth:`close`."""

    # -- namespace methods -------------------------------------------------------------

    def create(self, name: str, *, read_only: bool = False, description: str | None = None,
               default_branch: str | None = None) -> CreateRepoResult:
        """Create a repo (and the namespace if needed); the result holds an initial write
        token valid 24 h. INVALID_REPO_NAME, ALREADY_EXISTS, INVALID_INPUT."""
        return CreateRepoResult.from_rest(self._backend.create_repo(
            self.namespace, name, description=description, default_branch=default_branch, read_only=read_only))

    def get(self, name: str) -> Repo:
        """A handle on a ready repo. NOT_FOUND, IMPORT_IN_PROGRESS, FORK_IN_PROGRESS."""
        info = self._backend.get_repo(self.namespace, name)
        return Repo(self, info["name"])

    def list(self, *, limit: int = 50, cursor: str | None = None) -> RepoListResult:
        """One page of repos, newest first (``limit`` 1-200); pass ``cursor`` for the next."""
        return _repo_list(self._backend.list_repos(self.namespace, limit, cursor))

    def import_repo(self, url: str, name: str, *, branch: str | None = None, depth: int | None = None,
                    read_only: bool = False, description: str | None = None, wait: bool = True,
                    timeout: float = IMPORT_TIMEOUT) -> CreateRepoResult:
        """Create ``name`` by cloning the HTTPS remote ``url``. With ``wait`` (the default)
        return once the repo is ready (``default_branch`` then is the imported one) and
        raise the import's error if it failed; without, return at once (``importing``)."""
        created = self._backend.import_repo(self.namespace, name, url, branch=branch, depth=depth,
                                            read_only=read_only, description=description)
        if wait:
            info = self._backend.wait_ready(self.namespace, name, timeout)
            created = {**created, "default_branch": info.get("default_branch", created.get("default_branch"))}
        return CreateRepoResult.from_rest(created)

    def delete(self, name: str) -> bool:
        """Delete a repo and its tokens: True, or False if there was no such repo."""
        return bool(self._backend.delete_repo(self.namespace, name))

    def close(self) -> None:
        if not self._owner:
            return
        if self._local is not None:
            self._local.close()
        else:
            self._backend.close()

    def __enter__(self) -> Artifacts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Repo:
    """A handle on one repo (``ArtifactsRepo``); metadata comes fresh from :meth:`info`."""

    def __init__(self, parent: Artifacts, name: str):
        self._parent = parent
        self._b = parent._backend
        self.namespace = parent.namespace
        self.name = name

    def __repr__(self) -> str:
        return f"Repo(namespace={self.namespace!r}, name={self.name!r})"

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def info(self) -> RepoInfo:
        return RepoInfo.from_rest(self._b.get_repo(self.namespace, self.name))

    def create_token(self, scope: str = "write", ttl: int = DEFAULT_TTL) -> CreateTokenResult:
        """A Git token for this repo: ``scope`` read|write, ``ttl`` 60-31536000 s (INVALID_TTL)."""
        return CreateTokenResult.from_rest(self._b.create_token(self.namespace, self.name, scope, ttl))

    def list_tokens(self) -> TokenListResult:
        """Active tokens (metadata only), newest first, at most 30; ``total`` counts all active."""
        return _token_list(self._b.list_tokens(self.namespace, self.name, state="active", page=1, per_page=30))

    def revoke_token(self, token_or_id: str) -> bool:
        """Revoke by id or plaintext: True, or False if unknown or already revoked."""
        return bool(self._b.revoke_token(self.namespace, self.name, token_or_id))

    def fork(self, name: str, *, description: str | None = None, read_only: bool = False,
             default_branch_only: bool = True) -> CreateRepoResult:
        """A new repo ``name`` in this namespace starting from this repo's history."""
        return CreateRepoResult.from_rest(self._b.fork_repo(
            self.namespace, self.name, name, description=description, read_only=read_only,
            default_branch_only=default_branch_only))

    def log(self, *, ref: str | None = None, limit: int = 50, offset: int = 0) -> list[CommitMetadata]:
        """First-parent history from ``ref`` (default HEAD), newest first; [] if it does not resolve."""
        return [CommitMetadata.from_rest(d) for d in
                self._b.log(self.namespace, self.name, ref=ref, limit=limit, offset=offset)]

    def read_commit(self, hash: str) -> CommitMetadata | None:
        return _opt(CommitMetadata.from_rest)(self._b.commit(self.namespace, self.name, hash))

    def read_tree(self, hash: str) -> list[TreeEntry] | None:
        return _opt(lambda v: [TreeEntry.from_rest(d) for d in v])(self._b.tree(self.namespace, self.name, hash))

    def read_blob(self, hash: str) -> Blob | None:
        return _opt(_blob)(self._b.blob(self.namespace, self.name, hash))

    def read_file(self, ref: str, path: str) -> Blob | None:
        """The file at ``path`` in ``ref`` (with its MIME type); None if missing or a directory."""
        return _opt(_blob)(self._b.file(self.namespace, self.name, ref, path))


class _AsyncLocal:
    """The local backend's operations as coroutines (each runs in a worker thread)."""

    def __init__(self, local: Any):
        self._local = local

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._local, name)

        async def run(*a: Any, **kw: Any) -> Any:
            return await asyncio.to_thread(fn, *a, **kw)

        return run


class AsyncArtifacts(_Base):
    """The binding with coroutine methods. Use ``async with`` or ``await aclose()``."""

    _is_async = True

    async def create(self, name: str, *, read_only: bool = False, description: str | None = None,
                     default_branch: str | None = None) -> CreateRepoResult:
        return CreateRepoResult.from_rest(await self._backend.create_repo(
            self.namespace, name, description=description, default_branch=default_branch, read_only=read_only))

    async def get(self, name: str) -> AsyncRepo:
        info = await self._backend.get_repo(self.namespace, name)
        return AsyncRepo(self, info["name"])

    async def list(self, *, limit: int = 50, cursor: str | None = None) -> RepoListResult:
        return _repo_list(await self._backend.list_repos(self.namespace, limit, cursor))

    async def import_repo(self, url: str, name: str, *, branch: str | None = None, depth: int | None = None,
                          read_only: bool = False, description: str | None = None, wait: bool = True,
                          timeout: float = IMPORT_TIMEOUT) -> CreateRepoResult:
        created = await self._backend.import_repo(self.namespace, name, url, branch=branch, depth=depth,
                                                  read_only=read_only, description=description)
        if wait:
            info = await self._backend.wait_ready(self.namespace, name, timeout)
            created = {**created, "default_branch": info.get("default_branch", created.get("default_branch"))}
        return CreateRepoResult.from_rest(created)

    async def delete(self, name: str) -> bool:
        return bool(await self._backend.delete_repo(self.namespace, name))

    async def aclose(self) -> None:
        if not self._owner:
            return
        if self._local is not None:
            await asyncio.to_thread(self._local.close)
        else:
            await self._backend.aclose()

    async def __aenter__(self) -> AsyncArtifacts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRepo:
    """:class:`Repo` with coroutine methods."""

    def __init__(self, parent: AsyncArtifacts, name: str):
        self._b = parent._backend
        self.namespace = parent.namespace
        self.name = name

    def __repr__(self) -> str:
        return f"AsyncRepo(namespace={self.namespace!r}, name={self.name!r})"

    async def __aenter__(self) -> AsyncRepo:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def info(self) -> RepoInfo:
        return RepoInfo.from_rest(await self._b.get_repo(self.namespace, self.name))

    async def create_token(self, scope: str = "write", ttl: int = DEFAULT_TTL) -> CreateTokenResult:
        return CreateTokenResult.from_rest(await self._b.create_token(self.namespace, self.name, scope, ttl))

    async def list_tokens(self) -> TokenListResult:
        return _token_list(await self._b.list_tokens(self.namespace, self.name, state="active", page=1, per_page=30))

    async def revoke_token(self, token_or_id: str) -> bool:
        return bool(await self._b.revoke_token(self.namespace, self.name, token_or_id))

    async def fork(self, name: str, *, description: str | None = None, read_only: bool = False,
                   default_branch_only: bool = True) -> CreateRepoResult:
        return CreateRepoResult.from_rest(await self._b.fork_repo(
            self.namespace, self.name, name, description=description, read_only=read_only,
            default_branch_only=default_branch_only))

    async def log(self, *, ref: str | None = None, limit: int = 50, offset: int = 0) -> list[CommitMetadata]:
        return [CommitMetadata.from_rest(d) for d in
                await self._b.log(self.namespace, self.name, ref=ref, limit=limit, offset=offset)]

    async def read_commit(self, hash: str) -> CommitMetadata | None:
        return _opt(CommitMetadata.from_rest)(await self._b.commit(self.namespace, self.name, hash))

    async def read_tree(self, hash: str) -> list[TreeEntry] | None:
        return _opt(lambda v: [TreeEntry.from_rest(d) for d in v])(await self._b.tree(self.namespace, self.name, hash))

    async def read_blob(self, hash: str) -> Blob | None:
        return _opt(_blob)(await self._b.blob(self.namespace, self.name, hash))

    async def read_file(self, ref: str, path: str) -> Blob | None:
        return _opt(_blob)(await self._b.file(self.namespace, self.name, ref, path))
