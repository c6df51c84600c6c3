"""Concurrency (issue 7 item 5): pushes racing for one ref, creates and deletes racing for
one name, namespace deletes racing repo creates; on one server process and on two
processes sharing one store and one repo directory.
"""

from __future__ import annotations

import random
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from artifactd.testing import GitClient, ServerProcess
from tests.hardening_util import fsck, own_servers, refs, storage_of

CLIENTS = 50
TALLY = {"pushes": 0, "requests": 0}


@pytest.fixture(scope="module", params=["one-process", "two-processes"])
def servers(request, tmp_path_factory) -> list[ServerProcess]:
    count = 1 if request.param == "one-process" else 2
    env = {"ARTIFACTD_RATE_LIMIT_BACKEND": "database"}
    with own_servers(tmp_path_factory.mktemp(request.param), count, env=env) as srvs:
        yield srvs


def _remote_on(remote: str, servers: list[ServerProcess], i: int) -> str:
    """The same remote, reached through server ``i`` (round robin)."""
    srv = servers[i % len(servers)]
    return remote.replace(f":{servers[0].port}/", f":{srv.port}/")


def _commits_on(git: GitClient, src: Path, parent: str, count: int, tag: str) -> list[str]:
    tree = git.out("rev-parse", f"{parent}^{{tree}}", cwd=src)
    return [git.out("commit-tree", tree, "-p", parent, "-m", f"{tag} client {i}", cwd=src) for i in range(count)]


def _race_push(git: GitClient, src: Path, remote: str, servers, token: str, commits: list[str], ref: str):
    barrier = threading.Barrier(len(commits))

    def push(i: int) -> subprocess.CompletedProcess:
        barrier.wait()
        return git.run("push", _remote_on(remote, servers, i), f"{commits[i]}:{ref}", cwd=src, token=token,
                       check=False)

    with ThreadPoolExecutor(len(commits)) as pool:
        results = list(pool.map(push, range(len(commits))))
    TALLY["pushes"] += len(results)
    return results


def test_fifty_pushes_to_one_ref_exactly_one_wins_per_old_value(servers, git: GitClient, tmp_path: Path):
    srv = servers[0]
    repo = srv.create_repo("race", "push-race")
    src = git.make_repo(tmp_path / "src", commits=1)
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    bare = storage_of(srv, "race", "push-race")
    old = git.out("rev-parse", "HEAD", cwd=src)
    acknowledged: list[str] = []
    for round_ in range(2):  # the second round races from the first round's winner
        commits = _commits_on(git, src, old, CLIENTS if round_ == 0 else CLIENTS - 1, f"round {round_}")
        results = _race_push(git, src, repo["remote"], servers, repo["token"], commits, "refs/heads/main")
        winners = [c for c, r in zip(commits, results) if r.returncode == 0]
        assert len(winners) == 1, [r.stderr.decode()[-300:] for r in results if r.returncode == 0]
        for c, r in zip(commits, results):
            if r.returncode != 0:  # told clearly, in git's own words
                err = r.stderr.decode()
                assert "rejected" in err and "-> main (" in err, err
                assert ("fetch first" in err or "non-fast-forward" in err or "failed to update ref" in err
                        or "cannot lock ref" in err or "stale info" in err or "failed to lock" in err), err
        assert refs(bare)["refs/heads/main"] == winners[0]
        acknowledged.append(winners[0])
        old = winners[0]
    # Nothing lost: each client then pushes its commit to its own branch; all succeed.
    losers = _commits_on(git, src, old, CLIENTS, "own")
    branch_results = []
    barrier = threading.Barrier(CLIENTS)

    def own(i: int):
        barrier.wait()
        return git.run("push", _remote_on(repo["remote"], servers, i), f"{losers[i]}:refs/heads/client-{i}",
                       cwd=src, token=repo["token"], check=False)

    with ThreadPoolExecutor(CLIENTS) as pool:
        branch_results = list(pool.map(own, range(CLIENTS)))
    TALLY["pushes"] += CLIENTS
    assert [r.returncode for r in branch_results] == [0] * CLIENTS
    final = refs(bare)
    assert all(final[f"refs/heads/client-{i}"] == losers[i] for i in range(CLIENTS))
    log = git.out("--git-dir", str(bare), "log", "--format=%H", "refs/heads/main")
    assert all(c in log for c in acknowledged)
    assert fsck(bare).returncode == 0
    with srv.api() as c:
        assert c.get("/namespaces/race/repos/push-race").json()["result"]["last_push_at"] is not None


def _call(servers, i: int, method: str, path: str, **kw) -> httpx.Response:
    srv = servers[i % len(servers)]
    with srv.api() as c:
        r = c.request(method, path, **kw)
    TALLY["requests"] += 1
    assert r.status_code < 500, (method, path, r.status_code, r.text)
    return r


