"""Imports (route 10) from a second Git server on loopback (C ``git http-backend``).

The default server refuses everything but public https; the import server below runs
with the operator allowances (loopback network, plain http, a private CA), which is
how the real clone paths are exercised.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from forkutil import fsck, refs_of, storage_dir, wait_for

from artifactd.services.imports import plan_remote
from artifactd.testing import GitClient, ServerProcess, temporary_database
from artifactd.testing.remote import GitRemoteServer, make_self_signed_cert
from artifactd.testing.server import free_port

SIZE_LIMIT = 400_000


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> GitRemoteServer:
    """Bare repos: upstream.git (HEAD trunk, branches trunk/dev, tags), big.git (> limit)."""
    root = tmp_path_factory.mktemp("remote-root")
    home = tmp_path_factory.mktemp("remote-home")
    g = GitClient(home)
    work = g.make_repo(home / "w", commits=4, branch="trunk")
    g.run("tag", "-a", "v1", "-m", "v1", cwd=work)
    g.run("checkout", "-q", "-b", "dev", cwd=work)
    for i in range(3):
        (work / f"dev{i}.txt").write_text(f"dev {i}\n")
        g.run("add", ".", cwd=work)
        g.run("commit", "-q", "-m", f"dev {i}", cwd=work)
    g.run("checkout", "-q", "trunk", cwd=work)
    g.run("clone", "-q", "--bare", str(work), str(root / "upstream.git"))
    big = g.make_repo(home / "big", commits=1)
    (big / "noise.bin").write_bytes(os.urandom(SIZE_LIMIT + 100_000))
    g.run("add", ".", cwd=big)
    g.run("commit", "-q", "-m", "noise", cwd=big)
    g.run("clone", "-q", "--bare", str(big), str(root / "big.git"))
    g.run("init", "-q", "--bare", "-b", "trunk", str(root / "empty.git"))
    cert, key = make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    srv = GitRemoteServer(root, certfile=cert, keyfile=key).start()
    srv.cert = cert  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def plain_remote(remote: GitRemoteServer) -> GitRemoteServer:
    srv = GitRemoteServer(remote.root).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def isrv(tmp_path_factory, remote: GitRemoteServer) -> ServerProcess:
    """artifactd with the operator allowances for a loopback remote."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        srv = ServerProcess(tmp_path_factory.mktemp("importer") / "data", database_url=url, extra_env={
            "ARTIFACTD_IMPORT_ALLOW_NETWORKS": "127.0.0.0/8",
            "ARTIFACTD_IMPORT_ALLOW_HTTP": "true",
            "ARTIFACTD_IMPORT_CA_FILE": str(remote.cert),  # type: ignore[attr-defined]
            "ARTIFACTD_IMPORT_MAX_BYTES": str(SIZE_LIMIT),
        }).start()
        yield srv
        srv.stop()


def start_import(srv: ServerProcess, name: str, **body) -> dict:
    with srv.api() as c:
        r = c.post(f"/namespaces/imp/repos/{name}/import", json=body)
    assert r.status_code == 201, r.text
    return r.json()["result"]


def wait_settled(srv: ServerProcess, name: str) -> dict:
    """The repo as listed once it is no longer importing."""
    def settled():
        with srv.api() as c:
            items = c.get("/namespaces/imp/repos", params={"search": name, "limit": 200}).json()["result"]
        item = next((x for x in items if x["name"] == name), None)
        return item if item and item["status"] != "importing" else None
    return wait_for(settled, timeout=120, what=f"import of {name}")


