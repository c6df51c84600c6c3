"""Crash safety (issue 7 item 4): SIGKILL the server (and its git children) in the middle
of pushes, creates, deletions and token revocations; restart; check that every
acknowledged operation survived and nothing half-done is visible.

``ARTIFACTD_CRASH_ROUNDS`` (default 2) sets the kills per scenario; ``scripts/soak``
raises it.
"""

from __future__ import annotations

import os
import time
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from artifactd.testing import GitClient, ServerProcess
from tests.crash_harness import Context, run_crash_rounds, store_rows
from tests.hardening_util import own_servers, storage_of

ROUNDS = int(os.environ.get("ARTIFACTD_CRASH_ROUNDS", "2"))
FIGURES: dict[str, object] = {}


def git_ok(ctx: Context, remote: str, token: str) -> bool:
    return ctx.git.run("ls-remote", remote, token=token, check=False).returncode == 0


@dataclass
class Pushes:
    name: str = "push"
    workers: int = 4
    repos: list = field(default_factory=list)
    acked: dict = field(default_factory=dict)  # (repo index, branch) -> last acknowledged commit

    def setup(self, ctx: Context) -> None:
        self.src = ctx.git.make_repo(ctx.tmp / "push-src", commits=1)
        for i in range(2):
            r = ctx.server.create_repo("crash", f"push-{i}")
            ctx.git.run("push", r["remote"], "main", cwd=self.src, token=r["token"])
            r["token"] = ctx.server.mint("crash", f"push-{i}", "write", 86_400)
            self.repos.append(r)
        self.base = ctx.git.out("rev-parse", "HEAD", cwd=self.src)

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            idx = worker % len(self.repos)
            branch = f"w{worker}"
            parent = self.acked.get((idx, branch), self.base)
            blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=self.src, env=ctx.git.env,
                                  input=os.urandom(150_000 + n * 7), capture_output=True, check=True).stdout.decode().strip()
            tree = subprocess.run(["git", "mktree"], cwd=self.src, env=ctx.git.env, capture_output=True, check=True,
                                  input=f"100644 blob {blob}\tf{worker}-{n}.bin\n".encode()).stdout.decode().strip()
            commit = ctx.git.out("commit-tree", tree, "-p", parent, "-m", f"w{worker} n{n}", cwd=self.src)
            ctx.attempt()
            p = ctx.git.run("push", self.repos[idx]["remote"], f"{commit}:refs/heads/{branch}", cwd=self.src,
                            token=self.repos[idx]["token"], check=False)
            if p.returncode == 0:
                self.acked[(idx, branch)] = commit
                ctx.ack()
            n += 1

    def verify(self, ctx: Context) -> None:
        for (idx, branch), commit in self.acked.items():
            bare = storage_of(ctx.server, "crash", f"push-{idx}")
            ref = subprocess.run(["git", "--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}"],
                                 capture_output=True, text=True).stdout.strip()
            # The acknowledged commit is there (the ref may have moved on by a push that
            # landed just before the kill but was never acknowledged).
            anc = subprocess.run(["git", "--git-dir", str(bare), "merge-base", "--is-ancestor", commit, ref])
            assert anc.returncode == 0, (idx, branch, commit, ref)
            self.acked[(idx, branch)] = ref
        with ctx.server.api() as c:
            for i, r in enumerate(self.repos):
                info = c.get(f"/namespaces/crash/repos/push-{i}").json()["result"]
                assert info["last_push_at"] is not None
        for r in self.repos:  # still takes pushes (no stale lock on any branch)
            assert git_ok(ctx, r["remote"], r["token"])


@dataclass
class Creates:
    name: str = "create"
    workers: int = 4
    acked: dict = field(default_factory=dict)
    tried: set = field(default_factory=set)

    def setup(self, ctx: Context) -> None:
        pass

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None:
        with ctx.server.api() as c:
            while not stop.is_set():
                name = f"c{worker}-{secrets.token_hex(3)}"
                self.tried.add(name)
                ctx.attempt()
                r = c.post("/namespaces/crash-create/repos", json={"name": name})
                assert r.status_code == 201, r.text
                self.acked[name] = r.json()["result"]
                ctx.ack()

    def verify(self, ctx: Context) -> None:
        with ctx.server.api() as c:
            for name in self.tried:
                r = c.get(f"/namespaces/crash-create/repos/{name}")
                if name in self.acked:
                    assert r.status_code == 200, (name, r.text)
                    assert git_ok(ctx, self.acked[name]["remote"], self.acked[name]["token"])
                else:  # unacknowledged: all there or not at all
                    assert r.status_code in (200, 404)
                    if r.status_code == 200:
                        token = ctx.server.mint("crash-create", name, "read")
                        assert git_ok(ctx, r.json()["result"]["remote"], token)


