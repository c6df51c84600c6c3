"""A new repo is a row only; its files appear on first use (GitStorage.ensure)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from artifactd.gitserver.storage import GitStorage
from artifactd.testing import GitClient, ServerProcess


def storage_dir(server: ServerProcess, repo_id: str) -> Path:
    return server.data_dir / "repos" / GitStorage.relative_path_for(repo_id)


def leftovers(server: ServerProcess) -> list[Path]:
    return list((server.data_dir / "tmp").glob("newrepo-*"))


def test_files_appear_on_first_git_request(server: ServerProcess, git: GitClient, tmp_path: Path):
    repo = server.create_repo("lazy", default_branch="trunk")
    bare = storage_dir(server, repo["id"])
    assert not bare.exists()
    # The empty repo answers like any other, with the chosen default branch.
    clone = tmp_path / "clone"
    p = git.run("clone", repo["remote"], str(clone), token=repo["token"])
    assert b"empty repository" in p.stderr
    assert (bare / "HEAD").read_text() == "ref: refs/heads/trunk\n"
    assert git.out("--git-dir", str(bare), "symbolic-ref", "HEAD") == "refs/heads/trunk"
    src = git.make_repo(tmp_path / "src", commits=2)
    git.run("push", repo["remote"], "main:trunk", cwd=src, token=repo["token"])
    assert git.out("ls-remote", repo["remote"], token=repo["token"]).endswith("refs/heads/trunk")
    assert git.out("--git-dir", str(bare), "fsck", "--strict") == ""
    assert leftovers(server) == []


def test_concurrent_first_requests_build_one_repo(server: ServerProcess, git: GitClient, tmp_path: Path):
    src = git.make_repo(tmp_path / "src", commits=1)
    for _ in range(3):
        repo = server.create_repo("lazy")
        results: list[int] = []

        def first(i: int) -> None:
            if i % 2:
                results.append(git.run("ls-remote", repo["remote"], token=repo["token"], check=False).returncode)
            else:
                results.append(git.run("push", repo["remote"], f"main:b{i}", cwd=src, token=repo["token"],
                                       check=False).returncode)

        threads = [threading.Thread(target=first, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [0] * 8
        heads = git.out("ls-remote", "--heads", repo["remote"], token=repo["token"]).splitlines()
        assert sorted(line.split("\t")[1] for line in heads) == [f"refs/heads/b{i}" for i in (0, 2, 4, 6)]
    assert leftovers(server) == []


def test_content_and_fork_of_a_never_used_repo(server: ServerProcess, git: GitClient, tmp_path: Path):
    parent = server.create_repo("lazy")
    with server.api() as c:
        r = c.get(f"/namespaces/lazy/repos/{parent['name']}/log")
        assert r.status_code == 200 and r.json()["result"] == [], r.text
        r = c.post(f"/namespaces/lazy/repos/{parent['name']}/fork", json={"name": parent["name"] + "-f"})
        assert r.status_code == 201, r.text
        fork = r.json()["result"]
    assert storage_dir(server, parent["id"]).is_dir() and storage_dir(server, fork["id"]).is_dir()
    src = git.make_repo(tmp_path / "src", commits=1)
    git.run("push", fork["remote"], "main", cwd=src, token=fork["token"])
    assert git.out("ls-remote", parent["remote"], token=parent["token"]) == ""


def test_deleted_before_first_use_leaves_nothing(server: ServerProcess):
    repo = server.create_repo("lazy")
    with server.api() as c:
        assert c.delete(f"/namespaces/lazy/repos/{repo['name']}").status_code == 202
    assert not storage_dir(server, repo["id"]).exists()
    r = httpx.get(repo["remote"] + "/info/refs?service=git-upload-pack",
                  headers={"Authorization": "Bearer " + repo["token"].split("?")[0]})
    assert r.status_code == 403
    assert not storage_dir(server, repo["id"]).exists()