def test_refused_urls_on_a_default_server(server: ServerProcess):
    """https only; loopback, private, link-local and metadata addresses refused."""
    cases = [
        ("ftp://example.com/r.git", 10100), ("file:///etc/passwd", 10100), ("ext::sh -c id", 10100),
        ("not a url", 10100), ("http://example.com/r.git", 10100), ("https://", 10100), (5, 10100),
        ("https://127.0.0.1/r.git", 10104), ("https://localhost/r.git", 10104), ("https://[::1]/r.git", 10104),
        ("https://169.254.169.254/latest/meta-data/", 10104), ("https://10.1.2.3/r.git", 10104),
        ("https://192.168.0.1/r.git", 10104), ("https://[::ffff:127.0.0.1]/r.git", 10104),
        ("https://2130706433/r.git", 10104), ("https://0.0.0.0/r.git", 10104),
        ("https://100.100.100.200/r.git", 10104), ("https://[fd00:ec2::254]/r.git", 10104),
        ("https://[64:ff9b::7f00:1]/r.git", 10104), ("https://user:pw@127.0.0.1/r.git", 10104),
    ]
    with server.api() as c:
        for url, code in cases:
            name = f"ssrf-{secrets.token_hex(3)}"
            r = c.post(f"/namespaces/default/repos/{name}/import", json={"url": url})
            assert r.status_code in (400, 422) and r.json()["errors"][0]["code"] == code, (url, r.text)
            assert "pw" not in r.text
            assert c.get(f"/namespaces/default/repos/{name}").status_code == 404
        for body in ({"url": "https://example.com/r.git", "depth": 0}, {"url": "https://example.com/r.git",
                     "branch": "a..b"}, {"url": "https://example.com/r.git", "read_only": "no"}, {}):
            r = c.post("/namespaces/default/repos/bad-input/import", json=body)
            assert r.status_code == 400 and r.json()["errors"][0]["code"] == 10100, (body, r.text)


def test_address_pinning_plan():
    """The checked addresses are the ones git is told to connect to."""
    class S:
        import_allow_http = False
        import_allow_networks = "127.0.0.0/8"

    calls = []

    def fake_dns(host, port, type=0):
        calls.append((host, port))
        return [(2, 1, 6, "", ("127.0.0.7", port))]

    from artifactd.services.imports import git_import_config

    plan = plan_remote("https://u:p%40ss@git.example.test:8443/a/b.git?x=1#frag", S, resolve=fake_dns)
    assert calls == [("git.example.test", 8443)]
    assert plan.url == "https://git.example.test:8443/a/b.git?x=1" and plan.password == "p@ss"
    assert plan.source == "git:https://git.example.test:8443/a/b.git"
    cfg = dict(git_import_config(plan, type("T", (), {"import_allow_http": False, "import_ca_file": "",
                                                       "import_timeout_seconds": 60, "git_fsck_objects": True})))
    assert cfg["http.curloptResolve"] == "git.example.test:8443:127.0.0.7"
    assert cfg["http.followRedirects"] == "false" and cfg["protocol.allow"] == "never"
    assert "p@ss" not in repr(plan)
    assert plan_remote("https://github.com/facebook/react.git", S,
                       resolve=lambda h, p, type=0: [(2, 1, 6, "", ("140.82.121.3", p))]).source == "github:facebook/react"


def test_import_over_https_roundtrip(isrv: ServerProcess, remote: GitRemoteServer, git: GitClient, tmp_path: Path):
    res = start_import(isrv, "up-all", url=f"{remote.base_url}/upstream.git", description="imported")
    assert set(res) >= {"id", "name", "description", "default_branch", "remote", "token"}
    item = wait_settled(isrv, "up-all")
    assert item["status"] == "ready", item
    assert item["default_branch"] == "trunk" and item["description"] == "imported"
    assert item["source"] == f"git:{remote.base_url}/upstream.git"
    mirror = tmp_path / "m.git"
    git.run("clone", "-q", "--mirror", res["remote"], str(mirror), token=res["token"])
    fsck(mirror)
    expected = refs_of(git, remote.root / "upstream.git")
    assert refs_of(git, mirror) == expected
    assert git.out("symbolic-ref", "HEAD", cwd=mirror) == "refs/heads/trunk"
    config = (storage_dir(isrv, res["id"]) / "config").read_text()
    assert "127.0.0.1" not in config and "remote" not in config
    fsck(storage_dir(isrv, res["id"]))
    # An imported repo forks like any other.
    with isrv.api() as c:
        r = c.post("/namespaces/imp/repos/up-all/fork", json={"name": "up-fork", "default_branch_only": False})
    assert r.status_code == 201, r.text


