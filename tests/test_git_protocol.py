"""Git smart HTTP behaviours, each driven by the stock git binary against the server."""

from __future__ import annotations

import base64
import gzip
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from artifactd.testing import GitClient, ServerProcess


def pushed(git: GitClient, repo: dict, tmp_path: Path, commits: int = 5, branch: str = "main") -> Path:
    src = git.make_repo(tmp_path / "src", commits=commits, branch=branch)
    git.run("push", repo["remote"], f"{branch}:{branch}", cwd=src, token=repo["token"])
    return src


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_clone_each_protocol_version(git: GitClient, repo: dict, tmp_path: Path, version: str):
    src = pushed(git, repo, tmp_path)
    git.run("tag", "-a", "v1", "-m", "annotated", cwd=src)
    git.run("push", repo["remote"], "v1", cwd=src, token=repo["token"])
    clone = tmp_path / f"clone{version}"
    git.run("-c", f"protocol.version={version}", "clone", "-q", repo["remote"], str(clone), token=repo["token"])
    assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "main", cwd=src)
    assert git.out("rev-parse", "v1^{}", cwd=clone) == git.out("rev-parse", "main", cwd=src)
    # fetch after a new commit, same protocol
    (src / "new.txt").write_text("new\n")
    git.run("add", ".", cwd=src)
    git.run("commit", "-qm", "new", cwd=src)
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    git.run("-c", f"protocol.version={version}", "pull", "-q", "--ff-only", cwd=clone, token=repo["token"])
    assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "main", cwd=src)


def test_shallow_deepen_since_unshallow(git: GitClient, repo: dict, tmp_path: Path):
    src = pushed(git, repo, tmp_path, commits=8)
    for version in ("0", "2"):
        clone = tmp_path / f"shallow{version}"
        pv = ("-c", f"protocol.version={version}")
        git.run(*pv, "clone", "-q", "--depth", "1", repo["remote"], str(clone), token=repo["token"])
        assert git.out("rev-list", "--count", "HEAD", cwd=clone) == "1"
        git.run(*pv, "fetch", "-q", "--deepen", "2", cwd=clone, token=repo["token"])
        assert git.out("rev-list", "--count", "HEAD", cwd=clone) == "3"
        git.run(*pv, "fetch", "-q", "--unshallow", cwd=clone, token=repo["token"])
        assert git.out("rev-list", "--count", "HEAD", cwd=clone) == "8"
        assert git.out("rev-parse", "--is-shallow-repository", cwd=clone) == "false"
    since = tmp_path / "since"
    # make_repo dates commits 2026-01-01..2026-01-08
    git.run("clone", "-q", "--shallow-since", "2026-01-05T12:00:00Z", repo["remote"], str(since), token=repo["token"])
    assert git.out("rev-list", "--count", "HEAD", cwd=since) == "3"


def test_partial_clone_and_lazy_blob_fetch(git: GitClient, repo: dict, tmp_path: Path):
    src = pushed(git, repo, tmp_path, commits=4)
    clone = tmp_path / "partial"
    # extraHeader given as config of the clone, so later lazy fetches authenticate too
    git.run("clone", "-q", "--filter=blob:none", "--no-checkout", repo["remote"], str(clone), token=repo["token"])
    git.run("config", "http.extraHeader", f"Authorization: Bearer {repo['token']}", cwd=clone)
    missing = git.out("rev-list", "--objects", "--missing=print", "HEAD", cwd=clone)
    assert any(line.startswith("?") for line in missing.splitlines()), "blobs should be missing after blob:none"
    git.run("checkout", "-q", "main", cwd=clone)  # triggers lazy fetches of blobs
    assert (clone / "file3.txt").read_text() == (src / "file3.txt").read_text()
    # an old blob fetched by its id alone
    old_blob = git.out("rev-parse", "HEAD~3:file0.txt", cwd=src)
    assert git.out("cat-file", "-p", old_blob, cwd=clone) == "content 0"


def test_empty_repo_clones_onto_server_default_branch(server: ServerProcess, git: GitClient, tmp_path: Path):
    repo = server.create_repo("default", "empty-" + tmp_path.name[-6:].replace("_", "x"), default_branch="develop")
    clone = tmp_path / "empty"
    p = git.run("clone", repo["remote"], str(clone), token=repo["token"])
    assert b"empty repository" in p.stderr
    assert git.out("symbolic-ref", "HEAD", cwd=clone) == "refs/heads/develop"
    # and the first push onto it sets up HEAD for later clones
    (clone / "a").write_text("a\n")
    git.run("add", "a", cwd=clone)
    git.run("commit", "-qm", "first", cwd=clone)
    git.run("push", "-q", "origin", "develop", cwd=clone, token=repo["token"])
    second = tmp_path / "second"
    git.run("-c", "protocol.version=0", "clone", "-q", repo["remote"], str(second), token=repo["token"])
    assert git.out("symbolic-ref", "HEAD", cwd=second) == "refs/heads/develop"


