"""The binding's methods, run against both backends: remote (a real server over REST) and
local (the core services in-process on a data directory, Git through a server started on
demand). Every test here runs twice and must behave identically on both."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import threading
from pathlib import Path

import pytest
from binding_util import eventually, remote_binding, require_route, require_service, unique

from artifactd.binding import (
    Artifacts,
    ArtifactsError,
    AsyncArtifacts,
    CreateRepoResult,
    RepoInfo,
)
from artifactd.testing import GitClient, ServerProcess, temporary_database


@pytest.fixture(scope="module")
def local_base(tmp_path_factory) -> Artifacts:
    """One local backend for the module (its own data dir and, on PostgreSQL runs, its own
    fresh database), with its Git server started on demand."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        art = Artifacts.local(tmp_path_factory.mktemp("local") / "data", database_url=url)
        yield art
        art.close()


@pytest.fixture(params=["remote", "local"])
def art(request, server: ServerProcess, local_base: Artifacts) -> Artifacts:
    ns = unique("b")
    if request.param == "remote":
        a = remote_binding(server, ns)
        yield a
        a.close()
    else:
        yield local_base.with_namespace(ns)


def git_ready(art: Artifacts) -> None:
    """Local mode: Git reaches the repos through the on-demand server."""
    if art.mode == "local":
        art.serve()


