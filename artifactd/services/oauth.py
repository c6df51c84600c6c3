"""OAuth 2.0 authorization server: authorization code + PKCE (S256 only), rotating
refresh tokens with reuse detection, revocation (RFC 7009) and the device authorization
grant (RFC 8628).

Access tokens (``artdo_``) are opaque, short-lived and work on the REST API like an API
token carrying the permissions their scopes name:

==================  ===========================================================
``artifacts:read``  Artifacts Read on every account the user is a member of
``artifacts:write`` Artifacts Read + Edit on every account the user is a member of
``account:read``    list the user's accounts and memberships (admins: also the
                    account's tokens, members and audit log)
``user:read``       read the user's profile and list their API tokens
``api_tokens:write`` manage the user's API tokens (and, for admins, the account's)
``offline_access``  a refresh token is issued
==================  ===========================================================

Unknown scopes are dropped from the grant; the granted scope is always returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from artifactd import ids
from artifactd.services.apitokens import (
    ACCESS_PREFIX,
    EDIT,
    READ,
    REFRESH_PREFIX,
    TOKENS_READ,
    TOKENS_WRITE,
    NOTHING,
    Grant,
    Principal,
    generate_token,
    roles_of,
    well_formed,
)
from artifactd.store.models_identity import Membership, OAuthCode, OAuthGrant, OAuthToken, ServerSecret, User
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

SCOPES = {
    "artifacts:read": "See your Artifacts namespaces, repos and repo tokens",
    "artifacts:write": "See and change your Artifacts namespaces and repos, and mint repo tokens",
    "account:read": "See your accounts and memberships",
    "user:read": "See your user details and your API tokens",
    "api_tokens:write": "Create, change, roll and delete your API tokens",
    "offline_access": "Stay signed in (a refresh token)",
}
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str = "", status: int = 400):
        super().__init__(description or error)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict:
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    #: Registered redirect URIs; for loopback ones any port is accepted (RFC 8252 §7.3).
    redirect_uris: tuple[str, ...]


@dataclass
class AuthRequest:
    client: Client
    redirect_uri: str
    scope: list[str]
    requested: list[str]
    state: str | None
    code_challenge: str

    def params(self) -> dict:
        return {"response_type": "code", "client_id": self.client.client_id, "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.requested), "state": self.state or "", "code_challenge": self.code_challenge,
                "code_challenge_method": "S256"}


def redirect_with(uri: str, params: dict) -> str:
    sep = "&" if urlsplit(uri).query else "?"
    return uri + sep + urlencode({k: v for k, v in params.items() if v is not None})


def _redirect_matches(registered: str, given: str) -> bool:
    if registered == given:
        return True
    r, g = urlsplit(registered), urlsplit(given)
    loopback = r.scheme == "http" and (r.hostname or "") in ("localhost", "127.0.0.1", "::1")
    return (loopback and g.scheme == "http" and f"{g.hostname}" in ("localhost", "127.0.0.1", "::1")
            and g.path == r.path and not g.username and not g.password and not g.fragment)


class OAuthService:
    def __init__(self, core: Core):
        self.core = core
        self._secret: bytes | None = None

    # -- clients and scopes --------------------------------------------------------------

    def clients(self) -> dict[str, Client]:
        st = self.core.settings
        cli = Client(st.oauth_cli_client_id, "artifactd CLI",
                     ("http://127.0.0.1/callback", "http://localhost/callback"))
        wrangler = Client(st.oauth_wrangler_client_id, "Wrangler",
                          ("http://localhost:8976/oauth/callback", "http://127.0.0.1:8976/oauth/callback"))
        return {c.client_id: c for c in (cli, wrangler)}

    def client(self, client_id: str | None) -> Client:
        c = self.clients().get(client_id or "")
        if c is None:
            raise OAuthError("invalid_client", "Unknown client_id.", 401)
        return c

    @staticmethod
    def grant_scopes(requested: str | None) -> tuple[list[str], list[str]]:
        """(granted, requested): unknown scopes are dropped; order follows SCOPES."""
        asked = scope_to_list(requested or "") or []
        granted = [s for s in SCOPES if s in asked]
        if not asked:
            granted = ["artifacts:read"]
        if not [s for s in granted if s != "offline_access"]:
            raise OAuthError("invalid_scope", "None of the requested scopes is known to this server. Known: "
                             + ", ".join(SCOPES) + ".")
        return granted, list(asked)

    # -- server secret (CSRF, sessions) --------------------------------------------------

    def secret(self) -> bytes:
        if self._secret is None:
            with self.core.db.session() as s:
                row = s.get(ServerSecret, "web")
                if row is None:
                    try:
                        with s.begin_nested():
                            row = ServerSecret(name="web", value=secrets.token_hex(32))
                            s.add(row)
                    except IntegrityError:
                        row = s.get(ServerSecret, "web")
                self._secret = bytes.fromhex(row.value)
        return self._secret

    def sign(self, *parts: str) -> str:
        return hmac.new(self.secret(), "|".join(parts).encode(), hashlib.sha256).hexdigest()

    # -- authorization code --------------------------------------------------------------

    def parse_authorize(self, q: dict) -> AuthRequest:
        """Validate an authorization request. Errors about the client or redirect URI must
        be shown (never redirected); others are redirected back to the client."""
        client = self.client(q.get("client_id"))
        redirect_uri = q.get("redirect_uri") or ""
        if not any(_redirect_matches(r, redirect_uri) for r in client.redirect_uris):
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client.")
        state = q.get("state") or None
        try:
            if q.get("response_type") != "code":
                raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                raise OAuthError("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256.")
            challenge = q["code_challenge"]
            if not 43 <= len(challenge) <= 128:
                raise OAuthError("invalid_request", "Invalid code_challenge.")
            granted, requested = self.grant_scopes(q.get("scope"))
        except OAuthError as e:
            e.redirect = redirect_with(redirect_uri, {**e.body(), "state": state})  # type: ignore[attr-defined]
            raise
        return AuthRequest(client, redirect_uri, granted, requested, state, challenge)

    def issue_code(self, req: AuthRequest, user_id: str) -> str:
        code = secrets.token_urlsafe(32)
        with self.core.db.session() as s:
            s.add(OAuthCode(digest=ids.digest(code), kind="code", client_id=req.client.client_id,
                            scope=list_to_scope(req.scope), user_id=user_id, redirect_uri=req.redirect_uri,
                            code_challenge=req.code_challenge, status="approved",
                            expires_at=utcnow() + dt.timedelta(seconds=self.core.settings.oauth_code_ttl)))
        return code

    # -- token endpoint ------------------------------------------------------------------

    def token(self, form: dict, client_ip: str | None) -> dict:
        grant_type = form.get("grant_type")
        client = self.client(form.get("client_id"))
        if grant_type == "authorization_code":
            return self._exchange_code(client, form, client_ip)
        if grant_type == "refresh_token":
            return self._refresh(client, form, client_ip)
        if grant_type == DEVICE_GRANT:
            return self._poll_device(client, form, client_ip)
        raise OAuthError("unsupported_grant_type", f"Unsupported grant_type: {grant_type!r}.")

    def _exchange_code(self, client: Client, form: dict, client_ip: str | None) -> dict:
        code, verifier = form.get("code") or "", form.get("code_verifier") or ""
        now = utcnow()
        with self.core.db.session() as s:
            row = s.get(OAuthCode, ids.digest(code), with_for_update=True)
            if row is None or row.kind != "code":
                raise OAuthError("invalid_grant", "Unknown authorization code.")
            if row.status == "used":
                # A replayed code: revoke what it produced (RFC 6749 §4.1.2).
                if row.grant_id:
                    self._revoke_grant(s, row.grant_id, "code_reuse")
                s.commit()
                self.core.audit.record("oauth.code_reuse", outcome="failure", actor_user_id=row.user_id,
                                       client_ip=client_ip, details={"client_id": client.client_id})
                raise OAuthError("invalid_grant", "Authorization code already used.")
            if row.expires_at <= now:
                raise OAuthError("invalid_grant", "Authorization code expired.")
            if row.client_id != client.client_id or row.redirect_uri != (form.get("redirect_uri") or ""):
                raise OAuthError("invalid_grant", "client_id or redirect_uri does not match the authorization.")
            if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
                    create_s256_code_challenge(verifier), row.code_challenge or ""):
                raise OAuthError("invalid_grant", "PKCE verification failed.")
            row.status = "used"
            result, grant_id = self._issue(s, row.user_id, client.client_id, scope_to_list(row.scope))
            row.grant_id = grant_id
            user_id = row.user_id
        self._audit_login(user_id, client.client_id, result["scope"], client_ip, "authorization_code")
        return result

    def _issue(self, s: Session, user_id: str, client_id: str, scope: list[str],
               grant_id: str | None = None) -> tuple[dict, str]:
        st = self.core.settings
        now = utcnow()
        if grant_id is None:
            grant = OAuthGrant(id=ids.new_id(32), user_id=user_id, client_id=client_id, scope=list_to_scope(scope))
            s.add(grant)
            s.flush()
            grant_id = grant.id
        access = generate_token(ACCESS_PREFIX)
        s.add(OAuthToken(id=ids.new_id(32), grant_id=grant_id, kind="access", digest=ids.digest(access),
                         expires_at=now + dt.timedelta(seconds=st.oauth_access_token_ttl)))
        out = {"access_token": access, "token_type": "bearer", "expires_in": st.oauth_access_token_ttl,
               "scope": list_to_scope(scope)}
        if "offline_access" in scope:
            refresh = generate_token(REFRESH_PREFIX)
            s.add(OAuthToken(id=ids.new_id(32), grant_id=grant_id, kind="refresh", digest=ids.digest(refresh),
                             expires_at=now + dt.timedelta(seconds=st.oauth_refresh_token_ttl)))
            out["refresh_token"] = refresh
        s.flush()
        return out, grant_id

    def _refresh(self, client: Client, form: dict, client_ip: str | None) -> dict:
        token = form.get("refresh_token") or ""
        if not well_formed(token, REFRESH_PREFIX):
            raise OAuthError("invalid_grant", "Invalid refresh token.")
        now = utcnow()
        reuse_user = None
        with self.core.db.session() as s:
            row = s.scalars(select(OAuthToken).where(OAuthToken.digest == ids.digest(token),
                                                     OAuthToken.kind == "refresh")).first()
            if row is None:
                raise OAuthError("invalid_grant", "Invalid refresh token.")
            grant = s.get(OAuthGrant, row.grant_id)
            if grant is None or grant.client_id != client.client_id:
                raise OAuthError("invalid_grant", "Refresh token was issued to another client.")
            if grant.revoked_at is not None or row.revoked_at is not None or row.expires_at <= now:
                raise OAuthError("invalid_grant", "Refresh token revoked or expired.")
            # Spend it atomically: exactly one exchange may win.
            spent = s.execute(update(OAuthToken).where(OAuthToken.id == row.id, OAuthToken.used_at.is_(None))
                              .values(used_at=now)).rowcount
            if spent != 1:
                self._revoke_grant(s, grant.id, "refresh_reuse")
                reuse_user = grant.user_id
            else:
                user = s.get(User, grant.user_id)
                if user is None or user.status != "active":
                    raise OAuthError("invalid_grant", "The user is disabled.")
                scope = scope_to_list(grant.scope)
                if form.get("scope"):
                    narrower = [x for x in scope_to_list(form["scope"]) if x in scope]
                    if not narrower:
                        raise OAuthError("invalid_scope", "Requested scope exceeds the grant.")
                    scope = narrower
                result, _ = self._issue(s, grant.user_id, client.client_id, scope, grant_id=grant.id)
                return result
        self.core.audit.record("oauth.refresh_reuse", outcome="failure", actor_user_id=reuse_user,
                               actor_kind="oauth", client_ip=client_ip,
                               details={"client_id": client.client_id, "grant_revoked": True})
        for acct in self._accounts_of(reuse_user):
            self.core.audit.record("oauth.refresh_reuse", outcome="failure", account_id=acct,
                                   actor_user_id=reuse_user, actor_kind="oauth", client_ip=client_ip,
                                   details={"client_id": client.client_id, "grant_revoked": True})
        raise OAuthError("invalid_grant", "Refresh token already used: the whole grant has been revoked.")

    def _revoke_grant(self, s: Session, grant_id: str, reason: str) -> None:
        now = utcnow()
        s.execute(update(OAuthGrant).where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
                  .values(revoked_at=now, revoked_reason=reason))
        s.execute(update(OAuthToken).where(OAuthToken.grant_id == grant_id, OAuthToken.revoked_at.is_(None))
                  .values(revoked_at=now))

    # -- device authorization grant (RFC 8628) --------------------------------------------

    def device_authorize(self, form: dict) -> dict:
        client = self.client(form.get("client_id"))
        granted, _ = self.grant_scopes(form.get("scope"))
        st = self.core.settings
        device_code = secrets.token_urlsafe(32)
        for _ in range(5):
            raw = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
            user_code = f"{raw[:4]}-{raw[4:]}"
            try:
                with self.core.db.session() as s:
                    s.add(OAuthCode(digest=ids.digest(device_code), kind="device", client_id=client.client_id,
                                    scope=list_to_scope(granted), user_code=user_code, status="pending",
                                    interval=st.oauth_device_poll_interval,
                                    expires_at=utcnow() + dt.timedelta(seconds=st.oauth_device_code_ttl)))
                break
            except IntegrityError:
                continue
        else:  # pragma: no cover
            raise OAuthError("server_error", "Could not allocate a user code.", 500)
        base = st.resolved_public_url() + "/oauth2/device"
        return {"device_code": device_code, "user_code": user_code, "verification_uri": base,
                "verification_uri_complete": redirect_with(base, {"user_code": user_code}),
                "expires_in": st.oauth_device_code_ttl, "interval": st.oauth_device_poll_interval}

    @staticmethod
    def normalize_user_code(user_code: str) -> str:
        raw = "".join(c for c in (user_code or "").upper() if c.isalnum())
        return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw

    def device_pending(self, user_code: str) -> OAuthCode | None:
        with self.core.db.session() as s:
            row = s.scalars(select(OAuthCode).where(OAuthCode.user_code == self.normalize_user_code(user_code),
                                                    OAuthCode.kind == "device")).first()
            if row is None or row.status != "pending" or row.expires_at <= utcnow():
                return None
            return row

    def device_decide(self, user_code: str, user_id: str, approve: bool, client_ip: str | None) -> bool:
        with self.core.db.session() as s:
            n = s.execute(update(OAuthCode).where(OAuthCode.user_code == self.normalize_user_code(user_code),
                                                  OAuthCode.kind == "device", OAuthCode.status == "pending",
                                                  OAuthCode.expires_at > utcnow())
                          .values(status="approved" if approve else "denied", user_id=user_id)).rowcount
        if n:
            self._audit_user(user_id, "oauth.device_" + ("approve" if approve else "deny"), client_ip, {})
        return bool(n)

    def _poll_device(self, client: Client, form: dict, client_ip: str | None) -> dict:
        now = utcnow()
        with self.core.db.session() as s:
            row = s.get(OAuthCode, ids.digest(form.get("device_code") or ""), with_for_update=True)
            if row is None or row.kind != "device" or row.client_id != client.client_id:
                raise OAuthError("invalid_grant", "Unknown device_code.")
            if row.status == "used":
                raise OAuthError("invalid_grant", "device_code already used.")
            if row.expires_at <= now:
                raise OAuthError("expired_token", "The device code has expired.")
            if row.status == "denied":
                row.status = "used"
                s.commit()
                raise OAuthError("access_denied", "The user denied the request.")
            if row.status == "pending":
                too_fast = row.last_poll_at is not None and (now - row.last_poll_at).total_seconds() < row.interval
                row.last_poll_at = now
                if too_fast:
                    row.interval += 5
                    s.commit()
                    raise OAuthError("slow_down", f"Poll at most every {row.interval} seconds.")
                s.commit()
                raise OAuthError("authorization_pending", "Waiting for the user to approve.")
            row.status = "used"
            result, grant_id = self._issue(s, row.user_id, client.client_id, scope_to_list(row.scope))
            row.grant_id = grant_id
            user_id = row.user_id
        self._audit_login(user_id, client.client_id, result["scope"], client_ip, "device_code")
        return result

    # -- revocation (RFC 7009) -----------------------------------------------------------

    def revoke(self, form: dict, client_ip: str | None) -> None:
        client = self.client(form.get("client_id"))
        token = form.get("token") or ""
        if not (well_formed(token, ACCESS_PREFIX) or well_formed(token, REFRESH_PREFIX)):
            return  # invalid tokens: 200 all the same (RFC 7009 §2.2)
        with self.core.db.session() as s:
            row = s.scalars(select(OAuthToken).where(OAuthToken.digest == ids.digest(token))).first()
            if row is None:
                return
            grant = s.get(OAuthGrant, row.grant_id)
            if grant is None or grant.client_id != client.client_id:
                raise OAuthError("unauthorized_client", "The token was issued to another client.")
            if row.kind == "refresh":
                self._revoke_grant(s, grant.id, "revoked")
            elif row.revoked_at is None:
                row.revoked_at = utcnow()
            user_id, kind = grant.user_id, row.kind
        self._audit_user(user_id, "oauth.revoke", client_ip, {"client_id": client.client_id, "token_kind": kind,
                                                             "grant_id": grant.id})

    # -- using an access token -----------------------------------------------------------

    def authenticate_access(self, token: str, client_ip: str | None) -> Principal | None:
        now = utcnow()
        with self.core.db.read() as s:
            found = s.execute(
                select(OAuthToken, OAuthGrant, User)
                .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
                .join(User, User.id == OAuthGrant.user_id)
                .where(OAuthToken.digest == ids.digest(token), OAuthToken.kind == "access")
            ).first()
            if found is None:
                return None
            row, grant, user = found
            if (row.revoked_at is not None or grant.revoked_at is not None or row.expires_at <= now
                    or user.status != "active"):
                return None
            roles = roles_of(s, user.id)
            scopes = frozenset(scope_to_list(grant.scope))
        self.core.api_tokens.record_use(OAuthToken, row, now, client_ip)
        return Principal(
            account_id=next(iter(roles), ""), permissions=frozenset(), namespaces=None,
            token_id=row.id, kind="oauth", user_id=user.id, user_email=user.email,
            grants=tuple(self.grants_for(scopes, user.id, roles)) or NOTHING,
            scopes=scopes, client_id=grant.client_id, expires_on=row.expires_at, client_ip=client_ip,
            roles=roles,
        )

    @staticmethod
    def grants_for(scopes: frozenset[str], user_id: str, roles: dict[str, str]) -> list[Grant]:
        out: list[Grant] = []
        perms = set()
        if "artifacts:read" in scopes:
            perms.add(READ)
        if "artifacts:write" in scopes:
            perms |= {READ, EDIT}
        if perms:
            out += [Grant("allow", frozenset(perms), acct) for acct in roles]
        if "api_tokens:write" in scopes:
            out.append(Grant("allow", frozenset({TOKENS_WRITE}), user_id=user_id))
            out += [Grant("allow", frozenset({TOKENS_WRITE}), acct) for acct, r in roles.items() if r == "admin"]
        else:
            if "user:read" in scopes:
                out.append(Grant("allow", frozenset({TOKENS_READ}), user_id=user_id))
            if "account:read" in scopes:  # admins: see the account's tokens, members, audit log
                out += [Grant("allow", frozenset({TOKENS_READ}), acct) for acct, r in roles.items() if r == "admin"]
        return out

    # -- audit helpers -------------------------------------------------------------------

    def _accounts_of(self, user_id: str | None) -> list[str]:
        if not user_id:
            return []
        with self.core.db.session() as s:
            return list(s.scalars(select(Membership.account_id).where(Membership.user_id == user_id)))

    def _audit_user(self, user_id: str | None, action: str, client_ip: str | None, details: dict,
                    outcome: str = "success", email: str | None = None) -> None:
        accounts = self._accounts_of(user_id) or [None]
        for acct in accounts:
            self.core.audit.record(action, outcome=outcome, account_id=acct, actor_user_id=user_id,
                                   actor_email=email, actor_kind="oauth", client_ip=client_ip, details=details)

    def _audit_login(self, user_id: str, client_id: str, scope: str, client_ip: str | None, via: str) -> None:
        self._audit_user(user_id, "login.oauth", client_ip, {"client_id": client_id, "scope": scope, "grant": via})
