"""`artifactd login` / `whoami` / `logout` with the sign-in and consent pages driven in
headless Chromium as a person would: the browser flow (localhost callback) and the
device flow, the bootstrap admin's one-time password, stored credentials that refresh."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from artifactd.testing import ServerProcess, temporary_database
from artifactd.testing import browser as br
from artifactd.testing.identity import bootstrap

pytestmark = pytest.mark.skipif(not br.available(), reason="needs chromium + chromedriver "
                                                         "(scripts/install.d/chromium.sh)")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, database_url):
    with temporary_database(database_url and database_url.rsplit("/", 1)[0] + "/postgres") as url:
        s = ServerProcess(tmp_path_factory.mktemp("login") / "data", database_url=url,
                          extra_env={"ARTIFACTD_OAUTH_DEVICE_POLL_INTERVAL": "1"}).start()
        yield s
        s.stop()


def cli_env(config_dir: Path, server: ServerProcess) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARTIFACTD_API_TOKEN", "CLOUDFLARE_API_TOKEN", "ARTIFACTD_DATA_DIR", "ARTIFACTD_DATABASE_URL")}
    env.update(ARTIFACTD_CONFIG_DIR=str(config_dir), ARTIFACTD_URL=server.base_url, BROWSER="/bin/false")
    return env


def start_cli(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "artifactd", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_until(stream, pattern: str, timeout: float = 60) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"{pattern!r} not printed; got:\n{''.join(seen)}")


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "artifactd", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_login_whoami_refresh_logout_in_chromium(srv: ServerProcess, tmp_path: Path):
    boot = bootstrap(srv)
    config = tmp_path / "config"
    env = cli_env(config, srv)
    new_password = "a-password-of-my-own-42"

    proc = start_cli(env, "login", "--no-browser", "--timeout", "120")
    url = read_until(proc.stderr, r"Open this link to sign in: (\S+)").group(1)
    assert url.startswith(srv.base_url + "/oauth2/auth?") and "code_challenge_method=S256" in url

    driver = br.chromium(tmp_path / "chrome")
    try:
        driver.get(url)
        assert "Sign in to artifactd" in driver.page_source and "artifactd CLI" in driver.page_source
        # A wrong password first, as people do.
        br.fill(driver, "#email", boot["admin_email"])
        br.fill(driver, "#password", "not-the-password")
        br.click(driver, "#sign-in")
        assert "Incorrect email or password" in br.wait_for(driver, "#error").text
        br.fill(driver, "#password", boot["admin_password"])
        br.click(driver, "#sign-in")
        # The bootstrap admin's password is one-time: choose a new one.
        br.wait_for(driver, "#new_password")
        br.fill(driver, "#new_password", new_password)
        br.fill(driver, "#confirm_password", new_password + "x")
        br.click(driver, "#save-password")
        assert "differ" in br.wait_for(driver, "#error").text
        br.fill(driver, "#new_password", new_password)
        br.fill(driver, "#confirm_password", new_password)
        br.click(driver, "#save-password")
        # Consent: who, what, on which accounts.
        br.wait_for(driver, "#allow")
        assert br.wait_for(driver, "#user-email").text == boot["admin_email"]
        scopes = [li.get_attribute("data-scope") for li in driver.find_elements("css selector", "#scopes li")]
        assert scopes == ["artifacts:write", "offline_access"]
        driver.save_screenshot(str(tmp_path / "consent.png"))
        br.click(driver, "#allow")
        # Back on the CLI's one-shot localhost callback.
        deadline = time.monotonic() + 30
        while "Signed in" not in driver.page_source and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Signed in" in driver.page_source and driver.current_url.startswith("http://127.0.0.1:")
    finally:
        driver.quit()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Granted scopes: artifacts:write offline_access" in out

    # Stored with mode 0600 in the user's config directory.
    cred_file = config / "credentials.json"
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    stored = json.loads(cred_file.read_text())["servers"][srv.base_url]
    assert stored["access_token"].startswith("artdo_") and stored["refresh_token"].startswith("artdr_")

    who = run(env, "whoami", "--json")
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)
    assert info["user"]["email"] == boot["admin_email"] and info["kind"] == "oauth"
    assert info["accounts"] == [{"id": srv.account_id, "name": "bootstrap", "role": "admin"}]
    assert info["scopes"] == ["artifacts:write", "offline_access"] and info["source"] == "login"
    assert info["expires_at"].endswith("Z") and info["refreshable"] is True
    human = run(env, "whoami")
    assert boot["admin_email"] in human.stdout and "artifacts:write" in human.stdout

    # The binding's resolver: uses the login when no API token is in the environment, and
    # refreshes it when it has expired (rotating the refresh token).
    code = (
        "import json, sys; from artifactd.credentials import resolve_token; c = resolve_token(); "
        "print(json.dumps({'token': c.token, 'source': c.source}))"
    )
    stored["expires_at"] = 0
    cred_file.write_text(json.dumps({"servers": {srv.base_url: stored}, "default_server": srv.base_url}))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    fresh = json.loads(res.stdout)
    assert fresh["source"] == "login" and fresh["token"] != stored["access_token"]
    after = json.loads(cred_file.read_text())["servers"][srv.base_url]
    assert after["refresh_token"] != stored["refresh_token"] and after["expires_at"] > time.time()
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    with srv.api(fresh["token"]) as c:
        assert c.post("/namespaces/from-login/repos", json={"name": "via-oauth"}).status_code == 201
    # An API token in the environment wins over the login.
    res = subprocess.run([sys.executable, "-c", code], env={**env, "ARTIFACTD_API_TOKEN": srv.api_token},
                         capture_output=True, text=True, timeout=60)
    assert json.loads(res.stdout) == {"token": srv.api_token, "source": "env:ARTIFACTD_API_TOKEN"}

    out = run(env, "logout")
    assert out.returncode == 0 and "Logged out" in out.stdout
    with srv.api(fresh["token"]) as c:
        assert c.get("/namespaces").status_code == 401
    r = httpx.post(srv.base_url + "/oauth2/token", data={"grant_type": "refresh_token", "client_id": "artifactd-cli",
                                                         "refresh_token": after["refresh_token"]})
    assert r.status_code == 400
    assert run(env, "whoami").returncode != 0

    # The audit log has the logins.
    events = json.loads(subprocess.run(
        [sys.executable, "-m", "artifactd", "audit", "--json", "--action", "login", "--data-dir", str(srv.data_dir)]
        + (["--database-url", srv.database_url] if srv.database_url else []),
        capture_output=True, text=True, timeout=60).stdout)
    kinds = {(e["action"], e["outcome"]) for e in events}
    assert {("login.password", "failure"), ("login.password", "success"), ("login.oauth", "success")} <= kinds


def test_device_login_in_chromium(srv: ServerProcess, tmp_path: Path):
    from artifactd.testing.identity import new_user

    email, password = new_user(srv)
    env = cli_env(tmp_path / "config", srv)
    proc = start_cli(env, "login", "--device", "--scopes", "artifacts:read,account:read", "--timeout", "120")
    m = read_until(proc.stderr, r"open (\S+) and enter the code ([A-Z]{4}-[A-Z]{4})")
    verification, user_code = m.group(1), m.group(2)
    assert verification == srv.base_url + "/oauth2/device"

    driver = br.chromium(tmp_path / "chrome")
    try:
        driver.get(verification)
        br.fill(driver, "#email", email)
        br.fill(driver, "#password", password)
        br.click(driver, "#sign-in")
        br.fill(driver, "#user_code", user_code.lower().replace("-", ""))
        br.click(driver, "#continue")
        assert br.wait_for(driver, "#user-code").text == user_code
        scopes = [li.get_attribute("data-scope") for li in driver.find_elements("css selector", "#scopes li")]
        assert scopes == ["artifacts:read", "account:read", "offline_access"]
        br.click(driver, "#allow")
        assert br.wait_for(driver, "#heading").text == "Device connected"
    finally:
        driver.quit()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Granted scopes: artifacts:read account:read offline_access" in out
    info = json.loads(run(env, "whoami", "--json").stdout)
    assert info["user"]["email"] == email and info["scopes"] == ["account:read", "artifacts:read", "offline_access"]
    assert run(env, "logout").returncode == 0
