"""Forks (route 9) with the real git binary: result, divergence, O(1) storage, safety.

Safety requirements tested here: deleting parents never breaks a fork; maintenance
never removes what a fork reaches; no repo serves another repo's objects.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from forkutil import commit_file, fsck, has_object, refs_of, remote_refs, storage_dir, wait_for

from artifactd.gitserver.forkstore import repo_lock
from artifactd.testing import GitClient, ServerProcess, temporary_database


def _ns() -> str:
    return f"fk-{secrets.token_hex(3)}"


def _fork(server: ServerProcess, ns: str, parent: str, name: str, **body) -> dict:
    with server.api() as c:
        r = c.post(f"/namespaces/{ns}/repos/{parent}/fork", json={"name": name, **body})
    assert r.status_code == 201, r.text
    return r.json()["result"]


def _parent(server: ServerProcess, git: GitClient, tmp_path: Path, ns: str, name: str = "base") -> tuple[dict, Path]:
    """A parent with main (3 commits), a side branch, an annotated tag and a note."""
    repo = server.create_repo(ns, name, description="the baseline")
    work = git.make_repo(tmp_path / f"work-{name}", commits=3)
    git.run("tag", "-a", "v1", "-m", "release 1", cwd=work)
    git.run("checkout", "-q", "-b", "side", cwd=work)
    commit_file(git, work, "side.txt", "side\n", "side work")
    git.run("checkout", "-q", "main", cwd=work)
    git.run("notes", "add", "-m", "agent run 42", "HEAD", cwd=work)
    git.run("push", "-q", repo["remote"], "main", "side", "v1", "refs/notes/*:refs/notes/*", cwd=work,
            token=repo["token"])
    return repo, work


def clone_and_check(git: GitClient, remote: str, token: str, dest: Path) -> dict[str, str]:
    git.run("clone", "-q", "--mirror", remote, str(dest), token=token)
    fsck(dest)
    return refs_of(git, dest)


def test_fork_result_refs_and_divergence(server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = _ns()
    parent, work = _parent(server, git, tmp_path, ns)
    parent_refs = remote_refs(git, parent["remote"], parent["token"])
    assert set(parent_refs) == {"refs/heads/main", "refs/heads/side", "refs/tags/v1", "refs/notes/commits"}

    full = _fork(server, ns, "base", "all-refs", default_branch_only=False)
    assert set(full) == {"id", "name", "description", "default_branch", "remote", "token", "objects", "read_only"}
    assert full["name"] == "all-refs" and full["default_branch"] == "main"
    assert full["description"] == "the baseline"  # inherited when not given
    assert isinstance(full["objects"], int) and full["objects"] >= 12
    assert full["token"].startswith("art_v1_") and full["remote"].endswith(f"/{ns}/all-refs.git")
    assert remote_refs(git, full["remote"], full["token"]) == parent_refs

    only = _fork(server, ns, "base", "main-only", description="mine", read_only=True)
    assert only["description"] == "mine"
    assert remote_refs(git, only["remote"], only["token"]) == {"refs/heads/main": parent_refs["refs/heads/main"]}

    with server.api() as c:
        info = c.get(f"/namespaces/{ns}/repos/all-refs").json()["result"]
        assert info["source"] == f"artifacts:{ns}/base" and info["status"] == "ready" and info["read_only"] is False
        assert c.get(f"/namespaces/{ns}/repos/main-only").json()["result"]["read_only"] is True
        assert c.get(f"/namespaces/{ns}").json()["result"]["repo_count"] == 3

    # read_only is honoured on the fork.
    p = git.run("push", only["remote"], "main:other", cwd=work, token=only["token"], check=False)
    assert p.returncode != 0 and b"Repository is read-only" in p.stderr

    # The fork and its parent diverge independently.
    clone = tmp_path / "fork-clone"
    git.run("clone", "-q", full["remote"], str(clone), token=full["token"])
    fork_commit = commit_file(git, clone, "fork.txt", "fork only\n", "fork work")
    git.run("push", "-q", "origin", "main", cwd=clone, token=full["token"])
    parent_commit = commit_file(git, work, "parent.txt", "parent only\n", "parent work")
    git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])
    assert remote_refs(git, full["remote"], full["token"])["refs/heads/main"] == fork_commit
    assert remote_refs(git, parent["remote"], parent["token"])["refs/heads/main"] == parent_commit
    assert remote_refs(git, only["remote"], only["token"])["refs/heads/main"] == parent_refs["refs/heads/main"]

    # Forks of forks; the source names the direct parent.
    grand = _fork(server, ns, "all-refs", "grandchild", default_branch_only=False)
    refs = clone_and_check(git, grand["remote"], grand["token"], tmp_path / "grand.git")
    assert refs["refs/heads/main"] == fork_commit and refs["refs/heads/side"] == parent_refs["refs/heads/side"]
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/grandchild").json()["result"]["source"] == f"artifacts:{ns}/all-refs"
    for r in (parent, full, only, grand):
        fsck(storage_dir(server, r["id"]))


def test_fork_shares_pack_files_instead_of_copying(server: ServerProcess, git: GitClient, tmp_path: Path):
    """O(1) in bytes: the fork's pack files are the parent's inodes; no alternates."""
    ns = _ns()
    parent = server.create_repo(ns, "big")
    work = git.make_repo(tmp_path / "w", commits=2)
    (work / "blob.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "big blob", cwd=work)
    git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])
    fork = _fork(server, ns, "big", "big-fork")
    pdir, fdir = storage_dir(server, parent["id"]), storage_dir(server, fork["id"])

    def object_files(d: Path) -> dict[str, int]:
        return {str(p.relative_to(d)): p.stat().st_ino for p in (d / "objects").rglob("*")
                if p.is_file() and "info" not in p.parts}

    assert object_files(pdir) and object_files(pdir) == object_files(fdir)
    assert not (fdir / "objects" / "info" / "alternates").exists()
    own_bytes = sum(p.stat().st_size for p in fdir.rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    assert own_bytes < 64 * 1024  # refs, config, HEAD: not the 2 MiB pack
    fsck(fdir)


def test_fork_rejects_bad_requests(server: ServerProcess, repo: dict):
    with server.api() as c:
        base = f"/namespaces/default/repos/{repo['name']}/fork"
        cases = [
            (f"/namespaces/default/repos/missing-{secrets.token_hex(2)}/fork", {"name": "x1"}, 404, 10200),
            (base, {"name": repo["name"]}, 409, 10201),
            (base, {"name": "-bad"}, 400, 10101),
            (base, {}, 400, 10101),
            (base, {"name": "ok-fork", "read_only": "yes"}, 400, 10100),
            (base, {"name": "ok-fork", "default_branch_only": 1}, 400, 10100),
            (base, {"name": "ok-fork", "description": "x" * 1025}, 400, 10100),
        ]
        for path, body, status, code in cases:
            r = c.post(path, json=body)
            assert r.status_code == status and r.json()["errors"][0]["code"] == code, (body, r.text)
        assert c.get("/namespaces/default/repos/ok-fork").status_code == 404
        r = httpx.post(f"{server.api_base}{base}", json={"name": "nope"})
        assert r.status_code == 401


def test_fork_of_an_empty_repo(server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = _ns()
    server.create_repo(ns, "empty", default_branch="trunk")
    fork = _fork(server, ns, "empty", "empty-fork", default_branch_only=False)
    assert fork["objects"] == 0 and fork["default_branch"] == "trunk"
    work = git.make_repo(tmp_path / "w", commits=1, branch="trunk")
    git.run("push", "-q", fork["remote"], "trunk", cwd=work, token=fork["token"])
    clone = tmp_path / "c"
    git.run("clone", "-q", fork["remote"], str(clone), token=fork["token"])
    assert git.out("rev-parse", "--abbrev-ref", "HEAD", cwd=clone) == "trunk"
    fsck(storage_dir(server, fork["id"]))


def test_no_cross_repo_object_leak(server: ServerProcess, git: GitClient, tmp_path: Path):
    """A commit pushed only to a fork cannot be fetched by SHA through its parent or a
    sibling (protocol v0 and v2, every token); nor a parent's later commit through a fork."""
    ns = _ns()
    parent, work = _parent(server, git, tmp_path, ns)
    f1 = _fork(server, ns, "base", "f1")
    f2 = _fork(server, ns, "base", "f2")

    c1 = tmp_path / "c1"
    git.run("clone", "-q", f1["remote"], str(c1), token=f1["token"])
    secret = commit_file(git, c1, "secret.txt", "fork-only secret\n", "fork secret")
    git.run("push", "-q", "origin", "HEAD:refs/heads/private", cwd=c1, token=f1["token"])
    later = commit_file(git, work, "later.txt", "parent later\n", "parent later")
    git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])

    def fetch(remote: str, token: str, sha: str, version: str) -> bool:
        probe = tmp_path / f"probe-{secrets.token_hex(3)}"
        git.run("init", "-q", "--bare", str(probe))
        p = git.run("-c", f"protocol.version={version}", "fetch", "-q", remote, sha, cwd=probe, token=token,
                    check=False)
        return p.returncode == 0

    for version in ("0", "2"):
        # Sanity: the owner can fetch it, so a refusal below means something.
        assert fetch(f1["remote"], f1["token"], secret, version)
        assert fetch(parent["remote"], parent["token"], later, version)
        for target in (parent, f2):
            for scope in ("read", "write"):
                tok = server.mint(ns, target["name"], scope)
                assert not fetch(target["remote"], tok, secret, version), (target["name"], scope, version)
        for target in (f1, f2):
            tok = server.mint(ns, target["name"], "read")
            assert not fetch(target["remote"], tok, later, version), (target["name"], version)
        # A fork's token never opens its parent or sibling.
        assert not fetch(parent["remote"], f1["token"], secret, version)
        assert not fetch(f2["remote"], f1["token"], secret, version)

    with server.api() as c:
        for name in ("base", "f2"):
            assert c.get(f"/namespaces/{ns}/repos/{name}/commit/{secret}").status_code == 404
        assert c.get(f"/namespaces/{ns}/repos/f1/commit/{later}").status_code == 404
        assert c.get(f"/namespaces/{ns}/repos/f1/commit/{secret}").status_code == 200
    pdir, d1, d2 = (storage_dir(server, r["id"]) for r in (parent, f1, f2))
    assert has_object(d1, secret) and not has_object(pdir, secret) and not has_object(d2, secret)
    assert has_object(pdir, later) and not has_object(d1, later) and not has_object(d2, later)