def push_history(git: GitClient, tmp_path: Path, remote: str, token: str) -> Path:
    """Three commits on main (a file in a subdirectory, a binary, an executable) plus a
    side branch; pushed with ``token``."""
    work = tmp_path / f"w-{secrets.token_hex(3)}"
    git.run("init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("# hello\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "first", cwd=work)
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("print('hi')\n")
    (work / "run.sh").write_text("#!/bin/sh\necho run\n")
    (work / "run.sh").chmod(0o755)
    (work / "logo.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "second\n\nwith a body", cwd=work)
    git.run("checkout", "-q", "-b", "side", cwd=work)
    (work / "side.txt").write_text("side\n")
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "side work", cwd=work)
    git.run("checkout", "-q", "main", cwd=work)
    (work / "README.md").write_text("# hello\nmore\n")
    git.run("commit", "-q", "-am", "third", cwd=work)
    git.run("push", "-q", remote, "main", "side", cwd=work, token=token)
    return work


# -- namespace methods ------------------------------------------------------------------


def test_create_get_info_list_delete(art: Artifacts):
    created = art.create("alpha", description="first repo", default_branch="trunk", read_only=True)
    assert isinstance(created, CreateRepoResult)
    assert (created.name, created.description, created.default_branch, created.read_only) == \
        ("alpha", "first repo", "trunk", True)
    assert len(created.id) == 16 and created.token.startswith("art_v1_") and "?expires=" in created.token
    assert created.remote.endswith(f"/{art.namespace}/alpha.git")
    assert created.token not in repr(created)

    repo = art.get("alpha")
    info = repo.info()
    assert isinstance(info, RepoInfo)
    assert (info.id, info.name, info.description, info.default_branch, info.read_only, info.status, info.source,
            info.last_push_at, info.remote) == (created.id, "alpha", "first repo", "trunk", True, "ready", None,
                                                None, created.remote)
    assert info.created_at.tzinfo is not None and abs(info.created_at - dt.datetime.now(dt.timezone.utc)) < \
        dt.timedelta(minutes=5)
    assert art.get("ALPHA").name == "alpha"  # names are case-insensitive, case-preserving

    art.create("beta")
    art.create("gamma")
    page = art.list()
    assert page.total == 3 and page.cursor is None
    assert [r.name for r in page.repos] == ["gamma", "beta", "alpha"]  # newest first
    assert all(r.status == "ready" for r in page.repos)
    seen, cursor = [], None
    while True:
        p = art.list(limit=1, cursor=cursor)
        assert p.total == 3 and len(p.repos) == 1
        seen.append(p.repos[0].name)
        cursor = p.cursor
        if cursor is None:
            break
    assert seen == ["gamma", "beta", "alpha"]

    assert art.delete("beta") is True
    assert art.delete("beta") is False
    with pytest.raises(ArtifactsError) as e:
        art.get("beta")
    assert (e.value.code, e.value.numeric_code) == ("NOT_FOUND", 10200)
    assert art.list().total == 2
    other = art.with_namespace(unique("empty"))
    assert other.list().repos == [] and other.list().total == 0
    assert other.delete("nothing") is False


def test_create_errors(art: Artifacts):
    art.create("taken")
    cases = [
        (lambda: art.create("taken"), "ALREADY_EXISTS", 10201),
        (lambda: art.create("TAKEN"), "ALREADY_EXISTS", 10201),
        (lambda: art.create("-bad"), "INVALID_REPO_NAME", 10101),
        (lambda: art.create("a" * 64), "INVALID_REPO_NAME", 10101),
        (lambda: art.create("x.git"), "INVALID_REPO_NAME", 10101),
        (lambda: art.create("ok", default_branch="a..b"), "INVALID_INPUT", 10100),
        (lambda: art.create("ok", description="d" * 1025), "INVALID_INPUT", 10100),
        (lambda: art.list(limit=0), "INVALID_INPUT", 10100),
        (lambda: art.list(limit=201), "INVALID_INPUT", 10100),
        (lambda: art.list(cursor="not-a-cursor!"), "INVALID_INPUT", 10100),
        (lambda: art.get("missing"), "NOT_FOUND", 10200),
        (lambda: art.with_namespace("-bad-ns").create("x"), "INVALID_INPUT", 10100),
    ]
    for call, code, numeric in cases:
        with pytest.raises(ArtifactsError) as e:
            call()
        assert (e.value.code, e.value.numeric_code, e.value.name) == (code, numeric, code), e.value
        assert e.value.message
    assert [r.name for r in art.list().repos] == ["taken"]  # nothing half-created


# -- tokens -----------------------------------------------------------------------------


def test_tokens(art: Artifacts):
    created = art.create("tok")
    repo = art.get("tok")
    before = dt.datetime.now(dt.timezone.utc)
    w = repo.create_token()
    assert w.scope == "write" and len(w.id) == 16 and w.plaintext.startswith("art_v1_")
    assert dt.timedelta(hours=23, minutes=59) < w.expires_at - before < dt.timedelta(hours=24, minutes=1)
    assert w.plaintext not in repr(w)
    r = repo.create_token("read", 60)
    assert r.scope == "read" and r.expires_at - before < dt.timedelta(seconds=62)

    for bad in (59, 31_536_001, 0, -5, 1.5, "60", True):
        with pytest.raises(ArtifactsError) as e:
            repo.create_token("write", bad)
        assert (e.value.code, e.value.numeric_code) == ("INVALID_TTL", 10103), bad
    for scope in ("admin", "", None):
        with pytest.raises(ArtifactsError) as e:
            repo.create_token(scope, 3600)
        assert e.value.code == "INVALID_INPUT", scope
    repo.create_token("read", 31_536_000)

    listed = repo.list_tokens()
    assert listed.total == 4  # the initial token, w, r and the one-year token
    assert [t.id for t in listed.tokens][1:3] == [r.id, w.id]  # newest first
    assert all(t.state == "active" for t in listed.tokens)

    assert repo.revoke_token(w.id) is True
    assert repo.revoke_token(w.id) is False  # already revoked
    assert repo.revoke_token(r.plaintext) is True  # by plaintext
    assert repo.revoke_token(r.plaintext.split("?")[0]) is False  # the secret alone names it too
    assert repo.revoke_token("0" * 16) is False  # unknown id
    with pytest.raises(ArtifactsError) as e:
        repo.revoke_token("not a token")
    assert e.value.code == "INVALID_INPUT"
    assert {t.id for t in repo.list_tokens().tokens} == {t.id for t in listed.tokens} - {w.id, r.id}

    # A token of another repo is not this repo's to revoke.
    other = art.create("tok-other")
    assert repo.revoke_token(other.token) is False
    assert art.get("tok-other").list_tokens().total == 1
    assert created.token not in repr(listed)


def test_list_tokens_caps_at_30_active(art: Artifacts):
    art.create("many")
    repo = art.get("many")
    for _ in range(31):
        repo.create_token("read", 600)
    listed = repo.list_tokens()
    assert len(listed.tokens) == 30 and listed.total == 32


def test_git_with_binding_tokens(art: Artifacts, git: GitClient, tmp_path: Path):
    """Tokens from the binding open Git (local mode: through the on-demand server)."""
    created = art.create("gitrepo")
    git_ready(art)
    push_history(git, tmp_path, created.remote, created.token)
    repo = art.get("gitrepo")
    eventually(lambda: repo.info().last_push_at, what="last_push_at after a push")

    read = repo.create_token("read", 600)
    clone = tmp_path / "clone"
    git.run("clone", "-q", created.remote, str(clone), token=read.plaintext)
    assert (clone / "src" / "app.py").read_text() == "print('hi')\n"
    denied = git.run("push", created.remote, "HEAD:refs/heads/x", cwd=clone, token=read.plaintext, check=False)
    assert denied.returncode != 0 and b"Insufficient permissions" in denied.stderr

    assert repo.revoke_token(read.plaintext) is True
    gone = git.run("ls-remote", created.remote, token=read.plaintext, check=False)
    assert gone.returncode != 0 and b"Invalid or expired token" in gone.stderr


# -- content (reference §2.3 generation 3) ----------------------------------------------


def test_content_reads(art: Artifacts, server: ServerProcess, git: GitClient, tmp_path: Path):
    require_route(art, server, "content")
    created = art.create("content")
    git_ready(art)
    work = push_history(git, tmp_path, created.remote, created.token)
    repo = art.get("content")
    head = git.out("rev-parse", "main", cwd=work)

    log = repo.log()
    assert [c.message for c in log] == ["third", "second\n\nwith a body", "first"]
    assert log[0].hash == head and log[0].parents == [log[1].hash] and log[2].parents == []
    assert log[0].author.name == "Test User" and log[0].author.email == "test@example.com"
    assert isinstance(log[0].authored_at, int) and log[0].tree_hash == git.out("rev-parse", "main^{tree}", cwd=work)
    assert [c.message for c in repo.log(ref="side")][0] == "side work"
    assert [c.message for c in repo.log(limit=1, offset=1)] == ["second\n\nwith a body"]
    assert repo.log(ref="no-such-branch") == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        with pytest.raises(ArtifactsError) as e:
            repo.log(**bad)
        assert e.value.code == "INVALID_INPUT", bad

    commit = repo.read_commit(head)
    assert commit == log[0]
    assert repo.read_commit("0" * 40) is None
    with pytest.raises(ArtifactsError) as e:
        repo.read_commit("HEAD")
    assert e.value.code == "INVALID_INPUT"

    tree = {t.name: t for t in repo.read_tree(commit.tree_hash)}
    assert {n: (t.mode, t.type) for n, t in tree.items()} == {
        "README.md": ("100644", "blob"), "logo.bin": ("100644", "blob"), "run.sh": ("100755", "exec"),
        "src": ("40000", "tree")}
    assert [t.name for t in repo.read_tree(tree["src"].hash)] == ["app.py"]
    assert repo.read_tree("0" * 40) is None

    blob = repo.read_blob(tree["README.md"].hash)
    assert blob.data == b"# hello\nmore\n" and blob.type == "" and blob.text() == "# hello\nmore\n"
    assert repo.read_blob("0" * 40) is None

    f = repo.read_file("main", "src/app.py")
    assert f.data == b"print('hi')\n" and f.type.startswith("text/plain")
    assert repo.read_file("main", "logo.bin").data == b"\x89PNG\x00\x01\x02"
    assert repo.read_file(head, "README.md").data == b"# hello\nmore\n"
    assert repo.read_file("side", "side.txt").data == b"side\n"
    assert repo.read_file("main", "side.txt") is None
    assert repo.read_file("main", "src") is None  # a directory
    assert repo.read_file("main", "../etc/passwd") is None
    with pytest.raises(ArtifactsError) as e:
        repo.read_file("", "README.md")
    assert e.value.code == "INVALID_INPUT"


def test_content_of_a_missing_repo_raises(art: Artifacts, server: ServerProcess):
    require_route(art, server, "content")
    art.create("gone")
    repo = art.get("gone")
    art.delete("gone")
    with pytest.raises(ArtifactsError) as e:
        repo.read_commit("0" * 40)
    assert e.value.code == "NOT_FOUND"


# -- fork -------------------------------------------------------------------------------


def test_fork(art: Artifacts, server: ServerProcess, git: GitClient, tmp_path: Path):
    require_route(art, server, "fork")
    created = art.create("parent", description="the parent")
    git_ready(art)
    work = push_history(git, tmp_path, created.remote, created.token)
    parent = art.get("parent")

    fork = parent.fork("child")
    assert fork.name == "child" and fork.description == "the parent" and fork.objects and fork.objects > 0
    assert fork.token != created.token and fork.remote.endswith("/child.git")
    info = art.get("child").info()
    assert info.source == f"artifacts:{art.namespace}/parent" and info.status == "ready"
    clone = tmp_path / "fork-clone"
    git.run("clone", "-q", fork.remote, str(clone), token=fork.token)
    assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "main", cwd=work)
    heads = git.out("ls-remote", "--heads", fork.remote, token=fork.token)
    assert "refs/heads/side" not in heads  # default_branch_only defaults to True

    full = parent.fork("child-all", description="all refs", read_only=True, default_branch_only=False)
    assert full.description == "all refs" and full.read_only is True
    assert "refs/heads/side" in git.out("ls-remote", "--heads", full.remote, token=full.token)
    # The parent's token does not open the fork.
    denied = git.run("ls-remote", fork.remote, token=created.token, check=False)
    assert denied.returncode != 0

    with pytest.raises(ArtifactsError) as e:
        parent.fork("child")
    assert e.value.code == "ALREADY_EXISTS"
    with pytest.raises(ArtifactsError) as e:
        parent.fork("bad name")
    assert e.value.code == "INVALID_REPO_NAME"


