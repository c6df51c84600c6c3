"""`artifactd serve`: first-start bootstrap, restarts, public URL and per-account Git hosts."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from artifactd.testing import GitClient, ServerProcess


def test_bootstrap_once_and_restart_keeps_everything(tmp_path: Path, database_url: str, git: GitClient):
    if database_url:
        # a separate database so this server bootstraps its own account
        from artifactd.testing import temporary_database
        ctx = temporary_database(database_url)
        url = ctx.__enter__()
    else:
        ctx, url = None, ""
    try:
        srv = ServerProcess(tmp_path / "data", database_url=url).start()
        try:
            first_log = srv.log_path.read_text()
            assert srv.api_token in first_log and srv.account_id in first_log
            boot = json.loads((srv.data_dir / "bootstrap.json").read_text())
            assert {k: boot[k] for k in ("account_id", "api_token")} == {"account_id": srv.account_id,
                                                                          "api_token": srv.api_token}
            # identity: the bootstrap admin's one-time password sits next to them (not in the log)
            assert set(boot) == {"account_id", "api_token", "admin_email", "admin_password"}
            assert boot["admin_password"] not in first_log
            assert len(srv.account_id) == 32 and int(srv.account_id, 16) >= 0
            assert (srv.data_dir / "bootstrap.json").stat().st_mode & 0o777 == 0o600
            repo = srv.create_repo("default", "kept")
            src = git.make_repo(tmp_path / "src")
            git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
        finally:
            srv.stop()
        size_before = srv.log_path.stat().st_size
        srv2 = ServerProcess(srv.data_dir, database_url=url, port=srv.port).start()
        try:
            later = srv2.log_path.read_text()[size_before:]
            assert srv.api_token not in later
            assert srv2.account_id == srv.account_id
            clone = tmp_path / "clone"
            git.run("clone", "-q", repo["remote"], str(clone), token=repo["token"])
            assert git.out("rev-parse", "HEAD", cwd=clone) == git.out("rev-parse", "HEAD", cwd=src)
        finally:
            srv2.stop()
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)


def test_public_url_and_host_template(tmp_path: Path, git: GitClient):
    srv = ServerProcess(tmp_path / "data")
    srv.extra_args = ["--public-url", f"http://git.test:{srv.port}", "--git-host-template",
                      "{account_id}.git.test"]
    srv.start()
    try:
        repo = srv.create_repo("default", "hosted")
        host = f"{srv.account_id}.git.test"
        assert repo["remote"] == f"http://{host}/git/default/hosted.git"
        # The account comes from the Host header; the path form keeps working.
        remote = f"http://{host}:{srv.port}/git/default/hosted.git"
        resolve = f"http.curloptResolve={host}:{srv.port}:127.0.0.1"
        src = git.make_repo(tmp_path / "src")
        git.run("-c", resolve, "push", remote, "main", cwd=src, token=repo["token"])
        path_form = f"{srv.base_url}/git/{srv.account_id}/default/hosted.git"
        out = git.run("ls-remote", path_form, token=repo["token"]).stdout
        assert b"refs/heads/main" in out
        r = httpx.get(f"{srv.base_url}/git/default/hosted.git/info/refs?service=git-upload-pack",
                      headers={"Host": f"{'f' * 32}.git.test", "Authorization": f"Bearer {repo['token']}"})
        assert r.status_code == 403  # another account's host: the token does not open it
        r = httpx.get(f"{srv.base_url}/git/default/hosted.git/info/refs?service=git-upload-pack",
                      headers={"Authorization": f"Bearer {repo['token']}"})
        assert r.status_code == 404  # no account in the path and none in the host
    finally:
        srv.stop()


def test_no_secret_in_server_log(server: ServerProcess, repo: dict, git: GitClient, tmp_path: Path):
    src = git.make_repo(tmp_path / "src")
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    scheme, rest = repo["remote"].split("://", 1)
    git.run("ls-remote", f"{scheme}://user:{repo['token'].split('?')[0]}@{rest}")
    httpx.get(repo["remote"] + "/info/refs?service=git-upload-pack",
              headers={"Authorization": "Bearer art_v1_" + "a" * 40})
    text = server.log_path.read_text()
    assert repo["token"].split("?")[0] not in text
    assert text.count(server.api_token) == 1  # only the one-time bootstrap banner


def test_data_dir_is_private(server: ServerProcess):
    assert server.data_dir.stat().st_mode & 0o777 == 0o700


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_workers_die_with_a_killed_parent_and_the_port_is_free_again(tmp_path: Path, when: str):
    """--workers N: SIGKILL of the serving process must not leave workers holding the port,
    also when it comes while the workers are still starting (they then learn of it late)."""
    import os

    from artifactd.testing.server import temporary_database

    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        _workers_die_with_parent(tmp_path, url, when)


def _workers(pid: int) -> set[int]:
    return {p for p in _children(pid) if "multiprocessing.resource_tracker" not in
            Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")}


def _workers_die_with_parent(tmp_path: Path, database_url: str, when: str) -> None:
    import os
    import signal
    import time

    srv = ServerProcess(tmp_path / "data", database_url=database_url, extra_args=["--workers", "2"])
    try:
        if when == "serving":
            srv.start()
            workers = _workers(srv.proc.pid)
        else:
            srv.launch()
            deadline = time.monotonic() + 30
            while len(workers := _workers(srv.proc.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
        assert len(workers) >= 2, workers
        os.kill(srv.proc.pid, signal.SIGKILL)  # the parent only, not its process group
        srv.proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
        srv.start()  # same port, same data dir
        with srv.api() as c:
            assert c.get("/namespaces").status_code == 200
    finally:
        srv.stop()
