"""Test helpers for identity: users through the real ``artifactd admin`` command, an
HTML-form client that walks the sign-in and consent pages over HTTP, PKCE."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from artifactd.testing.server import ServerProcess

WRANGLER_CLIENT_ID = "54d11594-84e4-41aa-b438-e81b8fa78ee7"
CLI_CLIENT_ID = "artifactd-cli"


def run_cli(server: ServerProcess, *args: str, input: str | None = None, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """``artifactd <args>`` against the server's store (``admin`` and ``audit`` commands)."""
    full_env = {**os.environ, **(env or {})}
    full_env["ARTIFACTD_DATA_DIR"] = str(server.data_dir)
    if server.database_url:
        full_env["ARTIFACTD_DATABASE_URL"] = server.database_url
    else:
        full_env.pop("ARTIFACTD_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "artifactd", *args], input=input, capture_output=True, text=True,
                          env=full_env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"artifactd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def bootstrap(server: ServerProcess) -> dict:
    return json.loads((server.data_dir / "bootstrap.json").read_text())


def new_user(server: ServerProcess, role: str = "member", account: str | None = None,
             accounts: tuple[str, ...] | None = None) -> tuple[str, str]:
    """A fresh user (e-mail, password), member of the bootstrap account by default."""
    email = f"u{secrets.token_hex(5)}@example.com"
    password = secrets.token_urlsafe(16)
    accts = accounts if accounts is not None else ((account or server.account_id),)
    args = ["admin", "users", "create", email, "--password-stdin", "--role", role]
    for a in accts:
        args += ["--account", a]
    run_cli(server, *args, input=password + "\n")
    return email, password


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))

    def handle_data(self, data):
        self.text.append(data)


def parse_page(html: str) -> _Forms:
    p = _Forms()
    p.feed(html)
    return p


class FormClient:
    """Walks the sign-in, password and consent pages with plain HTTP, as a browser
    without JavaScript would (cookies kept, forms posted with their hidden fields)."""

    def __init__(self, base_url: str, verify: bool | str = True):
        self.base = base_url
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30, verify=verify)

    def close(self):
        self.http.close()

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def submit(self, page: httpx.Response, values: dict, button: tuple[str, str] | None = None) -> httpx.Response:
        forms = parse_page(page.text).forms
        assert forms, f"no form on page ({page.status_code}):\n{page.text[:2000]}"
        form = forms[0]
        data = {**form["fields"], **values}
        if button:
            data[button[0]] = button[1]
        return self.http.post(urljoin(str(page.url), form["action"]), data=data)

    def follow(self, r: httpx.Response) -> httpx.Response:
        while r.status_code in (302, 303, 307) and urlsplit(r.headers["location"]).netloc in ("", urlsplit(self.base).netloc):
            r = self.http.get(urljoin(str(r.url), r.headers["location"]))
        return r

    def sign_in(self, page: httpx.Response, email: str, password: str,
                new_password: str | None = None) -> httpx.Response:
        r = self.follow(self.submit(page, {"email": email, "password": password}))
        if 'name="new_password"' in r.text:
            assert new_password, "the server asks for a new password"
            r = self.follow(self.submit(r, {"new_password": new_password, "confirm_password": new_password}))
        return r

    def authorize(self, email: str, password: str, *, client_id: str = CLI_CLIENT_ID,
                  redirect_uri: str = "http://127.0.0.1:45678/callback", scope: str = "artifacts:write offline_access",
                  decision: str = "allow", new_password: str | None = None) -> dict:
        """The whole browser part of the code flow; returns the callback's query and the verifier."""
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(12)
        page = self.get("/oauth2/auth?" + httpx.QueryParams({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256"}).__str__())
        assert page.status_code == 200, page.text
        if 'name="password"' in page.text:
            page = self.sign_in(page, email, password, new_password)
        assert page.status_code == 200 and 'value="allow"' in page.text, page.text[:3000]
        r = self.submit(page, {}, ("action", decision))
        assert r.status_code == 303, r.text
        loc = r.headers["location"]
        assert loc.startswith(redirect_uri), loc
        q = {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
        assert q.get("state") == state
        return {**q, "verifier": verifier, "redirect_uri": redirect_uri, "client_id": client_id,
                "consent_page": page.text}


def exchange_code(base_url: str, got: dict, verify: bool | str = True) -> httpx.Response:
    return httpx.post(base_url + "/oauth2/token", verify=verify, data={
        "grant_type": "authorization_code", "code": got["code"], "redirect_uri": got["redirect_uri"],
        "client_id": got["client_id"], "code_verifier": got["verifier"]})


def oauth_login(server: ServerProcess, email: str, password: str, scope: str = "artifacts:write offline_access",
                client_id: str = CLI_CLIENT_ID) -> dict:
    fc = FormClient(server.base_url)
    try:
        got = fc.authorize(email, password, scope=scope, client_id=client_id,
                           redirect_uri="http://127.0.0.1:45678/callback" if client_id == CLI_CLIENT_ID
                           else "http://localhost:8976/oauth/callback")
    finally:
        fc.close()
    r = exchange_code(server.base_url, got)
    assert r.status_code == 200, r.text
    return r.json()
