"""``artifactd credential-helper``: a Git credential helper that mints repo tokens on demand.

Git asks its credential helpers for a username and password when a server answers 401
(artifactd does so for a request without credentials). For a remote of the configured
artifactd server this helper mints a short-lived repo token through the REST API, with the
same credential the CLI uses (``artifactd login``, or an API token from the environment),
and hands its secret to Git as the Basic password. Every Git process asks again, so the
lazy blob fetches of a ``--filter=blob:none`` clone work too, long after the clone.

Set up once (writes the two settings below to your global Git config)::

    artifactd credential-helper install
    # credential.<server>.helper      = ""                     (drop other helpers for it)
    # credential.<server>.helper      = /path/to/artifactd credential-helper
    # credential.<server>.useHttpPath = true                   (Git then sends the repo path)

Protocol: https://git-scm.com/docs/gitcredentials (``get``/``store``/``erase`` on argv,
``key=value`` lines on stdin and stdout). ``store`` and ``erase`` do nothing: a minted
token is never written anywhere, and it expires by itself.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import click

from artifactd.errors import ArtifactsError, ErrorCode

DEFAULT_TTL = 900
ACCOUNT_RE = re.compile(r"^[0-9a-f]{32}$")


def read_request(stream=None) -> dict[str, str]:
    stream = stream or sys.stdin
    attrs: dict[str, str] = {}
    for line in stream:
        line = line.rstrip("\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep:
            attrs[key] = value
    return attrs


def parse_repo_path(path: str, prefix: str = "") -> tuple[str | None, str, str] | None:
    """``(account or None, namespace, repo)`` of ``[prefix/]git/[<account>/]<ns>/<repo>.git[/...]``."""
    path = unquote(path).strip("/")
    prefix = prefix.strip("/")
    if prefix:
        if not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix) + 1:]
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "git":
        return None
    parts = parts[1:]
    # Drop anything after the "<repo>.git" segment (Git may send info/refs etc.).
    for i, p in enumerate(parts):
        if p.endswith(".git"):
            parts = parts[: i + 1]
            break
    else:
        return None
    if len(parts) == 3:
        account, ns, repo = parts
    elif len(parts) == 2:
        account, (ns, repo) = None, parts
    else:
        return None
    return account, ns, repo[: -len(".git")]


def _origin(url: str) -> tuple[str, str]:
    p = urlsplit(url)
    port = p.port
    host = (p.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(p.scheme)
    hostport = host if port in (None, default) else f"{host}:{port}"
    return p.scheme.lower(), hostport


def _request_origin(attrs: dict[str, str]) -> tuple[str, str]:
    scheme = attrs.get("protocol", "").lower()
    host = attrs.get("host", "").lower()
    default = {"http": "80", "https": "443"}.get(scheme)
    if default and host.endswith(f":{default}"):
        host = host[: -len(default) - 1]
    return scheme, host


def answer(attrs: dict[str, str], *, url: str | None, account_id: str | None, scope: str, ttl: int,
           hosts: tuple[str, ...] = ()) -> dict[str, str] | None:
    """The credential for this request, or None when it is not for us."""
    from artifactd.binding.remote import RemoteBackend
    from artifactd.credentials import resolve_connection

    conn = resolve_connection(url, account_id)
    origin = _request_origin(attrs)
    server_origin = _origin(conn.url)
    extra = {h.lower() for h in hosts}
    if origin != server_origin and origin[1] not in extra:
        return None
    path = attrs.get("path")
    if path is None:
        raise ArtifactsError(
            ErrorCode.INVALID_INPUT,
            "Git did not send the repo path; run `artifactd credential-helper install` "
            f"(or `git config --global credential.{conn.url}.useHttpPath true`).",
        )
    prefix = urlsplit(conn.url).path if origin == server_origin else ""
    parsed = parse_repo_path(path, prefix)
    if parsed is None:
        return None
    account, namespace, repo = parsed
    if account is None:
        label = origin[1].split(".", 1)[0]
        account = label if ACCOUNT_RE.match(label) else conn.account_id
    backend = RemoteBackend(conn.url, account, conn.token)
    try:
        got = backend.create_token(namespace, repo, scope, ttl)
    finally:
        backend.close()
    from artifactd.binding.types import parse_time

    expires = parse_time(got.get("expires_at"))
    out = {"username": "x", "password": got["plaintext"].split("?", 1)[0]}
    if expires is not None:
        out["password_expiry_utc"] = str(int(expires.timestamp()))
    return out


def _helper_options(fn):
    fn = click.option("--host", "hosts", multiple=True,
                      help="Also answer for this Git host (e.g. a per-account Git host); repeatable.")(fn)
    fn = click.option("--ttl", type=click.IntRange(60, 31_536_000), default=DEFAULT_TTL, show_default=True,
                      help="Lifetime of each minted token, seconds.")(fn)
    fn = click.option("--scope", type=click.Choice(["read", "write"]), default="write", show_default=True,
                      help="Scope of the minted tokens (read: clone/fetch only).")(fn)
    fn = click.option("--account-id", default=None, help="Account id (default: as for the CLI).")(fn)
    fn = click.option("--url", default=None, help="Server URL (default: as for the CLI).")(fn)
    return fn


def _make_group(name: str) -> click.Group:
    @click.group(name, invoke_without_command=False)
    @_helper_options
    @click.pass_context
    def group(ctx: click.Context, url: str | None, account_id: str | None, scope: str, ttl: int,
              hosts: tuple[str, ...]) -> None:
        """Git credential helper: mints a short-lived repo token for remotes of the configured
        artifactd server (set up with `artifactd credential-helper install`)."""
        ctx.obj = {"url": url, "account_id": account_id, "scope": scope, "ttl": ttl, "hosts": hosts}

    @group.command("get")
    @click.pass_obj
    def get(opts: dict) -> None:
        """Answer Git's request for a credential (stdin/stdout: git's credential protocol)."""
        attrs = read_request()
        try:
            cred = answer(attrs, **opts)
        except ArtifactsError as e:
            # Git shows the helper's stderr; no answer lets it fall back (and fail) as usual.
            click.echo(f"artifactd credential-helper: {e.code} ({e.numeric_code}): {e.message}", err=True)
            return
        if cred:
            for k, v in cred.items():
                sys.stdout.write(f"{k}={v}\n")
            sys.stdout.flush()

    @group.command("store")
    def store() -> None:
        """Nothing to store: minted tokens are never written down."""
        read_request()

    @group.command("erase")
    def erase() -> None:
        """Nothing to erase."""
        read_request()

    @group.command("install")
    @click.option("--global", "where", flag_value="global", default=True, help="Write ~/.gitconfig (default).")
    @click.option("--local", "where", flag_value="local", help="Write the current repository's .git/config.")
    @click.option("--system", "where", flag_value="system", help="Write the system Git config.")
    @click.pass_obj
    def install(opts: dict, where: str) -> None:
        """Configure Git to use this helper for the configured server's remotes."""
        from artifactd.credentials import resolve_connection

        try:
            conn = resolve_connection(opts["url"], opts["account_id"], require_token=False)
        except ArtifactsError as e:
            click.echo(f"✘ {e.code} ({e.numeric_code}): {e.message}", err=True)
            sys.exit(1)
        # git-credential-artifactd starts faster than the full CLI (same helper).
        bindir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
        candidates = [os.path.join(bindir, "git-credential-artifactd"), shutil.which("git-credential-artifactd"),
                      os.path.join(os.path.dirname(sys.executable), "git-credential-artifactd")]
        exe = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
        helper = [os.path.abspath(exe)] if exe else [sys.executable, "-m", "artifactd", "credential-helper"]
        if opts["scope"] != "write":
            helper += ["--scope", opts["scope"]]
        if opts["ttl"] != DEFAULT_TTL:
            helper += ["--ttl", str(opts["ttl"])]
        if opts["url"]:
            helper += ["--url", conn.url]
        for h in opts["hosts"]:
            helper += ["--host", h]
        command = " ".join(shlex.quote(p) for p in helper)
        bases = [conn.url] + [f"{urlsplit(conn.url).scheme}://{h}" for h in opts["hosts"]]
        for base in bases:
            key = f"credential.{base}"
            git = ["git", "config", f"--{where}"]
            subprocess.run([*git, "--unset-all", f"{key}.helper"], capture_output=True)
            for value in ("", command):
                subprocess.run([*git, "--add", f"{key}.helper", value], check=True)
            subprocess.run([*git, f"{key}.useHttpPath", "true"], check=True)
            click.echo(f"Git now asks artifactd for credentials for {base}/ ({where} config):")
            click.echo(f"  {key}.helper = {command}")
            click.echo(f"  {key}.useHttpPath = true")

    return group


credential_helper = _make_group("credential-helper")
#: ``git-credential-artifactd``: lets Git find the helper as ``credential.helper = artifactd``.
git_credential_main = _make_group("git-credential-artifactd")


def main() -> None:  # pragma: no cover - console script
    git_credential_main()
