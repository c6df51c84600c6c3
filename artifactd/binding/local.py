"""The local backend: the binding's operations in-process, on a data directory.

Like the hosted product's local simulator, it needs no server and no token: it calls the
core services directly (every rule, limit and error comes from them, nothing is
re-implemented here) on the same store a server would use. Git clients reach the repos
through a server started on demand over the same data directory (:meth:`LocalBackend.serve`);
SQLite runs in WAL mode with a busy timeout, so the in-process binding and the server
process share the store safely.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from artifactd.binding.remote import BUSY, missing_object
from artifactd.config import Settings
from artifactd.errors import ArtifactsError, ErrorCode


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """``artifactd serve`` over the local backend's data directory, on a loopback port."""

    def __init__(self, data_dir: Path, port: int, database_url: str = "", log_path: Path | None = None,
                 settings: dict[str, Any] | None = None):
        self.data_dir = data_dir
        self.port = port
        self.database_url = database_url
        self.settings = dict(settings or {})
        self.log_path = log_path or data_dir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> LocalServer:
        import httpx

        # The operator's other ARTIFACTD_* settings apply to both sides; these must match
        # the in-process backend exactly.
        env = {**os.environ, "ARTIFACTD_DATABASE_URL": self.database_url, "ARTIFACTD_GIT_HOST_TEMPLATE": ""}
        for key, value in self.settings.items():
            env[f"ARTIFACTD_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env.pop("ARTIFACTD_PUBLIC_URL", None)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "artifactd", "serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                 "--port", str(self.port), "--public-url", self.url, "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ArtifactsError(ErrorCode.INTERNAL_ERROR,
                                     f"The local Git server exited with {self.proc.returncode}; see {self.log_path}.")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise ArtifactsError(ErrorCode.INTERNAL_ERROR, f"The local Git server did not start; see {self.log_path}.")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.proc = None


