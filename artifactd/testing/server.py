"""A throwaway artifactd server process and a sandboxed git client for tests."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def temporary_database(url: str | None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one run (dropped afterwards), so
    concurrent runs sharing one server never see each other. SQLite: yields ''."""
    if not url:
        yield ""
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from artifactd.store.db import normalize_url

    base = make_url(normalize_url(url))
    name = f"artifactd_test_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class ServerProcess:
    """``artifactd serve`` on a free loopback port with its own data directory."""

    data_dir: Path
    database_url: str = ""
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    #: "https" when started with --tls-cert/--tls-key; ``verify`` is then the CA file.
    scheme: str = "http"
    verify: str | bool = True
    proc: subprocess.Popen | None = None
    account_id: str = ""
    api_token: str = ""

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ssl_verify(self):
        """What httpx's ``verify=`` wants: True, or a context trusting ``verify`` (a CA file)."""
        if isinstance(self.verify, str):
            import ssl

            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/client/v4/accounts/{self.account_id}/artifacts"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server.log"

    def start(self, timeout: float = 30) -> ServerProcess:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> ServerProcess:
        """Spawn the server without waiting for it to answer."""
        env = {**os.environ, **self.extra_env}
        env.pop("ARTIFACTD_PUBLIC_URL", None)
        if self.database_url:
            env["ARTIFACTD_DATABASE_URL"] = self.database_url
        else:
            env.pop("ARTIFACTD_DATABASE_URL", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "artifactd", "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--log-level", "warning", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"artifactd exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1, verify=self.ssl_verify).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"artifactd did not start:\n{self.log_path.read_text()}")
        boot = json.loads((self.data_dir / "bootstrap.json").read_text())
        self.account_id, self.api_token = boot["account_id"], boot["api_token"]

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is not None:
            # The leader is gone; whatever is left of its session (orphaned workers) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def api(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for the REST API, authenticated with the bootstrap token."""
        return httpx.Client(
            base_url=self.api_base, timeout=60, verify=self.ssl_verify,
            headers={"Authorization": f"Bearer {token or self.api_token}"},
        )

    def create_repo(self, namespace: str = "default", name: str | None = None, **fields) -> dict:
        name = name or f"r-{secrets.token_hex(4)}"
        with self.api() as c:
            r = c.post(f"/namespaces/{namespace}/repos", json={"name": name, **fields})
        assert r.status_code == 201, r.text
        return r.json()["result"]

    def mint(self, namespace: str, repo: str, scope: str = "write", ttl: int = 3600) -> str:
        with self.api() as c:
            r = c.post(f"/namespaces/{namespace}/tokens", json={"repo": repo, "scope": scope, "ttl": ttl})
        assert r.status_code == 201, r.text
        return r.json()["result"]["plaintext"]


class GitClient:
    """The real ``git`` binary with no user or system config leaking in."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / ".gitconfig"
        self.config.write_text(
            "[user]\n\tname = Test User\n\temail = test@example.com\n"
            "[init]\n\tdefaultBranch = trunk\n[advice]\n\tdetachedHead = false\n"
            "[protocol]\n\tversion = 2\n"
        )
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.config),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "LANG": "C",
            "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
        }

    def run(self, *args: str, cwd: Path | str | None = None, token: str | None = None, check: bool = True,
            env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 600
            ) -> subprocess.CompletedProcess:
        pre: list[str] = []
        if token:
            pre = ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
        proc = subprocess.run(["git", *pre, *args], cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def out(self, *args: str, **kw) -> str:
        return self.run(*args, **kw).stdout.decode().strip()

    def make_repo(self, path: Path, commits: int = 3, branch: str = "main") -> Path:
        self.run("init", "-q", "-b", branch, str(path))
        for i in range(commits):
            (path / f"file{i}.txt").write_text(f"content {i}\n" * (i + 1))
            self.run("add", ".", cwd=path)
            self.run("commit", "-q", "-m", f"commit {i}", cwd=path,
                     env={"GIT_AUTHOR_DATE": f"2026-01-0{1 + i % 9}T00:00:00Z",
                          "GIT_COMMITTER_DATE": f"2026-01-0{1 + i % 9}T00:00:00Z"})
        return path
