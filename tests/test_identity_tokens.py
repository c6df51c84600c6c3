"""API tokens as users and account admins manage them, against the running server:
policies and namespace narrowing, expiry, IP rules, roll, delete, verify, last use,
memberships, the audit log, and slowing down repeated failures."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

import httpx
import pytest

from artifactd.services.apitokens import well_formed_api_token
from artifactd.testing import ServerProcess
from artifactd.testing.identity import bootstrap, new_user, run_cli

ACCT = "com.cloudflare.api.account."
NS = "com.cloudflare.api.account.artifacts.namespace."


def v4(server: ServerProcess, token: str, **headers) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + "/client/v4", timeout=30,
                        headers={"Authorization": f"Bearer {token}", **headers})


def policy(account: str, *groups: str, namespaces: list[str] | None = None, effect: str = "allow") -> dict:
    res = {NS + n: "*" for n in namespaces} if namespaces else "*"
    return {"effect": effect, "permission_groups": [{"name": g} for g in groups], "resources": {ACCT + account: res}}


def create_token(server: ServerProcess, manager: str, body: dict, path: str = "/user/tokens") -> dict:
    with v4(server, manager) as c:
        r = c.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()["result"]


def user_manager_token(server: ServerProcess, email: str) -> str:
    """An API token with API Tokens Write on the user, made by the operator."""
    out = run_cli(server, "admin", "tokens", "create", "--user", email, "--account", server.account_id,
                  "--permission", "API Tokens Write", "--name", "manager")
    return out.stdout.strip()


def test_token_lifecycle_and_secret_shown_once(server: ServerProcess):
    boot = server.api_token
    t = create_token(server, boot, {"name": "ci reader", "policies": [policy(server.account_id, "Artifacts Read")]})
    secret = t["value"]
    assert secret.startswith("artd_") and well_formed_api_token(secret)
    assert t["status"] == "active" and t["policies"][0]["permission_groups"][0]["name"] == "Artifacts Read"
    assert t["policies"][0]["permission_groups"][0]["id"]
    with v4(server, boot) as c:
        got = c.get(f"/user/tokens/{t['id']}").json()["result"]
        assert "value" not in got and got["name"] == "ci reader"
        listed = c.get("/user/tokens", params={"per_page": 50}).json()
        assert any(x["id"] == t["id"] for x in listed["result"])
        assert not any("value" in x for x in listed["result"])
        assert listed["result_info"]["total_count"] >= 2
    # A look-alike (one character changed, checksum now wrong) is refused.
    twisted = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert not well_formed_api_token(twisted)
    with v4(server, twisted) as c:
        assert c.get("/user/tokens/verify").status_code == 401
    with v4(server, secret) as c:
        v = c.get("/user/tokens/verify").json()["result"]
        assert v["id"] == t["id"] and v["status"] == "active"
    # Update: rename and disable ("revoke"), then re-enable.
    with v4(server, boot) as c:
        r = c.put(f"/user/tokens/{t['id']}", json={"name": "renamed", "status": "disabled"})
        assert r.status_code == 200 and r.json()["result"]["status"] == "disabled"
    with server.api(secret) as c:
        assert c.get("/namespaces").status_code == 401
    with v4(server, boot) as c:
        c.put(f"/user/tokens/{t['id']}", json={"status": "active"})
        # Roll: a new secret, the old one stops at once.
        r = c.put(f"/user/tokens/{t['id']}/value", json={})
        assert r.status_code == 200
        rolled = r.json()["result"]
        assert rolled != secret and well_formed_api_token(rolled)
    with server.api(secret) as c:
        assert c.get("/namespaces").status_code == 401
    with server.api(rolled) as c:
        assert c.get("/namespaces").status_code == 200
    with v4(server, boot) as c:
        assert c.delete(f"/user/tokens/{t['id']}").json()["result"] == {"id": t["id"]}
        assert c.get(f"/user/tokens/{t['id']}").status_code == 404
    with server.api(rolled) as c:
        assert c.get("/namespaces").status_code == 401


def test_read_token_cannot_create_and_namespace_narrowing(server: ServerProcess):
    boot = server.api_token
    a, b = f"nsa-{secrets.token_hex(3)}", f"nsb-{secrets.token_hex(3)}"
    server.create_repo(a, "inside")
    server.create_repo(b, "outside")
    reader = create_token(server, boot, {"name": "r", "policies": [policy(server.account_id, "Artifacts Read")]})
    with server.api(reader["value"]) as c:
        assert c.get(f"/namespaces/{a}/repos/inside").status_code == 200
        r = c.post(f"/namespaces/{a}/repos", json={"name": "new"})
        assert r.status_code == 403 and "Artifacts Edit" in r.json()["errors"][0]["message"]
        assert c.post(f"/namespaces/{a}/tokens", json={"repo": "inside"}).status_code == 403
        assert c.delete(f"/namespaces/{a}/repos/inside").status_code == 403

    narrow = create_token(server, boot, {"name": "only-a", "policies": [
        policy(server.account_id, "Artifacts Edit", namespaces=[a.upper()])]})
    assert narrow["policies"][0]["resources"][ACCT + server.account_id] == {NS + a: "*"}
    with server.api(narrow["value"]) as c:
        assert c.post(f"/namespaces/{a}/repos", json={"name": "made"}).status_code == 201
        assert c.post(f"/namespaces/{a}/tokens", json={"repo": "made"}).status_code == 201
        for r in (c.get(f"/namespaces/{b}/repos/outside"), c.get(f"/namespaces/{b}/repos"),
                  c.post(f"/namespaces/{b}/repos", json={"name": "x"}),
                  c.post(f"/namespaces/{b}/tokens", json={"repo": "outside"}),
                  c.delete(f"/namespaces/{b}/repos/outside")):
            assert r.status_code == 403, r.text
            assert repr(b) in r.json()["errors"][0]["message"]
        # The namespaces it cannot read are not listed, nor counted.
        listed = c.get("/namespaces", params={"page": 1, "per_page": 200}).json()
        assert [n["namespace"] for n in listed["result"]] == [a]
        assert listed["result_info"]["total_count"] == 1
    with server.api(boot) as c:
        everything = {n["namespace"] for n in c.get("/namespaces", params={"per_page": 200}).json()["result"]}
        assert {a, b} <= everything

    # A deny policy carves a namespace out of an account-wide grant.
    carved = create_token(server, boot, {"name": "all-but-b", "policies": [
        policy(server.account_id, "Artifacts Edit"),
        policy(server.account_id, "Artifacts Edit", namespaces=[b], effect="deny")]})
    with server.api(carved["value"]) as c:
        assert c.get(f"/namespaces/{a}/repos/inside").status_code == 200
        assert c.get(f"/namespaces/{b}/repos/outside").status_code == 200  # read still allowed
        assert c.post(f"/namespaces/{b}/repos", json={"name": "y"}).status_code == 403
        assert c.post(f"/namespaces/{a}/repos", json={"name": "y"}).status_code == 201
        assert b in {n["namespace"] for n in c.get("/namespaces", params={"per_page": 200}).json()["result"]}
    unreadable = create_token(server, boot, {"name": "all-but-reading-b", "policies": [
        policy(server.account_id, "Artifacts Read"),
        policy(server.account_id, "Artifacts Read", namespaces=[b], effect="deny")]})
    with server.api(unreadable["value"]) as c:
        names = {n["namespace"] for n in c.get("/namespaces", params={"per_page": 200}).json()["result"]}
        assert a in names and b not in names


def test_bad_policies_are_refused(server: ServerProcess):
    boot = server.api_token
    other = "f" * 32
    cases = [
        ({"name": "x", "policies": []}, 400),
        ({"name": "x", "policies": [policy(server.account_id, "Zone Read")]}, 400),
        ({"name": "x", "policies": [policy(other, "Artifacts Read")]}, 403),  # not a member
        ({"name": "x", "policies": [policy(server.account_id, "Artifacts Read", namespaces=["-bad-"])]}, 400),
        ({"name": "", "policies": [policy(server.account_id, "Artifacts Read")]}, 400),
        ({"name": "x", "policies": [policy(server.account_id, "Artifacts Read")], "expires_on": "soon"}, 400),
        ({"name": "x", "policies": [policy(server.account_id, "Artifacts Read")],
          "condition": {"request_ip": {"in": ["300.1.1.1/8"]}}}, 400),
    ]
    with v4(server, boot) as c:
        before = c.get("/user/tokens", params={"per_page": 50}).json()["result_info"]["total_count"]
        for body, status in cases:
            r = c.post("/user/tokens", json=body)
            assert r.status_code == status, (body, r.text)
        assert c.get("/user/tokens", params={"per_page": 50}).json()["result_info"]["total_count"] == before


def test_expiry_and_not_before(server: ServerProcess):
    boot = server.api_token
    now = dt.datetime.now(dt.timezone.utc)
    later = create_token(server, boot, {"name": "later", "policies": [policy(server.account_id, "Artifacts Read")],
                                        "not_before": (now + dt.timedelta(hours=1)).isoformat()})
    with server.api(later["value"]) as c:
        assert c.get("/namespaces").status_code == 401
    t = create_token(server, boot, {"name": "short", "policies": [policy(server.account_id, "Artifacts Read")],
                                    "expires_on": (now + dt.timedelta(hours=1)).isoformat()})
    with server.api(t["value"]) as c:
        assert c.get("/namespaces").status_code == 200
    with v4(server, boot) as c:
        r = c.put(f"/user/tokens/{t['id']}", json={"expires_on": (now - dt.timedelta(seconds=1)).isoformat()})
        assert r.json()["result"]["status"] == "expired"
    with server.api(t["value"]) as c:
        assert c.get("/namespaces").status_code == 401


def test_ip_rules(server: ServerProcess):
    boot = server.api_token

    def with_condition(cond: dict) -> str:
        return create_token(server, boot, {"name": "ip", "condition": cond,
                                           "policies": [policy(server.account_id, "Artifacts Read")]})["value"]

    allowed = with_condition({"request_ip": {"in": ["127.0.0.1/32", "10.0.0.0/8"]}})
    elsewhere = with_condition({"request_ip": {"in": ["10.0.0.0/8"]}})
    denied = with_condition({"request_ip": {"not_in": ["127.0.0.0/8"]}})
    with server.api(allowed) as c:
        assert c.get("/namespaces").status_code == 200
    for tok in (elsewhere, denied):
        with server.api(tok) as c:
            r = c.get("/namespaces")
            assert r.status_code == 403 and "127.0.0.1" in r.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, database_url):
    """A server behind a (pretend) reverse proxy on loopback, with small throttle limits."""
    from artifactd.testing import temporary_database

    with temporary_database(database_url and database_url.rsplit("/", 1)[0] + "/postgres") as url:
        srv = ServerProcess(tmp_path_factory.mktemp("proxied") / "data", database_url=url, extra_env={
            "ARTIFACTD_TRUSTED_PROXIES": "127.0.0.1/32",
            "ARTIFACTD_LOGIN_FAILURE_THRESHOLD": "3",
            "ARTIFACTD_TOKEN_FAILURE_THRESHOLD": "4",
            "ARTIFACTD_AUTH_BACKOFF_BASE": "30",
        }).start()
        yield srv
        srv.stop()


def test_ip_rules_behind_trusted_proxy(proxied: ServerProcess):
    t = create_token(proxied, proxied.api_token, {"name": "office", "condition": {"request_ip": {
        "in": ["203.0.113.0/24"], "not_in": ["203.0.113.66/32"]}},
        "policies": [policy(proxied.account_id, "Artifacts Read")]})
    def get(xff: str | None):
        headers = {"X-Forwarded-For": xff} if xff else {}
        with proxied.api(t["value"]) as c:
            return c.get("/namespaces", headers=headers)
    assert get("203.0.113.7").status_code == 200
    # The proxy appends the real peer; what a client wrote in front is not believed.
    assert get("203.0.113.7, 198.51.100.4").status_code == 403
    assert get("203.0.113.66").status_code == 403
    assert get(None).status_code == 403  # the proxy itself (127.0.0.1) is not in the list
    with v4(proxied, proxied.api_token) as c:
        assert c.get(f"/user/tokens/{t['id']}").json()["result"]["last_used_ip"] == "203.0.113.7"


def test_failed_logins_and_token_checks_are_slowed_down(proxied: ServerProcess):
    from artifactd.testing.identity import FormClient

    email, password = new_user(proxied)
    fc = FormClient(proxied.base_url)
    fc.http.headers["X-Forwarded-For"] = "198.51.100.23"
    page = fc.get("/oauth2/device")
    statuses = [fc.submit(page, {"email": email, "password": "wrong-password"}).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    r = fc.submit(page, {"email": email, "password": password})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # even the right password waits
    fc.close()
    # Another client is not affected... but the targeted user is (per-user counter).
    other = FormClient(proxied.base_url)
    other.http.headers["X-Forwarded-For"] = "198.51.100.99"
    r = other.submit(other.get("/oauth2/device"), {"email": email, "password": password})
    assert r.status_code == 429
    email2, password2 = new_user(proxied)
    r = other.submit(other.get("/oauth2/device"), {"email": email2, "password": password2})
    assert r.status_code == 303
    other.close()

    # Token checks: unknown (well-formed) tokens from one client end in 429; a valid token
    # from that same client keeps working.
    from artifactd.services.apitokens import generate_api_token

    codes = []
    for _ in range(5):
        with proxied.api(generate_api_token()) as c:
            codes.append(c.get("/namespaces", headers={"X-Forwarded-For": "198.51.100.50"}).status_code)
    assert codes[:3] == [401, 401, 401] and codes[-1] == 429
    with proxied.api() as c:
        assert c.get("/namespaces", headers={"X-Forwarded-For": "198.51.100.50"}).status_code == 200
    # Loopback (the server's own machine) is never slowed down.
    for _ in range(6):
        with proxied.api(generate_api_token()) as c:
            assert c.get("/namespaces").status_code == 401
    # Failed logins are in the audit log, with the client IP.
    events = json.loads(run_cli(proxied, "audit", "--action", "login.password", "--json").stdout)
    assert any(e["outcome"] == "failure" and e["client_ip"] == "198.51.100.23" and e["actor"]["email"] == email
               for e in events)
    # Unknown tokens belong to no account: the operator sees them with --system.
    system = json.loads(run_cli(proxied, "audit", "--system", "--action", "auth.token_rejected", "--json").stdout)
    assert {e["client_ip"] for e in system} >= {"198.51.100.50", "127.0.0.1"}
    assert all(e["token_id"] is None and e["outcome"] == "failure" for e in system)


def test_last_used_is_recorded_without_a_write_per_request(server: ServerProcess):
    boot = server.api_token
    t = create_token(server, boot, {"name": "lu", "policies": [policy(server.account_id, "Artifacts Read")]})
    with v4(server, boot) as c:
        assert c.get(f"/user/tokens/{t['id']}").json()["result"]["last_used_on"] is None
    with server.api(t["value"]) as c:
        assert c.get("/namespaces").status_code == 200
    with v4(server, boot) as c:
        first = c.get(f"/user/tokens/{t['id']}").json()["result"]
    assert first["last_used_on"] is not None and first["last_used_ip"] == "127.0.0.1"
    time.sleep(1.1)
    with server.api(t["value"]) as c:
        for _ in range(5):
            assert c.get("/namespaces").status_code == 200
    with v4(server, boot) as c:
        again = c.get(f"/user/tokens/{t['id']}").json()["result"]
    # Within the resolution (60 s by default) further uses do not rewrite the row.
    assert again["last_used_on"] == first["last_used_on"]


def test_users_tokens_are_bounded_by_membership_and_account_tokens(server: ServerProcess):
    email, _ = new_user(server, role="member")
    manager = user_manager_token(server, email)
    with v4(server, manager) as c:
        me = c.get("/user/tokens/verify").json()["result"]
        assert me["user"]["email"] == email and me["kind"] == "api_token"
        # A member may make tokens for accounts they belong to...
        r = c.post("/user/tokens", json={"name": "mine", "policies": [policy(server.account_id, "Artifacts Edit")]})
        assert r.status_code == 200
        mine = r.json()["result"]["value"]
        # ...but not grant API Tokens permissions on the account (admins only), nor manage its tokens.
        r = c.post("/user/tokens", json={"name": "adm", "policies": [policy(server.account_id, "API Tokens Write")]})
        assert r.status_code == 403
        assert c.get(f"/accounts/{server.account_id}/tokens").status_code == 403
        assert c.get(f"/accounts/{server.account_id}/audit_logs").status_code == 403
        assert c.get(f"/accounts/{server.account_id}/members").status_code == 403
    with server.api(mine) as c:
        assert c.get("/namespaces").status_code == 200

    # The admin (bootstrap token) manages account-owned tokens.
    acct_tok = create_token(server, server.api_token, {"name": "acct", "policies": [
        policy(server.account_id, "Artifacts Read")]}, path=f"/accounts/{server.account_id}/tokens")
    with v4(server, acct_tok["value"]) as c:
        r = c.get("/user/tokens/verify")  # wrangler tells account tokens apart by this code
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == 1000
        assert c.get(f"/accounts/{server.account_id}/tokens/verify").json()["result"]["id"] == acct_tok["id"]
        assert [a["id"] for a in c.get("/accounts").json()["result"]] == [server.account_id]
    with v4(server, server.api_token) as c:
        ids = [x["id"] for x in c.get(f"/accounts/{server.account_id}/tokens").json()["result"]]
        assert acct_tok["id"] in ids and all(x not in ids for x in (me["id"],))

    # Removing the member from the account takes the account away from their tokens at once.
    run_cli(server, "admin", "members", "remove", server.account_id, email)
    with server.api(mine) as c:
        assert c.get("/namespaces").status_code == 403


def test_user_accounts_memberships_members_and_audit(server: ServerProcess):
    boot = bootstrap(server)
    with v4(server, server.api_token) as c:
        user = c.get("/user").json()["result"]
        assert user["email"] == boot["admin_email"]
        accts = c.get("/accounts").json()
        assert accts["result"][0]["id"] == server.account_id and accts["result_info"]["total_count"] >= 1
        ms = c.get("/memberships").json()["result"]
        assert ms[0]["account"]["id"] == server.account_id and "Administrator" in ms[0]["roles"]
        email, _ = new_user(server, accounts=())
        r = c.post(f"/accounts/{server.account_id}/members", json={"email": email, "role": "member"})
        assert r.status_code == 201 and r.json()["result"]["role"] == "member"
        member_id = r.json()["result"]["id"]
        listed = c.get(f"/accounts/{server.account_id}/members").json()["result"]
        assert {m["email"] for m in listed} >= {email, boot["admin_email"]}
        assert c.put(f"/accounts/{server.account_id}/members/{member_id}",
                     json={"role": "admin"}).json()["result"]["role"] == "admin"
        assert c.delete(f"/accounts/{server.account_id}/members/{member_id}").status_code == 200

        # The audit log: token create/roll/revoke/delete, repo create/delete, with token ids, never secrets.
        t = c.post("/user/tokens", json={"name": "audited", "policies": [policy(server.account_id, "Artifacts Edit")]}
                   ).json()["result"]
        secret = t["value"]
        rolled = c.put(f"/user/tokens/{t['id']}/value", json={}).json()["result"]
        c.put(f"/user/tokens/{t['id']}", json={"status": "disabled"})
        c.delete(f"/user/tokens/{t['id']}")
        ns = f"au-{secrets.token_hex(3)}"
        server.create_repo(ns, "audited-repo")
        with server.api() as api:
            api.delete(f"/namespaces/{ns}/repos/audited-repo")
        r = c.get(f"/accounts/{server.account_id}/audit_logs", params={"per_page": 200})
        assert r.status_code == 200
        events = r.json()["result"]
    text = json.dumps(events)
    assert secret not in text and rolled not in text and server.api_token not in text
    actions = {(e["action"], e["resource"]) for e in events}
    for action in ("token.create", "token.roll", "token.revoke", "token.delete"):
        assert (action, f"api_token:{t['id']}") in actions
    assert ("repo.create", f"repo:{ns}/audited-repo") in actions and ("repo.delete", f"repo:{ns}/audited-repo") in actions
    create = next(e for e in events if e["action"] == "token.create" and e["resource"] == f"api_token:{t['id']}")
    assert create["client_ip"] == "127.0.0.1" and create["actor"]["email"] == boot["admin_email"]
    assert create["token_id"] and create["token_id"] != t["id"] and create["when"].endswith("Z")
    assert any(e["action"] == "member.add" for e in events)
    # The same log from the server's machine.
    cli = json.loads(run_cli(server, "audit", "--account", server.account_id, "--action", "token.", "--json",
                             "--limit", "500").stdout)
    assert any(e["resource"] == f"api_token:{t['id']}" and e["action"] == "token.roll" for e in cli)


def test_permission_groups_listing(server: ServerProcess):
    with v4(server, server.api_token) as c:
        groups = {g["name"]: g for g in c.get("/user/tokens/permission_groups").json()["result"]}
    assert {"Artifacts Read", "Artifacts Edit", "API Tokens Read", "API Tokens Write"} <= set(groups)
    # Groups can be named by id, as Cloudflare clients do.
    t = create_token(server, server.api_token, {"name": "by-id", "policies": [{
        "effect": "allow", "permission_groups": [{"id": groups["Artifacts Read"]["id"]}],
        "resources": {ACCT + server.account_id: "*"}}]})
    assert t["policies"][0]["permission_groups"][0]["name"] == "Artifacts Read"


def test_second_account_and_account_wildcard(server: ServerProcess):
    email, _ = new_user(server, accounts=())
    acct2 = run_cli(server, "admin", "accounts", "create", "Team Two", "--admin", email).stdout.strip()
    assert len(acct2) == 32
    run_cli(server, "admin", "members", "add", server.account_id, email, "--role", "member")
    listed = run_cli(server, "admin", "members", "list", acct2, "--json").stdout
    assert json.loads(listed)[0]["email"] == email and json.loads(listed)[0]["role"] == "admin"
    manager = user_manager_token(server, email)
    with v4(server, manager) as c:
        r = c.post("/user/tokens", json={"name": "everywhere", "policies": [{
            "effect": "allow", "permission_groups": [{"name": "Artifacts Edit"}],
            "resources": {ACCT + "*": "*"}}]})
        assert r.status_code == 200, r.text
        everywhere = r.json()["result"]["value"]
        # As admin of Team Two, they may grant API Tokens permissions there.
        assert c.post("/user/tokens", json={"name": "adm2", "policies": [policy(acct2, "API Tokens Write")]}
                      ).status_code == 200
    with v4(server, everywhere) as c:
        assert {a["id"] for a in c.get("/accounts").json()["result"]} == {server.account_id, acct2}
        for acct in (server.account_id, acct2):
            r = c.post(f"/accounts/{acct}/artifacts/namespaces/wild/repos", json={"name": f"r-{secrets.token_hex(3)}"})
            assert r.status_code == 201, r.text
    # Leaving an account takes it away from the wildcard token too.
    run_cli(server, "admin", "members", "remove", server.account_id, email)
    with v4(server, everywhere) as c:
        assert c.get(f"/accounts/{server.account_id}/artifacts/namespaces").status_code == 403
        assert c.get(f"/accounts/{acct2}/artifacts/namespaces").status_code == 200
    # The last admin of an account cannot be removed.
    r = run_cli(server, "admin", "members", "remove", acct2, email, check=False)
    assert r.returncode != 0 and "last admin" in r.stderr
