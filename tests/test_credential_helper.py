"""``artifactd credential-helper``: plain ``git clone <remote>`` with no token pasted.

The real git binary, a sandboxed global config written by ``credential-helper install``,
and a real server; the helper's credential comes from the environment (API token) or
from a stored login file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from binding_util import artifactd_cmd, unique

from artifactd.testing import GitClient, ServerProcess


@pytest.fixture
def helper_git(tmp_path: Path, server: ServerProcess) -> GitClient:
    """git whose environment carries the artifactd credential (not the token itself)."""
    g = GitClient(tmp_path / "home")
    g.env.update(ARTIFACTD_URL=server.base_url, ARTIFACTD_API_TOKEN=server.api_token,
                 ARTIFACTD_ACCOUNT_ID=server.account_id, XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
                 PATH=os.environ["PATH"])
    g.config.write_text(g.config.read_text() + "[credential]\n\thelper = store\n")  # must not get our tokens
    return g


def install(g: GitClient, *extra: str) -> str:
    p = subprocess.run([*artifactd_cmd(), "credential-helper", *extra, "install"], env=g.env, capture_output=True,
                       text=True, check=True)
    return p.stdout


def ask(g: GitClient, request: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*artifactd_cmd(), "credential-helper", *args, "get"], env=g.env, input=request,
                          capture_output=True, text=True, timeout=60)


def seed(server: ServerProcess, git: GitClient, tmp_path: Path, ns: str, name: str) -> tuple[dict, Path]:
    repo = server.create_repo(ns, name)
    work = git.make_repo(tmp_path / f"seed-{name}", commits=4)
    git.run("push", "-q", repo["remote"], "main", cwd=work, token=repo["token"])
    return repo, work


def test_clone_push_and_lazy_fetches_without_a_token(server: ServerProcess, helper_git: GitClient, git: GitClient,
                                                     tmp_path: Path):
    ns = unique("ch")
    repo, work = seed(server, git, tmp_path, ns, "app")
    out = install(helper_git)
    assert f"credential.{server.base_url}.useHttpPath = true" in out
    cfg = helper_git.run("config", "--global", "--get-all", f"credential.{server.base_url}.helper").stdout.decode()
    assert cfg.split("\n")[0] == "" and cfg.split("\n")[1].endswith("git-credential-artifactd")

    # Plain clone and push: no token, no header.
    clone = tmp_path / "clone"
    helper_git.run("clone", "-q", repo["remote"], str(clone))
    assert helper_git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "HEAD", cwd=work)
    (clone / "new.txt").write_text("pushed through the helper\n")
    helper_git.run("add", ".", cwd=clone)
    helper_git.run("commit", "-q", "-m", "via helper", cwd=clone)
    helper_git.run("push", "-q", "origin", "main", cwd=clone)
    assert git.out("ls-remote", repo["remote"], "refs/heads/main", token=repo["token"]).split()[0] == \
        helper_git.out("rev-parse", "HEAD", cwd=clone)
    # Nothing was stored: the minted tokens are short-lived and written nowhere.
    assert not (helper_git.home / ".git-credentials").exists()

    # A blobless clone fetches blobs lazily, in new git processes, long after the clone:
    # each one asks the helper again.
    lazy = tmp_path / "lazy"
    helper_git.run("clone", "-q", "--filter=blob:none", "--no-checkout", repo["remote"], str(lazy))
    missing = helper_git.out("rev-list", "--objects", "--missing=print", "--all", cwd=lazy)
    assert sum(line.startswith("?") for line in missing.splitlines()) >= 4  # blobs not fetched yet
    helper_git.run("checkout", "-q", "main", cwd=lazy)
    helper_git.run("checkout", "-q", "HEAD~3", cwd=lazy)
    assert (lazy / "file0.txt").read_text() == "content 0\n" and not (lazy / "file3.txt").exists()

    # The same with a one-off header instead: the clone works, the later lazy fetch cannot.
    plain = GitClient(tmp_path / "plain-home")
    header = tmp_path / "header"
    plain.run("clone", "-q", "--filter=blob:none", "--no-checkout", repo["remote"], str(header), token=repo["token"])
    failed = plain.run("checkout", "-q", "main", cwd=header, check=False)
    assert failed.returncode != 0 and b"could not read Username" in failed.stderr

    # Each Git process minted its own write token of 15 minutes.
    with server.api() as c:
        tokens = c.get(f"/namespaces/{ns}/repos/app/tokens", params={"per_page": 100}).json()["result"]
    minted = [t for t in tokens if t["scope"] == "write"][:-1]  # all but the create token
    assert len(minted) >= 4
    now = dt.datetime.now(dt.timezone.utc)
    for t in minted:
        left = dt.datetime.fromisoformat(t["expires_at"].replace("Z", "+00:00")) - now
        assert dt.timedelta(minutes=13) < left <= dt.timedelta(minutes=15, seconds=2)


def test_read_scope_helper(server: ServerProcess, helper_git: GitClient, git: GitClient, tmp_path: Path):
    ns = unique("chr")
    repo, _ = seed(server, git, tmp_path, ns, "ro")
    install(helper_git, "--scope", "read", "--ttl", "120")
    clone = tmp_path / "clone"
    helper_git.run("clone", "-q", repo["remote"], str(clone))
    denied = helper_git.run("push", "origin", "HEAD:refs/heads/x", cwd=clone, check=False)
    assert denied.returncode != 0 and b"Insufficient permissions" in denied.stderr


def test_protocol_answers(server: ServerProcess, helper_git: GitClient, git: GitClient, tmp_path: Path):
    ns = unique("chp")
    seed(server, git, tmp_path, ns, "p")
    host = server.base_url.split("://", 1)[1]
    path = f"git/{server.account_id}/{ns}/p.git"

    p = ask(helper_git, f"protocol=http\nhost={host}\npath={path}\n\n")
    got = dict(line.split("=", 1) for line in p.stdout.splitlines())
    assert p.returncode == 0 and set(got) == {"username", "password", "password_expiry_utc"}
    assert got["password"].startswith("art_v1_") and "?" not in got["password"]
    assert 0 < int(got["password_expiry_utc"]) - time.time() <= 901
    ok = git.run("ls-remote", f"http://x:{got['password']}@{host}/{path}")
    assert b"refs/heads/main" in ok.stdout

    # Not our server, or not a repo path: no answer, so git moves on.
    for request in (f"protocol=http\nhost=example.com\npath={path}\n\n",
                    f"protocol=https\nhost={host}\npath={path}\n\n",
                    f"protocol=http\nhost={host}\npath=something/else\n\n"):
        p = ask(helper_git, request)
        assert p.returncode == 0 and p.stdout == "", request
    # A host named with --host answers (e.g. a per-account Git host), with the path form
    # that has no account segment.
    p = ask(helper_git, f"protocol=http\nhost=git.example.test\npath=git/{ns}/p.git\n\n", "--host",
            "git.example.test")
    assert "password=art_v1_" in p.stdout
    # Without the path (useHttpPath unset) the helper says how to fix it.
    p = ask(helper_git, f"protocol=http\nhost={host}\n\n")
    assert p.stdout == "" and "useHttpPath" in p.stderr
    # A repo that does not exist: the API's error on stderr, no credential.
    p = ask(helper_git, f"protocol=http\nhost={host}\npath=git/{server.account_id}/{ns}/nope.git\n\n")
    assert p.stdout == "" and "NOT_FOUND (10200)" in p.stderr
    # store and erase accept the protocol and do nothing.
    for action in ("store", "erase"):
        p = subprocess.run([*artifactd_cmd(), "credential-helper", action], env=helper_git.env, text=True,
                           input=f"protocol=http\nhost={host}\nusername=x\npassword=secret\n\n", capture_output=True)
        assert p.returncode == 0 and p.stdout == ""


def test_stored_login(server: ServerProcess, git: GitClient, tmp_path: Path):
    """With no token in the environment the helper uses ``artifactd login``'s stored OAuth
    login (refreshing it when it expires), and only for the server that issued it."""
    from artifactd.testing.identity import new_user, oauth_login

    ns = unique("chl")
    repo, work = seed(server, git, tmp_path, ns, "l")
    g = GitClient(tmp_path / "lhome")
    cfg_home = tmp_path / "lhome" / ".config"
    g.env.update(XDG_CONFIG_HOME=str(cfg_home), PATH=os.environ["PATH"])
    email, password = new_user(server)
    grant = oauth_login(server, email, password)
    creds = cfg_home / "artifactd" / "credentials.json"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"servers": {server.base_url: {
        "client_id": "artifactd-cli", "access_token": grant["access_token"], "refresh_token": grant["refresh_token"],
        "expires_at": 0, "scope": grant["scope"]}}, "default_server": server.base_url}))  # already expired
    creds.chmod(0o600)
    install(g)
    clone = tmp_path / "clone"
    g.run("clone", "-q", repo["remote"], str(clone))
    assert g.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "HEAD", cwd=work)
    refreshed = json.loads(creds.read_text())["servers"][server.base_url]
    assert refreshed["access_token"] != grant["access_token"] and refreshed["expires_at"] > time.time()

    # Pointed at another server, the login is not sent there.
    host = server.base_url.split("://", 1)[1]
    other = {**g.env, "ARTIFACTD_URL": "http://127.0.0.1:9"}
    p = subprocess.run([*artifactd_cmd(), "credential-helper", "get"], env=other, text=True, capture_output=True,
                       input=f"protocol=http\nhost={host}\npath=git/x/y/z.git\n\n")
    assert p.stdout == ""
    # An expired login whose refresh token is spent says to log in again.
    creds.write_text(json.dumps({"servers": {server.base_url: {**refreshed, "expires_at": 0,
                                                               "refresh_token": grant["refresh_token"]}},
                                 "default_server": server.base_url}))
    p = subprocess.run([*artifactd_cmd(), "credential-helper", "get"], env=g.env, text=True, capture_output=True,
                       input=f"protocol=http\nhost={host}\npath=git/{server.account_id}/{ns}/l.git\n\n")
    assert p.stdout == "" and "UNAUTHENTICATED (10000)" in p.stderr and "artifactd login" in p.stderr