def test_import_branch_depth_read_only_over_http(isrv: ServerProcess, plain_remote: GitRemoteServer,
                                                 git: GitClient, tmp_path: Path):
    res = start_import(isrv, "up-dev", url=f"{plain_remote.base_url}/upstream.git", branch="dev", depth=2,
                       read_only=True)
    assert res["default_branch"] == "dev"
    item = wait_settled(isrv, "up-dev")
    assert item["status"] == "ready" and item["read_only"] is True, item
    clone = tmp_path / "c"
    git.run("clone", "-q", res["remote"], str(clone), token=res["token"])
    heads = git.out("for-each-ref", "--format=%(refname)", "refs/remotes", cwd=clone).splitlines()
    assert heads == ["refs/remotes/origin/HEAD", "refs/remotes/origin/dev"]
    assert git.out("rev-list", "--count", "HEAD", cwd=clone) == "2"
    assert (storage_dir(isrv, res["id"]) / "shallow").exists()
    p = git.run("push", "origin", "HEAD:x", cwd=clone, token=res["token"], check=False)
    assert p.returncode != 0 and b"read-only" in p.stderr
    # A shallow repo forks too, shallow file and all.
    with isrv.api() as c:
        fork = c.post("/namespaces/imp/repos/up-dev/fork", json={"name": "up-dev-fork"}).json()["result"]
    git.run("clone", "-q", fork["remote"], str(tmp_path / "f"), token=fork["token"])
    fsck(storage_dir(isrv, fork["id"]))


def test_import_of_an_empty_remote(isrv: ServerProcess, remote: GitRemoteServer, git: GitClient, tmp_path: Path):
    """An empty repository is a git repository (unlike a web page that git reads as one)."""
    res = start_import(isrv, "empty", url=f"{remote.base_url}/empty.git")
    item = wait_settled(isrv, "empty")
    assert item["status"] == "ready" and item["default_branch"] == "trunk", item
    src = git.make_repo(tmp_path / "s", commits=1, branch="trunk")
    git.run("push", "-q", res["remote"], "trunk", cwd=src, token=res["token"])


def _proc_cmdlines() -> bytes:
    out = bytearray()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out += Path(f"/proc/{pid}/cmdline").read_bytes() + b"\n"
            except OSError:
                pass
    return bytes(out)


def test_credentials_used_once_never_kept(isrv: ServerProcess, remote: GitRemoteServer, git: GitClient,
                                          tmp_path: Path):
    user, password = remote.username, remote.password
    remote._gate.clear()
    remote.stalled.clear()
    url = f"https://{user}:{password.replace('@', '%40')}@127.0.0.1:{remote.port}/stall/private/upstream.git"
    res = start_import(isrv, "private-up", url=url)
    assert password not in str(res)
    try:
        assert remote.stalled.wait(60)
        # While git waits on the remote: the repo is importing, and no process list shows the secret.
        assert password.encode() not in _proc_cmdlines()
        with isrv.api() as c:
            r = c.get("/namespaces/imp/repos/private-up")
            assert r.status_code == 409 and r.json()["errors"][0]["code"] == 10302
            r = c.post("/namespaces/imp/tokens", json={"repo": "private-up"})
            assert r.status_code == 409 and r.json()["errors"][0]["code"] == 10302
            r = c.get("/namespaces/imp/repos/private-up/log")
            assert r.status_code == 409
        p = git.run("ls-remote", res["remote"], token=res["token"], check=False)
        assert p.returncode != 0 and b"not ready" in p.stderr
    finally:
        remote.release()
    item = wait_settled(isrv, "private-up")
    assert item["status"] == "ready", item
    assert any(r.authorization and r.authorization.startswith("Basic ") for r in remote.requests
               if "/private/" in r.path)
    assert item["source"] == f"git:{remote.base_url}/stall/private/upstream.git"
    clone = tmp_path / "c.git"
    git.run("clone", "-q", "--mirror", res["remote"], str(clone), token=res["token"])
    assert refs_of(git, clone) == refs_of(git, remote.root / "upstream.git")
    # Nowhere at rest: repo storage, database, server log, API replies.
    sdir = storage_dir(isrv, res["id"])
    for f in sdir.rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes() and user.encode() not in f.read_bytes(), f
    if not isrv.database_url:
        for f in isrv.data_dir.glob("artifactd.db*"):
            assert password.encode() not in f.read_bytes()
    else:
        from sqlalchemy import create_engine, text
        from artifactd.store.db import normalize_url
        eng = create_engine(normalize_url(isrv.database_url))
        with eng.connect() as conn:
            dump = "".join(str(conn.execute(text(f"SELECT * FROM {t}")).all())
                           for t in ("repos", "repo_jobs", "audit_events"))
            assert "repo.import" in dump
        eng.dispose()
        assert password not in dump and user not in dump
    assert password not in isrv.log_path.read_text()
    with isrv.api() as c:
        assert password not in c.get("/namespaces/imp/repos/private-up").text


