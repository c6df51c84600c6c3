"""isomorphic-git (npm; Cloudflare's own example client) clones and pushes with repo tokens.

Driven by tools/isogit.mjs on the Node 22 of tools/ (scripts/install.d/node-tools.sh).
Two auth styles: Basic through ``onAuth`` (the first request carries no credentials; the
server's 401 makes the client retry with ``x:<token>``), and a Bearer header from the start.
What the client did is checked with the real git binary and over REST.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from binding_util import ROOT, eventually, unique

from artifactd.testing import GitClient, ServerProcess

NODE = ROOT / "tools" / "node22"
ISOGIT = ROOT / "tools" / "isogit.mjs"


@pytest.fixture(scope="module", autouse=True)
def node_tools() -> None:
    subprocess.run([str(ROOT / "tools" / "install-node-tools.sh")], check=True, capture_output=True)


def isogit(*args: str, auth: str = "basic", ok: bool = True) -> dict | subprocess.CompletedProcess:
    env = {**os.environ, "ISOGIT_AUTH": auth}
    p = subprocess.run([str(NODE), str(ISOGIT), *args], capture_output=True, text=True, env=env, timeout=120)
    if not ok:
        return p
    assert p.returncode == 0, f"isogit {' '.join(a if not a.startswith('art_') else '<token>' for a in args)}:\n" \
                              f"{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_clone_commit_push(auth: str, server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = unique("iso")
    repo = server.create_repo(ns, "app")
    src = git.make_repo(tmp_path / "src", commits=3)
    git.run("push", "-q", repo["remote"], "main", cwd=src, token=repo["token"])
    read = server.mint(ns, "app", "read", 600)

    work = tmp_path / "iso"
    cloned = isogit("clone", repo["remote"], str(work), read, auth=auth)
    assert cloned["head"] == git.out("rev-parse", "HEAD", cwd=src) and cloned["branch"] == "main"
    assert (work / "file2.txt").read_text() == (src / "file2.txt").read_text()

    committed = isogit("commit", str(work), "notes/agent.md", "written by isomorphic-git\n",
                       "--message", "agent step", "--branch", "main")
    # A read token cannot push (403 "Insufficient permissions"), and nothing changes.
    denied = isogit("push", str(work), repo["remote"], read, "main", auth=auth, ok=False)
    assert denied.returncode == 1 and "403" in denied.stderr and "Insufficient permissions" in denied.stderr
    assert git.out("ls-remote", repo["remote"], "refs/heads/main", token=read).split()[0] == cloned["head"]

    write = server.mint(ns, "app", "write", 600)
    pushed = isogit("push", str(work), repo["remote"], write, "main", auth=auth)
    assert pushed["refs"]["refs/heads/main"]["ok"] is True
    isogit("push", str(work), repo["remote"], write, "main", "--remote-ref", "agent/step-1", auth=auth)

    check = tmp_path / "check"
    git.run("clone", "-q", repo["remote"], str(check), token=read)
    assert git.out("log", "-1", "--format=%H %s", cwd=check) == f"{committed['oid']} agent step"
    assert (check / "notes" / "agent.md").read_text() == "written by isomorphic-git\n"
    assert "refs/heads/agent/step-1" in git.out("ls-remote", "--heads", repo["remote"], token=read)
    with server.api() as c:
        eventually(lambda: c.get(f"/namespaces/{ns}/repos/app").json()["result"]["last_push_at"],
                   what="last_push_at after the isomorphic-git push")

    # fetch and ls-remote (protocol v2 and v1) with the same token.
    fetched = isogit("fetch", str(work), repo["remote"], read, "main", auth=auth)
    assert fetched["fetchHead"] == committed["oid"]
    for proto in ("2", "1"):
        listed = isogit("ls-remote", repo["remote"], read, "--protocol", proto, auth=auth)
        refs = {r["ref"]: r["oid"] for r in listed["refs"]}
        assert refs["refs/heads/main"] == committed["oid"], proto


def test_empty_repo_and_refusals(server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = unique("iso")
    repo = server.create_repo(ns, "blank")
    # Clone of an empty repo, first commit, push: the repo's first branch.
    work = tmp_path / "blank"
    assert isogit("clone", repo["remote"], str(work), repo["token"])["head"] is None
    made = isogit("commit", str(work), "README.md", "first\n", "--message", "first")
    isogit("push", str(work), repo["remote"], repo["token"], "--remote-ref", "main")
    assert git.out("ls-remote", repo["remote"], "refs/heads/main", token=repo["token"]).split()[0] == made["oid"]

    other = server.create_repo(ns, "other")
    # Bearer: a bad or foreign token is 403 "Invalid or expired token". Basic: the server
    # answers bad Basic credentials with a second 401 (so that credential stores drop a
    # stale secret), and isomorphic-git's onAuthFailure then gives up ("canceled").
    cases = [
        ("-", "basic", "401"), ("-", "bearer", "401"),
        ("art_v1_" + "0" * 40, "bearer", "403"), (other["token"], "bearer", "403"),
        ("art_v1_" + "0" * 40, "basic", "canceled"), (other["token"], "basic", "canceled"),
    ]
    for i, (token, auth, expect) in enumerate(cases):
        p = isogit("clone", repo["remote"], str(tmp_path / f"refused-{i}"), token, auth=auth, ok=False)
        assert p.returncode == 1 and expect in p.stderr, (token[:8], auth, p.stderr)
        if expect == "403":
            assert "Invalid or expired token" in p.stderr
    p = isogit("ls-remote", repo["remote"].replace("/blank.git", "/nope.git"), repo["token"], auth="bearer", ok=False)
    assert p.returncode == 1 and "403" in p.stderr
