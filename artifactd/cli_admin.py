"""``artifactd admin ...`` and ``artifactd audit``: manage users, accounts, memberships and
API tokens, and read the audit log, directly on the server's store (run them on the
server's machine, with the same ``--data-dir`` / ``--database-url`` as ``serve``)."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from pathlib import Path

import click

from artifactd.config import Settings
from artifactd.errors import ArtifactsError

store_options = [
    click.option("--data-dir", type=click.Path(path_type=Path), envvar="ARTIFACTD_DATA_DIR", default="./data",
                 show_default=True, help="The server's data directory."),
    click.option("--database-url", envvar="ARTIFACTD_DATABASE_URL", default="",
                 help="The server's database URL (default: SQLite in the data dir)."),
]


def _with_store(f):
    for opt in reversed(store_options):
        f = opt(f)
    return f


def _core(data_dir: Path, database_url: str):
    from artifactd.services import Core

    core = Core(Settings(data_dir=data_dir, database_url=database_url))
    core.db.migrate()
    return core


def _fail(e: ArtifactsError) -> None:
    raise click.ClickException(e.message)


def _read_password(from_stdin: bool, generate: bool) -> tuple[str, bool]:
    from artifactd.services.users import generate_password

    if generate:
        return generate_password(), True
    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if not sys.stdin.isatty():
        raise click.UsageError("No terminal to ask for a password: use --password-stdin or --generate-password.")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat: "):
        raise click.ClickException("The passwords differ.")
    return first, False


def _emit(rows: list[dict], as_json: bool, columns: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    widths = {c: max([len(c)] + [len(str(r.get(c, "") or "")) for r in rows]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "") if r.get(c) is not None else "").ljust(widths[c]) for c in columns))


@click.group()
def admin() -> None:
    """Manage users, accounts, members and API tokens on this server's store."""


# -- users ------------------------------------------------------------------------------------


@admin.group()
def users() -> None:
    """Users (they sign in with an e-mail address and a password)."""


@users.command("create")
@click.argument("email")
@click.option("--name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--generate-password", is_flag=True, help="Generate one (printed once; must be changed at sign-in).")
@click.option("--account", "accounts", multiple=True, help="Add to this account (repeatable).")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
@_with_store
def users_create(email, name, password_stdin, generate_password, accounts, role, data_dir, database_url):
    """Create a user, optionally as a member of accounts."""
    password, generated = _read_password(password_stdin, generate_password)
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            user = core.users.create(s, email, password, name, must_change_password=generated)
            for acct in accounts:
                core.users.add_member(s, acct, user.id, role)
            uid, uemail = user.id, user.email
    except ArtifactsError as e:
        _fail(e)
    for acct in accounts or [None]:
        core.audit.record("user.create", account_id=acct, actor_kind="admin_cli", resource=f"user:{uid}",
                          details={"email": uemail, "role": role if acct else None})
    click.echo(f"created user {uemail} ({uid})")
    if generated:
        click.echo(f"one-time password: {password}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
@_with_store
def users_list(as_json, data_dir, database_url):
    core = _core(data_dir, database_url)
    with core.db.session() as s:
        rows = []
        for u in core.users.list(s):
            roles = core.users.roles_of(s, u.id)
            rows.append({"id": u.id, "email": u.email, "name": u.name, "status": u.status,
                         "accounts": ", ".join(f"{r.account_id}:{r.role}" for r in roles)})
    _emit(rows, as_json, ["id", "email", "name", "status", "accounts"])


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True)
@click.option("--generate-password", is_flag=True)
@_with_store
def users_set_password(email, password_stdin, generate_password, data_dir, database_url):
    """Set a user's password (ends their browser sessions)."""
    password, generated = _read_password(password_stdin, generate_password)
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            u = core.users.set_password(s, email, password)
            u.must_change_password = generated
    except ArtifactsError as e:
        _fail(e)
    click.echo(f"password of {email} changed")
    if generated:
        click.echo(f"one-time password: {password}")


def _set_status(email, status, data_dir, database_url):
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            u = core.users.set_status(s, email, status)
            accts = [r.account_id for r in core.users.roles_of(s, u.id)]
    except ArtifactsError as e:
        _fail(e)
    for acct in accts or [None]:
        core.audit.record(f"user.{'disable' if status == 'disabled' else 'enable'}", account_id=acct,
                          actor_kind="admin_cli", resource=f"user:{u.id}", details={"email": u.email})
    click.echo(f"{email}: {status}")


