"""Content without Git (routes 11-16) and archives, against a repo pushed with real git."""

from __future__ import annotations

import http.client
import io
import json
import os
import secrets
import tarfile
import zipfile
from urllib.parse import urlsplit

import pytest
from forkutil import commit_file

from artifactd.testing import GitClient, ServerProcess, temporary_database

HTML = "<html><body><script>fetch('/steal')</script>hi</body></html>\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Its own server: the 33 MiB blob that shows the content routes' 413 is over the
    default push limit for one file (32 MiB, reference section 6), so this server allows
    larger files."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        srv = ServerProcess(tmp_path_factory.mktemp("content-server") / "data", database_url=url,
                            extra_env={"ARTIFACTD_MAX_FILE_BYTES": str(64 * 1024 * 1024)}).start()
        yield srv
        srv.stop()


@pytest.fixture(scope="module")
def content_repo(server: ServerProcess, tmp_path_factory) -> dict:
    """main: files, dirs, binary, html, json, symlink, exec, big zero file; a merge;
    branch feature/x; annotated tag v1 and lightweight tag light."""
    home = tmp_path_factory.mktemp("content")
    git = GitClient(home / "home")
    repo = server.create_repo("content", f"c-{secrets.token_hex(3)}")
    work = home / "w"
    git.run("init", "-q", "-b", "main", str(work))
    first = commit_file(git, work, "README.md", "# hello\n", "first\n\nbody line")
    (work / "src").mkdir()
    (work / "src" / "app.py").write_text("print('hi')\n")
    (work / "src" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (work / "src" / "run.sh").chmod(0o755)
    (work / "page.html").write_text(HTML)
    (work / "data.json").write_text(json.dumps({"a": 1}))
    (work / "logo.png").write_bytes(PNG)
    (work / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (work / "link").symlink_to("README.md")
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "tree of things", cwd=work)
    second = git.out("rev-parse", "HEAD", cwd=work)
    git.run("tag", "-a", "v1", "-m", "release one", cwd=work)
    git.run("checkout", "-q", "-b", "feature/x", cwd=work)
    side = commit_file(git, work, "feature.txt", "feature\n", "feature work")
    git.run("checkout", "-q", "main", cwd=work)
    main_only = commit_file(git, work, "main.txt", "main\n", "main work")
    git.run("merge", "-q", "--no-ff", "-m", "merge feature", "feature/x", cwd=work)
    merge = git.out("rev-parse", "HEAD", cwd=work)
    (work / "huge.bin").write_bytes(b"\0" * (33 * 1024 * 1024))
    git.run("add", "huge.bin", cwd=work)
    git.run("commit", "-q", "-m", "huge", cwd=work)
    head = git.out("rev-parse", "HEAD", cwd=work)
    git.run("tag", "light", merge, cwd=work)
    git.run("push", "-q", repo["remote"], "main", "feature/x", "v1", "light", cwd=work, token=repo["token"])
    ls = {}
    for line in git.out("ls-tree", "-r", "HEAD", cwd=work).splitlines():
        meta, path = line.split("\t")
        ls[path] = meta.split()
    return {**repo, "work": work, "git": git, "first": first, "second": second, "side": side,
            "main_only": main_only, "merge": merge, "head": head, "ls": ls,
            "base": f"/namespaces/content/repos/{repo['name']}",
            "v1_tag": git.out("rev-parse", "v1", cwd=work)}


def test_log_refs_first_parent_and_paging(server: ServerProcess, content_repo: dict):
    r = content_repo
    with server.api() as c:
        res = c.get(f"{r['base']}/log")
        assert res.status_code == 200
        log = res.json()["result"]
        assert [x["hash"] for x in log] == [r["head"], r["merge"], r["main_only"], r["second"], r["first"]]
        assert r["side"] not in [x["hash"] for x in log]  # first-parent walk
        first = log[-1]
        assert set(first) == {"hash", "treeHash", "message", "author", "committer", "parents", "authoredAt",
                              "committedAt"}
        assert first["message"] == "first\n\nbody line" and first["parents"] == []
        assert first["author"] == {"name": "Test User", "email": "test@example.com"}
        assert first["authoredAt"] == 1767225600 and log[1]["parents"] == [r["main_only"], r["side"]]
        for ref in ("HEAD", "main", "refs/heads/main", r["head"]):
            assert c.get(f"{r['base']}/log", params={"ref": ref}).json()["result"][0]["hash"] == r["head"], ref
        for ref in ("v1", "refs/tags/v1"):  # annotated tag, peeled
            assert c.get(f"{r['base']}/log", params={"ref": ref}).json()["result"][0]["hash"] == r["second"]
        assert c.get(f"{r['base']}/log", params={"ref": "light"}).json()["result"][0]["hash"] == r["merge"]
        assert c.get(f"{r['base']}/log", params={"ref": "feature/x"}).json()["result"][0]["hash"] == r["side"]
        assert c.get(f"{r['base']}/log", params={"ref": "nope"}).json()["result"] == []
        assert c.get(f"{r['base']}/log", params={"ref": "0" * 40}).json()["result"] == []
        page = c.get(f"{r['base']}/log", params={"limit": 2, "offset": 1}).json()
        assert [x["hash"] for x in page["result"]] == [r["merge"], r["main_only"]]
        assert page["result_info"]["next_offset"] == 3
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}, {"ref": ""}):
            res = c.get(f"{r['base']}/log", params=bad)
            assert res.status_code == 400 and res.json()["errors"][0]["code"] == 10100, bad
        assert c.get("/namespaces/content/repos/no-such-repo/log").status_code == 404