# -- import -----------------------------------------------------------------------------

IMPORT_ALLOWANCES = {"import_allow_networks": "127.0.0.0/8", "import_allow_http": True}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A second Git server on loopback (C git http-backend) holding up.git: branches trunk
    (HEAD, 3 commits) and dev (2 more)."""
    require_service("artifactd.services.imports")
    require_service("artifactd.testing.remote")
    from artifactd.testing.remote import GitRemoteServer

    root = tmp_path_factory.mktemp("upstream")
    g = GitClient(tmp_path_factory.mktemp("upstream-home"))
    work = g.make_repo(root.parent / "up-work", commits=3, branch="trunk")
    g.run("checkout", "-q", "-b", "dev", cwd=work)
    for i in range(2):
        (work / f"dev{i}.txt").write_text(f"dev {i}\n")
        g.run("add", ".", cwd=work)
        g.run("commit", "-q", "-m", f"dev {i}", cwd=work)
    g.run("checkout", "-q", "trunk", cwd=work)
    g.run("clone", "-q", "--bare", str(work), str(root / "up.git"))
    srv = GitRemoteServer(root).start()
    srv.work = work  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def importers(tmp_path_factory, upstream):
    """A server and a local backend that may import from loopback over plain http."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url_remote, \
            temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url_local:
        srv = ServerProcess(tmp_path_factory.mktemp("importer") / "data", database_url=url_remote, extra_env={
            f"ARTIFACTD_{k.upper()}": str(v).lower() for k, v in IMPORT_ALLOWANCES.items()}).start()
        local = Artifacts.local(tmp_path_factory.mktemp("importer-local") / "data", database_url=url_local,
                                settings=IMPORT_ALLOWANCES)
        yield {"remote": srv, "local": local}
        local.close()
        srv.stop()


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_import(mode: str, importers, upstream, git: GitClient, tmp_path: Path):
    ns = unique("imp")
    if mode == "remote":
        art = remote_binding(importers["remote"], ns)
        require_route(art, importers["remote"], "import")
    else:
        art = importers["local"].with_namespace(ns)
        art.serve()
    url = f"{upstream.base_url}/up.git"

    created = art.import_repo(url, "mirror", description="a copy")
    assert (created.name, created.default_branch, created.description) == ("mirror", "trunk", "a copy")
    repo = art.get("mirror")
    info = repo.info()
    assert info.status == "ready" and info.source and "up.git" in info.source
    heads = git.out("ls-remote", "--heads", created.remote, token=created.token)
    assert git.out("rev-parse", "trunk", cwd=upstream.work) in heads and "refs/heads/dev" in heads

    dev = art.import_repo(url, "dev-only", branch="dev", depth=1, read_only=True)
    assert dev.default_branch == "dev" and dev.read_only is True
    clone = tmp_path / "dev"
    git.run("clone", "-q", dev.remote, str(clone), token=dev.token)
    assert git.out("rev-list", "--count", "HEAD", cwd=clone) == "1"
    assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "dev", cwd=upstream.work)

    quick = art.import_repo(url, "no-wait", wait=False)
    assert quick.name == "no-wait"
    eventually(lambda: art.list().total == 3 and all(r.status == "ready" for r in art.list().repos),
               what="the import without wait to finish")

    with pytest.raises(ArtifactsError) as e:
        art.import_repo(url, "mirror")
    assert e.value.code == "ALREADY_EXISTS"
    for bad in ("ftp://example.com/r.git", "not a url"):
        with pytest.raises(ArtifactsError) as e:
            art.import_repo(bad, unique("bad"))
        assert e.value.code == "INVALID_INPUT", bad
    with pytest.raises(ArtifactsError) as e:
        art.import_repo(f"{upstream.base_url}/missing.git", "nothing")
    assert e.value.code == "NOT_FOUND" and e.value.numeric_code == 10200