def test_deleting_parents_never_breaks_forks(server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = _ns()
    parent, _ = _parent(server, git, tmp_path, ns)
    expected = remote_refs(git, parent["remote"], parent["token"])
    child = _fork(server, ns, "base", "child", default_branch_only=False)
    grand = _fork(server, ns, "child", "grand", default_branch_only=False)
    sibling = _fork(server, ns, "base", "sibling")
    with server.api() as c:
        assert c.delete(f"/namespaces/{ns}/repos/base").status_code == 202
        assert clone_and_check(git, child["remote"], child["token"], tmp_path / "c.git") == expected
        assert c.delete(f"/namespaces/{ns}/repos/child").status_code == 202
    assert clone_and_check(git, grand["remote"], grand["token"], tmp_path / "g.git") == expected
    assert clone_and_check(git, sibling["remote"], sibling["token"], tmp_path / "s.git") == {
        "refs/heads/main": expected["refs/heads/main"]}
    # The trash is emptied in the background: wait until the parents' files are gone.
    wait_for(lambda: not storage_dir(server, parent["id"]).exists() and not any(
        (server.data_dir / "trash").iterdir()), what="trash emptied")
    assert clone_and_check(git, grand["remote"], grand["token"], tmp_path / "g2.git") == expected
    fsck(storage_dir(server, grand["id"]))
    # A fork of an orphan works too.
    again = _fork(server, ns, "grand", "again", default_branch_only=False)
    assert clone_and_check(git, again["remote"], again["token"], tmp_path / "a.git") == expected


def _maintenance(server: ServerProcess, *args: str) -> str:
    env = {**os.environ, "ARTIFACTD_DATABASE_URL": server.database_url}
    p = subprocess.run([sys.executable, "-m", "artifactd", "maintenance", "--data-dir", str(server.data_dir),
                        *args], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stderr


def test_maintenance_never_removes_what_a_fork_reaches(server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = _ns()
    parent, work = _parent(server, git, tmp_path, ns)
    refs0 = remote_refs(git, parent["remote"], parent["token"])
    _maintenance(server, "--prune-grace", "0", "--repo", f"{ns}/base")  # the parent is one pack now
    base_tip, side_tip = refs0["refs/heads/main"], refs0["refs/heads/side"]
    f_all = _fork(server, ns, "base", "f-all", default_branch_only=False)
    f_main = _fork(server, ns, "base", "f-main")
    f_grand = _fork(server, ns, "f-all", "f-grand", default_branch_only=False)
    forks = {"f-all": (f_all, refs0), "f-grand": (f_grand, refs0),
             "f-main": (f_main, {"refs/heads/main": base_tip})}

    # The parent moves on, then throws history away: new work pushed and force-pushed
    # off again, the fork-time tip and the side branch dropped.
    later = commit_file(git, work, "later.txt", "later\n", "later")
    git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])
    git.run("push", "-q", "-f", parent["remote"], "main~3:main", ":side", ":refs/notes/commits", ":v1", cwd=work,
            token=parent["token"])
    pdir = storage_dir(server, parent["id"])
    assert has_object(pdir, later)

    out = _maintenance(server, "--prune-grace", "0", "--repo", f"{ns}/base", "--repo", f"{ns}/f-all",
                       "--repo", f"{ns}/f-main", "--repo", f"{ns}/f-grand")
    assert "repacked" in out
    assert not has_object(pdir, later)  # garbage outside the shared pack is collected ...
    assert has_object(pdir, side_tip)  # ... the pack shared with the forks is kept as it is
    fsck(pdir)
    for name, (fork, refs) in forks.items():
        assert clone_and_check(git, fork["remote"], fork["token"], tmp_path / f"{name}-1.git") == refs, name
        fsck(storage_dir(server, fork["id"]))

    # --full rewrites the shared packs too: the parent's store loses the old history ...
    _maintenance(server, "--prune-grace", "0", "--full", "--repo", f"{ns}/base")
    assert not has_object(pdir, base_tip) and not has_object(pdir, side_tip)
    fsck(pdir)
    # ... and every fork keeps all of it.
    for name, (fork, refs) in forks.items():
        assert clone_and_check(git, fork["remote"], fork["token"], tmp_path / f"{name}-2.git") == refs, name

    # Parent and middle fork deleted; maintenance again everywhere.
    with server.api() as c:
        assert c.delete(f"/namespaces/{ns}/repos/base").status_code == 202
        assert c.delete(f"/namespaces/{ns}/repos/f-all").status_code == 202
    _maintenance(server, "--prune-grace", "0", "--force", "--repo", f"{ns}/f-main", "--repo", f"{ns}/f-grand")
    for name in ("f-main", "f-grand"):
        fork, refs = forks[name]
        assert clone_and_check(git, fork["remote"], fork["token"], tmp_path / f"{name}-3.git") == refs, name
        fsck(storage_dir(server, fork["id"]))
    # f-main only has main; the side branch's objects came with the shared pack. Once no
    # other repo holds that pack any more, maintenance collects them from f-main too.
    mdir = storage_dir(server, f_main["id"])
    assert has_object(mdir, side_tip)
    with server.api() as c:
        assert c.delete(f"/namespaces/{ns}/repos/f-grand").status_code == 202
    _maintenance(server, "--prune-grace", "0", "--force", "--repo", f"{ns}/f-main")
    assert not has_object(mdir, side_tip) and has_object(mdir, base_tip)
    assert clone_and_check(git, f_main["remote"], f_main["token"], tmp_path / "f-main-4.git") == {
        "refs/heads/main": base_tip}


def test_fork_in_progress_answers_409(server: ServerProcess, git: GitClient, tmp_path: Path):
    """While the parent is locked (maintenance holds it), the fork waits as ``forking``."""
    ns = _ns()
    parent, _ = _parent(server, git, tmp_path, ns)
    result: dict = {}
    with repo_lock(storage_dir(server, parent["id"]), shared=False):
        def run():
            with server.api() as c:
                result["r"] = c.post(f"/namespaces/{ns}/repos/base/fork", json={"name": "waiting"})
        t = threading.Thread(target=run)
        t.start()
        with server.api() as c:
            r = wait_for(lambda: (lambda r: r if r.status_code == 409 else None)(
                c.get(f"/namespaces/{ns}/repos/waiting")), what="fork to show up as forking")
            assert r.json()["errors"][0]["code"] == 10303
            listed = {x["name"]: x for x in c.get(f"/namespaces/{ns}/repos").json()["result"]}
            assert listed["waiting"]["status"] == "forking"
            r = c.post(f"/namespaces/{ns}/tokens", json={"repo": "waiting"})
            assert r.status_code == 409 and r.json()["errors"][0]["code"] == 10303
            r = c.get(f"/namespaces/{ns}/repos/waiting/log")
            assert r.status_code == 409 and r.json()["errors"][0]["code"] == 10303
            r = c.post(f"/namespaces/{ns}/repos/waiting/fork", json={"name": "of-waiting"})
            assert r.status_code == 409 and r.json()["errors"][0]["code"] == 10303
        assert t.is_alive()
    t.join(60)
    assert result["r"].status_code == 201, result["r"].text
    fork = result["r"].json()["result"]
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/waiting").json()["result"]["status"] == "ready"
    clone_and_check(git, fork["remote"], fork["token"], tmp_path / "w.git")


def test_forks_taken_during_pushes_are_complete(server: ServerProcess, git: GitClient, tmp_path: Path):
    """Refs are snapshotted before files are linked: a fork taken while the parent is
    being pushed to is always a complete, consistent repo."""
    ns = _ns()
    parent, work = _parent(server, git, tmp_path, ns)
    pushed: list[str] = [remote_refs(git, parent["remote"], parent["token"])["refs/heads/main"]]
    errors: list[BaseException] = []

    def pusher():
        try:
            for i in range(8):
                pushed.append(commit_file(git, work, f"p{i}.txt", f"push {i}\n" * 50, f"push {i}"))
                git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=pusher)
    t.start()
    forks = []
    while (t.is_alive() and len(forks) < 15) or len(forks) < 3:
        forks.append(_fork(server, ns, "base", f"during-{len(forks)}", default_branch_only=False))
        time.sleep(0.15)
    t.join()
    assert not errors, errors
    for fork in forks:
        fsck(storage_dir(server, fork["id"]))
        refs = remote_refs(git, fork["remote"], fork["token"])
        assert refs["refs/heads/main"] in pushed


