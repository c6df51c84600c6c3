"""artifactd as a ``bench.baselines.GitServer``: a real ``artifactd serve`` process,
repos created through the REST API, Git over smart HTTP with repo tokens.

    with ArtifactdServer(root) as srv:             # SQLite (the embedded default)
        srv.add_repo("repo.git", "/path/to/source.git")   # REST create + push --mirror
        git -c <srv.git_config...> clone srv.url("repo.git")

    ArtifactdPostgres(root)       # same on a fresh PostgreSQL database (dropped after)
    ArtifactdServer(root, workers=2)

Auth: every repo gets its own write token (repo tokens open exactly one repo), so
``git_config`` carries one ``http.<repo url>.extraHeader=Authorization: Bearer <token>``
line per repo; git applies the header to requests under that URL only.

PostgreSQL: ``ARTIFACTD_BENCH_DATABASE`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
names the server the temporary database is created on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from artifactd.testing.server import ServerProcess, temporary_database
from bench.baselines import GitServer
from bench.measure import git

NAMESPACE = "bench"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
#: The longest TTL a repo token may have: no token expires during a long benchmark.
TOKEN_TTL = 31_536_000


def repo_name(name: str) -> str:
    """``x.git`` -> ``x`` (artifactd names carry no .git; the URL may)."""
    return name[:-4] if name.endswith(".git") else name


class ArtifactdServer(GitServer):
    """``artifactd serve`` on SQLite with its own data directory (under the bench workdir)."""

    name = "artifactd"
    database = "sqlite"

    def __init__(self, root: str | os.PathLike[str], workers: int = 1,
                 extra_env: dict[str, str] | None = None) -> None:
        super().__init__(root)
        self.workers = workers
        self.extra_env = dict(extra_env or {})
        self.srv: ServerProcess | None = None
        self.tokens: dict[str, str] = {}
        self.remotes: dict[str, str] = {}
        self._stack = contextlib.ExitStack()

    # -- lifecycle -----------------------------------------------------------------

    def database_url(self) -> str:
        return ""

    def _start(self) -> None:
        assert self.workdir is not None
        env = {"ARTIFACTD_MAINTENANCE_INTERVAL_SECONDS": "0", **self.extra_env}
        args = ["--workers", str(self.workers)] if self.workers > 1 else []
        self.srv = ServerProcess(self.workdir / "data", database_url=self.database_url(),
                                 extra_env=env, extra_args=args).start(timeout=60)
        assert self.srv.proc is not None
        self.procs.append(self.srv.proc)
        self.base_url = self.srv.base_url

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.stop()
            self.srv = None
        super().stop()
        self._stack.close()

    def log_tail(self, lines: int = 30) -> str:
        if self.srv is not None and self.srv.log_path.exists():
            return "\n".join(self.srv.log_path.read_text(errors="replace").splitlines()[-lines:])
        return super().log_tail(lines)

    # -- repos ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self.srv is not None
        return self.srv.data_dir

    def api(self):
        assert self.srv is not None, "server not started"
        return self.srv.api()

    def url(self, repo: str) -> str:
        return self.remotes[repo_name(repo)]

    def create_empty(self, name: str, default_branch: str | None = None) -> str:
        """An empty repo with a write token; returns its remote (and configures auth for it)."""
        assert self.srv is not None, "server not started"
        short = repo_name(name)
        fields = {"default_branch": default_branch} if default_branch else {}
        created = self.srv.create_repo(NAMESPACE, short, **fields)
        token = self.srv.mint(NAMESPACE, short, "write", TOKEN_TTL)
        remote = created["remote"]
        self.remotes[short] = remote
        self.tokens[short] = token
        self.git_config.append(f"http.{remote}.extraHeader=Authorization: Bearer {token}")
        return remote

    def add_repo(self, name: str, source: str | os.PathLike[str]) -> None:
        """Create ``name`` over REST, push ``source`` into it, and bring it to the state a
        served repo is in after the server's scheduled maintenance (``artifactd
        maintenance``: repacked, with bitmaps and a commit-graph) -- the state the
        baselines' copies of ``source`` are in. A repo straight after a push has no
        bitmaps yet and clones ~2x slower (pack-objects must walk every object).
        Its default branch is the one ``source``'s HEAD names, as in the baselines' copies
        (a ``--repo`` whose HEAD is ``master``: HEAD must not name a missing ``main``)."""
        head = git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=source, check=False).stdout.strip()
        remote = self.create_empty(name, head or None)
        git(["push", "-q", "--mirror", remote], cwd=source, config=self.git_config, timeout=3600)
        self.maintenance(name)

    def storage_dir(self, name: str) -> Path:
        """The bare repository on disk (for du/fsck)."""
        from artifactd.gitserver.storage import GitStorage

        with self.api() as c:
            r = c.get(f"/namespaces/{NAMESPACE}/repos/{repo_name(name)}")
        r.raise_for_status()
        return self.data_dir / "repos" / GitStorage.relative_path_for(r.json()["result"]["id"])

    def maintenance(self, name: str) -> None:
        """``artifactd maintenance`` on one repo (repack into the steady state)."""
        env = {**os.environ, **self.extra_env}
        if self.database_url():
            env["ARTIFACTD_DATABASE_URL"] = self.database_url()
        subprocess.run([_python(), "-m", "artifactd", "maintenance", "--quiet", "--data-dir", str(self.data_dir),
                        "--repo", f"{NAMESPACE}/{repo_name(name)}"], check=True, env=env)


class ArtifactdPostgres(ArtifactdServer):
    """artifactd on a fresh PostgreSQL database, created for this run and dropped after."""

    name = "artifactd-pg"
    database = "postgresql"

    def __init__(self, root: str | os.PathLike[str], workers: int = 1, extra_env: dict[str, str] | None = None,
                 admin_url: str | None = None) -> None:
        super().__init__(root, workers, extra_env)
        self.admin_url = admin_url or os.environ.get("ARTIFACTD_BENCH_DATABASE") or PG_DEFAULT
        self._url = ""

    def database_url(self) -> str:
        return self._url

    def _start(self) -> None:
        self._url = self._stack.enter_context(temporary_database(self.admin_url))
        super()._start()


class ArtifactdFromSource(ArtifactdServer):
    """artifactd (SQLite) run from another source tree, e.g. a checkout of an older
    commit (``bench/run --compare-src DIR``): before/after numbers in one run."""

    name = "artifactd-base"
    source_dir = ""

    def __init__(self, root: str | os.PathLike[str], workers: int = 1, extra_env: dict[str, str] | None = None) -> None:
        if not self.source_dir:
            raise ValueError("ArtifactdFromSource.source_dir is not set")
        # PYTHONSAFEPATH: `python -m artifactd` puts its cwd (bench/run's: this checkout)
        # first on sys.path, ahead of PYTHONPATH, so without it this served the current tree
        super().__init__(root, workers, {"PYTHONPATH": self.source_dir, "PYTHONSAFEPATH": "1", **(extra_env or {})})


class ArtifactdWorkers2(ArtifactdServer):
    """artifactd on SQLite with ``--workers 2`` (one uvicorn worker per core)."""

    name = "artifactd-w2"

    def __init__(self, root: str | os.PathLike[str], workers: int = 2, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(root, workers, extra_env)


def _python() -> str:
    import sys

    return sys.executable