def test_commit_and_tree(server: ServerProcess, content_repo: dict):
    r = content_repo
    with server.api() as c:
        res = c.get(f"{r['base']}/commit/{r['second']}")
        assert res.status_code == 200 and "immutable" in res.headers["cache-control"]
        assert res.headers["etag"] == f'"{r["second"]}"'
        commit = res.json()["result"]
        assert commit["hash"] == r["second"] and commit["message"] == "tree of things"
        again = c.get(f"{r['base']}/commit/{r['second']}", headers={"if-none-match": res.headers["etag"]})
        assert again.status_code == 304
        tree = c.get(f"{r['base']}/tree/{commit['treeHash']}")
        assert "immutable" in tree.headers["cache-control"]
        entries = {e["name"]: e for e in tree.json()["result"]}
        assert entries["src"]["mode"] == "40000" and entries["src"]["type"] == "tree"
        assert entries["README.md"]["type"] == "blob" and entries["README.md"]["mode"] == "100644"
        assert entries["link"]["type"] == "symlink" and entries["link"]["mode"] == "120000"
        sub = c.get(f"{r['base']}/tree/{entries['src']['hash']}").json()["result"]
        assert {e["name"]: e["type"] for e in sub} == {"app.py": "blob", "run.sh": "exec"}
        assert {e["name"]: e["mode"] for e in sub}["run.sh"] == "100755"
        # Wrong kinds and missing objects are 404; malformed hashes 400.
        assert c.get(f"{r['base']}/commit/{commit['treeHash']}").status_code == 404
        assert c.get(f"{r['base']}/tree/{r['second']}").status_code == 404
        assert c.get(f"{r['base']}/commit/{'1' * 40}").json()["errors"][0]["code"] == 10200
        for bad in ("abc", "G" * 40, r["second"].upper()):
            res = c.get(f"{r['base']}/commit/{bad}")
            assert res.status_code == 400 and res.json()["errors"][0]["code"] == 10100


def test_blob_file_and_limits(server: ServerProcess, content_repo: dict):
    r = content_repo
    ls = r["ls"]
    with server.api() as c:
        res = c.get(f"{r['base']}/blob/{ls['blob.bin'][2]}")
        assert res.status_code == 200 and res.content == bytes(range(256)) * 4
        assert res.headers["content-type"] == "application/octet-stream"
        assert res.headers["content-length"] == "1024" and "immutable" in res.headers["cache-control"]
        assert c.get(f"{r['base']}/blob/{r['second']}").status_code == 404  # a commit, not a blob
        res = c.get(f"{r['base']}/blob/{ls['huge.bin'][2]}")
        assert res.status_code == 413 and res.json()["errors"][0]["code"] == 10402

        res = c.get(f"{r['base']}/file", params={"ref": "main", "path": "src/app.py"})
        assert res.status_code == 200 and res.content == b"print('hi')\n"
        assert res.headers["content-type"] == "application/octet-stream"
        assert res.headers["cache-control"] == "private, no-cache"
        res = c.get(f"{r['base']}/file", params={"ref": r["second"], "path": "./src//app.py"})
        assert res.status_code == 200 and "immutable" in res.headers["cache-control"]
        assert c.get(f"{r['base']}/file", params={"ref": "v1", "path": "link"}).content == b"README.md"
        assert c.get(f"{r['base']}/file", params={"ref": "feature/x", "path": "feature.txt"}).status_code == 200
        for ref, path in (("main", "nope.txt"), ("main", "src"), ("nope", "README.md"), ("main", "../README.md"),
                          ("main", "src/../README.md"), ("main", "/README.md"), ("v1", "main.txt")):
            res = c.get(f"{r['base']}/file", params={"ref": ref, "path": path})
            assert res.status_code == 404, (ref, path)
            assert res.json() == {"result": None, "success": False, "messages": [],
                                  "errors": [{"code": 10200, "message": "File not found"}]}
        for params in ({"ref": "main"}, {"path": "README.md"}, {"ref": "", "path": "x"}):
            res = c.get(f"{r['base']}/file", params=params)
            assert res.status_code == 400 and res.json()["errors"][0]["code"] == 10100
        res = c.get(f"{r['base']}/file", params={"ref": "main", "path": "huge.bin"})
        assert res.status_code == 413