@pytest.fixture(scope="module")
def lone_server(tmp_path_factory):
    """A server of our own with its own database (it gets killed and restarted)."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        srv = ServerProcess(tmp_path_factory.mktemp("lone") / "data", database_url=url,
                            extra_env={"ARTIFACTD_FORK_LOCK_TIMEOUT_SECONDS": "1",
                                       "ARTIFACTD_MAINTENANCE_INTERVAL_SECONDS": "1",
                                       "ARTIFACTD_MAINTENANCE_PRUNE_GRACE_SECONDS": "3"}).start()
        yield srv
        srv.stop()


def test_interrupted_fork_is_redone_after_restart_and_busy_parent_gives_503(lone_server: ServerProcess,
                                                                             git: GitClient, tmp_path: Path):
    srv = lone_server
    ns = "recovery"
    parent, _ = _parent(srv, git, tmp_path, ns)
    expected = {"refs/heads/main": remote_refs(git, parent["remote"], parent["token"])["refs/heads/main"]}
    with repo_lock(storage_dir(srv, parent["id"]), shared=False):
        # The fork cannot get the lock within its 1 s: 503, and no repo is left behind.
        with srv.api() as c:
            r = c.post(f"/namespaces/{ns}/repos/base/fork", json={"name": "busy"})
            assert r.status_code == 503, r.text
            assert c.get(f"/namespaces/{ns}/repos/busy").status_code == 404

    # A fork cut short by a crash (the server dies while the fork waits) is redone.
    srv.stop()
    srv.extra_env["ARTIFACTD_FORK_LOCK_TIMEOUT_SECONDS"] = "600"
    srv.start()
    with repo_lock(storage_dir(srv, parent["id"]), shared=False):
        t = threading.Thread(target=lambda: _swallow(lambda: srv.api().post(
            f"/namespaces/{ns}/repos/base/fork", json={"name": "crashed"})))
        t.start()
        with srv.api() as c:
            wait_for(lambda: c.get(f"/namespaces/{ns}/repos/crashed").status_code == 409, what="forking")
        srv.stop(sig=9)
        t.join(60)
    srv.start()
    with srv.api() as c:
        wait_for(lambda: c.get(f"/namespaces/{ns}/repos/crashed").status_code == 200, what="fork redone")
        info = c.get(f"/namespaces/{ns}/repos/crashed").json()["result"]
    assert info["status"] == "ready"
    token = srv.mint(ns, "crashed", "read")
    assert clone_and_check(git, info["remote"], token, tmp_path / "crashed.git") == expected


def test_the_server_runs_maintenance_on_its_own(lone_server: ServerProcess, git: GitClient, tmp_path: Path):
    """Scheduled every second here (a 3 s grace keeps it off racing pushes): garbage goes,
    forks stay whole."""
    srv = lone_server
    parent, work = _parent(srv, git, tmp_path, "sched")
    fork = _fork(srv, "sched", "base", "sched-fork", default_branch_only=False)
    expected = remote_refs(git, fork["remote"], fork["token"])
    doomed = commit_file(git, work, "doomed.txt", "doomed\n", "doomed")
    git.run("push", "-q", parent["remote"], "main", cwd=work, token=parent["token"])
    git.run("push", "-q", "-f", parent["remote"], "main~1:main", cwd=work, token=parent["token"])
    pdir = storage_dir(srv, parent["id"])
    assert has_object(pdir, doomed)
    try:
        wait_for(lambda: not has_object(pdir, doomed), timeout=120, interval=0.5, what="scheduled maintenance")
    except AssertionError:
        state = (pdir / "artifactd-maintenance.json")
        raise AssertionError(f"state: {state.read_text() if state.exists() else None}; "
                             f"packs: {sorted(p.name for p in (pdir / 'objects' / 'pack').iterdir())}; "
                             f"log: {srv.log_path.read_text()[-3000:]}") from None
    fsck(pdir)
    assert (pdir / "artifactd-maintenance.json").exists()
    assert clone_and_check(git, fork["remote"], fork["token"], tmp_path / "f.git") == expected


def _swallow(fn):
    try:
        fn()
    except httpx.HTTPError:
        pass
