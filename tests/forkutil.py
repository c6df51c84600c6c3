"""Helpers shared by the fork, import and content tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from artifactd.gitserver.storage import GitStorage
from artifactd.testing import GitClient, ServerProcess


def storage_dir(server: ServerProcess, repo_id: str) -> Path:
    return server.data_dir / "repos" / GitStorage.relative_path_for(repo_id)


def fsck(path: Path) -> None:
    """``git fsck --full`` must pass on a bare repo or a clone."""
    p = subprocess.run(["git", "--git-dir" if path.name.endswith(".git") else "-C", str(path), "fsck", "--full",
                        "--no-dangling", "--no-progress"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"})
    assert p.returncode == 0 and "missing" not in p.stdout + p.stderr, p.stdout + p.stderr


def has_object(repo_dir: Path, sha: str) -> bool:
    return subprocess.run(["git", "--git-dir", str(repo_dir), "cat-file", "-e", sha], capture_output=True,
                          env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1",
                               "GIT_CONFIG_GLOBAL": "/dev/null"}).returncode == 0


def refs_of(git: GitClient, path: Path) -> dict[str, str]:
    out = git.out("for-each-ref", "--format=%(refname) %(objectname)", cwd=path)
    return dict(line.split(" ", 1) for line in out.splitlines())


def remote_refs(git: GitClient, remote: str, token: str) -> dict[str, str]:
    out = git.out("ls-remote", remote, token=token)
    refs = {}
    for line in out.splitlines():
        sha, name = line.split("\t")
        if name != "HEAD" and not name.endswith("^{}"):
            refs[name] = sha
    return refs


def commit_file(git: GitClient, work: Path, name: str, content: str | bytes, message: str) -> str:
    p = work / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    git.run("add", name, cwd=work)
    git.run("commit", "-q", "-m", message, cwd=work)
    return git.out("rev-parse", "HEAD", cwd=work)


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    """Poll until ``predicate()`` returns a truthy value (not a timing assertion: the
    timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