def test_ref_names_kept_byte_exact(git: GitClient, repo: dict, tmp_path: Path):
    src = pushed(git, repo, tmp_path)
    names = ["feature/deep/nested/x", "refs/notes/agents", "release/ünïcødé-名前", "refs/pull/1/head"]
    for n in names:
        full = n if n.startswith("refs/") else f"refs/heads/{n}"
        git.run("update-ref", full, "HEAD", cwd=src)
        git.run("push", repo["remote"], f"{full}:{full}", cwd=src, token=repo["token"])
    out = git.run("ls-remote", repo["remote"], token=repo["token"]).stdout
    for n in names:
        full = n if n.startswith("refs/") else f"refs/heads/{n}"
        assert ("\t" + full + "\n").encode() in out
    # and deleting refs works
    git.run("push", repo["remote"], ":refs/pull/1/head", cwd=src, token=repo["token"])
    assert b"refs/pull/1/head" not in git.run("ls-remote", repo["remote"], token=repo["token"]).stdout


def test_gzip_request_body_is_inflated(repo: dict, git: GitClient, tmp_path: Path):
    pushed(git, repo, tmp_path)
    body = b"0014command=ls-refs\n0001000csymrefs\n0000"
    r = httpx.post(
        repo["remote"] + "/git-upload-pack", content=gzip.compress(body),
        headers={"Authorization": f"Bearer {repo['token']}", "Git-Protocol": "version=2",
                 "Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and b"refs/heads/main" in r.content
    r = httpx.post(
        repo["remote"] + "/git-upload-pack", content=b"not gzip at all",
        headers={"Authorization": f"Bearer {repo['token']}", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 400
    r = httpx.post(repo["remote"] + "/git-upload-pack", content=body,
                   headers={"Authorization": f"Bearer {repo['token']}", "Content-Encoding": "br"})
    assert r.status_code == 415


def test_large_chunked_push_after_probe(git: GitClient, repo: dict, tmp_path: Path):
    """Bodies over http.postBuffer go out chunked, preceded by the 4-byte 0000 probe."""
    src = git.make_repo(tmp_path / "big", commits=1)
    import os
    (src / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git.run("add", ".", cwd=src)
    git.run("commit", "-qm", "random", cwd=src)
    env = {"GIT_TRACE_CURL": str(tmp_path / "curl.log"), "GIT_TRACE_CURL_NO_DATA": "1"}
    git.run("-c", "http.postBuffer=65536", "push", repo["remote"], "main", cwd=src, token=repo["token"], env=env)
    trace = (tmp_path / "curl.log").read_text(errors="replace")
    assert "Transfer-Encoding: chunked" in trace and "Content-Length: 4" in trace
    clone = tmp_path / "clone"
    git.run("clone", "-q", repo["remote"], str(clone), token=repo["token"])
    assert (clone / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()


def test_concurrent_pushes_never_lose_an_acknowledged_update(git: GitClient, repo: dict, tmp_path: Path):
    base = pushed(git, repo, tmp_path, commits=1)
    results: dict[int, subprocess.CompletedProcess] = {}
    shas: dict[int, str] = {}
    workers = []
    for i in range(8):
        w = tmp_path / f"w{i}"
        git.run("clone", "-q", str(base), str(w))
        (w / f"w{i}.txt").write_text(str(i))
        git.run("add", ".", cwd=w)
        git.run("commit", "-qm", f"worker {i}", cwd=w)
        shas[i] = git.out("rev-parse", "HEAD", cwd=w)
        workers.append(w)

    def push(i: int) -> None:
        results[i] = git.run("push", repo["remote"], "HEAD:main", cwd=workers[i], token=repo["token"], check=False)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, p in results.items() if p.returncode == 0]
    assert len(winners) == 1, {i: p.stderr[-300:] for i, p in results.items()}
    for i, p in results.items():
        if i not in winners:
            assert b"rejected" in p.stderr or b"failed to push" in p.stderr
    tip = git.run("ls-remote", repo["remote"], "refs/heads/main", token=repo["token"]).stdout.split()[0].decode()
    assert tip == shas[winners[0]]


def test_basic_auth_forms(repo: dict, git: GitClient, tmp_path: Path):
    pushed(git, repo, tmp_path)
    remote = repo["remote"]
    secret = repo["token"].split("?")[0]
    scheme, rest = remote.split("://", 1)
    for password in (secret, quote(repo["token"], safe="")):
        url = f"{scheme}://x:{password}@{rest}"
        assert b"refs/heads/main" in git.run("ls-remote", url).stdout
    # the secret in the username slot is refused with a challenge (401)
    r = httpx.get(remote + "/info/refs?service=git-upload-pack",
                  headers={"Authorization": "Basic " + base64.b64encode(f"{secret}:".encode()).decode()})
    assert r.status_code == 401
    assert git.run("ls-remote", f"{scheme}://{secret}@{rest}", check=False).returncode != 0


def test_token_opens_exactly_one_repo(server: ServerProcess, git: GitClient, tmp_path: Path):
    a = server.create_repo("default", "one-" + tmp_path.name[-6:].replace("_", "x"))
    b = server.create_repo("default", "two-" + tmp_path.name[-6:].replace("_", "x"))
    r = httpx.get(b["remote"] + "/info/refs?service=git-upload-pack", headers={"Authorization": f"Bearer {a['token']}"})
    assert r.status_code == 403 and r.text.strip() == "Invalid or expired token"
    missing = a["remote"].replace("/one-", "/nope-")
    r = httpx.get(missing + "/info/refs?service=git-upload-pack", headers={"Authorization": f"Bearer {a['token']}"})
    assert r.status_code == 403 and r.text.strip() == "Invalid or expired token"


def test_revoked_and_deleted_stop_at_once(server: ServerProcess, repo: dict):
    url = repo["remote"] + "/info/refs?service=git-upload-pack"
    hdr = {"Authorization": f"Bearer {repo['token']}"}
    assert httpx.get(url, headers=hdr).status_code == 200
    with server.api() as c:
        tok = c.post("/namespaces/default/tokens", json={"repo": repo["name"]}).json()["result"]
        h2 = {"Authorization": f"Bearer {tok['plaintext']}"}
        assert httpx.get(url, headers=h2).status_code == 200
        assert c.delete(f"/namespaces/default/tokens/{tok['id']}").status_code == 200
        assert httpx.get(url, headers=h2).status_code == 403
        assert c.delete(f"/namespaces/default/repos/{repo['name']}").status_code == 202
    assert httpx.get(url, headers=hdr).status_code == 403


def test_tampered_expiry_suffix_is_ignored(repo: dict):
    url = repo["remote"] + "/info/refs?service=git-upload-pack"
    forged = repo["token"].split("?")[0] + "?expires=1"
    assert httpx.get(url, headers={"Authorization": f"Bearer {forged}"}).status_code == 200


def test_read_only_repo_refuses_push(server: ServerProcess, git: GitClient, tmp_path: Path):
    repo = server.create_repo("default", "ro-" + tmp_path.name[-6:].replace("_", "x"), read_only=True)
    src = git.make_repo(tmp_path / "src")
    p = git.run("push", repo["remote"], "main", cwd=src, token=repo["token"], check=False)
    assert p.returncode != 0 and b"Repository is read-only" in p.stderr
    r = httpx.post(repo["remote"] + "/git-receive-pack", content=b"0000",
                   headers={"Authorization": f"Bearer {repo['token']}"})
    assert r.status_code == 403


def test_dumb_and_unknown_requests(repo: dict):
    hdr = {"Authorization": f"Bearer {repo['token']}"}
    assert httpx.get(repo["remote"] + "/info/refs", headers=hdr).status_code == 403
    assert httpx.get(repo["remote"] + "/info/refs?service=git-upload-archive", headers=hdr).status_code == 403
    assert httpx.get(repo["remote"] + "/HEAD", headers=hdr).status_code == 404
    assert httpx.get(repo["remote"] + "/git-upload-pack", headers=hdr).status_code == 405


def test_advertisement_headers(repo: dict):
    hdr = {"Authorization": f"Bearer {repo['token']}"}
    r = httpx.get(repo["remote"] + "/info/refs?service=git-upload-pack", headers=hdr)
    assert r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert "no-cache" in r.headers["cache-control"]
    assert r.content.startswith(b"001e# service=git-upload-pack\n0000")
    r = httpx.get(repo["remote"] + "/info/refs?service=git-upload-pack", headers={**hdr, "Git-Protocol": "version=2"})
    assert r.content.startswith(b"000eversion 2\n")
    assert b"ls-refs=unborn" in r.content and b"filter" in r.content
    # a malformed Git-Protocol header is ignored, never passed to git
    r = httpx.get(repo["remote"] + "/info/refs?service=git-upload-pack",
                  headers={**hdr, "Git-Protocol": "version=2;rm -rf /"})
    assert r.status_code == 200 and r.content.startswith(b"001e# service=")


def test_corrupt_pack_is_refused_in_band(git: GitClient, repo: dict, tmp_path: Path):
    pushed(git, repo, tmp_path)
    zero = "0" * 40
    cmd = f"{zero} {'1' * 40} refs/heads/evil\0report-status side-band-64k\n".encode()
    body = f"{len(cmd) + 4:04x}".encode() + cmd + b"0000" + b"PACK\x00\x00\x00\x02\x00\x00\x00\x05garbage"
    r = httpx.post(repo["remote"] + "/git-receive-pack", content=body,
                   headers={"Authorization": f"Bearer {repo['token']}",
                            "Content-Type": "application/x-git-receive-pack-request"})
    assert r.headers.get("content-type", "").startswith("application/x-git-receive-pack-result") or r.status_code == 500
    assert b"<html" not in r.content.lower()
    if r.status_code == 200:
        assert b"unpack" in r.content and b"unpack ok" not in r.content
    refs = git.run("ls-remote", repo["remote"], token=repo["token"]).stdout
    assert b"refs/heads/evil" not in refs
