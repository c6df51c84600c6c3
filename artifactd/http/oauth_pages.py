"""OAuth 2.0 endpoints and pages.

- ``GET/POST /oauth2/auth``          sign in + consent (authorization code, PKCE S256)
- ``POST /oauth2/token``             code, refresh-token and device-code exchanges
- ``POST /oauth2/revoke``            RFC 7009
- ``POST /oauth2/device/auth``       RFC 8628 device authorization
- ``GET/POST /oauth2/device``        where a person enters and approves a device code
- ``GET /.well-known/oauth-authorization-server``  RFC 8414 metadata

Pages are plain HTML forms (no JavaScript). Every POST carries a CSRF token bound to a
cookie (HMAC with a server secret); the sign-in session is a signed, HttpOnly,
SameSite=Lax cookie that a password change invalidates.
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from artifactd.errors import ArtifactsError
from artifactd.http.deps import client_ip, core_of
from artifactd.http.oauth_templates import render
from artifactd.services.oauth import SCOPES, AuthRequest, OAuthError, redirect_with
from artifactd.services.throttle import Throttled
from artifactd.services.users import MIN_PASSWORD_LENGTH
from artifactd.store.models_identity import User

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "artifactd_session"
CSRF_COOKIE = "artifactd_csrf"
_AUTH_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                "code_challenge_method")
MAX_FORM = 64 * 1024
_SECURITY_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Frame-Options": "DENY",
                     "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                "form-action 'self' http://localhost:* http://127.0.0.1:*; "
                                                "frame-ancestors 'none'",
                     "Referrer-Policy": "no-referrer"}


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise OAuthError("invalid_request", "Request body too large.")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and ctype not in ("application/x-www-form-urlencoded", ""):
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded.")
    out: dict[str, str] = {}
    for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def _json(body: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", "Pragma": "no-cache",
                                                           **(headers or {})})


def _secure(request: Request) -> bool:
    return core_of(request).settings.resolved_public_url().startswith("https://")


# -- cookies: CSRF and session ---------------------------------------------------------------


def _csrf_pair(request: Request) -> tuple[str, str, bool]:
    """(cookie value, form token, whether the cookie must be set)."""
    oauth = core_of(request).oauth
    cookie = request.cookies.get(CSRF_COOKIE)
    fresh = not cookie or len(cookie) != 43
    if fresh:
        cookie = secrets.token_urlsafe(32)
    return cookie, oauth.sign("csrf", cookie), fresh


def _csrf_ok(request: Request, form: dict) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie:
        return False
    return secrets.compare_digest(form.get("csrf_token", ""), core_of(request).oauth.sign("csrf", cookie))


def _page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
    cookie, token, fresh = _csrf_pair(request)
    resp = HTMLResponse(render(name, csrf=token, **ctx), status_code=status, headers=_SECURITY_HEADERS)
    if fresh:
        resp.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax", secure=_secure(request), path="/oauth2")
    return resp


def _session_value(request: Request, user: User) -> str:
    exp = str(int(time.time()) + core_of(request).settings.web_session_ttl)
    sig = core_of(request).oauth.sign("session", user.id, exp, (user.password_hash or "")[-24:])
    return f"{user.id}.{exp}.{sig}"


def _set_session(request: Request, resp: Response, user: User) -> None:
    resp.set_cookie(SESSION_COOKIE, _session_value(request, user), httponly=True, samesite="lax",
                    secure=_secure(request), path="/oauth2", max_age=core_of(request).settings.web_session_ttl)


def _session_user(request: Request) -> User | None:
    raw = request.cookies.get(SESSION_COOKIE) or ""
    parts = raw.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
        return None
    core = core_of(request)
    with core.db.session() as s:
        user = s.get(User, parts[0])
        if user is None or user.status != "active":
            return None
        good = core.oauth.sign("session", user.id, parts[1], (user.password_hash or "")[-24:])
        return user if secrets.compare_digest(good, parts[2]) else None


def _error_page(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return _page(request, "done", status=status, heading="Cannot continue", message=message)


# -- shared steps: sign in, change password ----------------------------------------------------


async def _login_step(request: Request, form: dict, action: str, hidden: dict, client_name: str | None,
                      back_to: str) -> Response:
    """Handle action=login: verify, throttle, audit; on success set the session and go back."""
    core = core_of(request)
    ip = client_ip(request)
    email = (form.get("email") or "").strip().lower()

    def run():
        try:
            core.throttle.check("login", ip)
            core.throttle.check("login-user", email, ip)
        except Throttled as t:
            return None, t
        with core.db.session() as s:
            user = core.users.check_password(s, email, form.get("password") or "")
            roles = core.users.roles_of(s, user.id) if user else []
        if user is None:
            known = None
            with core.db.session() as s:
                found = core.users.find(s, email) if email else None
                if found is not None:
                    known = found.id
                    accts = [r.account_id for r in core.users.roles_of(s, found.id)]
                else:
                    accts = []
            for acct in accts or [None]:
                core.audit.record("login.password", outcome="failure", account_id=acct, actor_user_id=known,
                                  actor_email=email or None, actor_kind="password", client_ip=ip)
            throttled = None
            for kind, who in (("login", ip), ("login-user", email)):
                try:
                    core.throttle.fail(kind, who, ip)
                except Throttled as t:
                    throttled = throttled or t
            return None, throttled
        core.throttle.succeed("login-user", email)
        for r in roles or [None]:
            core.audit.record("login.password", account_id=r.account_id if r else None, actor_user_id=user.id,
                              actor_email=user.email, actor_kind="password", client_ip=ip)
        return user, None

    user, throttled = await run_in_threadpool(run)
    if throttled is not None:
        resp = _page(request, "login", status=429, action=action, hidden=hidden, client_name=client_name,
                     email=email, error=throttled.message)
        resp.headers["Retry-After"] = str(throttled.retry_after)
        return resp
    if user is None:
        return _page(request, "login", status=401, action=action, hidden=hidden, client_name=client_name,
                     email=email, error="Incorrect email or password.")
    resp = RedirectResponse(back_to, status_code=303)
    _set_session(request, resp, user)
    return resp


async def _change_password_step(request: Request, form: dict, user: User, action: str, hidden: dict,
                                back_to: str) -> Response:
    core = core_of(request)
    new, again = form.get("new_password") or "", form.get("confirm_password") or ""
    error = None
    if new != again:
        error = "The two passwords differ."
    elif len(new) < MIN_PASSWORD_LENGTH:
        error = f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if error:
        return _page(request, "change_password", status=400, action=action, hidden=hidden, user_email=user.email,
                     min_length=MIN_PASSWORD_LENGTH, error=error)

    def run():
        with core.db.session() as s:
            u = core.users.set_password(s, user.id, new)
            roles = core.users.roles_of(s, u.id)
        for r in roles or [None]:
            core.audit.record("user.password_change", account_id=r.account_id if r else None, actor_user_id=u.id,
                              actor_email=u.email, actor_kind="password", client_ip=client_ip(request))
        return u

    u = await run_in_threadpool(run)
    resp = RedirectResponse(back_to, status_code=303)
    _set_session(request, resp, u)
    return resp


# -- authorization code: /oauth2/auth ----------------------------------------------------------


def _parse(request: Request, params: dict) -> AuthRequest | Response:
    try:
        return core_of(request).oauth.parse_authorize(params)
    except OAuthError as e:
        target = getattr(e, "redirect", None)
        if target:
            return RedirectResponse(target, status_code=303)
        return _error_page(request, f"This sign-in link is not valid: {e.description or e.error}")


def _consent(request: Request, req: AuthRequest, user: User, action: str, hidden: dict,
             user_code: str | None = None, status: int = 200) -> HTMLResponse:
    core = core_of(request)
    with core.db.session() as s:
        accounts = core.users.roles_of(s, user.id)
    dropped = [x for x in req.requested if x not in SCOPES]
    return _page(request, "consent", status=status, action=action, hidden=hidden, client_name=req.client.name,
                 user_email=user.email, scopes=[(x, SCOPES[x]) for x in req.scope], dropped=dropped,
                 accounts=accounts, user_code=user_code)


@router.get("/oauth2/auth")
async def authorize_page(request: Request):
    params = dict(request.query_params)
    req = _parse(request, params)
    if isinstance(req, Response):
        return req
    hidden = req.params()
    user = await run_in_threadpool(_session_user, request)
    if user is None:
        return _page(request, "login", action="/oauth2/auth", hidden=hidden, client_name=req.client.name)
    if user.must_change_password:
        return _page(request, "change_password", action="/oauth2/auth", hidden=hidden, user_email=user.email,
                     min_length=MIN_PASSWORD_LENGTH)
    return await run_in_threadpool(_consent, request, req, user, "/oauth2/auth", hidden)


@router.post("/oauth2/auth")
async def authorize_post(request: Request):
    try:
        form = await _form(request)
    except OAuthError as e:
        return _error_page(request, e.description)
    if not _csrf_ok(request, form):
        return _error_page(request, "The form expired or did not come from this page (CSRF check failed). "
                                    "Go back and try again.", 403)
    params = {k: form[k] for k in _AUTH_PARAMS if k in form}
    req = _parse(request, params)
    if isinstance(req, Response):
        return req
    hidden = req.params()
    back = "/oauth2/auth?" + urlencode(hidden)
    action = form.get("action")
    if action == "login":
        return await _login_step(request, form, "/oauth2/auth", hidden, req.client.name, back)
    user = await run_in_threadpool(_session_user, request)
    if user is None:
        return _page(request, "login", status=401, action="/oauth2/auth", hidden=hidden, client_name=req.client.name,
                     error="Your session ended; sign in again.")
    if action == "change_password":
        return await _change_password_step(request, form, user, "/oauth2/auth", hidden, back)
    if user.must_change_password:
        return RedirectResponse(back, status_code=303)
    core = core_of(request)
    if action == "deny":
        await run_in_threadpool(core.oauth._audit_user, user.id, "oauth.consent", client_ip(request),
                                {"client_id": req.client.client_id, "decision": "deny"}, "failure", user.email)
        return RedirectResponse(redirect_with(req.redirect_uri, {"error": "access_denied",
                                                                 "error_description": "The user denied access.",
                                                                 "state": req.state}), status_code=303)
    if action == "allow":
        code = await run_in_threadpool(core.oauth.issue_code, req, user.id)
        await run_in_threadpool(core.oauth._audit_user, user.id, "oauth.consent", client_ip(request),
                                {"client_id": req.client.client_id, "decision": "allow",
                                 "scope": " ".join(req.scope)}, "success", user.email)
        return RedirectResponse(redirect_with(req.redirect_uri, {"code": code, "state": req.state}), status_code=303)
    return _error_page(request, "Unknown action.")


# -- device flow: /oauth2/device ---------------------------------------------------------------


@router.get("/oauth2/device")
async def device_page(request: Request):
    code = request.query_params.get("user_code") or ""
    hidden = {"user_code": code} if code else {}
    user = await run_in_threadpool(_session_user, request)
    if user is None:
        return _page(request, "login", action="/oauth2/device", hidden=hidden, client_name=None)
    if user.must_change_password:
        return _page(request, "change_password", action="/oauth2/device", hidden=hidden, user_email=user.email,
                     min_length=MIN_PASSWORD_LENGTH)
    if code:
        return await _device_consent(request, user, code)
    return _page(request, "device", action="/oauth2/device", hidden={}, user_code="")


async def _device_consent(request: Request, user: User, code: str, status: int = 200) -> Response:
    core = core_of(request)
    row = await run_in_threadpool(core.oauth.device_pending, code)
    if row is None:
        try:
            await run_in_threadpool(core.throttle.fail, "login", client_ip(request))
        except Throttled as t:
            resp = _page(request, "device", status=429, action="/oauth2/device", hidden={}, user_code=code,
                         error=t.message)
            resp.headers["Retry-After"] = str(t.retry_after)
            return resp
        return _page(request, "device", status=404, action="/oauth2/device", hidden={}, user_code=code,
                     error="That code is not valid or has expired. Check the code on your device.")
    client = core.oauth.clients().get(row.client_id)
    req = AuthRequest(client=client, redirect_uri="", scope=row.scope.split(), requested=row.scope.split(),
                      state=None, code_challenge="")
    normalized = core.oauth.normalize_user_code(code)
    return await run_in_threadpool(_consent, request, req, user, "/oauth2/device", {"user_code": normalized},
                                   normalized, status)


@router.post("/oauth2/device")
async def device_post(request: Request):
    try:
        form = await _form(request)
    except OAuthError as e:
        return _error_page(request, e.description)
    if not _csrf_ok(request, form):
        return _error_page(request, "The form expired or did not come from this page (CSRF check failed). "
                                    "Go back and try again.", 403)
    code = form.get("user_code") or ""
    hidden = {"user_code": code} if code else {}
    back = "/oauth2/device" + ("?" + urlencode({"user_code": code}) if code else "")
    action = form.get("action")
    if action == "login":
        return await _login_step(request, form, "/oauth2/device", hidden, None, back)
    user = await run_in_threadpool(_session_user, request)
    if user is None:
        return _page(request, "login", status=401, action="/oauth2/device", hidden=hidden, client_name=None,
                     error="Your session ended; sign in again.")
    if action == "change_password":
        return await _change_password_step(request, form, user, "/oauth2/device", hidden, back)
    if user.must_change_password:
        return RedirectResponse(back, status_code=303)
    if action == "lookup":
        return RedirectResponse(back, status_code=303)
    if action in ("allow", "deny"):
        core = core_of(request)
        done = await run_in_threadpool(core.oauth.device_decide, code, user.id, action == "allow", client_ip(request))
        if not done:
            return _page(request, "device", status=404, action="/oauth2/device", hidden={}, user_code=code,
                         error="That code is not valid or has expired. Check the code on your device.")
        if action == "allow":
            return _page(request, "done", heading="Device connected",
                         message="You can close this page and return to your device.")
        return _page(request, "done", heading="Request denied",
                     message="The device was not connected. You can close this page.")
    return _error_page(request, "Unknown action.")


# -- machine endpoints -------------------------------------------------------------------------


def _oauth_json_error(e: OAuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="artifactd"'} if e.status == 401 else None
    return _json(e.body(), e.status, headers)


@router.post("/oauth2/token")
async def token_endpoint(request: Request):
    core = core_of(request)
    ip = client_ip(request)
    try:
        form = await _form(request)
        return _json(await run_in_threadpool(core.oauth.token, form, ip))
    except OAuthError as e:
        if e.error in ("invalid_grant", "invalid_client"):
            try:
                await run_in_threadpool(core.throttle.fail, "token", ip)
            except Throttled as t:
                return _json({"error": "slow_down", "error_description": t.message}, 429,
                             {"Retry-After": str(t.retry_after)})
        return _oauth_json_error(e)
    except Throttled as t:
        return _json({"error": "slow_down", "error_description": t.message}, 429, {"Retry-After": str(t.retry_after)})


@router.post("/oauth2/revoke")
async def revoke_endpoint(request: Request):
    core = core_of(request)
    try:
        form = await _form(request)
        await run_in_threadpool(core.oauth.revoke, form, client_ip(request))
    except OAuthError as e:
        return _oauth_json_error(e)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


@router.post("/oauth2/device/auth")
async def device_authorization(request: Request):
    core = core_of(request)
    try:
        form = await _form(request)
        return _json(await run_in_threadpool(core.oauth.device_authorize, form))
    except OAuthError as e:
        return _oauth_json_error(e)


@router.get("/.well-known/oauth-authorization-server")
async def metadata(request: Request):
    base = core_of(request).settings.resolved_public_url()
    return _json({
        "issuer": base,
        "authorization_endpoint": base + "/oauth2/auth",
        "token_endpoint": base + "/oauth2/token",
        "revocation_endpoint": base + "/oauth2/revoke",
        "device_authorization_endpoint": base + "/oauth2/device/auth",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token",
                                  "urn:ietf:params:oauth:grant-type:device_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
    })


__all__ = ["router", "ArtifactsError"]