def test_creates_of_one_name_exactly_one_wins(servers):
    barrier = threading.Barrier(20)

    def create(i: int) -> httpx.Response:
        barrier.wait()
        return _call(servers, i, "POST", "/namespaces/race-create/repos", json={"name": "same-name"})

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(create, range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 19, codes
    assert all(r.json()["errors"][0]["code"] == 10201 for r in results if r.status_code == 409)


def test_creates_forks_and_deletes_racing_on_names_leave_no_half_state(servers, git: GitClient, tmp_path: Path):
    names = [f"churn-{i}" for i in range(4)]
    parent = servers[0].create_repo("churn", "churn-parent")
    src = git.make_repo(tmp_path / "src", commits=2)
    git.run("push", parent["remote"], "main", cwd=src, token=parent["token"])
    rng = random.Random(7)
    plan = [(rng.choice(["create", "fork", "delete", "get"]), rng.choice(names)) for _ in range(160)]
    barrier = threading.Barrier(16)

    def worker(w: int) -> None:
        barrier.wait()
        for k, (op, name) in enumerate(plan[w::16]):
            i = w + k
            if op == "create":
                r = _call(servers, i, "POST", "/namespaces/churn/repos", json={"name": name})
                assert r.status_code in (201, 409), r.text
            elif op == "fork":
                r = _call(servers, i, "POST", "/namespaces/churn/repos/churn-parent/fork", json={"name": name})
                # 404: the name was deleted while it was being forked (said so, nothing left).
                assert r.status_code in (201, 409, 404), r.text
            elif op == "delete":
                r = _call(servers, i, "DELETE", f"/namespaces/churn/repos/{name}")
                assert r.status_code in (202, 404), r.text
            else:
                r = _call(servers, i, "GET", f"/namespaces/churn/repos/{name}")
                assert r.status_code in (200, 404, 409), r.text  # 409: a fork in progress

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(16)))
    _assert_consistent(servers, git, "churn", names)


def test_namespace_delete_racing_repo_creates_loses_nothing(servers, git: GitClient):
    """A namespace delete must never take a repo created at the same moment with it."""
    created: list[str] = []
    lock = threading.Lock()
    for round_ in range(4):
        ns = f"nsrace-{round_}"
        _call(servers, 0, "POST", "/namespaces", json={"namespace": ns})
        barrier = threading.Barrier(9)

        def act(i: int) -> None:
            barrier.wait()
            if i == 0:
                r = _call(servers, i, "DELETE", f"/namespaces/{ns}")
                assert r.status_code in (204, 409, 404), r.text
            else:
                r = _call(servers, i, "POST", f"/namespaces/{ns}/repos", json={"name": f"r{i}"})
                assert r.status_code == 201, r.text
                with lock:
                    created.append(f"{ns}/r{i}")

        with ThreadPoolExecutor(9) as pool:
            list(pool.map(act, range(9)))
    for item in created:  # every acknowledged create is still there
        ns, name = item.split("/")
        assert _call(servers, 0, "GET", f"/namespaces/{ns}/repos/{name}").status_code == 200, item
    for round_ in range(4):
        _assert_consistent(servers, git, f"nsrace-{round_}", [f"r{i}" for i in range(1, 9)])


def _assert_consistent(servers, git: GitClient, ns: str, names: list[str]) -> None:
    srv = servers[0]
    for name in names:
        r = _call(servers, 0, "GET", f"/namespaces/{ns}/repos/{name}")
        if r.status_code == 200:
            assert r.json()["result"]["status"] == "ready", r.text
            token = srv.mint(ns, name, "read")
            git.run("ls-remote", r.json()["result"]["remote"], token=token)  # (first use creates the files)
            bare = storage_of(srv, ns, name)
            assert bare.is_dir() and fsck(bare).returncode == 0
        else:
            assert r.status_code == 404
    # Every repo directory belongs to a repo row (deleted ones went to the trash).
    from sqlalchemy import create_engine, text

    from artifactd.store.db import normalize_url

    url = srv.database_url or f"sqlite:///{(srv.data_dir / 'artifactd.db').resolve()}"
    engine = create_engine(normalize_url(url))
    with engine.connect() as c:
        known = set(c.execute(text("SELECT storage_path FROM repos")).scalars())
    engine.dispose()
    on_disk = {p.relative_to(srv.data_dir / "repos").as_posix() for p in (srv.data_dir / "repos").glob("*/*.git")}
    assert on_disk <= known  # a repo never used has no files yet (GitStorage.ensure)


def test_report_figures():
    print(f"races: {TALLY['pushes']} pushes, {TALLY['requests']} REST requests")
