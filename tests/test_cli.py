"""The ``artifactd`` control-plane CLI, as a user runs it: a subprocess against a real server
(credentials from the environment), checked with git and over REST."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from binding_util import artifactd_cmd, cli_env, require_service, route_exists, unique

from artifactd.testing import GitClient, ServerProcess


def cli(*args: str, env: dict[str, str], input: str | None = None, ok: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([*artifactd_cmd(), *args], env=env, input=input, capture_output=True, text=True,
                       timeout=300, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    if ok:
        assert p.returncode == 0, f"artifactd {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def fields(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^([a-z_]+):[ \t]*(.*)$", text, re.M)}


@pytest.fixture
def env(server: ServerProcess) -> dict[str, str]:
    return cli_env(server)


def test_session(server: ServerProcess, env: dict, git: GitClient, tmp_path: Path):
    ns = unique("cli")
    p = cli("repos", "create", "app", "-n", ns, "--description", "demo", env=env)
    assert p.stdout.startswith(f'Created repo "app" in namespace "{ns}".')
    made = fields(p.stdout)
    assert made["description"] == "demo" and made["default_branch"] == "main" and made["read_only"] == "false"
    assert made["token"] not in p.stderr
    src = git.make_repo(tmp_path / "src", commits=2)
    git.run("push", "-q", made["remote"], "main", cwd=src, token=made["token"])

    cli("repos", "create", "lib", "-n", ns, "--read-only", "--default-branch", "trunk", env=env)
    table = cli("repos", "list", "-n", ns, env=env).stdout
    assert table.index("lib") < table.index("app")  # newest first
    assert re.search(r"lib\s+│ trunk\s+│ true\s+│ ready", table), table
    with server.api() as c:
        rest = c.get(f"/namespaces/{ns}/repos").json()["result"]
        rest_app = c.get(f"/namespaces/{ns}/repos/app").json()["result"]
    assert json.loads(cli("repos", "list", "-n", ns, "--json", env=env).stdout) == rest
    assert json.loads(cli("repos", "list", "-n", ns, "--limit", "1", "--json", env=env).stdout) == rest[:1]
    assert json.loads(cli("repos", "get", "app", "-n", ns, "--json", env=env).stdout) == rest_app
    got = fields(cli("repos", "get", "app", "-n", ns, env=env).stdout)
    assert got["remote"] == made["remote"] and got["last_push_at"].endswith("Z") and got["status"] == "ready"

    p = cli("repos", "issue-token", "app", "-n", ns, "--scope", "read", "--ttl", "600", env=env)
    assert p.stdout.startswith(f'Issued a read token for repo "app" in namespace "{ns}".')
    read = fields(p.stdout)
    git.run("ls-remote", made["remote"], token=read["plaintext"])
    write = json.loads(cli("repos", "issue-token", "app", "-n", ns, "--json", env=env).stdout)
    assert set(write) == {"id", "plaintext", "scope", "expires_at"} and write["scope"] == "write"

    listed = json.loads(cli("tokens", "list", "app", "-n", ns, "--json", env=env).stdout)
    assert [t["id"] for t in listed][:2] == [write["id"], read["id"]] and len(listed) == 3
    assert all("plaintext" not in t for t in listed)
    table = cli("tokens", "list", "app", "-n", ns, env=env).stdout
    assert read["id"] in table and write["id"] in table and read["plaintext"] not in table

    # Revoke by id (route 19) and by plaintext read from stdin (--repo).
    p = cli("tokens", "revoke", read["id"], "-n", ns, "--force", env=env)
    assert p.stdout.strip() == f"Revoked token {read['id']}."
    denied = git.run("ls-remote", made["remote"], token=read["plaintext"], check=False)
    assert denied.returncode != 0 and b"Invalid or expired token" in denied.stderr
    p = cli("tokens", "revoke", "-", "--repo", "app", "-n", ns, "--force", "--json", env=env,
            input=write["plaintext"] + "\n")
    assert json.loads(p.stdout) == {"revoked": True}
    p = cli("tokens", "revoke", "-", "--repo", "app", "-n", ns, "--force", env=env, input=write["plaintext"] + "\n")
    assert "Nothing to revoke" in p.stdout
    revoked = json.loads(cli("tokens", "list", "app", "-n", ns, "--state", "revoked", "--json", env=env).stdout)
    assert {t["id"] for t in revoked} == {read["id"], write["id"]}

    # Destructive commands want confirmation: without a terminal and without --force, refused.
    p = cli("repos", "delete", "lib", "-n", ns, env=env, ok=False)
    assert p.returncode == 1 and "pass --force" in p.stderr
    assert cli("repos", "get", "lib", "-n", ns, "--json", env=env).returncode == 0
    p = cli("repos", "delete", "lib", "-n", ns, "--force", env=env)
    assert p.stdout.strip() == f'Deleted repo "lib" from namespace "{ns}".'
    p = cli("repos", "get", "lib", "-n", ns, env=env, ok=False)
    assert p.returncode == 1 and p.stderr.strip() == "✘ NOT_FOUND (10200): Repository not found: lib."
    p = cli("repos", "delete", "lib", "-n", ns, "--force", "--json", env=env, ok=False)
    assert p.returncode == 1 and json.loads(p.stderr) == {"success": False, "errors": [
        {"code": 10200, "name": "NOT_FOUND", "message": "Repository not found: lib."}]}
    # The secrets printed above went to stdout only: not into the server's log.
    log = server.log_path.read_text()
    assert made["token"].split("?")[0] not in log and read["plaintext"].split("?")[0] not in log


def test_namespaces(server: ServerProcess, env: dict):
    ns = unique("nsc")
    p = cli("namespaces", "create", ns, "--jurisdiction", "eu", env=env)
    assert fields(p.stdout)["jurisdiction"] == "eu"
    p = cli("namespaces", "create", ns, env=env, ok=False)
    assert p.returncode == 1 and "ALREADY_EXISTS (10201)" in p.stderr
    got = json.loads(cli("namespaces", "get", ns, "--json", env=env).stdout)
    assert (got["namespace"], got["jurisdiction"], got["repo_count"]) == (ns, "eu", 0)
    listed = json.loads(cli("namespaces", "list", "--json", env=env).stdout)
    assert got in listed
    assert re.search(rf"│ {re.escape(ns)}\s+│ eu\s+│ 0\s+│", cli("namespaces", "list", env=env).stdout)

    cli("repos", "create", "held", "-n", ns, env=env)
    p = cli("namespaces", "delete", ns, "--force", env=env, ok=False)
    assert p.returncode == 1 and "(10202)" in p.stderr and "still holds repos" in p.stderr
    cli("repos", "delete", "held", "-n", ns, "-y", env=env)
    assert json.loads(cli("namespaces", "delete", ns, "-y", "--json", env=env).stdout) == \
        {"deleted": True, "namespace": ns}
    p = cli("namespaces", "get", ns, env=env, ok=False)
    assert p.returncode == 1 and "NOT_FOUND (10200)" in p.stderr


def _run_on_pty(args: list[str], env: dict, answer: bytes) -> tuple[int, str]:
    """Run with stdin/stdout on a terminal and type ``answer`` at the prompt."""
    master, slave = pty.openpty()
    p = subprocess.Popen([*artifactd_cmd(), *args], env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    sent = False
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not sent and b"[y/N]" in out:
            os.write(master, answer)
            sent = True
    os.close(master)
    return p.wait(timeout=60), out.decode(errors="replace")


def test_confirmation_on_a_terminal(env: dict, server: ServerProcess):
    ns = unique("pty")
    server.create_repo(ns, "keep")
    code, out = _run_on_pty(["repos", "delete", "keep", "-n", ns], env, b"n\n")
    assert code == 1 and "cannot be undone" in out and "Cancelled; nothing was changed." in out
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/keep").status_code == 200
    code, out = _run_on_pty(["repos", "delete", "keep", "-n", ns], env, b"y\n")
    assert code == 0 and f'Deleted repo "keep" from namespace "{ns}".' in out
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/keep").status_code == 404


def test_credentials_and_failures(server: ServerProcess, tmp_path: Path):
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTD_", "CLOUDFLARE_", "CF_"))}
    bare["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no stored login
    p = cli("repos", "list", env=bare, ok=False)
    assert p.returncode == 1 and "UNAUTHENTICATED (10000): No credential for http://127.0.0.1:8787" in p.stderr \
        and "artifactd login" in p.stderr

    # The hosted product's variable names work too (base URL with /client/v4).
    cf = {**bare, "CLOUDFLARE_API_BASE_URL": f"{server.base_url}/client/v4", "CLOUDFLARE_API_TOKEN": server.api_token,
          "CLOUDFLARE_ACCOUNT_ID": server.account_id}
    ns = unique("cf")
    cli("repos", "create", "x", "-n", ns, env=cf)
    # ARTIFACTD_NAMESPACE sets the default namespace.
    assert json.loads(cli("repos", "list", "--json", env={**cf, "ARTIFACTD_NAMESPACE": ns}).stdout)[0]["name"] == "x"

    p = cli("repos", "list", "-n", ns, env={**cf, "CLOUDFLARE_API_TOKEN": "artd_" + "A" * 40}, ok=False)
    assert p.returncode == 1 and p.stderr.startswith("✘ UNAUTHENTICATED (10000):")
    p = cli("repos", "list", "-n", ns, "--account-id", "0" * 32, env=cf, ok=False)
    assert p.returncode == 1 and "FORBIDDEN (10001)" in p.stderr
    p = cli("repos", "list", "-n", ns, "--url", "http://127.0.0.1:9", env=cf, ok=False)
    assert p.returncode == 1 and "Cannot reach the artifactd server at http://127.0.0.1:9" in p.stderr
    p = cli("repos", "issue-token", "x", "-n", ns, "--ttl", "30", env=cf, ok=False)
    assert p.returncode == 1 and "INVALID_TTL (10103)" in p.stderr
    p = cli("repos", "create", "bad name", "-n", ns, env=cf, ok=False)
    assert p.returncode == 1 and "INVALID_REPO_NAME (10101)" in p.stderr
    p = cli("repos", "list", "-n", ns, "--bogus", env=cf, ok=False)
    assert p.returncode == 2  # usage error


def test_local_mode(tmp_path: Path, git: GitClient):
    """--local DATA_DIR: the same commands in-process on a data directory, no server, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTD_", "CLOUDFLARE_", "CF_"))}
    data = tmp_path / "data"
    made = json.loads(cli("repos", "create", "here", "--local", str(data), "--json", env=env).stdout)
    assert made["remote"].startswith("http://127.0.0.1:")
    listed = json.loads(cli("repos", "list", "--local", str(data), "--json", env=env).stdout)
    assert [r["name"] for r in listed] == ["here"]
    p = cli("repos", "issue-token", "here", "--local", str(data), "--scope", "read", env=env)
    assert fields(p.stdout)["scope"] == "read"
    assert "default" in cli("namespaces", "list", "--local", str(data), env=env).stdout