@users.command("disable")
@click.argument("email")
@_with_store
def users_disable(email, data_dir, database_url):
    """Disable a user: their logins, OAuth tokens and API tokens stop working at once."""
    _set_status(email, "disabled", data_dir, database_url)


@users.command("enable")
@click.argument("email")
@_with_store
def users_enable(email, data_dir, database_url):
    _set_status(email, "active", data_dir, database_url)


# -- accounts and members -----------------------------------------------------------------------


@admin.group()
def accounts() -> None:
    """Accounts (they hold namespaces and have members)."""


@accounts.command("create")
@click.argument("name")
@click.option("--admin", "admin_email", help="Make this user the account's admin.")
@_with_store
def accounts_create(name, admin_email, data_dir, database_url):
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            a = core.users.create_account(s, name, admin_email)
            aid = a.id
    except ArtifactsError as e:
        _fail(e)
    core.audit.record("account.create", account_id=aid, actor_kind="admin_cli", details={"name": name})
    click.echo(aid)


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@_with_store
def accounts_list(as_json, data_dir, database_url):
    core = _core(data_dir, database_url)
    with core.db.session() as s:
        rows = [{"id": a.id, "name": a.name, "members": len(core.users.members(s, a.id))}
                for a in core.users.list_accounts(s)]
    _emit(rows, as_json, ["id", "name", "members"])


@admin.group()
def members() -> None:
    """Account memberships: admin (manages tokens and members) or member."""


@members.command("add")
@click.argument("account_id")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
@_with_store
def members_add(account_id, email, role, data_dir, database_url):
    """Add a user to an account (or change their role)."""
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            m = core.users.add_member(s, account_id, email, role)
            uid = m.user_id
    except ArtifactsError as e:
        _fail(e)
    core.audit.record("member.add", account_id=account_id, actor_kind="admin_cli", resource=f"user:{uid}",
                      details={"email": email, "role": role})
    click.echo(f"{email} is {role} of {account_id}")


@members.command("remove")
@click.argument("account_id")
@click.argument("email")
@_with_store
def members_remove(account_id, email, data_dir, database_url):
    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            core.users.remove_member(s, account_id, email)
    except ArtifactsError as e:
        _fail(e)
    core.audit.record("member.remove", account_id=account_id, actor_kind="admin_cli", details={"email": email})
    click.echo(f"{email} removed from {account_id}")


@members.command("list")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
@_with_store
def members_list(account_id, as_json, data_dir, database_url):
    core = _core(data_dir, database_url)
    with core.db.session() as s:
        rows = [{"id": m.id, "email": u.email, "role": m.role, "status": u.status}
                for m, u in core.users.members(s, account_id)]
    _emit(rows, as_json, ["id", "email", "role", "status"])


# -- API tokens --------------------------------------------------------------------------------


@admin.group()
def tokens() -> None:
    """API tokens, created on a user's behalf (the secret is printed once)."""


@tokens.command("create")
@click.option("--user", "user_email", required=True, help="Owner of the token.")
@click.option("--account", "account_id", required=True)
@click.option("--permission", "permissions", multiple=True, required=True,
              type=click.Choice(["Artifacts Read", "Artifacts Edit", "API Tokens Read", "API Tokens Write"]))
