"""``Artifacts.from_config()`` and the credential lookup: which file, which binding, which
mode, which server and credential, in which order (docs/credentials.md, docs/binding.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from binding_util import unique

from artifactd import credentials
from artifactd.binding import Artifacts, ArtifactsError
from artifactd.binding.config import find_config, load_binding, strip_jsonc
from artifactd.credentials import resolve_connection, save_login
from artifactd.testing import ServerProcess
from artifactd.testing.identity import new_user, oauth_login

ENV_NAMES = ("ARTIFACTD_URL", "ARTIFACTD_API_TOKEN", "ARTIFACTD_ACCOUNT_ID", "ARTIFACTD_REMOTE",
             "ARTIFACTD_CONFIG_DIR", "ARTIFACTD_CLIENT_ID", "CLOUDFLARE_API_BASE_URL", "CLOUDFLARE_API_TOKEN",
             "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_ENV", "CF_API_TOKEN", "CF_ACCOUNT_ID", "CF_API_BASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path: Path):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no stored login unless a test writes one


def use_server(monkeypatch, server: ServerProcess, cloudflare: bool = False) -> None:
    if cloudflare:
        monkeypatch.setenv("CLOUDFLARE_API_BASE_URL", f"{server.base_url}/client/v4")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", server.api_token)
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", server.account_id)
    else:
        monkeypatch.setenv("ARTIFACTD_URL", server.base_url)
        monkeypatch.setenv("ARTIFACTD_API_TOKEN", server.api_token)
        monkeypatch.setenv("ARTIFACTD_ACCOUNT_ID", server.account_id)


def test_jsonc():
    text = """
    // wrangler.jsonc
    {
      "name": "worker", /* a block
      comment */ "url": "https://x.example/a//b", "s": "quote \\" // not a comment",
      "artifacts": [
        { "binding": "ARTIFACTS", "namespace": "default", "remote": true, }, // trailing comma
      ],
    }
    """
    data = json.loads(strip_jsonc(text))
    assert data["url"] == "https://x.example/a//b" and data["s"] == 'quote " // not a comment'
    assert data["artifacts"] == [{"binding": "ARTIFACTS", "namespace": "default", "remote": True}]


def test_wrangler_jsonc_remote(tmp_path: Path, monkeypatch, server: ServerProcess):
    ns = unique("cfg")
    (tmp_path / "wrangler.jsonc").write_text(
        f'{{\n  // the Worker\'s binding\n  "artifacts": [{{"binding": "ARTIFACTS", "namespace": "{ns}", '
        f'"remote": true}}],\n}}\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)  # found from a subdirectory, as wrangler finds its config
    use_server(monkeypatch, server, cloudflare=True)
    with Artifacts.from_config() as art:
        assert (art.mode, art.namespace) == ("remote", ns)
        art.create("from-config")
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/from-config").status_code == 200


def test_wrangler_toml_defaults_to_local(tmp_path: Path, monkeypatch, server: ServerProcess):
    """remote omitted (or false): the local backend under .artifactd/state next to the file,
    as the hosted product's local simulator; ARTIFACTD_REMOTE=1 switches to the server."""
    ns = unique("loc")
    (tmp_path / "wrangler.toml").write_text(
        f'name = "worker"\naccount_id = "cloudflare-account-not-ours"\n\n'
        f'[[artifacts]]\nbinding = "ARTIFACTS"\nnamespace = "{ns}"\n\n'
        f'[[artifacts]]\nbinding = "OTHER"\nnamespace = "other-ns"\nremote = false\n\n'
        f'[env.staging]\n[[env.staging.artifacts]]\nbinding = "ARTIFACTS"\nnamespace = "staging-ns"\nremote = true\n')
    monkeypatch.chdir(tmp_path)
    with Artifacts.from_config() as art:
        assert (art.mode, art.namespace) == ("local", ns)
        assert art.data_dir == (tmp_path / ".artifactd" / "state").resolve()
        created = art.create("offline")
        assert created.remote.startswith("http://127.0.0.1:")
    with Artifacts.from_config("OTHER") as art:
        assert art.namespace == "other-ns" and art.mode == "local"
        assert [r.name for r in art.with_namespace(ns).list().repos] == ["offline"]  # the same store
    with pytest.raises(ArtifactsError) as e:
        Artifacts.from_config("MISSING")
    assert e.value.code == "INVALID_INPUT" and "ARTIFACTS, OTHER" in e.value.message

    use_server(monkeypatch, server)
    staging = load_binding(env="staging")
    assert (staging.namespace, staging.remote) == ("staging-ns", True)
    monkeypatch.setenv("CLOUDFLARE_ENV", "staging")
    assert load_binding().namespace == "staging-ns"
    monkeypatch.delenv("CLOUDFLARE_ENV")
    monkeypatch.setenv("ARTIFACTD_REMOTE", "1")
    with Artifacts.from_config() as art:
        assert art.mode == "remote"
        # wrangler.toml's account_id is Cloudflare's, never used against artifactd.
        art.create("online")
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/online").status_code == 200
    assert Artifacts.from_config(remote=False).mode == "local"


