"""Rate limits and size limits (issue 7 items 1 and 2), against real server processes."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import httpx
import pytest

from artifactd.testing import GitClient, ServerProcess
from tests.hardening_util import commit_file, envelope_error, fsck, object_files, own_servers, refs, storage_of

YEAR = str(366 * 86400)  # a window no test run can cross


# -- rate limits ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> ServerProcess:
    env = {"ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "6", "ARTIFACTD_RATE_LIMIT_GIT": "4",
           "ARTIFACTD_RATE_LIMIT_WINDOW_SECONDS": YEAR}
    with own_servers(tmp_path_factory.mktemp("limited"), env=env) as (srv,):
        yield srv


def test_control_plane_limit_per_namespace_with_envelope_and_retry_after(limited: ServerProcess):
    with limited.api() as c:
        codes = [c.get("/namespaces/ns-one/repos").status_code for _ in range(6)]
        assert codes == [200] * 6
        r = c.get("/namespaces/ns-one/repos")
        assert r.status_code == 429
        assert r.headers["content-type"].startswith("application/json")
        code, message = envelope_error(r)
        assert code == 10429 and "Rate limit exceeded" in message
        retry = int(r.headers["retry-after"])
        assert 0 < retry <= int(YEAR)
        # Write routes of the same namespace share its budget; nothing is created.
        r = c.post("/namespaces/ns-one/repos", json={"name": "never"})
        assert r.status_code == 429
        # Another namespace has its own budget; routes without a namespace count per account.
        assert c.get("/namespaces/ns-two/repos").status_code == 200
        assert c.get("/namespaces").status_code == 200
        assert c.post("/namespaces/ns-two/repos", json={"name": "never"}).status_code == 201
        assert c.get("/namespaces/ns-one/repos/never").status_code == 429


def test_unauthenticated_requests_do_not_spend_a_namespace_budget(limited: ServerProcess):
    url = f"{limited.api_base}/namespaces/ns-three/repos"
    for _ in range(20):
        assert httpx.get(url, headers={"Authorization": "Bearer artd_wrong"}).status_code == 401
    with limited.api() as c:
        assert c.get("/namespaces/ns-three/repos").status_code == 200


def test_git_limit_per_repo_text_reply_git_shows_it(limited: ServerProcess, git: GitClient, tmp_path: Path):
    a = limited.create_repo("git-ns", "a")
    b = limited.create_repo("git-ns", "b")
    auth = {"Authorization": f"Bearer {a['token']}"}
    url = a["remote"] + "/info/refs?service=git-upload-pack"
    assert [httpx.get(url, headers=auth).status_code for _ in range(4)] == [200] * 4
    r = httpx.get(url, headers=auth)
    assert r.status_code == 429 and r.headers["content-type"].startswith("text/plain")
    assert int(r.headers["retry-after"]) > 0 and "Rate limit exceeded" in r.text
    p = git.run("ls-remote", a["remote"], token=a["token"], check=False)
    assert p.returncode != 0 and b"Rate limit exceeded" in p.stderr, p.stderr
    # Per repo: the other repo of the namespace is not affected.
    assert git.run("ls-remote", b["remote"], token=b["token"]).returncode == 0


def test_limit_recovers_after_retry_after(tmp_path: Path):
    env = {"ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "3", "ARTIFACTD_RATE_LIMIT_WINDOW_SECONDS": "2"}
    with own_servers(tmp_path, env=env) as (srv,), srv.api() as c:
        for _ in range(20):
            r = c.get("/namespaces/default/repos")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        retry = int(r.headers["retry-after"])
        assert 1 <= retry <= 2
        time.sleep(retry)
        assert c.get("/namespaces/default/repos").status_code == 200


@pytest.mark.parametrize("backend", ["redis", "database"])
def test_two_processes_share_one_budget(tmp_path: Path, backend: str):
    env = {"ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "10", "ARTIFACTD_RATE_LIMIT_GIT": "6",
           "ARTIFACTD_RATE_LIMIT_WINDOW_SECONDS": YEAR, "ARTIFACTD_RATE_LIMIT_BACKEND": backend,
           "ARTIFACTD_RATE_LIMIT_REDIS_URL": os.environ.get("ARTIFACTD_TEST_REDIS", "redis://127.0.0.1:6379/0")}
    with own_servers(tmp_path, 2, env=env) as (one, two):
        statuses = []
        with one.api() as c1, two.api() as c2:
            for i in range(30):
                statuses.append((c1 if i % 2 else c2).get("/namespaces/shared/repos").status_code)
        assert statuses.count(200) == 10 and statuses.count(429) == 20
        assert 200 not in statuses[10:]
        # Git budget per repo, across both processes.
        repo = one.create_repo("gitshared", "r")
        auth = {"Authorization": f"Bearer {repo['token']}"}
        path = "/git/{}/gitshared/r.git/info/refs?service=git-upload-pack".format(one.account_id)
        codes = [httpx.get((one if i % 2 else two).base_url + path, headers=auth).status_code for i in range(12)]
        assert codes.count(200) == 6 and codes.count(429) == 6


def test_memory_backend_is_per_process(tmp_path: Path):
    """Why several processes need ``redis`` or ``database``: in memory, each counts alone."""
    env = {"ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "5", "ARTIFACTD_RATE_LIMIT_WINDOW_SECONDS": YEAR,
           "ARTIFACTD_RATE_LIMIT_BACKEND": "memory"}
    with own_servers(tmp_path, 2, env=env) as (one, two), one.api() as c1, two.api() as c2:
        statuses = [(c1 if i % 2 else c2).get("/namespaces/mem/repos").status_code for i in range(20)]
    assert statuses.count(200) == 10


def test_bad_backend_setting_refuses_to_start(tmp_path: Path):
    with pytest.raises(RuntimeError, match="RATE_LIMIT_BACKEND"):
        with own_servers(tmp_path, env={"ARTIFACTD_RATE_LIMIT_BACKEND": "carrier-pigeon"}):
            pass


def test_unreachable_redis_fails_open(tmp_path: Path):
    env = {"ARTIFACTD_RATE_LIMIT_BACKEND": "redis", "ARTIFACTD_RATE_LIMIT_REDIS_URL": "redis://127.0.0.1:1/0",
           "ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "1"}
    with own_servers(tmp_path, env=env) as (srv,), srv.api() as c:
        assert [c.get("/namespaces/default/repos").status_code for _ in range(3)] == [200] * 3
    assert "rate-limit backend redis failed" in srv.log_path.read_text()


# -- size limits ------------------------------------------------------------------------

SIZES = {"ARTIFACTD_MAX_FILE_BYTES": "100000", "ARTIFACTD_MAX_REPO_BYTES": "400000",
         "ARTIFACTD_MAX_PUSH_BYTES": "300000", "ARTIFACTD_MAX_NEGOTIATION_BYTES": "200000",
         "ARTIFACTD_MAX_INFLATED_REQUEST_BYTES": "250000", "ARTIFACTD_MAX_JSON_BODY_BYTES": "4096",
         "ARTIFACTD_MAX_HEADER_BYTES": "8192"}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> ServerProcess:
    with own_servers(tmp_path_factory.mktemp("small"), env=SIZES) as (srv,):
        yield srv


def _pushed_repo(srv: ServerProcess, git: GitClient, tmp: Path, name: str) -> tuple[dict, Path, Path]:
    repo = srv.create_repo("sizes", name)
    src = git.make_repo(tmp / "src", commits=2)
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    return repo, src, storage_of(srv, "sizes", name)


def _assert_refused_unchanged(git: GitClient, repo: dict, src: Path, bare: Path, reason: bytes, ng: bytes):
    before_refs, before_objects = refs(bare), object_files(bare)
    p = git.run("push", repo["remote"], "main", cwd=src, token=repo["token"], check=False)
    assert p.returncode != 0
    assert reason in p.stderr, p.stderr.decode()
    assert b"! [remote rejected] main -> main (" + ng + b")" in p.stderr, p.stderr.decode()
    assert refs(bare) == before_refs
    assert object_files(bare) == before_objects  # nothing added, no quarantine left behind
    assert fsck(bare).returncode == 0


def test_file_over_limit_is_declined_and_repo_unchanged(small: ServerProcess, git: GitClient, tmp_path: Path):
    repo, src, bare = _pushed_repo(small, git, tmp_path, "file-limit")
    commit_file(git, src, "ok.bin", os.urandom(90_000))
    commit_file(git, src, "dir/big.bin", os.urandom(100_001))
    _assert_refused_unchanged(git, repo, src, bare, b"remote: artifactd: push declined: file dir/big.bin is "
                              b"100001 bytes; the limit is 100000 bytes per file.", b"pre-receive hook declined")
    # Exactly at the limit is fine.
    git.run("reset", "-q", "--hard", "HEAD~1", cwd=src)
    commit_file(git, src, "dir/edge.bin", os.urandom(100_000))
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])


def test_repo_size_limit_declines_and_deletes_still_work(small: ServerProcess, git: GitClient, tmp_path: Path):
    repo, src, bare = _pushed_repo(small, git, tmp_path, "repo-limit")
    git.run("push", repo["remote"], "main:keep", cwd=src, token=repo["token"])
    refused = None
    for i in range(8):
        commit_file(git, src, f"chunk{i}.bin", os.urandom(90_000))
        before_refs, before_objects = refs(bare), object_files(bare)
        p = git.run("push", repo["remote"], "main", cwd=src, token=repo["token"], check=False)
        if p.returncode != 0:
            refused = p
            break
    assert refused is not None, "the repo never reached its size limit"
    assert b"remote: artifactd: push declined: the repository would take" in refused.stderr
    assert b"the limit is 400000 bytes" in refused.stderr
    assert b"(pre-receive hook declined)" in refused.stderr
    assert refs(bare) == before_refs and object_files(bare) == before_objects
    assert fsck(bare).returncode == 0
    # A push that only deletes a ref brings no objects and is allowed.
    git.run("push", repo["remote"], ":keep", cwd=src, token=repo["token"])
    assert "refs/heads/keep" not in refs(bare)


def test_pack_over_push_limit_refused_in_band(small: ServerProcess, git: GitClient, tmp_path: Path):
    repo, src, bare = _pushed_repo(small, git, tmp_path, "push-limit")
    for i in range(4):
        commit_file(git, src, f"p{i}.bin", os.urandom(90_000))
    _assert_refused_unchanged(git, repo, src, bare, b"pack exceeds maximum allowed size", b"unpacker error")


def test_raw_request_limits(small: ServerProcess, repo_on_small: dict):
    auth = {"Authorization": f"Bearer {repo_on_small['token']}"}
    base = repo_on_small["remote"]
    ctype = {"content-type": "application/x-git-upload-pack-request"}
    # Declared too large: refused before git starts.
    r = httpx.post(base + "/git-upload-pack", headers={**auth, **ctype}, content=b"0" * 200_001)
    assert r.status_code == 413 and "exceeds the limit of 200000 bytes" in r.text
    # Not declared (chunked) and too large.
    r = httpx.post(base + "/git-upload-pack", headers={**auth, **ctype},
                   content=iter([b"0" * 50_000] * 5))
    assert r.status_code == 413
    # A gzip bomb: 30 kB on the wire, 30 MB inflated.
    bomb = gzip.compress(b"\0" * 30_000_000)
    assert len(bomb) < 40_000
    r = httpx.post(base + "/git-upload-pack", headers={**auth, **ctype, "content-encoding": "gzip"}, content=bomb)
    assert r.status_code == 413
    # Truncated or trailing-garbage gzip.
    good = gzip.compress(b"0000")
    for body in (good[:-6], good + b"junk", b"not gzip at all"):
        r = httpx.post(base + "/git-upload-pack", headers={**auth, **ctype, "content-encoding": "gzip"},
                       content=body)
        assert r.status_code == 400 and "not valid gzip" in r.text, (body, r.status_code, r.text)
    r = httpx.post(base + "/git-upload-pack", headers={**auth, **ctype, "content-encoding": "br"}, content=b"")
    assert r.status_code == 415


@pytest.fixture
def repo_on_small(small: ServerProcess) -> dict:
    import secrets

    return small.create_repo("sizes", f"raw-{secrets.token_hex(3)}")


def test_json_body_limit(small: ServerProcess):
    with small.api() as c:
        r = c.post("/namespaces/sizes/repos", json={"name": "big-body", "description": "x" * 5000})
        assert r.status_code == 413 and envelope_error(r)[0] == 10100
        r = c.post("/namespaces/sizes/repos", content=iter([b'{"name": "chunked", "description": "'] +
                                                           [b"x" * 1000] * 10 + [b'"}']),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get("/namespaces/sizes/repos/big-body").status_code == 404


def test_header_limit(small: ServerProcess):
    r = httpx.get(small.base_url + "/healthz", headers={"x-filler": "a" * 9000})
    assert r.status_code == 431
    r = httpx.get(small.base_url + "/healthz", headers={f"x-h{i}": "a" * 100 for i in range(100)})
    assert r.status_code == 431
    assert httpx.get(small.base_url + "/healthz", headers={"x-filler": "a" * 4000}).status_code == 200