@pytest.mark.parametrize("case,code", [
    ("no-credentials", 10106), ("wrong-password", 10106), ("missing-repo", 10200), ("missing-branch", 10200),
    ("not-git", 10104), ("redirect", 10104), ("upstream-502", 10401), ("refused", 10401), ("too-big", 10402),
])
def test_import_failures_are_visible(isrv: ServerProcess, remote: GitRemoteServer, case: str, code: int):
    base = remote.base_url
    body = {
        "no-credentials": {"url": f"{base}/private/upstream.git"},
        "wrong-password": {"url": f"https://{remote.username}:nope-{secrets.token_hex(4)}@127.0.0.1:{remote.port}"
                                  "/private/upstream.git"},
        "missing-repo": {"url": f"{base}/nothing-here.git"},
        "missing-branch": {"url": f"{base}/upstream.git", "branch": "no-such-branch"},
        "not-git": {"url": f"{base}/notgit/upstream.git"},
        "redirect": {"url": f"{base}/redirect/upstream.git"},
        "upstream-502": {"url": f"{base}/error/upstream.git"},
        "refused": {"url": f"https://127.0.0.1:{free_port()}/upstream.git"},
        "too-big": {"url": f"{base}/big.git"},
    }[case]
    name = f"fail-{case}"
    start_import(isrv, name, **body)
    item = wait_settled(isrv, name)
    assert item["status"] == "failed" and item["error"]["code"] == code, item
    with isrv.api() as c:
        r = c.get(f"/namespaces/imp/repos/{name}")
        assert r.json()["errors"][0]["code"] == code and r.status_code >= 400, r.text
        assert "nope-" not in r.text and "nope-" not in str(item)
        r = c.post("/namespaces/imp/tokens", json={"repo": name})
        assert r.json()["errors"][0]["code"] == code
        assert c.delete(f"/namespaces/imp/repos/{name}").status_code == 202
        assert c.get(f"/namespaces/imp/repos/{name}").status_code == 404
    assert "nope-" not in isrv.log_path.read_text()


def test_import_interrupted_by_a_crash_fails_visibly(isrv: ServerProcess, remote: GitRemoteServer):
    """Last in this module: it kills the import server and starts it again."""
    remote._gate.clear()
    remote.stalled.clear()
    start_import(isrv, "interrupted", url=f"{remote.base_url}/stall/upstream.git")
    try:
        assert remote.stalled.wait(60)
        isrv.stop(sig=9)
    finally:
        remote.release()
    isrv.start()
    item = wait_settled(isrv, "interrupted")
    assert item["status"] == "failed" and "interrupted" in item["error"]["message"], item
    with isrv.api() as c:
        r = c.get("/namespaces/imp/repos/interrupted")
        assert r.status_code == 502 and r.json()["errors"][0]["code"] == 10401


def test_import_time_limit(isrv: ServerProcess, remote: GitRemoteServer):
    """After the crash test: restarted with a 2 s limit, a remote that never answers fails."""
    isrv.stop()
    isrv.extra_env["ARTIFACTD_IMPORT_TIMEOUT_SECONDS"] = "2"
    isrv.start()
    remote._gate.clear()
    try:
        start_import(isrv, "too-slow", url=f"{remote.base_url}/stall/upstream.git")
        item = wait_settled(isrv, "too-slow")
    finally:
        remote.release()
    assert item["status"] == "failed" and item["error"]["code"] == 10401, item
    assert "2 seconds" in item["error"]["message"]
