"""Cloudflare's wrangler 4.164.0 (npm, on Node 22) against a real artifactd server.

Pointed at artifactd with ``CLOUDFLARE_API_BASE_URL``, ``CLOUDFLARE_API_TOKEN`` and
``CLOUDFLARE_ACCOUNT_ID``, every ``wrangler artifacts namespaces ...`` and ``wrangler
artifacts repos ...`` command of that release must succeed, with and without ``--json``,
and what it prints must be what the server holds (checked over REST and with git).
4.164.0 has only ``namespaces list|get`` and ``repos create|list|get|delete|issue-token``
(tools/WRANGLER.md §4). Installed by scripts/install.d/node-tools.sh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from binding_util import ROOT, unique

from artifactd.testing import GitClient, ServerProcess

WRANGLER = ROOT / "tools" / "wrangler"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def wrangler_home(tmp_path_factory) -> Path:
    subprocess.run([str(ROOT / "tools" / "install-node-tools.sh")], check=True, capture_output=True)
    return tmp_path_factory.mktemp("wrangler-home")


class Wrangler:
    def __init__(self, server: ServerProcess, home: Path, token: str | None = None):
        self.cwd = home / "project"
        self.cwd.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_", "ARTIFACTD_"))}
        self.env.update(
            HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
            CLOUDFLARE_API_BASE_URL=f"{server.base_url}/client/v4",
            CLOUDFLARE_API_TOKEN=token or server.api_token,
            CLOUDFLARE_ACCOUNT_ID=server.account_id,
            NO_COLOR="1", FORCE_COLOR="0",
        )

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(WRANGLER), "artifacts", *args], cwd=self.cwd, env=self.env, capture_output=True,
                           text=True, timeout=120)
        p.stdout, p.stderr = ANSI.sub("", p.stdout), ANSI.sub("", p.stderr)
        if ok:
            assert p.returncode == 0, f"wrangler {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def json(self, *args: str):
        return json.loads(self(*args, "--json").stdout)


def fields(text: str) -> dict[str, str]:
    """wrangler's ``label:   value`` lines."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+):\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


@pytest.fixture
def wr(server: ServerProcess, wrangler_home: Path) -> Wrangler:
    return Wrangler(server, wrangler_home)