# -- async ------------------------------------------------------------------------------


@pytest.fixture(params=["remote", "local"])
def async_art(request, server: ServerProcess, local_base: Artifacts):
    ns = unique("a")
    if request.param == "remote":
        return lambda: AsyncArtifacts(ns, url=server.base_url, account_id=server.account_id,
                                      api_token=server.api_token)
    return lambda: AsyncArtifacts._on_local(local_base._local, ns).with_namespace(ns)


def test_async_binding(async_art):
    async def main():
        async with async_art() as art:
            made = await asyncio.gather(*(art.create(f"r{i}") for i in range(5)))
            assert sorted(m.name for m in made) == [f"r{i}" for i in range(5)]
            page = await art.list(limit=2)
            assert page.total == 5 and len(page.repos) == 2 and page.cursor
            repo = await art.get("r0")
            assert (await repo.info()).name == "r0"
            tok = await repo.create_token("read", 120)
            assert (await repo.list_tokens()).total == 2
            assert await repo.revoke_token(tok.id) is True
            assert await repo.revoke_token(tok.plaintext) is False
            with pytest.raises(ArtifactsError) as e:
                await repo.create_token("read", 10)
            assert e.value.code == "INVALID_TTL"
            with pytest.raises(ArtifactsError) as e:
                await art.get("nope")
            assert e.value.code == "NOT_FOUND"
            assert await art.delete("r0") is True and await art.delete("r0") is False
            assert (await art.list()).total == 4

    asyncio.run(main())


