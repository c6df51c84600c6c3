"""REST routes 5-8 and 17-19 against the running server: shapes, auth, errors."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from artifactd.testing import ServerProcess


def envelope_error(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert body["success"] is False and body["result"] is None
    return body["errors"][0]["code"], body["errors"][0]["message"]


def test_create_get_list_delete(server: ServerProcess):
    name = f"Repo-{secrets.token_hex(3)}"
    with server.api() as c:
        r = c.post("/namespaces/team-a/repos", json={"name": name, "description": "d", "default_branch": "dev"})
        assert r.status_code == 201
        res = r.json()["result"]
        assert set(res) >= {"id", "name", "description", "default_branch", "remote", "token"}
        assert res["default_branch"] == "dev" and res["description"] == "d"
        assert res["token"].startswith("art_v1_") and "?expires=" in res["token"]
        assert res["remote"].endswith(f"/git/{server.account_id}/team-a/{name}.git")

        got = c.get(f"/namespaces/team-a/repos/{name}").json()["result"]
        for field in ("id", "name", "description", "default_branch", "created_at", "updated_at",
                      "last_push_at", "source", "read_only", "remote"):
            assert field in got
        assert got["last_push_at"] is None and got["read_only"] is False and got["status"] == "ready"
        # Case-insensitive look-up, case preserved.
        assert c.get(f"/namespaces/team-a/repos/{name.lower()}").json()["result"]["name"] == name

        r = c.post("/namespaces/team-a/repos", json={"name": name.upper()})
        assert r.status_code == 409 and envelope_error(r)[0] == 10201

        listed = c.get("/namespaces/team-a/repos").json()
        assert any(x["name"] == name for x in listed["result"])
        assert set(listed["result_info"]) == {"cursor", "per_page", "count"}

        toks = c.get(f"/namespaces/team-a/repos/{name}/tokens").json()
        assert toks["result_info"]["total_count"] == 1

        r = c.delete(f"/namespaces/team-a/repos/{name}")
        assert r.status_code == 202 and r.json()["result"]["id"] == res["id"]
        r = c.get(f"/namespaces/team-a/repos/{name}")
        assert r.status_code == 404 and envelope_error(r)[0] == 10200


def test_pagination_cursor_walks_everything(server: ServerProcess):
    ns = f"pg-{secrets.token_hex(3)}"
    names = {f"p{i:02d}" for i in range(7)}
    for n in names:
        server.create_repo(ns, n)
    with server.api() as c:
        for sort, direction in (("created_at", "desc"), ("name", "asc"), ("last_push_at", "desc")):
            seen: list[str] = []
            cursor = ""
            while True:
                r = c.get(f"/namespaces/{ns}/repos", params={"limit": 3, "cursor": cursor, "sort": sort,
                                                            "direction": direction})
                assert r.status_code == 200, r.text
                page = r.json()
                seen += [x["name"] for x in page["result"]]
                cursor = page["result_info"]["cursor"]
                if not cursor:
                    break
            assert sorted(seen) == sorted(names) and len(seen) == len(names)
            if sort == "name":
                assert seen == sorted(names)
        r = c.get(f"/namespaces/{ns}/repos", params={"search": "P0"})
        assert {x["name"] for x in r.json()["result"]} == names


@pytest.mark.parametrize("body,code", [
    ({"name": "-bad"}, 10101),
    ({"name": "a/b"}, 10101),
    ({"name": "x" * 64}, 10101),
    ({"name": 5}, 10101),
    ({}, 10101),
    ({"name": "ok-name", "read_only": "yes"}, 10100),
    ({"name": "ok-name", "default_branch": "a..b"}, 10100),
    ({"name": "ok-name", "default_branch": "HEAD"}, 10100),
    ({"name": "ok-name", "default_branch": "refs/heads/main"}, 10100),
    ({"name": "ok-name", "description": "x" * 1025}, 10100),
])
def test_create_rejects_bad_input(server: ServerProcess, body: dict, code: int):
    with server.api() as c:
        r = c.post("/namespaces/default/repos", json=body)
    assert r.status_code == 400 and envelope_error(r)[0] == code


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b"\xff\xfe",
                                 b"[" * 5000 + b"]" * 5000,  # RecursionError in the parser: was a 500
                                 b'{"name": "nan-repo", "x": NaN}', b'{"name": "inf-repo", "x": 1e999999}'])
def test_malformed_json_is_400(server: ServerProcess, raw: bytes):
    with server.api() as c:
        r = c.post("/namespaces/default/repos", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and envelope_error(r)[0] == 10100


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"sort": "size"},
                                    {"direction": "up"}, {"cursor": "!!!"},
                                    {"cursor": base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()}])
def test_list_rejects_bad_query(server: ServerProcess, params: dict):
    with server.api() as c:
        r = c.get("/namespaces/default/repos", params=params)
    assert r.status_code == 400 and envelope_error(r)[0] == 10100


def test_auth_is_required_and_checked(server: ServerProcess, repo: dict):
    url = f"{server.api_base}/namespaces/default/repos"
    r = httpx.get(url)
    assert r.status_code == 401 and envelope_error(r)
    r = httpx.get(url, headers={"Authorization": "Bearer artd_not-a-token"})
    assert r.status_code == 401
    # A repo token never opens the control plane.
    r = httpx.get(url, headers={"Authorization": f"Bearer {repo['token']}"})
    assert r.status_code == 401
    other = f"{server.base_url}/client/v4/accounts/{'0' * 32}/artifacts/namespaces/default/repos"
    r = httpx.get(other, headers={"Authorization": f"Bearer {server.api_token}"})
    assert r.status_code == 403 and envelope_error(r)


def test_tokens_create_list_revoke(server: ServerProcess, repo: dict):
    with server.api() as c:
        r = c.post("/namespaces/default/tokens", json={"repo": repo["name"], "scope": "read", "ttl": 60})
        assert r.status_code == 201
        tok = r.json()["result"]
        assert set(tok) == {"id", "plaintext", "scope", "expires_at"} and tok["scope"] == "read"
        assert len(tok["id"]) == 16
        r = c.post("/namespaces/default/tokens", json={"repo": repo["name"]})
        assert r.json()["result"]["scope"] == "write"
        for bad, code in (({"ttl": 59}, 10103), ({"ttl": 31_536_001}, 10103), ({"ttl": 1.5}, 10103),
                          ({"ttl": "60"}, 10103), ({"scope": "admin"}, 10100)):
            r = c.post("/namespaces/default/tokens", json={"repo": repo["name"], **bad})
            assert r.status_code == 400 and envelope_error(r)[0] == code, (bad, r.text)
        r = c.post("/namespaces/default/tokens", json={"repo": repo["name"], "ttl": "600"})
        assert envelope_error(r)[1] == "Invalid TTL: must be a whole number of seconds, not a string."
        r = c.post("/namespaces/default/tokens", json={"repo": "missing-repo"})
        assert r.status_code == 404 and envelope_error(r)[0] == 10200

        listed = c.get(f"/namespaces/default/repos/{repo['name']}/tokens", params={"per_page": 2}).json()
        assert listed["result_info"] == {"page": 1, "per_page": 2, "count": 2, "total_count": 3, "total_pages": 2}
        r = c.delete(f"/namespaces/default/tokens/{tok['id']}")
        assert r.status_code == 200 and r.json()["result"] == {"id": tok["id"]}
        revoked = c.get(f"/namespaces/default/repos/{repo['name']}/tokens", params={"state": "revoked"}).json()
        assert [t["id"] for t in revoked["result"]] == [tok["id"]]
        assert c.delete(f"/namespaces/default/tokens/{'z' * 16}").status_code == 404
        r = c.get(f"/namespaces/default/repos/{repo['name']}/tokens", params={"state": "bogus"})
        assert r.status_code == 400


def test_secrets_not_stored_in_plaintext(server: ServerProcess, repo: dict):
    if server.database_url:
        pytest.skip("file scan applies to the SQLite store")
    raw = b"".join(p.read_bytes() for p in server.data_dir.glob("artifactd.db*"))
    secret = repo["token"].split("?")[0].encode()
    assert secret not in raw and server.api_token.encode() not in raw
    assert json.loads((server.data_dir / "bootstrap.json").read_text())["api_token"] == server.api_token
    assert (server.data_dir / "bootstrap.json").stat().st_mode & 0o777 == 0o600


def test_page_pagination_as_wrangler_sends_it(server: ServerProcess):
    ns = f"pp-{secrets.token_hex(3)}"
    for i in range(5):
        server.create_repo(ns, f"q{i}")
    with server.api() as c:
        seen = []
        page = 1
        while True:
            r = c.get(f"/namespaces/{ns}/repos", params={"page": page, "per_page": 2})
            assert r.status_code == 200, r.text
            info = r.json()["result_info"]
            assert {"page", "per_page", "count", "total_count", "total_pages"} <= set(info)
            assert info["total_count"] == 5 and info["total_pages"] == 3
            seen += [x["name"] for x in r.json()["result"]]
            if page * info["per_page"] >= info["total_count"]:
                break
            page += 1
        assert sorted(seen) == [f"q{i}" for i in range(5)]
        assert c.get(f"/namespaces/{ns}/repos", params={"page": 0}).status_code == 400
        r = c.get("/namespaces", params={"page": 1})
        info = r.json()["result_info"]
        assert info["total_count"] >= 1 and any(n["namespace"] == ns for n in r.json()["result"])