def test_repos_lifecycle_text_and_json(wr: Wrangler, server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = unique("wr")
    # create (text): prints the fields, and the token opens Git.
    p = wr("repos", "create", "alpha", "--namespace", ns, "--description", "hello world")
    assert f'Created Artifacts repo "alpha" in namespace "{ns}".' in p.stdout
    made = fields(p.stdout)
    assert made["name"] == "alpha" and made["description"] == "hello world" and made["default_branch"] == "main"
    assert made["read_only"] == "false" and len(made["id"]) == 16
    assert made["remote"].endswith(f"/{ns}/alpha.git") and made["token"].startswith("art_v1_")
    src = git.make_repo(tmp_path / "src", commits=2)
    git.run("push", "-q", made["remote"], "main", cwd=src, token=made["token"])

    # create (--json) with every flag.
    beta = wr.json("repos", "create", "beta", "--namespace", ns, "--description", "d", "--default-branch", "trunk",
                   "--read-only")
    assert {k: beta[k] for k in ("name", "description", "default_branch", "read_only")} == \
        {"name": "beta", "description": "d", "default_branch": "trunk", "read_only": True}
    assert set(beta) >= {"id", "remote", "token"}
    gamma = wr.json("repos", "create", "gamma", "--namespace", ns, "--no-read-only")
    assert gamma["read_only"] is False

    with server.api() as c:
        rest_list = c.get(f"/namespaces/{ns}/repos").json()["result"]
        rest_alpha = c.get(f"/namespaces/{ns}/repos/alpha").json()["result"]
        rest_ns = c.get(f"/namespaces/{ns}").json()["result"]

    # Read-only commands, text and JSON, at once.
    cmds = {
        "list": ("repos", "list", "--namespace", ns), "list_json": ("repos", "list", "--namespace", ns, "--json"),
        "get": ("repos", "get", "alpha", "--namespace", ns),
        "get_json": ("repos", "get", "alpha", "--namespace", ns, "--json"),
        "ns_list": ("namespaces", "list"), "ns_list_json": ("namespaces", "list", "--json"),
        "ns_get": ("namespaces", "get", ns), "ns_get_json": ("namespaces", "get", ns, "--json"),
    }
    with ThreadPoolExecutor(2) as pool:  # two cores: more only adds contention
        res = dict(zip(cmds, pool.map(lambda a: wr(*a), cmds.values()), strict=True))

    assert json.loads(res["list_json"].stdout) == rest_list
    table = res["list"].stdout
    assert table.index("gamma") < table.index("beta") < table.index("alpha")  # newest first
    assert re.search(r"│ beta\s+│ trunk\s+│ true\s+│ ready\s+│", table), table

    assert json.loads(res["get_json"].stdout) == rest_alpha
    got = fields(res["get"].stdout)
    assert got["id"] == made["id"] and got["remote"] == made["remote"] and got["status"] == "ready"
    assert got["read_only"] == "false" and got["last_push_at"].endswith("Z") and got["source"] == ""

    listed = {n["namespace"]: n for n in json.loads(res["ns_list_json"].stdout)}
    assert listed[ns] == rest_ns and listed[ns]["repo_count"] == 3
    assert re.search(rf"│ {re.escape(ns)}\s+│ 3\s+│", res["ns_list"].stdout)
    assert json.loads(res["ns_get_json"].stdout) == rest_ns
    assert fields(res["ns_get"].stdout) == {"namespace": ns, "repo_count": "3", "created_at": rest_ns["created_at"],
                                            "updated_at": rest_ns["updated_at"]}

    # delete: without -y wrangler (non-interactive) cancels and sends nothing.
    p = wr("repos", "delete", "gamma", "--namespace", ns)
    assert "Deletion cancelled." in p.stdout
    assert wr.json("repos", "get", "gamma", "--namespace", ns)["name"] == "gamma"
    p = wr("repos", "delete", "gamma", "--namespace", ns, "-y")
    assert f'Deleted Artifacts repo "gamma" from namespace "{ns}".' in p.stdout
    assert wr.json("repos", "delete", "beta", "--namespace", ns, "--force") == \
        {"deleted": True, "name": "beta", "namespace": ns}
    with server.api() as c:
        assert [r["name"] for r in c.get(f"/namespaces/{ns}/repos").json()["result"]] == ["alpha"]

    # The repo that is gone is an error with the documented code.
    p = wr("repos", "get", "beta", "--namespace", ns, ok=False)
    assert p.returncode == 1 and "Repository not found: beta. [code: 10200]" in p.stderr and p.stdout.strip() == ""


def test_issue_token_text_and_json(wr: Wrangler, server: ServerProcess, git: GitClient, tmp_path: Path):
    ns = unique("wt")
    repo = server.create_repo(ns, "tokrepo")
    src = git.make_repo(tmp_path / "src", commits=1)

    p = wr("repos", "issue-token", "tokrepo", "--namespace", ns)
    assert f'Issued a write token for repo "tokrepo" in namespace "{ns}".' in p.stdout
    w = fields(p.stdout)
    assert w["scope"] == "write" and len(w["id"]) == 16 and w["expires_at"].endswith("Z")
    git.run("push", "-q", repo["remote"], "main", cwd=src, token=w["plaintext"])

    r = wr.json("repos", "issue-token", "tokrepo", "--namespace", ns, "--scope", "read", "--ttl", "3600")
    assert r["scope"] == "read" and set(r) == {"id", "plaintext", "scope", "expires_at"}
    git.run("ls-remote", repo["remote"], token=r["plaintext"])
    denied = git.run("push", repo["remote"], "main:other", cwd=src, token=r["plaintext"], check=False)
    assert denied.returncode != 0 and b"Insufficient permissions" in denied.stderr

    with server.api() as c:
        listed = {t["id"]: t for t in c.get(f"/namespaces/{ns}/repos/tokrepo/tokens").json()["result"]}
    assert listed[w["id"]]["scope"] == "write" and listed[r["id"]]["scope"] == "read"

    # Out-of-range TTLs: wrangler refuses 0 itself; the server refuses 59 with INVALID_TTL.
    p = wr("repos", "issue-token", "tokrepo", "--namespace", ns, "--ttl", "59", ok=False)
    assert p.returncode == 1 and "[code: 10103]" in p.stderr
    p = wr("repos", "issue-token", "missing", "--namespace", ns, "--json", ok=False)
    assert p.returncode == 1 and "[code: 10200]" in p.stderr and p.stdout.strip() == ""


def test_lists_page_through_everything(wr: Wrangler, server: ServerProcess):
    """wrangler pages with ?page=N until page * per_page >= total_count: 55 repos (two
    pages of the default 50) all arrive, in the server's order."""
    ns = unique("wp")
    with server.api() as c:
        for i in range(55):
            assert c.post(f"/namespaces/{ns}/repos", json={"name": f"r{i:02d}"}).status_code == 201
        order = []
        cursor = None
        while True:
            page = c.get(f"/namespaces/{ns}/repos", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
            order += [r["name"] for r in page.json()["result"]]
            cursor = page.json()["result_info"]["cursor"]
            if not cursor:
                break
    listed = wr.json("repos", "list", "--namespace", ns)
    assert [r["name"] for r in listed] == order and len(order) == 55


def test_empty_lists_and_missing_namespace(wr: Wrangler):
    ns = unique("we")
    assert f'No Artifacts repos found in namespace "{ns}".' in wr("repos", "list", "--namespace", ns).stdout
    p = wr("namespaces", "get", ns, ok=False)
    assert p.returncode == 1 and "[code: 10200]" in p.stderr


def test_bad_token_fails_cleanly(server: ServerProcess, wrangler_home: Path):
    """An invalid API token is an authentication error (code 10000), exit status 1."""
    bad = Wrangler(server, wrangler_home, token="artd_" + "A" * 40)
    p = bad("repos", "list", "--namespace", "default", ok=False)
    assert p.returncode == 1 and "Authentication error" in p.stderr and "[code: 10000]" in p.stderr