class LocalBackend:
    """The operations of :class:`artifactd.binding.remote.Ops`, on the core services."""

    def __init__(self, data_dir: str | os.PathLike[str], *, database_url: str = "", port: int | None = None,
                 settings: dict[str, Any] | None = None):
        """``settings``: overrides of :class:`artifactd.config.Settings` fields (e.g.
        ``{"import_allow_http": True}``), applied here and to the on-demand server alike."""
        from artifactd.services import Core

        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The loopback port the on-demand Git server will use; remotes point at it from the start.
        self.port = port or _free_port()
        self.overrides = dict(settings or {})
        fixed = {"data_dir": self.data_dir, "database_url": database_url, "host": "127.0.0.1", "port": self.port,
                 "public_url": f"http://127.0.0.1:{self.port}", "git_host_template": ""}
        unknown = set(self.overrides) - set(Settings.model_fields)
        if unknown or set(self.overrides) & set(fixed):
            raise ArtifactsError(ErrorCode.INVALID_INPUT,
                                 f"Not a local-mode setting: {', '.join(sorted(unknown or set(self.overrides) & set(fixed)))}")
        settings = Settings(**self.overrides, **fixed)
        self.core = Core(settings)
        self.account_id = self.core.start().account_id
        self._jobs_started = self._start_jobs()
        self._server: LocalServer | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    def _start_jobs(self) -> bool:
        """Background work (imports) runs in this process, as it would in a server."""
        try:
            from artifactd.services.jobs import jobs_of
        except ImportError:
            return False
        jobs_of(self.core).start()
        return True

    def serve(self) -> LocalServer:
        """Start (once) the Git server over this data directory; remotes already point at it."""
        with self._lock:
            if self._server is None or not self._server.running:
                self._server = LocalServer(self.data_dir, self.port, self.core.settings.database_url,
                                           settings=self.overrides).start()
            return self._server

    @property
    def server(self) -> LocalServer | None:
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._jobs_started:
            from artifactd.services.jobs import jobs_of

            jobs_of(self.core).stop()
            self._jobs_started = False
        self.core.close()

    # -- namespaces ---------------------------------------------------------------------

    def list_namespaces(self, limit: int = 100, cursor: str | None = None) -> tuple[list[dict], str | None]:
        items, next_cursor, _ = self.core.namespaces.list(self.account_id, limit, cursor)
        return items, next_cursor

    def get_namespace(self, namespace: str) -> dict:
        return self.core.namespaces.get(self.account_id, namespace)

    def create_namespace(self, namespace: str, jurisdiction: str | None = None) -> dict:
        return self.core.namespaces.create(self.account_id, namespace, jurisdiction)

    def delete_namespace(self, namespace: str) -> None:
        self.core.namespaces.delete(self.account_id, namespace)

    # -- repos ----------------------------------------------------------------------------

    def create_repo(self, namespace: str, name: str, *, description: str | None = None,
                    default_branch: str | None = None, read_only: bool = False) -> dict:
        created = self.core.repos.create(self.account_id, namespace, name, description=description,
                                         default_branch=default_branch, read_only=read_only)
        return self.core.repos.created_dict(created)

    def get_repo(self, namespace: str, name: str) -> dict:
        return self.core.repos.get(self.account_id, namespace, name)

    def list_repos(self, namespace: str, limit: int = 50, cursor: str | None = None
                   ) -> tuple[list[dict], str | None, int]:
        rows, next_cursor, total = self.core.repos.list(self.account_id, namespace, limit=limit, cursor=cursor,
                                                        with_total=True)
        return [self.core.repos.to_dict(r) for r in rows], next_cursor, total or 0

    def delete_repo(self, namespace: str, name: str) -> bool:
        try:
            self.core.repos.delete(self.account_id, namespace, name)
        except ArtifactsError as e:
            if e.code == ErrorCode.NOT_FOUND:
                return False
            raise
        return True

    def fork_repo(self, namespace: str, name: str, target: str, *, description: str | None = None,
                  read_only: bool = False, default_branch_only: bool = True) -> dict:
        from artifactd.services.forks import _UNSET, forks_of

        return forks_of(self.core).fork(
            self.account_id, namespace, name, target, description=_UNSET if description is None else description,
            read_only=read_only, default_branch_only=default_branch_only)

    def import_repo(self, namespace: str, name: str, url: str, *, branch: str | None = None, depth: int | None = None,
                    read_only: bool = False, description: str | None = None) -> dict:
        from artifactd.services.imports import imports_of

        return imports_of(self.core).start(self.account_id, namespace, name, url, branch=branch, depth=depth,
                                           read_only=read_only, description=description)

    def wait_ready(self, namespace: str, name: str, timeout: float = 600, on_wait: Any = None) -> dict:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                return self.core.repos.get(self.account_id, namespace, name)
            except ArtifactsError as e:
                if e.code not in BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise ArtifactsError(e.code, f"{e.message} (still not ready after {timeout:g} s)") from None
                if on_wait is not None:
                    on_wait(e)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- repo tokens ----------------------------------------------------------------------

    def create_token(self, namespace: str, repo: str, scope: str = "write", ttl: int = 86_400) -> dict:
        return self.core.tokens.create(self.account_id, namespace, repo, scope, ttl)

    def list_tokens(self, namespace: str, repo: str, *, state: str = "active", page: int = 1,
                    per_page: int = 30) -> tuple[list[dict], dict]:
        return self.core.tokens.list(self.account_id, namespace, repo, state=state, page=page, per_page=per_page)

    def revoke_token(self, namespace: str, repo: str, token_or_id: str) -> bool:
        return self.core.tokens.revoke_for_repo(self.account_id, namespace, repo, token_or_id)

    def revoke_token_id(self, namespace: str, token_id: str) -> dict:
        return {"id": self.core.tokens.revoke(self.account_id, namespace, token_id)}

    # -- content --------------------------------------------------------------------------

    def _content(self):
        from artifactd.services.content import content_of

        return content_of(self.core)

    def log(self, namespace: str, repo: str, *, ref: str | None = None, limit: int = 50, offset: int = 0) -> list:
        return self._content().log(self.account_id, namespace, repo, ref=ref, limit=limit, offset=offset)

    def _object(self, fn, *args: Any) -> Any:
        try:
            return fn(self.account_id, *args)
        except ArtifactsError as e:
            if missing_object(e):
                return None
            raise

    def commit(self, namespace: str, repo: str, hash: str) -> dict | None:
        return self._object(self._content().commit, namespace, repo, hash)

    def tree(self, namespace: str, repo: str, hash: str) -> list | None:
        return self._object(self._content().tree, namespace, repo, hash)

    def blob(self, namespace: str, repo: str, hash: str) -> tuple[bytes, str] | None:
        data = self._object(self._content().blob, namespace, repo, hash)
        return None if data is None else (data, "")

    def file(self, namespace: str, repo: str, ref: str, path: str) -> tuple[bytes, str] | None:
        from artifactd.services.content import sniff_type

        got = self._object(self._content().file, namespace, repo, ref, path)
        return None if got is None else (got.data, sniff_type(got.path, got.data))
