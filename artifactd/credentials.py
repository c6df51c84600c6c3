"""Client-side credentials: the OAuth login of ``artifactd login``, stored in the user's
config directory (mode 0600) and refreshed automatically, or an API token from the
environment. Code passes no token.

Token order: ``ARTIFACTD_API_TOKEN``, then ``CLOUDFLARE_API_TOKEN``, then the stored login
for that server (refreshed when it is about to expire). The binding, the control-plane
CLI and the Git credential helper call :func:`resolve_connection`, which also settles the
server URL and the account (docs/credentials.md):

1. explicit arguments (``url=``, ``account_id=``, ``api_token=``; CLI flags);
2. the environment: ``ARTIFACTD_URL`` / ``CLOUDFLARE_API_BASE_URL``,
   ``ARTIFACTD_API_TOKEN`` / ``CLOUDFLARE_API_TOKEN``,
   ``ARTIFACTD_ACCOUNT_ID`` / ``CLOUDFLARE_ACCOUNT_ID``;
3. the project's config file (server URL and account id only, never a secret);
4. the stored login (its server is the default server); a login's token is only ever
   sent to the server that issued it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:8787"
CLI_CLIENT_ID = "artifactd-cli"
DEFAULT_SCOPES = ("artifacts:write",)
#: Refresh this long before the access token expires.
REFRESH_MARGIN = 60


class LoginError(Exception):
    pass


def config_dir() -> Path:
    if os.environ.get("ARTIFACTD_CONFIG_DIR"):
        return Path(os.environ["ARTIFACTD_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "artifactd"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def server_url(url: str | None = None) -> str:
    return (url or os.environ.get("ARTIFACTD_URL") or _stored().get("default_server") or DEFAULT_URL).rstrip("/")


def client_id() -> str:
    return os.environ.get("ARTIFACTD_CLIENT_ID", CLI_CLIENT_ID)


# -- the file -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialize refreshes between processes: a refresh token can be spent only once, and
    spending it twice revokes the whole login."""
    d = config_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(d / "credentials.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _stored() -> dict:
    try:
        data = json.loads(credentials_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(data: dict) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def stored_login(url: str | None = None) -> dict | None:
    return (_stored().get("servers") or {}).get(server_url(url))


def save_login(url: str, grant: dict) -> dict:
    entry = {
        "client_id": client_id(),
        "access_token": grant["access_token"],
        "expires_at": int(time.time()) + int(grant.get("expires_in", 3600)),
        "refresh_token": grant.get("refresh_token"),
        "scope": grant.get("scope", ""),
    }
    with _locked():
        data = _stored()
        data.setdefault("servers", {})[url] = entry
        data["default_server"] = url
        _write(data)
    return entry


def forget_login(url: str) -> None:
    with _locked():
        data = _stored()
        (data.get("servers") or {}).pop(url, None)
        if data.get("default_server") == url:
            data.pop("default_server")
        _write(data)


# -- tokens --------------------------------------------------------------------------------------


@dataclass
class Credential:
    token: str
    source: str  # env:ARTIFACTD_API_TOKEN | env:CLOUDFLARE_API_TOKEN | login
    server: str


def resolve_token(url: str | None = None) -> Credential | None:
    """The credential to call ``url`` with, refreshing a stored login if needed."""
    for var in ("ARTIFACTD_API_TOKEN", "CLOUDFLARE_API_TOKEN"):
        if os.environ.get(var):
            return Credential(os.environ[var], f"env:{var}", server_url(url))
    base = server_url(url)
    entry = stored_login(base)
    if entry is None:
        return None
    if entry.get("expires_at", 0) - REFRESH_MARGIN > time.time():
        return Credential(entry["access_token"], "login", base)
    return Credential(refresh(base)["access_token"], "login", base)


def refresh(url: str) -> dict:
    with _locked():
        entry = (_stored().get("servers") or {}).get(url)
        if entry is None:
            raise LoginError(f"Not logged in to {url}: run `artifactd login`.")
        if entry.get("expires_at", 0) - REFRESH_MARGIN > time.time():
            return entry  # another process refreshed it meanwhile
        if not entry.get("refresh_token"):
            raise LoginError(f"The login to {url} has expired: run `artifactd login` again.")
        r = httpx.post(url + "/oauth2/token", data={"grant_type": "refresh_token", "client_id": entry["client_id"],
                                                   "refresh_token": entry["refresh_token"]}, timeout=30)
        if r.status_code != 200:
            raise LoginError(f"The login to {url} could not be refreshed ({_oauth_error(r)}): "
                             "run `artifactd login` again.")
        grant = r.json()
        new = {**entry, "access_token": grant["access_token"],
               "expires_at": int(time.time()) + int(grant.get("expires_in", 3600)),
               "refresh_token": grant.get("refresh_token", entry.get("refresh_token")),
               "scope": grant.get("scope", entry.get("scope"))}
        data = _stored()
        data.setdefault("servers", {})[url] = new
        _write(data)
        return new


def _oauth_error(r: httpx.Response) -> str:
    try:
        body = r.json()
        return body.get("error_description") or body.get("error") or f"HTTP {r.status_code}"
    except ValueError:
        return f"HTTP {r.status_code}"


# -- login flows ----------------------------------------------------------------------------------


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def login_browser(url: str, scopes: list[str], *, open_browser: bool = True, timeout: float = 300,
                  show: Callable[[str], None] = print) -> dict:
    """Authorization code + PKCE with a one-shot callback server on 127.0.0.1."""
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(24)
    result: dict = {}
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path != "/callback":
                self.send_error(404)
                return
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if q.get("state") != state:
                self._reply(400, "This callback does not match the pending login.")
                return
            result.update(q)
            ok = "code" in q
            self._reply(200 if ok else 400, "Signed in. You can close this tab and return to the terminal."
                        if ok else f"Sign-in failed: {q.get('error_description') or q.get('error')}.")
            done.set()

        def _reply(self, status: int, text: str):
            body = f"<!doctype html><meta charset=utf-8><title>artifactd</title><p>{text}</p>".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    redirect_uri = f"http://127.0.0.1:{server.server_port}/callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        auth_url = url + "/oauth2/auth?" + urlencode({
            "response_type": "code", "client_id": client_id(), "redirect_uri": redirect_uri,
            "scope": " ".join([*scopes, "offline_access"]), "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        show(f"Open this link to sign in: {auth_url}")
        if open_browser:
            webbrowser.open(auth_url)
        if not done.wait(timeout):
            raise LoginError("Timed out waiting for the sign-in to finish.")
    finally:
        server.shutdown()
        server.server_close()
    if "code" not in result:
        raise LoginError(f"Sign-in failed: {result.get('error_description') or result.get('error')}.")
    r = httpx.post(url + "/oauth2/token", timeout=30, data={
        "grant_type": "authorization_code", "code": result["code"], "redirect_uri": redirect_uri,
        "client_id": client_id(), "code_verifier": verifier})
    if r.status_code != 200:
        raise LoginError(f"Could not exchange the authorization code: {_oauth_error(r)}.")
    return r.json()


def login_device(url: str, scopes: list[str], *, timeout: float = 900,
                 show: Callable[[str], None] = print) -> dict:
    r = httpx.post(url + "/oauth2/device/auth", timeout=30,
                   data={"client_id": client_id(), "scope": " ".join([*scopes, "offline_access"])})
    if r.status_code != 200:
        raise LoginError(f"Device authorization failed: {_oauth_error(r)}.")
    d = r.json()
    show(f"To sign in, open {d['verification_uri']} and enter the code {d['user_code']}")
    show(f"(or open {d.get('verification_uri_complete', d['verification_uri'])})")
    interval = max(1, int(d.get("interval", 5)))
    deadline = time.monotonic() + min(timeout, float(d.get("expires_in", timeout)))
    while time.monotonic() < deadline:
        time.sleep(interval)
        t = httpx.post(url + "/oauth2/token", timeout=30, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": d["device_code"],
            "client_id": client_id()})
        if t.status_code == 200:
            return t.json()
        err = (t.json() if t.headers.get("content-type", "").startswith("application/json") else {}).get("error")
        if err == "authorization_pending":
            continue
        if err == "slow_down":
            interval += 5
            continue
        if err == "access_denied":
            raise LoginError("The request was denied in the browser.")
        if err == "expired_token":
            raise LoginError("The code expired before it was approved; run the login again.")
        raise LoginError(f"Device login failed: {_oauth_error(t)}.")
    raise LoginError("Timed out waiting for the device to be approved.")


def revoke(url: str, entry: dict) -> None:
    for kind in ("refresh_token", "access_token"):
        if entry.get(kind):
            httpx.post(url + "/oauth2/revoke", timeout=30, data={
                "token": entry[kind], "token_type_hint": kind, "client_id": entry.get("client_id", client_id())})


# -- resolution for the binding, the CLI and the credential helper ------------------------------


def server_root(url: str) -> str:
    """``http://host:port`` from a server URL or an API base (``.../client/v4``)."""
    url = url.strip().rstrip("/")
    if url.endswith("/client/v4"):
        url = url[: -len("/client/v4")]
    return url.rstrip("/")


def same_server(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False

    def norm(u: str) -> tuple[str, str, int | None, str]:
        p = urlsplit(server_root(u))
        port = p.port or {"http": 80, "https": 443}.get(p.scheme)
        return p.scheme.lower(), (p.hostname or "").lower(), port, p.path.rstrip("/")

    return norm(a) == norm(b)


def _env(*names: str) -> str | None:
    for n in names:
        if os.environ.get(n):
            return os.environ[n]
    return None


def env_url() -> str | None:
    return _env("ARTIFACTD_URL", "CLOUDFLARE_API_BASE_URL", "CF_API_BASE_URL")


def env_token() -> str | None:
    return _env("ARTIFACTD_API_TOKEN", "CLOUDFLARE_API_TOKEN", "CF_API_TOKEN")


def env_account_id() -> str | None:
    return _env("ARTIFACTD_ACCOUNT_ID", "CLOUDFLARE_ACCOUNT_ID", "CF_ACCOUNT_ID")


def _stored_server(url: str) -> str | None:
    """The key of the stored login for ``url`` (the same server, however spelled), if any."""
    for key in (_stored().get("servers") or {}):
        if same_server(key, url):
            return key
    return None


class LoginToken:
    """A callable handing out the stored login's access token for one server, refreshing
    it (under the cross-process lock) when it is about to expire."""

    def __init__(self, server: str):
        self.server = server

    def __call__(self) -> str:
        from artifactd.errors import ArtifactsError, ErrorCode

        entry = stored_login(self.server)
        if entry is None:
            raise ArtifactsError(ErrorCode.UNAUTHENTICATED,
                                 f"Not logged in to {self.server}: run `artifactd login`.")
        if entry.get("expires_at", 0) - REFRESH_MARGIN > time.time():
            return entry["access_token"]
        try:
            return refresh(self.server)["access_token"]
        except LoginError as e:
            raise ArtifactsError(ErrorCode.UNAUTHENTICATED, str(e)) from None
        except httpx.HTTPError as e:
            raise ArtifactsError(ErrorCode.UPSTREAM_UNAVAILABLE,
                                 f"Cannot reach {self.server} to refresh the login: {type(e).__name__}") from None


@dataclass
class Connection:
    """Where to send REST calls and with what."""

    url: str
    account_id: str | None
    token: str | Callable[[], str] | None = field(repr=False)
    #: Where the credential came from: "argument", "environment", "login" (or None).
    token_source: str | None = None


def resolve_connection(url: str | None = None, account_id: str | None = None, api_token: str | None = None, *,
                       config_url: str | None = None, config_account_id: str | None = None,
                       require_token: bool = True) -> Connection:
    """The server, account and credential to use, by the order in this module's docstring.
    Without any account id the binding asks the server (``GET /accounts``)."""
    from artifactd.errors import ArtifactsError, ErrorCode

    chosen = url or env_url() or config_url or _stored().get("default_server") or DEFAULT_URL
    chosen = server_root(chosen)
    login_key = _stored_server(chosen)

    token: str | Callable[[], str] | None
    if api_token:
        token, source = api_token, "argument"
    elif env_token():
        token, source = env_token(), "environment"
    elif login_key is not None:
        token, source = LoginToken(login_key), "login"
    else:
        token, source = None, None
    if token is None and require_token:
        raise ArtifactsError(
            ErrorCode.UNAUTHENTICATED,
            f"No credential for {chosen}: run `artifactd login --url {chosen}`, or set ARTIFACTD_API_TOKEN "
            "(or CLOUDFLARE_API_TOKEN).",
        )
    account = account_id or env_account_id() or config_account_id
    return Connection(url=chosen, account_id=account, token=token, token_source=source)