@click.option("--namespace", "namespaces", multiple=True, help="Narrow Artifacts permissions to namespaces.")
@click.option("--name", default="cli token", show_default=True)
@click.option("--expires-in-days", type=int, default=None)
@click.option("--allow-ip", "allow_ips", multiple=True, help="CIDR the token may be used from (repeatable).")
@click.option("--deny-ip", "deny_ips", multiple=True, help="CIDR the token may not be used from (repeatable).")
@_with_store
def tokens_create(user_email, account_id, permissions, namespaces, name, expires_in_days, allow_ips, deny_ips,
                  data_dir, database_url):
    from artifactd.services.apitokens import ACCOUNT_RESOURCE, NAMESPACE_RESOURCE, TOKEN_GROUPS, USER_RESOURCE
    from artifactd.services.apitokens import Principal as P
    from artifactd.services.user_tokens import Owner

    core = _core(data_dir, database_url)
    try:
        with core.db.session() as s:
            user = core.users.require(s, user_email)
            uid = user.id
        art = [p for p in permissions if p not in TOKEN_GROUPS]
        tok = [p for p in permissions if p in TOKEN_GROUPS]
        policies = []
        if art:
            res = {NAMESPACE_RESOURCE + n: "*" for n in namespaces} if namespaces else "*"
            policies.append({"effect": "allow", "permission_groups": [{"name": p} for p in art],
                             "resources": {ACCOUNT_RESOURCE + account_id: res}})
        if tok:
            policies.append({"effect": "allow", "permission_groups": [{"name": p} for p in tok],
                             "resources": {USER_RESOURCE + uid: "*"}})
        body: dict = {"name": name, "policies": policies}
        if expires_in_days:
            body["expires_on"] = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=expires_in_days)).isoformat()
        if allow_ips or deny_ips:
            body["condition"] = {"request_ip": {"in": list(allow_ips), "not_in": list(deny_ips)}}
        # The operator acts for the user: a principal allowed to manage that user's tokens.
        from artifactd.services.apitokens import Grant

        operator = P(account_id=account_id, permissions=frozenset(), namespaces=None, token_id="admin-cli",
                     kind="admin_cli", user_id=uid, grants=(Grant("allow", frozenset({"API Tokens Write"}),
                                                                  user_id=uid),))
        result = core.user_tokens.create(operator, Owner(user_id=uid), body)
    except ArtifactsError as e:
        _fail(e)
    click.echo(f"token id: {result['id']}", err=True)
    click.echo(result["value"])


@tokens.command("list")
@click.option("--user", "user_email", default=None)
@click.option("--json", "as_json", is_flag=True)
@_with_store
def tokens_list(user_email, as_json, data_dir, database_url):
    from sqlalchemy import select

    from artifactd.services.user_tokens import UserTokenService
    from artifactd.store.models import ApiToken

    core = _core(data_dir, database_url)
    with core.db.session() as s:
        q = select(ApiToken).order_by(ApiToken.created_at)
        if user_email:
            q = q.where(ApiToken.user_id == core.users.require(s, user_email).id)
        rows = []
        for t in s.scalars(q):
            d = UserTokenService.to_dict(t)
            d["owner"] = t.user_id or f"account {t.account_id}"
            rows.append(d)
    _emit(rows, as_json, ["id", "name", "status", "owner", "expires_on", "last_used_on", "last_used_ip"])


@tokens.command("revoke")
@click.argument("token_id")
@_with_store
def tokens_revoke(token_id, data_dir, database_url):
    """Disable an API token at once (it can be re-enabled by its owner)."""
    from artifactd.store.models import ApiToken
    from artifactd.store.types import utcnow

    core = _core(data_dir, database_url)
    with core.db.session() as s:
        t = s.get(ApiToken, token_id)
        if t is None:
            raise click.ClickException(f"API token not found: {token_id}")
        t.status, t.modified_on = "disabled", utcnow()
        acct = t.account_id
    core.audit.record("token.revoke", account_id=acct, actor_kind="admin_cli", resource=f"api_token:{token_id}")
    click.echo(f"{token_id}: disabled")


# -- audit log ---------------------------------------------------------------------------------


@click.command()
@click.option("--account", "account_id", default=None, help="Account (default: the bootstrap account).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--action", default=None, help="Only actions starting with this, e.g. token. or login.")
@click.option("--system", is_flag=True, help="Events tied to no account (failed logins of unknown users, "
                                             "unknown tokens).")
@click.option("--json", "as_json", is_flag=True)
@_with_store
def audit(account_id, limit, action, system, as_json, data_dir, database_url):
    """Show the audit log of an account, newest first."""
    core = _core(data_dir, database_url)
    if system:
        account_id = None
    elif account_id is None:
        with core.db.session() as s:
            accts = core.users.list_accounts(s)
            if not accts:
                raise click.ClickException("No accounts yet.")
            account_id = accts[0].id
    try:
        items, _ = core.audit.list(account_id, limit=limit, action=action)
    except ArtifactsError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    rows = [{"when": i["when"], "action": i["action"], "outcome": i["outcome"],
             "actor": i["actor"]["email"] or i["actor"]["kind"] or "", "token_id": i["token_id"],
             "client_ip": i["client_ip"], "resource": i["resource"]} for i in items]
    _emit(rows, False, ["when", "action", "outcome", "actor", "token_id", "client_ip", "resource"])
