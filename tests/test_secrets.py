"""Secrets (issue 7 item 6): after a full run, no plaintext repo token or API token is in
the database, the logs, any error reply, the command line or environment of any process
the server started (git and its children), or any file of the data directory.

The one deliberate exception: the bootstrap API token of a fresh install is written to
``bootstrap.json`` (mode 0600) and printed once in the start-up banner; the test checks
that it appears there and nowhere else.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from artifactd.testing import GitClient
from tests.crash_harness import store_rows
from tests.hardening_util import descendants, own_servers


def _new_api_token(server) -> str:
    """A second API token, made through the core service (there is no REST route yet)."""
    from artifactd.config import Settings
    from artifactd.services import Core
    from artifactd.services.apitokens import EDIT, READ

    core = Core(Settings(data_dir=server.data_dir, database_url=server.database_url))
    try:
        with core.db.session() as s:
            _, plaintext = core.api_tokens.create(s, server.account_id, "secrets-test", [READ, EDIT])
    finally:
        core.close()
    return plaintext


def _sample_processes(root: int, seen: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        for pid, (cmd, _state) in descendants(root).items():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if cmd:
                seen[(pid, cmd)] = env
        time.sleep(0.001)


def test_no_plaintext_secret_anywhere_after_a_full_run(tmp_path: Path):
    git = GitClient(tmp_path / "home")
    env = {"ARTIFACTD_RATE_LIMIT_GIT": "40", "ARTIFACTD_RATE_LIMIT_WINDOW_SECONDS": str(366 * 86400), "ARTIFACTD_MAX_FILE_BYTES": "300000"}
    with own_servers(tmp_path, env=env, args=["--log-level", "debug"]) as (srv,):
        api_token = _new_api_token(srv)
        secrets_: list[str] = [api_token]
        replies: list[bytes] = []
        seen: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_processes, args=(srv.proc.pid, seen, stop), daemon=True)
        sampler.start()
        try:
            with srv.api(api_token) as c:
                repos = []
                for i in range(3):
                    r = c.post("/namespaces/sec/repos", json={"name": f"s{i}"}).json()["result"]
                    repos.append(r)
                    secrets_.append(r["token"])
                    t = c.post("/namespaces/sec/tokens", json={"repo": f"s{i}", "scope": "read"}).json()["result"]
                    secrets_.append(t["plaintext"])
                    r["read"] = t
                src = git.make_repo(tmp_path / "src", commits=2)
                (src / "big.bin").write_bytes(os.urandom(250_000))
                git.run("add", ".", cwd=src)
                git.run("commit", "-qm", "big", cwd=src)
                for r in repos:
                    # Bearer header, Basic password in the URL, and the percent-encoded full token.
                    git.run("push", r["remote"], "main", cwd=src, token=r["token"])
                    secret = r["token"].split("?")[0]
                    with_basic = r["remote"].replace("http://", f"http://agent:{secret}@")
                    git.run("clone", "-q", with_basic, str(tmp_path / f"clone-{r['name']}"))
                    encoded = r["remote"].replace("http://", f"http://x:{quote(r['read']['plaintext'], safe='')}@")
                    git.run("ls-remote", encoded)
                    # Refusals: a write with the read token, another repo's token, a revoked one.
                    p = git.run("push", r["remote"], "main:other", cwd=src, token=r["read"]["plaintext"], check=False)
                    replies.append(p.stderr)
                (src / "huge.bin").write_bytes(os.urandom(400_000))  # over the file limit
                git.run("add", ".", cwd=src)
                git.run("commit", "-qm", "huge", cwd=src)
                replies.append(git.run("push", repos[0]["remote"], "main", cwd=src, token=repos[0]["token"],
                                       check=False).stderr)
                wrong = repos[1]["remote"] + "/info/refs?service=git-upload-pack"
                for header in (f"Bearer {repos[0]['token']}", "Basic " + base64.b64encode(
                        f"x:{repos[0]['token']}".encode()).decode(), f"Bearer {api_token}"):
                    replies.append(httpx.get(wrong, headers={"Authorization": header}).content)
                # Repo tokens never open the control plane; errors never echo them.
                replies.append(httpx.get(f"{srv.api_base}/namespaces", headers={
                    "Authorization": f"Bearer {repos[0]['token']}"}).content)
                replies.append(c.post("/namespaces/sec/tokens", json={"repo": repos[0]["token"]}).content)
                replies.append(c.post("/namespaces/sec/repos", json={"name": repos[0]["token"]}).content)
                replies.append(c.get(f"/namespaces/sec/repos/s0/tokens?cursor={repos[0]['token']}").content)
                tid = repos[2]["read"]["id"]
                assert c.delete(f"/namespaces/sec/tokens/{tid}").status_code == 200
                replies.append(httpx.get(repos[2]["remote"] + "/info/refs?service=git-upload-pack",
                                         headers={"Authorization": f"Bearer {repos[2]['read']['plaintext']}"}).content)
                for _ in range(45):  # into the Git rate limit
                    replies.append(httpx.get(repos[1]["remote"] + "/info/refs?service=git-upload-pack",
                                             headers={"Authorization": f"Bearer {repos[1]['token']}"}).content)
                assert any(b"Rate limit" in r for r in replies)
        finally:
            stop.set()
            sampler.join()
        db_dump = "\n".join(repr(row) for table in ("accounts", "api_tokens", "namespaces", "repos", "repo_tokens",
                                                    "rate_limit_counters", "server_leases")
                            for row in store_rows(srv, f"SELECT * FROM {table}")).encode()
    log = srv.log_path.read_bytes()
    files = {p: p.read_bytes() for p in srv.data_dir.rglob("*") if p.is_file() and p.name != "bootstrap.json"}
    git_procs = {cmd: env for (_, cmd), env in seen.items() if b"git" in cmd.split(b"\0")[0]}
    assert git_procs, "no git process was observed; the process check would prove nothing"

    needles = set()
    for s in secrets_:
        secret = s.split("?")[0]
        needles |= {secret, quote(s, safe=""), base64.b64encode(f"x:{s}".encode()).decode()}
        needles.add(secret[len("art_v1_"):] if secret.startswith("art_v1_") else secret[len("artd_"):])
    for needle in needles:
        n = needle.encode()
        assert n not in db_dump, needle
        assert n not in log, needle
        for reply in replies:
            assert n not in reply, needle
        for path, data in files.items():
            assert n not in data, (needle, path)
        for cmd, env in seen.items():
            assert n not in cmd[1] and n not in env, (needle, cmd)
    # The bootstrap token: in the banner of the first start, once, and nowhere else.
    boot = srv.api_token.encode()
    assert log.count(boot) == 1 and b"api_token:  " + boot in log
    assert boot not in db_dump and not any(boot in d for d in files.values())
    print(f"secrets: {len(needles)} secret forms checked against {len(db_dump)} bytes of store rows, "
          f"{len(log)} bytes of log, {len(replies)} replies, {len(files)} files, {len(seen)} process samples "
          f"({len(git_procs)} of git)")
