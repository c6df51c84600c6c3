"""OAuth 2.0 server against the running server: code + PKCE, scopes, rotating refresh
tokens with reuse detection, revocation, the device flow, and access tokens on REST."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from artifactd.testing import ServerProcess
from artifactd.testing.identity import (
    CLI_CLIENT_ID,
    WRANGLER_CLIENT_ID,
    FormClient,
    exchange_code,
    new_user,
    oauth_login,
    parse_page,
    pkce,
)


def token_post(server: ServerProcess, **data) -> httpx.Response:
    return httpx.post(server.base_url + "/oauth2/token", data=data)


def rest(server: ServerProcess, token: str) -> httpx.Client:
    return server.api(token)


def test_code_flow_with_pkce_and_scopes(server: ServerProcess):
    email, password = new_user(server)
    fc = FormClient(server.base_url)
    got = fc.authorize(email, password, scope="artifacts:read k2.read workers:write user:read offline_access")
    fc.close()
    # The consent page lists what will be granted, and what was left out.
    assert 'data-scope="artifacts:read"' in got["consent_page"] and "workers:write" in got["consent_page"]
    assert "k2.read" in parse_page(got["consent_page"]).text[-1] or "k2.read" in got["consent_page"]

    # A wrong verifier fails (and does not consume the code's one chance for an attacker).
    bad = dict(got, verifier=pkce()[0])
    r = exchange_code(server.base_url, bad)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    r = exchange_code(server.base_url, got)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    grant = r.json()
    # Unknown scopes are dropped from the grant; the granted scope is returned.
    assert grant["scope"] == "artifacts:read user:read offline_access"
    assert grant["token_type"] == "bearer" and grant["expires_in"] > 0
    assert grant["access_token"].startswith("artdo_") and grant["refresh_token"].startswith("artdr_")

    # The code is single-use; replaying it revokes what it produced.
    r = exchange_code(server.base_url, got)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with rest(server, grant["access_token"]) as c:
        assert c.get("/namespaces").status_code == 401


def test_pkce_is_required_and_s256_only(server: ServerProcess):
    _, challenge = pkce()
    base = {"response_type": "code", "client_id": CLI_CLIENT_ID, "redirect_uri": "http://127.0.0.1:5000/callback",
            "scope": "artifacts:read", "state": "s1"}
    for extra in ({}, {"code_challenge": challenge, "code_challenge_method": "plain"}):
        r = httpx.get(server.base_url + "/oauth2/auth", params={**base, **extra})
        assert r.status_code == 303
        assert r.headers["location"].startswith("http://127.0.0.1:5000/callback?error=invalid_request")
        assert "state=s1" in r.headers["location"]
    # An unregistered redirect URI is never redirected to.
    r = httpx.get(server.base_url + "/oauth2/auth", params={**base, "redirect_uri": "https://evil.example/cb",
                                                            "code_challenge": challenge,
                                                            "code_challenge_method": "S256"})
    assert r.status_code == 400 and "location" not in r.headers
    # Unknown client.
    r = httpx.get(server.base_url + "/oauth2/auth", params={**base, "client_id": "nope", "code_challenge": challenge,
                                                            "code_challenge_method": "S256"})
    assert r.status_code == 400 and "location" not in r.headers
    # Only unknown scopes: nothing to grant.
    r = httpx.get(server.base_url + "/oauth2/auth", params={**base, "scope": "k2.read", "code_challenge": challenge,
                                                            "code_challenge_method": "S256"})
    assert r.status_code == 303 and "error=invalid_scope" in r.headers["location"]


def test_access_token_works_like_api_token_of_matching_permission(server: ServerProcess):
    email, password = new_user(server)
    read = oauth_login(server, email, password, scope="artifacts:read")
    write = oauth_login(server, email, password, scope="artifacts:write")
    assert "refresh_token" not in read  # no offline_access, no refresh token
    ns = f"oa-{secrets.token_hex(3)}"
    with rest(server, write["access_token"]) as c:
        r = c.post(f"/namespaces/{ns}/repos", json={"name": "made-by-oauth"})
        assert r.status_code == 201, r.text
        r = c.post(f"/namespaces/{ns}/tokens", json={"repo": "made-by-oauth", "scope": "read"})
        assert r.status_code == 201
    with rest(server, read["access_token"]) as c:
        assert c.get(f"/namespaces/{ns}/repos/made-by-oauth").status_code == 200
        r = c.post(f"/namespaces/{ns}/repos", json={"name": "nope"})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == 10001
        # Another account: not reachable.
        r = httpx.get(f"{server.base_url}/client/v4/accounts/{'0' * 32}/artifacts/namespaces",
                      headers={"Authorization": f"Bearer {read['access_token']}"})
        assert r.status_code == 403


def test_refresh_rotation_and_reuse_detection(server: ServerProcess):
    email, password = new_user(server)
    g1 = oauth_login(server, email, password)
    r = token_post(server, grant_type="refresh_token", refresh_token=g1["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 200, r.text
    g2 = r.json()
    assert g2["refresh_token"] != g1["refresh_token"] and g2["access_token"] != g1["access_token"]
    assert g2["scope"] == g1["scope"]
    # Old access token still valid until expiry; new one works.
    with rest(server, g2["access_token"]) as c:
        assert c.get("/namespaces").status_code == 200
    # A refresh token from another client's grant is refused.
    r = token_post(server, grant_type="refresh_token", refresh_token=g2["refresh_token"], client_id=WRANGLER_CLIENT_ID)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    # Replaying the spent refresh token revokes the whole family.
    r = token_post(server, grant_type="refresh_token", refresh_token=g1["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    for t in (g1["access_token"], g2["access_token"]):
        with rest(server, t) as c:
            assert c.get("/namespaces").status_code == 401
    r = token_post(server, grant_type="refresh_token", refresh_token=g2["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    # Another login of the same user is a separate family and still works.
    g3 = oauth_login(server, email, password)
    with rest(server, g3["access_token"]) as c:
        assert c.get("/namespaces").status_code == 200

    # Narrowing the scope on refresh is allowed, widening is not.
    r = token_post(server, grant_type="refresh_token", refresh_token=g3["refresh_token"], client_id=CLI_CLIENT_ID,
                   scope="artifacts:write")
    assert r.status_code == 200 and r.json()["scope"] == "artifacts:write"


def test_revocation_rfc7009(server: ServerProcess):
    email, password = new_user(server)
    g = oauth_login(server, email, password)
    revoke = server.base_url + "/oauth2/revoke"
    # Unknown / malformed tokens: 200 all the same.
    assert httpx.post(revoke, data={"token": "garbage", "client_id": CLI_CLIENT_ID}).status_code == 200
    # Another client may not revoke it.
    r = httpx.post(revoke, data={"token": g["access_token"], "client_id": WRANGLER_CLIENT_ID})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    # Revoking an access token ends that token only.
    assert httpx.post(revoke, data={"token": g["access_token"], "token_type_hint": "access_token",
                                    "client_id": CLI_CLIENT_ID}).status_code == 200
    with rest(server, g["access_token"]) as c:
        assert c.get("/namespaces").status_code == 401
    r = token_post(server, grant_type="refresh_token", refresh_token=g["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 200
    g2 = r.json()
    # Revoking the refresh token ends the grant: its access tokens too.
    assert httpx.post(revoke, data={"token": g2["refresh_token"], "client_id": CLI_CLIENT_ID}).status_code == 200
    with rest(server, g2["access_token"]) as c:
        assert c.get("/namespaces").status_code == 401
    r = token_post(server, grant_type="refresh_token", refresh_token=g2["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 400


def _device_start(server: ServerProcess, scope: str = "artifacts:write") -> dict:
    r = httpx.post(server.base_url + "/oauth2/device/auth", data={"client_id": CLI_CLIENT_ID, "scope": scope})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["verification_uri"] == server.base_url + "/oauth2/device"
    assert d["verification_uri_complete"].endswith("user_code=" + d["user_code"].replace("-", "-"))
    assert d["interval"] >= 1 and d["expires_in"] > 0
    return d


def _device_poll(server: ServerProcess, d: dict) -> httpx.Response:
    return token_post(server, grant_type="urn:ietf:params:oauth:grant-type:device_code",
                      device_code=d["device_code"], client_id=CLI_CLIENT_ID)


def test_device_flow_approve(server: ServerProcess):
    email, password = new_user(server)
    d = _device_start(server, "artifacts:read offline_access bogus:scope")
    r = _device_poll(server, d)
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    r = _device_poll(server, d)  # polled again at once: slow down
    assert r.status_code == 400 and r.json()["error"] == "slow_down"

    fc = FormClient(server.base_url)
    page = fc.get("/oauth2/device")
    assert 'name="password"' in page.text
    page = fc.sign_in(page, email, password)
    assert 'name="user_code"' in page.text
    # A wrong code is refused.
    bad = fc.submit(page, {"user_code": "BBBB-BBBB"})
    bad = fc.follow(bad)
    assert bad.status_code == 404
    # Typed in lower case without the dash still finds it.
    page = fc.follow(fc.submit(page, {"user_code": d["user_code"].replace("-", "").lower()}))
    assert page.status_code == 200 and d["user_code"] in page.text and 'data-scope="artifacts:read"' in page.text
    done = fc.submit(page, {}, ("action", "allow"))
    assert done.status_code == 200 and "Device connected" in done.text
    fc.close()

    deadline = time.monotonic() + 60
    while True:
        r = _device_poll(server, d)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.json()["error"] in ("authorization_pending", "slow_down")
        time.sleep(1)
    assert r.status_code == 200, r.text
    g = r.json()
    assert g["scope"] == "artifacts:read offline_access" and g["refresh_token"].startswith("artdr_")
    with rest(server, g["access_token"]) as c:
        assert c.get("/namespaces").status_code == 200
    # The device code is spent.
    assert _device_poll(server, d).json()["error"] == "invalid_grant"


def test_device_flow_deny(server: ServerProcess):
    email, password = new_user(server)
    d = _device_start(server)
    fc = FormClient(server.base_url)
    page = fc.sign_in(fc.get("/oauth2/device?user_code=" + d["user_code"]), email, password)
    assert d["user_code"] in page.text
    r = fc.submit(page, {}, ("action", "deny"))
    assert r.status_code == 200 and "denied" in r.text
    fc.close()
    r = _device_poll(server, d)
    assert r.status_code == 400 and r.json()["error"] == "access_denied"


def test_consent_deny_and_csrf(server: ServerProcess):
    email, password = new_user(server)
    fc = FormClient(server.base_url)
    got = fc.authorize(email, password, decision="deny")
    assert got["error"] == "access_denied" and "code" not in got
    # A POST without the CSRF token bound to the cookie is refused.
    _, challenge = pkce()
    r = fc.http.post("/oauth2/auth", data={
        "response_type": "code", "client_id": CLI_CLIENT_ID, "redirect_uri": "http://127.0.0.1:1/callback",
        "scope": "artifacts:write", "state": "x", "code_challenge": challenge, "code_challenge_method": "S256",
        "action": "allow", "csrf_token": "forged"})
    assert r.status_code == 403 and "CSRF" in r.text
    fc.close()
    # A cross-site POST has no cookies at all: refused the same way.
    r = httpx.post(server.base_url + "/oauth2/auth", data={"action": "login", "email": email, "password": password})
    assert r.status_code == 403


def test_wrong_password_and_disabled_user(server: ServerProcess):
    email, password = new_user(server)
    fc = FormClient(server.base_url)
    page = fc.get("/oauth2/device")
    r = fc.submit(page, {"email": email, "password": password + "x"})
    assert r.status_code == 401 and "Incorrect email or password" in r.text
    assert "artifactd_session" not in fc.http.cookies
    fc.close()
    g = oauth_login(server, email, password)
    from artifactd.testing.identity import run_cli

    run_cli(server, "admin", "users", "disable", email)
    with rest(server, g["access_token"]) as c:
        assert c.get("/namespaces").status_code == 401
    r = token_post(server, grant_type="refresh_token", refresh_token=g["refresh_token"], client_id=CLI_CLIENT_ID)
    assert r.status_code == 400


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server"])
def test_metadata(server: ServerProcess, path: str):
    m = httpx.get(server.base_url + path).json()
    assert m["code_challenge_methods_supported"] == ["S256"]
    assert m["device_authorization_endpoint"] == server.base_url + "/oauth2/device/auth"
    assert "artifacts:write" in m["scopes_supported"]


def test_oauth_scopes_for_user_and_token_routes(server: ServerProcess):
    email, password = new_user(server)
    base = server.base_url + "/client/v4"
    narrow = oauth_login(server, email, password, scope="artifacts:write")["access_token"]
    wide = oauth_login(server, email, password, scope="user:read api_tokens:write account:read")["access_token"]
    h = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    # /user needs user:read (code 9109 otherwise, which wrangler shows as "no email").
    r = httpx.get(base + "/user", headers=h(narrow))
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == 9109
    assert httpx.get(base + "/user", headers=h(wide)).json()["result"]["email"] == email
    # Managing API tokens needs api_tokens:write.
    body = {"name": "from-oauth", "policies": [{"effect": "allow", "permission_groups": [{"name": "Artifacts Read"}],
                                                "resources": {f"com.cloudflare.api.account.{server.account_id}": "*"}}]}
    assert httpx.post(base + "/user/tokens", json=body, headers=h(narrow)).status_code == 403
    r = httpx.post(base + "/user/tokens", json=body, headers=h(wide))
    assert r.status_code == 200, r.text
    made = r.json()["result"]["value"]
    with rest(server, made) as c:
        assert c.get("/namespaces").status_code == 200
    # account:read lists the user's accounts and memberships; a member is no admin.
    accts = httpx.get(base + "/accounts", headers=h(wide)).json()["result"]
    assert [a["id"] for a in accts] == [server.account_id] and accts[0]["role"] == "member"
    ms = httpx.get(base + "/memberships", headers=h(wide)).json()["result"]
    assert ms[0]["account"]["id"] == server.account_id and ms[0]["roles"] == ["Member"]
    assert httpx.get(base + f"/accounts/{server.account_id}/audit_logs", headers=h(wide)).status_code == 403
    # The verify route tells the CLI what the credential is.
    v = httpx.get(base + "/user/tokens/verify", headers=h(wide)).json()["result"]
    assert v["kind"] == "oauth" and v["user"]["email"] == email and v["client_id"] == CLI_CLIENT_ID
    assert v["scopes"] == ["account:read", "api_tokens:write", "user:read"]