@dataclass
class Deletes:
    name: str = "delete"
    workers: int = 4
    pending: list = field(default_factory=list)
    acked: set = field(default_factory=set)
    info: dict = field(default_factory=dict)

    def setup(self, ctx: Context) -> None:
        for i in range(ROUNDS * 12 + 8):
            r = ctx.server.create_repo("crash-delete", f"d{i}")
            self.info[r["name"]] = r
            self.pending.append(r["name"])

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None:
        with ctx.server.api() as c:
            while not stop.is_set():
                with ctx.lock:
                    if not self.pending:
                        return
                    name = self.pending.pop()
                ctx.attempt()
                r = c.delete(f"/namespaces/crash-delete/repos/{name}")
                assert r.status_code in (202, 404), r.text
                self.acked.add(name)
                ctx.ack()

    def verify(self, ctx: Context) -> None:
        with ctx.server.api() as c:
            for name, r in self.info.items():
                got = c.get(f"/namespaces/crash-delete/repos/{name}")
                if name in self.acked:
                    assert got.status_code == 404, name
                    assert not git_ok(ctx, r["remote"], r["token"])
                else:
                    assert got.status_code in (200, 404)
                    if got.status_code == 200:
                        assert git_ok(ctx, r["remote"], r["token"])
                    elif name not in self.acked:
                        self.acked.add(name)  # deleted before the kill, reply lost


@dataclass
class Revocations:
    name: str = "revoke"
    workers: int = 4
    pending: list = field(default_factory=list)
    acked: set = field(default_factory=set)
    tokens: dict = field(default_factory=dict)

    def setup(self, ctx: Context) -> None:
        self.repo = ctx.server.create_repo("crash-revoke", "target")
        with ctx.server.api() as c:
            for _ in range(ROUNDS * 12 + 8):
                t = c.post("/namespaces/crash-revoke/tokens", json={"repo": "target", "scope": "read"}).json()["result"]
                self.tokens[t["id"]] = t["plaintext"]
                self.pending.append(t["id"])

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None:
        with ctx.server.api() as c:
            while not stop.is_set():
                with ctx.lock:
                    if not self.pending:
                        return
                    tid = self.pending.pop()
                ctx.attempt()
                r = c.delete(f"/namespaces/crash-revoke/tokens/{tid}")
                assert r.status_code == 200, r.text
                self.acked.add(tid)
                ctx.ack()

    def verify(self, ctx: Context) -> None:
        revoked = {row[0] for row in store_rows(ctx.server, "SELECT id FROM repo_tokens WHERE revoked_at IS NOT NULL")}
        assert self.acked <= revoked
        for tid, plaintext in self.tokens.items():
            url = self.repo["remote"] + "/info/refs?service=git-upload-pack"
            status = httpx.get(url, headers={"Authorization": f"Bearer {plaintext}"}).status_code
            assert status == (403 if tid in revoked else 200), (tid, status)


@dataclass
class Forks:
    """Forks of one parent: an acknowledged fork is there and complete; an interrupted one
    is finished or visibly failed by the restarted server's job recovery."""

    name: str = "fork"
    workers: int = 3
    acked: dict = field(default_factory=dict)
    tried: set = field(default_factory=set)

    def setup(self, ctx: Context) -> None:
        parent = ctx.server.create_repo("crash-fork", "parent")
        src = ctx.git.make_repo(ctx.tmp / "fork-src", commits=3)
        (src / "big.bin").write_bytes(os.urandom(300_000))
        ctx.git.run("add", ".", cwd=src)
        ctx.git.run("commit", "-qm", "big", cwd=src)
        ctx.git.run("push", parent["remote"], "main", cwd=src, token=parent["token"])
        self.head = ctx.git.out("rev-parse", "HEAD", cwd=src)

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None:
        with ctx.server.api() as c:
            while not stop.is_set():
                name = f"f{worker}-{secrets.token_hex(3)}"
                self.tried.add(name)
                ctx.attempt()
                r = c.post("/namespaces/crash-fork/repos/parent/fork", json={"name": name})
                assert r.status_code == 201, r.text
                self.acked[name] = r.json()["result"]
                ctx.ack()

    def verify(self, ctx: Context) -> None:
        with ctx.server.api() as c:
            for name in self.tried:
                r = c.get(f"/namespaces/crash-fork/repos/{name}")
                assert r.status_code in (200, 404), r.text
                status = r.json()["result"]["status"] if r.status_code == 200 else None
                if name in self.acked:
                    assert status == "ready", (name, r.text)
                    out = ctx.git.out("ls-remote", self.acked[name]["remote"], "refs/heads/main",
                                      token=self.acked[name]["token"])
                    assert out.split()[0] == self.head
                else:
                    assert status in (None, "ready", "failed"), (name, status)
                    if status == "ready":
                        token = ctx.server.mint("crash-fork", name, "read")
                        assert git_ok(ctx, r.json()["result"]["remote"], token)