# -- results and errors -----------------------------------------------------------------


def test_results_are_plain_data(art: Artifacts):
    created = art.create("plain")
    d = created.to_dict()
    assert d["token"] == created.token and d["objects"] is None
    info = art.get("plain").info().to_dict()
    json.dumps(info)
    assert info["created_at"].endswith("Z") and info["status"] == "ready"
    tokens = art.get("plain").list_tokens().to_dict()
    assert tokens["total"] == 1 and tokens["tokens"][0]["state"] == "active"


def test_local_mode_shares_its_store_with_the_git_server(local_base: Artifacts, git: GitClient, tmp_path: Path):
    """The in-process binding and the on-demand server process use one SQLite store at
    the same time: pushes through the server while the binding creates repos and tokens."""
    art = local_base.with_namespace(unique("conc"))
    art.serve()
    targets = [art.create(f"push{i}") for i in range(4)]
    src = git.make_repo(tmp_path / "src", commits=2)
    errors: list[BaseException] = []

    def push(t: CreateRepoResult) -> None:
        try:
            for i in range(3):
                git.run("push", "-q", t.remote, f"HEAD:refs/heads/b{i}", cwd=src, token=t.token)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for i in range(10):
        art.create(f"made{i}")
        art.get(f"push{i % 4}").create_token("read", 600)
    for t in threads:
        t.join()
    assert not errors, errors
    assert art.list(limit=200).total == 14
    for t in targets:
        heads = git.out("ls-remote", "--heads", t.remote, token=t.token)
        assert heads.count("refs/heads/b") == 3
        eventually(lambda t=t: art.get(t.name).info().last_push_at, what="last_push_at after a push")