def test_fork_shows_progress(server: ServerProcess, env: dict, git: GitClient, tmp_path: Path):
    if not route_exists(server, "POST", "/namespaces/default/repos/probe-x/fork"):
        pytest.skip("the server has no fork route yet (lands from branch `forks`)")
    ns = unique("fk")
    src = server.create_repo(ns, "base")
    work = git.make_repo(tmp_path / "w", commits=3)
    git.run("push", "-q", src["remote"], "main", cwd=work, token=src["token"])
    p = cli("repos", "fork", "base", "copy", "-n", ns, env=env)
    assert 'Forking "base" into "copy"…' in p.stderr and "ready" in p.stderr
    got = fields(p.stdout)
    assert int(got["objects"]) > 0
    git.run("ls-remote", got["remote"], token=got["token"])
    p = cli("repos", "fork", "base", "copy", "-n", ns, env=env, ok=False)
    assert p.returncode == 1 and "ALREADY_EXISTS (10201)" in p.stderr


def test_import_shows_progress(tmp_path_factory, git: GitClient, tmp_path: Path):
    require_service("artifactd.services.imports")
    require_service("artifactd.testing.remote")
    from artifactd.testing.remote import GitRemoteServer

    root = tmp_path_factory.mktemp("upstream")
    work = git.make_repo(tmp_path / "up", commits=3, branch="trunk")
    git.run("clone", "-q", "--bare", str(work), str(root / "up.git"))
    upstream = GitRemoteServer(root).start()
    srv = ServerProcess(tmp_path_factory.mktemp("imp") / "data", extra_env={
        "ARTIFACTD_IMPORT_ALLOW_NETWORKS": "127.0.0.0/8", "ARTIFACTD_IMPORT_ALLOW_HTTP": "true"}).start()
    try:
        env = cli_env(srv)
        url = f"{upstream.base_url}/up.git"
        p = cli("repos", "import", url, "mirror", "-n", "imp", env=env)
        assert f'Importing {url} into "mirror"…' in p.stderr and "ready" in p.stderr
        got = fields(p.stdout)
        assert got["default_branch"] == "trunk"
        heads = git.out("ls-remote", "--heads", got["remote"], token=got["token"])
        assert git.out("rev-parse", "trunk", cwd=work) in heads
        p = cli("repos", "import", f"{upstream.base_url}/missing.git", "nothing", "-n", "imp", env=env, ok=False)
        assert p.returncode == 1 and "NOT_FOUND (10200)" in p.stderr
    finally:
        srv.stop()
        upstream.stop()