def test_artifactd_toml_and_precedence(tmp_path: Path, monkeypatch, server: ServerProcess):
    ns = unique("own")
    (tmp_path / "wrangler.toml").write_text('[[artifacts]]\nbinding = "ARTIFACTS"\nnamespace = "not-this"\n')
    (tmp_path / "artifactd.toml").write_text(
        f'url = "{server.base_url}"\naccount_id = "{server.account_id}"\n\n'
        f'[[artifacts]]\nbinding = "ARTIFACTS"\nnamespace = "{ns}"\nremote = true\n')
    monkeypatch.chdir(tmp_path)
    assert find_config() == tmp_path / "artifactd.toml"  # artifactd's own file first

    # Only the token comes from the environment; server and account from the file.
    monkeypatch.setenv("ARTIFACTD_API_TOKEN", server.api_token)
    with Artifacts.from_config() as art:
        art.create("via-toml")
    with server.api() as c:
        assert c.get(f"/namespaces/{ns}/repos/via-toml").status_code == 200

    # The environment beats the file: a wrong URL there wins (and fails to connect).
    monkeypatch.setenv("ARTIFACTD_URL", "http://127.0.0.1:9")
    with pytest.raises(ArtifactsError) as e:
        Artifacts.from_config().list()
    assert e.value.code == "UPSTREAM_UNAVAILABLE" and "127.0.0.1:9" in e.value.message

    with pytest.raises(ArtifactsError) as e:
        Artifacts.from_config(path=tmp_path / "nope.toml")
    assert e.value.code == "INVALID_INPUT"
    monkeypatch.chdir(tmp_path.parent.parent)
    if find_config() is None:
        with pytest.raises(ArtifactsError) as e:
            Artifacts.from_config()
        assert "No config file found" in e.value.message


def login_as_new_user(server: ServerProcess) -> dict:
    """A real OAuth login (authorization code + PKCE, refresh token) stored as
    ``artifactd login`` stores it."""
    email, password = new_user(server)
    grant = oauth_login(server, email, password)
    return save_login(server.base_url, grant)


def test_stored_login_and_refresh(tmp_path: Path, server: ServerProcess):
    """Nothing in the environment: the stored login's server, token and (asked of the
    server) account; an access token about to expire is refreshed and the rotated tokens
    are written back."""
    entry = login_as_new_user(server)
    path = credentials.credentials_path()
    assert path == tmp_path / "xdg" / "artifactd" / "credentials.json" and path.stat().st_mode & 0o777 == 0o600
    conn = resolve_connection()
    assert (conn.url, conn.account_id, conn.token_source) == (server.base_url, None, "login")
    ns = unique("lg")
    with Artifacts(ns) as art:
        art.create("with-login")
        assert art._backend.account_id == server.account_id  # the one account this user is in

    data = json.loads(path.read_text())
    data["servers"][server.base_url]["expires_at"] = 0  # expired
    path.write_text(json.dumps(data))
    with Artifacts(ns) as art:
        assert [r.name for r in art.list().repos] == ["with-login"]
    fresh = json.loads(path.read_text())["servers"][server.base_url]
    assert fresh["access_token"] != entry["access_token"] and fresh["refresh_token"] != entry["refresh_token"]
    assert fresh["expires_at"] > 0

    # A refresh token that no longer works: UNAUTHENTICATED, "run artifactd login again".
    fresh["expires_at"] = 0
    fresh["refresh_token"] = entry["refresh_token"]  # already spent (rotation)
    path.write_text(json.dumps({**data, "servers": {server.base_url: fresh}}))
    with pytest.raises(ArtifactsError) as e:
        Artifacts(ns).list()
    assert e.value.code == "UNAUTHENTICATED" and "artifactd login" in e.value.message


def test_credential_order(monkeypatch, server: ServerProcess):
    save_login(server.base_url, {"access_token": "login-token", "expires_in": 3600, "refresh_token": "r"})
    assert resolve_connection().token_source == "login"
    assert "login-token" not in repr(resolve_connection())

    # Environment over login; ARTIFACTD_* over CLOUDFLARE_*; arguments over everything.
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "cf-account")
    conn = resolve_connection()
    assert (conn.token, conn.token_source, conn.account_id) == ("cf-token", "environment", "cf-account")
    monkeypatch.setenv("ARTIFACTD_API_TOKEN", "ad-token")
    monkeypatch.setenv("ARTIFACTD_ACCOUNT_ID", "ad-account")
    assert (resolve_connection().token, resolve_connection().account_id) == ("ad-token", "ad-account")
    conn = resolve_connection(api_token="arg-token", account_id="arg-account")
    assert (conn.token, conn.token_source, conn.account_id) == ("arg-token", "argument", "arg-account")
    monkeypatch.setenv("CLOUDFLARE_API_BASE_URL", "http://cf.example.test/client/v4/")
    assert resolve_connection().url == "http://cf.example.test"
    monkeypatch.setenv("ARTIFACTD_URL", "http://ad.example.test:8787/")
    assert resolve_connection().url == "http://ad.example.test:8787"

    # The login's token is never sent to another server.
    for name in ("ARTIFACTD_API_TOKEN", "CLOUDFLARE_API_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(ArtifactsError) as e:
        resolve_connection()
    assert e.value.code == "UNAUTHENTICATED" and "ad.example.test" in e.value.message
    assert resolve_connection(url=server.base_url + "/").token_source == "login"
    assert resolve_connection(url=server.base_url + "/client/v4").token_source == "login"


def test_account_discovery(monkeypatch, server: ServerProcess):
    """No account id anywhere: the one account the credential can see (GET /accounts)."""
    monkeypatch.setenv("ARTIFACTD_URL", server.base_url)
    monkeypatch.setenv("ARTIFACTD_API_TOKEN", server.api_token)
    with Artifacts(unique("disc")) as art:
        art.create("found")
        assert art._backend.account_id == server.account_id