def test_raw_types_and_browser_safety(server: ServerProcess, content_repo: dict):
    r = content_repo
    with server.api() as c:
        res = c.get(f"{r['base']}/raw/main/page.html")
        assert res.status_code == 200 and res.text == HTML
        assert res.headers["content-type"] == "text/html; charset=utf-8"
        assert res.headers["x-content-type-options"] == "nosniff"
        csp = res.headers["content-security-policy"]
        assert "sandbox" in csp and "default-src 'none'" in csp and "allow-scripts" not in csp
        expect = {"data.json": "application/json", "logo.png": "image/png", "blob.bin": "application/octet-stream",
                  "src/app.py": "text/plain", "README.md": "text/markdown"}
        for path, ctype in expect.items():
            res = c.get(f"{r['base']}/raw/main/{path}")
            assert res.status_code == 200 and res.headers["content-type"].split(";")[0] == ctype, path
            assert res.headers["content-length"] == str(len(res.content))
        res = c.get(f"{r['base']}/raw/feature/x/feature.txt")  # a ref with a slash
        assert res.status_code == 200 and res.content == b"feature\n"
        res = c.get(f"{r['base']}/raw/{r['second']}/src/app.py")
        assert res.status_code == 200 and "immutable" in res.headers["cache-control"]
        assert c.get(f"{r['base']}/raw/main/nope").status_code == 404
        assert c.get(f"{r['base']}/raw/main/huge.bin").status_code == 413
    # Traversal sent verbatim (no client-side dot-segment removal).
    u = urlsplit(server.api_base)
    for path in ("raw/main/../README.md", "raw/main/src/..%2F..%2FREADME.md", "raw/main/%2e%2e/README.md",
                 "raw/main//README.md"):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("GET", f"{u.path}{r['base']}/{path}", headers={"Authorization": f"Bearer {server.api_token}"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 404 and b"# hello" not in body, (path, resp.status, body[:200])


def _names(members: list[str], prefix: str) -> set[str]:
    return {m[len(prefix):] for m in members if m.startswith(prefix) and not m.endswith("/")}


def test_archives_stream_the_tree(server: ServerProcess, content_repo: dict):
    r = content_repo
    with server.api() as c:
        with c.stream("GET", f"{r['base']}/archive/v1.tar.gz") as res:
            assert res.status_code == 200 and res.headers["content-type"] == "application/gzip"
            assert res.headers.get("transfer-encoding") == "chunked"
            assert "attachment" in res.headers["content-disposition"]
            data = res.read()
        prefix = f"{r['name']}-v1/"
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = _names([m.name for m in tar.getmembers() if not m.isdir()], prefix)
            assert names == {"README.md", "src/app.py", "src/run.sh", "page.html", "data.json", "logo.png",
                             "blob.bin", "link"}
            assert tar.extractfile(prefix + "src/app.py").read() == b"print('hi')\n"
            assert tar.getmember(prefix + "src/run.sh").mode & 0o111
            assert tar.getmember(prefix + "link").issym()

        res = c.get(f"{r['base']}/archive/feature/x.zip")
        assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(res.content)) as z:
            names = _names(z.namelist(), f"{r['name']}-feature-x/")
            assert "feature.txt" in names and "main.txt" not in names
            assert z.read(f"{r['name']}-feature-x/README.md") == b"# hello\n"
        res = c.get(f"{r['base']}/archive/{r['second']}.tar.gz")
        assert res.status_code == 200 and "immutable" in res.headers["cache-control"]
        assert c.get(f"{r['base']}/archive/nope.tar.gz").status_code == 404
        for bad in ("main.rar", ".zip", "main"):
            assert c.get(f"{r['base']}/archive/{bad}").status_code == 400, bad
        assert c.get("/namespaces/content/repos/no-such/archive/main.zip").status_code == 404
