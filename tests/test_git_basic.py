"""The core flow with the real git binary: push, clone, auth policy."""

from __future__ import annotations

from pathlib import Path

import httpx

from artifactd.testing import GitClient, ServerProcess


def test_push_clone_roundtrip_updates_metadata(server: ServerProcess, repo: dict, git: GitClient, tmp_path: Path):
    src = git.make_repo(tmp_path / "src", commits=3)
    git.run("push", repo["remote"], "main:main", cwd=src, token=repo["token"])
    clone = tmp_path / "clone"
    git.run("clone", "-q", repo["remote"], str(clone), token=repo["token"])
    assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "HEAD", cwd=src)
    with server.api() as c:
        info = c.get(f"/namespaces/default/repos/{repo['name']}").json()["result"]
    assert info["last_push_at"] is not None and info["updated_at"] == info["last_push_at"]


def test_status_policy(server: ServerProcess, repo: dict, git: GitClient, tmp_path: Path):
    url = repo["remote"] + "/info/refs?service=git-upload-pack"
    r = httpx.get(url)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="artifacts"'
    r = httpx.get(url, headers={"Authorization": "Bearer art_v1_" + "0" * 40})
    assert r.status_code == 403 and r.text.strip() == "Invalid or expired token"
    r = httpx.get(url, auth=("x", "wrong"))
    assert r.status_code == 401 and "www-authenticate" in r.headers
    secret = repo["token"].split("?")[0]
    assert httpx.get(url, auth=("x", secret)).status_code == 200
    assert httpx.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    read = server.mint("default", repo["name"], "read")
    r = httpx.get(repo["remote"] + "/info/refs?service=git-receive-pack", headers={"Authorization": f"Bearer {read}"})
    assert r.status_code == 403 and r.text.strip() == "Insufficient permissions"
    src = git.make_repo(tmp_path / "src")
    p = git.run("push", repo["remote"], "main", cwd=src, token=read, check=False)
    assert p.returncode != 0 and b"Insufficient permissions" in p.stderr