SCENARIOS = {"push": Pushes, "create": Creates, "delete": Deletes, "revoke": Revocations, "fork": Forks}


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_sigkill_mid_operation_loses_nothing(kind: str, tmp_path: Path):
    scenario = SCENARIOS[kind]()
    git = GitClient(tmp_path / "home")
    with own_servers(tmp_path, env={"ARTIFACTD_LOG_LEVEL": "warning"}) as (srv,):
        figures = run_crash_rounds(srv, git, tmp_path, scenario, ROUNDS, seed=hash(kind) & 0xFFFF)
    FIGURES[kind] = figures
    assert figures.kills == ROUNDS and figures.acknowledged > 0


def test_report_crash_figures():
    for kind, f in FIGURES.items():
        print(f"crash {kind}: {f.kills} SIGKILLs, {f.attempts} operations tried, {f.acknowledged} acknowledged, 0 lost")


def test_recovery_clears_leftovers_only_when_no_other_process_shares_the_volume(tmp_path: Path):
    """What a killed git leaves (a ref lock, a quarantine, a temporary pack, a push log, a
    repo dir with no row) is cleared on restart; while another live process shares the
    volume, only leftovers older than the grace period are."""
    git = GitClient(tmp_path / "home")
    with own_servers(tmp_path, 2) as (one, two):
        repo = one.create_repo("recover", "r")
        src = git.make_repo(tmp_path / "src", commits=1)
        git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
        bare = storage_of(one, "recover", "r")

        def plant(age: float) -> list[Path]:
            made = [bare / "refs" / "heads" / "main.lock", bare / "objects" / "tmp_objdir-incoming-x",
                    bare / "objects" / "pack" / "tmp_pack_x"]
            made[0].write_text("0" * 40 + "\n")
            made[1].mkdir()
            (made[1] / "junk").write_bytes(b"x")
            made[2].write_bytes(b"PACK")
            orphan = one.data_dir / "repos" / "zz" / ("z" * 16 + ".git")
            orphan.mkdir(parents=True)
            (orphan / "HEAD").write_text("ref: refs/heads/main\n")
            made.append(orphan)
            for p in made:
                t = time.time() - age
                os.utime(p, (t, t))
            return made

        # A young leftover while `two` is alive: left alone (it may be two's push).
        young = plant(age=0)
        one.stop(sig=9)
        one.start()
        assert all(p.exists() for p in young)
        (src / "young.txt").write_text("young\n")
        git.run("add", ".", cwd=src)
        git.run("commit", "-qm", "young", cwd=src)
        p = git.run("push", repo["remote"], "main", cwd=src, token=repo["token"], check=False)
        assert p.returncode != 0 and b"main.lock" in p.stderr  # why a stale lock must not stay
        for p_ in young:
            shutil.rmtree(p_) if p_.is_dir() else p_.unlink()
        # Old leftovers while `two` is alive: cleared.
        old = plant(age=7200)
        one.stop(sig=9)
        one.start()
        assert not any(p.exists() for p in old)
        # Alone on the volume (two is gone): everything is cleared at once.
        two.stop(sig=9)
        fresh = plant(age=0)
        one.stop(sig=9)
        one.start()
        assert not any(p.exists() for p in fresh)
        (src / "more.txt").write_text("more\n")
        git.run("add", ".", cwd=src)
        git.run("commit", "-qm", "more", cwd=src)
        git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])  # the ref is not locked


def test_a_half_built_new_repo_is_cleared_on_restart(tmp_path: Path):
    """A first request builds a new repo's files in tmp/ and renames them into place; a
    kill in between leaves a directory that the next start removes. The repo is still
    whole: its files are built again on its next use."""
    git = GitClient(tmp_path / "home")
    with own_servers(tmp_path) as (srv,):
        repo = srv.create_repo("recover", "lazy")
        half = srv.data_dir / "tmp" / f"newrepo-{repo['id']}.git.0123"
        (half / "objects").mkdir(parents=True)
        srv.stop(sig=9)
        srv.start()
        assert not half.exists()
        assert git.out("ls-remote", repo["remote"], token=repo["token"]) == ""
