"""``artifactd login`` / ``logout`` / ``whoami``: OAuth sign-in for the CLI and the binding."""

from __future__ import annotations

import json
import time

import click
import httpx

from artifactd import credentials as creds

_url_option = click.option("--url", envvar="ARTIFACTD_URL", default=None,
                           help=f"The artifactd server (default: the last one logged in to, or {creds.DEFAULT_URL}).")


@click.command()
@_url_option
@click.option("--scopes", default=",".join(creds.DEFAULT_SCOPES), show_default=True,
              help="Comma- or space-separated OAuth scopes: artifacts:read, artifacts:write, account:read, "
                   "user:read, api_tokens:write.")
@click.option("--device", is_flag=True, help="Device flow: sign in from another machine's browser with a code.")
@click.option("--no-browser", is_flag=True, help="Print the sign-in link instead of opening a browser.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for the sign-in.")
def login(url, scopes, device, no_browser, timeout):
    """Sign in with your browser; the CLI and the binding then use this login."""
    base = creds.server_url(url)
    wanted = [s for s in scopes.replace(",", " ").split() if s]
    try:
        if device:
            grant = creds.login_device(base, wanted, timeout=timeout, show=lambda m: click.echo(m, err=True))
        else:
            grant = creds.login_browser(base, wanted, open_browser=not no_browser, timeout=timeout,
                                        show=lambda m: click.echo(m, err=True))
    except (creds.LoginError, httpx.HTTPError) as e:
        raise click.ClickException(str(e)) from None
    creds.save_login(base, grant)
    granted = grant.get("scope", "")
    click.echo(f"Logged in to {base}. Granted scopes: {granted}")
    dropped = [s for s in wanted if s not in granted.split()]
    if dropped:
        click.echo(f"Not granted by the server: {', '.join(dropped)}", err=True)
    click.echo(f"Credentials stored in {creds.credentials_path()} (mode 0600).", err=True)


@click.command()
@_url_option
def logout(url):
    """Revoke the stored login and forget it."""
    base = creds.server_url(url)
    entry = creds.stored_login(base)
    if entry is None:
        click.echo(f"Not logged in to {base}.")
        return
    try:
        creds.revoke(base, entry)
    except httpx.HTTPError as e:
        click.echo(f"warning: could not reach {base} to revoke the login ({e}); forgetting it anyway.", err=True)
    creds.forget_login(base)
    click.echo(f"Logged out of {base}.")


@click.command()
@_url_option
@click.option("--json", "as_json", is_flag=True)
def whoami(url, as_json):
    """Show who the CLI acts as: user, accounts, granted scopes, expiry."""
    base = creds.server_url(url)
    try:
        cred = creds.resolve_token(base)
    except (creds.LoginError, httpx.HTTPError) as e:
        raise click.ClickException(str(e)) from None
    if cred is None:
        raise click.ClickException(f"Not logged in to {base}: run `artifactd login` (or set ARTIFACTD_API_TOKEN).")
    r = httpx.get(base + "/client/v4/user/tokens/verify", headers={"Authorization": f"Bearer {cred.token}"},
                  timeout=30)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code == 401 and (body.get("errors") or [{}])[0].get("code") == 1000:
        r = httpx.get(base + "/client/v4/accounts", headers={"Authorization": f"Bearer {cred.token}"}, timeout=30)
        accts = r.json().get("result", []) if r.status_code == 200 else []
        body = {"success": True, "result": {"kind": "account_token", "accounts": accts}}
    if not body.get("success"):
        msg = (body.get("errors") or [{"message": f"HTTP {r.status_code}"}])[0]["message"]
        raise click.ClickException(f"{base} refused the credential: {msg}")
    info = {**body["result"], "server": base, "source": cred.source}
    if cred.source == "login":
        entry = creds.stored_login(base) or {}
        info["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.get("expires_at", 0)))
        info["refreshable"] = bool(entry.get("refresh_token"))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    user = info.get("user") or {}
    click.echo(f"Server:   {base}")
    click.echo(f"User:     {user.get('email') or '(account token)'}" + (f" ({user['id']})" if user.get("id") else ""))
    click.echo(f"Via:      {cred.source}" + (f" ({info.get('kind')})" if info.get("kind") else ""))
    for a in info.get("accounts", []):
        click.echo(f"Account:  {a.get('name')} {a.get('id')}" + (f" [{a['role']}]" if a.get("role") else ""))
    if info.get("scopes"):
        click.echo(f"Scopes:   {' '.join(info['scopes'])}")
    if info.get("expires_on") or info.get("expires_at"):
        click.echo(f"Expires:  {info.get('expires_at') or info.get('expires_on')}"
                   + (" (refreshed automatically)" if info.get("refreshable") else ""))
