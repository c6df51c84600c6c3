"""The real `wrangler login` (browser flow, the browser step in headless Chromium; and
`--device`) against artifactd, then `wrangler whoami`, `wrangler artifacts repos list`
and `wrangler logout`. artifactd serves HTTPS here: wrangler's device flow only talks
https to its auth domain. Node trusts the test CA through NODE_EXTRA_CA_CERTS; Chromium
trusts exactly the server's key (--ignore-certificate-errors-spki-list)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from artifactd.testing import ServerProcess, temporary_database
from artifactd.testing import browser as br
from artifactd.testing.identity import new_user
from artifactd.testing.tlscerts import make_certs

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
WRANGLER = TOOLS / "wrangler"
CALLBACK_PORT = 8976  # wrangler's redirect URI is fixed to http://localhost:8976/oauth/callback

pytestmark = pytest.mark.skipif(not br.available(), reason="needs chromium + chromedriver")


@pytest.fixture(scope="module")
def wrangler_ready() -> Path:
    if not (TOOLS / "node_modules" / "wrangler" / "wrangler-dist" / "cli.js").exists():
        subprocess.run([str(TOOLS / "install-node-tools.sh")], check=True, capture_output=True, timeout=600)
    return WRANGLER


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, database_url):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    with temporary_database(database_url and database_url.rsplit("/", 1)[0] + "/postgres") as url:
        srv = ServerProcess(tmp_path_factory.mktemp("wrangler") / "data", database_url=url, scheme="https",
                            verify=str(certs.ca_file),
                            extra_args=["--tls-cert", str(certs.cert_file), "--tls-key", str(certs.key_file)],
                            extra_env={"ARTIFACTD_OAUTH_DEVICE_POLL_INTERVAL": "1"}).start()
        srv.certs = certs  # type: ignore[attr-defined]
        yield srv
        srv.stop()


def wrangler_env(home: Path, srv: ServerProcess) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDFLARE_", "CF_", "WRANGLER_")) and k not in ("ARTIFACTD_URL",)}
    host = f"127.0.0.1:{srv.port}"
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
        "CLOUDFLARE_API_BASE_URL": f"https://{host}/client/v4",
        "WRANGLER_AUTH_DOMAIN": host,
        "WRANGLER_AUTH_URL": f"https://{host}/oauth2/auth",
        "WRANGLER_TOKEN_URL": f"https://{host}/oauth2/token",
        "WRANGLER_REVOKE_URL": f"https://{host}/oauth2/revoke",
        "NODE_EXTRA_CA_CERTS": str(srv.certs.ca_file),  # type: ignore[attr-defined]
        "BROWSER": "/bin/false", "NO_COLOR": "1", "FORCE_COLOR": "0",
    })
    home.mkdir(parents=True, exist_ok=True)
    return env


class Proc:
    """A running wrangler whose output is collected line by line."""

    def __init__(self, args: list[str], env: dict, cwd: Path):
        self.p = subprocess.Popen([str(WRANGLER), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, "".join(self.lines))
            if m:
                return m
            if self.p.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not printed:\n{''.join(self.lines)}")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        self.p.wait(timeout=timeout)
        self._t.join(timeout=10)
        return self.p.returncode, "".join(self.lines)


def wrangler(env: dict, cwd: Path, *args: str) -> tuple[int, str]:
    return Proc(list(args), env, cwd).finish()


@contextlib.contextmanager
def callback_port_lock():
    """wrangler's callback port is fixed: one browser-flow login on this machine at a time."""
    with open("/tmp/artifactd-wrangler-callback-8976.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def stored_oauth_token(home: Path) -> str | None:
    for p in home.rglob("default.toml"):
        m = re.search(r'oauth_token\s*=\s*"([^"]+)"', p.read_text())
        if m:
            return m.group(1)
    return None


def sign_in_and_allow(driver, url: str, email: str, password: str) -> None:
    driver.get(url)
    br.fill(driver, "#email", email)
    br.fill(driver, "#password", password)
    br.click(driver, "#sign-in")
    br.wait_for(driver, "#allow")


def check_logged_in(env: dict, cwd: Path, srv: ServerProcess, email: str, repo: str) -> str:
    code, out = wrangler(env, cwd, "whoami")
    assert code == 0, out
    assert "OAuth Token" in out and email in out and srv.account_id in out, out
    assert "artifacts (write)" in out, out
    code, out = wrangler(env, cwd, "artifacts", "repos", "list", "--namespace", "default")
    assert code == 0, out
    assert repo in out, out
    token = stored_oauth_token(Path(env["HOME"]))
    assert token and token.startswith("artdo_")
    return token


def check_logout(env: dict, cwd: Path, srv: ServerProcess, token: str) -> None:
    code, out = wrangler(env, cwd, "logout")
    assert code == 0 and "Successfully logged out" in out, out
    r = httpx.get(f"{srv.base_url}/client/v4/accounts", headers={"Authorization": f"Bearer {token}"},
                  verify=srv.ssl_verify)
    assert r.status_code == 401
    assert stored_oauth_token(Path(env["HOME"])) is None


def test_wrangler_login_browser_flow(tls_server: ServerProcess, wrangler_ready, tmp_path: Path):
    srv = tls_server
    email, password = new_user(srv)
    repo = srv.create_repo("default", "wrangler-sees-me")["name"]
    env = wrangler_env(tmp_path / "home", srv)
    with callback_port_lock():
        login = Proc(["login", "--browser=false"], env, tmp_path)
        url = login.wait_for(r"Visit this link to authenticate: (\S+)").group(1)
        assert url.startswith(env["WRANGLER_AUTH_URL"] + "?") and "artifacts%3Awrite" in url
        driver = br.chromium(tmp_path / "chrome", [
            f"--ignore-certificate-errors-spki-list={srv.certs.spki_sha256}"])  # type: ignore[attr-defined]
        try:
            sign_in_and_allow(driver, url, email, password)
            scopes = [li.get_attribute("data-scope") for li in driver.find_elements("css selector", "#scopes li")]
            assert scopes == ["artifacts:write", "account:read", "user:read", "offline_access"]
            assert "workers:write" in br.wait_for(driver, "#dropped").text
            br.click(driver, "#allow")
            login.wait_for(r"Successfully logged in", timeout=60)
        finally:
            driver.quit()
        code, out = login.finish()
    assert code == 0, out
    token = check_logged_in(env, tmp_path, srv, email, repo)
    check_logout(env, tmp_path, srv, token)


def test_wrangler_login_device_flow(tls_server: ServerProcess, wrangler_ready, tmp_path: Path):
    srv = tls_server
    email, password = new_user(srv)
    repo = srv.create_repo("default", "device-sees-me")["name"]
    env = wrangler_env(tmp_path / "home", srv)
    login = Proc(["login", "--device", "--browser=false"], env, tmp_path)
    m = login.wait_for(r"please visit:\s+(\S+)\s+and enter the code:\s+(\S+)")
    verification, user_code = m.group(1), m.group(2)
    assert verification == f"https://127.0.0.1:{srv.port}/oauth2/device"
    driver = br.chromium(tmp_path / "chrome", [
        f"--ignore-certificate-errors-spki-list={srv.certs.spki_sha256}"])  # type: ignore[attr-defined]
    try:
        driver.get(verification)
        br.fill(driver, "#email", email)
        br.fill(driver, "#password", password)
        br.click(driver, "#sign-in")
        br.fill(driver, "#user_code", user_code)
        br.click(driver, "#continue")
        assert br.wait_for(driver, "#user-code").text == user_code
        br.click(driver, "#allow")
        assert br.wait_for(driver, "#heading").text == "Device connected"
    finally:
        driver.quit()
    code, out = login.finish()
    assert code == 0 and "Successfully logged in" in out, out
    token = check_logged_in(env, tmp_path, srv, email, repo)
    check_logout(env, tmp_path, srv, token)


def test_wrangler_whoami_with_api_tokens(tls_server: ServerProcess, wrangler_ready, tmp_path: Path):
    """With CLOUDFLARE_API_TOKEN: user tokens and account tokens are told apart, as on Cloudflare."""
    srv = tls_server
    env = wrangler_env(tmp_path / "home", srv)
    code, out = wrangler({**env, "CLOUDFLARE_API_TOKEN": srv.api_token}, tmp_path, "whoami")
    assert code == 0 and "User API Token" in out and "admin@localhost" in out and srv.account_id in out, out
    with httpx.Client(base_url=srv.base_url + "/client/v4", verify=srv.ssl_verify,
                      headers={"Authorization": f"Bearer {srv.api_token}"}) as c:
        r = c.post(f"/accounts/{srv.account_id}/tokens", json={"name": "acct", "policies": [{
            "effect": "allow", "permission_groups": [{"name": "Artifacts Read"}],
            "resources": {f"com.cloudflare.api.account.{srv.account_id}": "*"}}]})
    acct_token = r.json()["result"]["value"]
    code, out = wrangler({**env, "CLOUDFLARE_API_TOKEN": acct_token}, tmp_path, "whoami")
    assert code == 0 and "Account API Token" in out and srv.account_id in out, out
    code, out = wrangler({**env, "CLOUDFLARE_API_TOKEN": acct_token}, tmp_path,
                         "artifacts", "repos", "list", "--namespace", "default")
    assert code == 0, out
