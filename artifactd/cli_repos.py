"""``artifactd repos create|list|get|delete|fork|import|issue-token``."""

from __future__ import annotations

import click

from artifactd.cli_common import Ctx, Progress, command, confirm_or_abort, emit_json, show_fields, show_table
from artifactd.errors import ArtifactsError

REPO_FIELDS = ["id", "name", "description", "default_branch", "remote", "read_only", "status", "created_at",
               "updated_at", "last_push_at", "source"]
CREATED_FIELDS = ["id", "name", "description", "default_branch", "read_only", "remote", "objects", "token"]
TOKEN_FIELDS = ["id", "scope", "expires_at", "plaintext"]


@click.group("repos")
def repos() -> None:
    """Manage repos: create, list, inspect, delete, fork, import, mint Git tokens."""


@repos.command("create")
@click.argument("name")
@click.option("--description", default=None)
@click.option("--default-branch", default=None, help="Default branch (default main).")
@click.option("--read-only/--no-read-only", default=False, help="Refuse pushes (fixed at creation).")
@command()
def create(ctx: Ctx, namespace: str, name: str, description: str | None, default_branch: str | None,
           read_only: bool) -> None:
    """Create a repo; prints its remote and an initial write token (valid 24 h, shown once)."""
    got = ctx.backend.create_repo(namespace, name, description=description, default_branch=default_branch,
                                  read_only=read_only)
    if ctx.json:
        emit_json(got)
    else:
        show_fields(got, CREATED_FIELDS, f'Created repo "{name}" in namespace "{namespace}".')


@repos.command("list")
@click.option("--limit", type=int, default=None, help="Show at most this many (default: all).")
@command()
def list_(ctx: Ctx, namespace: str, limit: int | None) -> None:
    """List a namespace's repos, newest first."""
    items: list[dict] = []
    cursor = None
    while True:
        page_size = 200 if limit is None else max(1, min(200, limit - len(items)))
        page, cursor, _total = ctx.backend.list_repos(namespace, page_size, cursor)
        items += page
        if not cursor or (limit is not None and len(items) >= limit):
            break
    if ctx.json:
        emit_json(items)
    else:
        show_table(items, ["name", "default_branch", "read_only", "status", "updated_at", "last_push_at"],
                   f'No repos in namespace "{namespace}".')


@repos.command("get")
@click.argument("name")
@command()
def get(ctx: Ctx, namespace: str, name: str) -> None:
    """Show one repo."""
    got = ctx.backend.get_repo(namespace, name)
    emit_json(got) if ctx.json else show_fields(got, REPO_FIELDS)


@repos.command("delete")
@click.argument("name")
@click.option("--force", "-y", is_flag=True, help="Do not ask for confirmation.")
@command()
def delete(ctx: Ctx, namespace: str, name: str, force: bool) -> None:
    """Delete a repo and all its tokens. This cannot be undone."""
    confirm_or_abort(f'Delete repo "{name}" from namespace "{namespace}"? This cannot be undone.', force)
    if not ctx.backend.delete_repo(namespace, name):
        from artifactd.errors import not_found

        raise not_found(f"Repository not found: {name}.")
    if ctx.json:
        emit_json({"deleted": True, "name": name, "namespace": namespace})
    else:
        click.echo(f'Deleted repo "{name}" from namespace "{namespace}".')


@repos.command("fork")
@click.argument("source")
@click.argument("name")
@click.option("--description", default=None, help="Description of the fork (default: the source's).")
@click.option("--read-only/--no-read-only", default=False)
@click.option("--all-branches", is_flag=True, help="Copy every ref, not only the default branch.")
@command()
def fork(ctx: Ctx, namespace: str, source: str, name: str, description: str | None, read_only: bool,
         all_branches: bool) -> None:
    """Fork SOURCE into a new repo NAME in the same namespace."""
    with Progress(f'Forking "{source}" into "{name}"', quiet=ctx.json) as p:
        got = p.run_while(lambda: ctx.backend.fork_repo(
            namespace, source, name, description=description, read_only=read_only,
            default_branch_only=not all_branches), "forking")
        p.update(f"ready, {got.get('objects', '?')} objects")
    if ctx.json:
        emit_json(got)
    else:
        show_fields(got, CREATED_FIELDS, f'Forked "{source}" into "{name}" in namespace "{namespace}".')


@repos.command("import")
@click.argument("source_url", metavar="URL")
@click.argument("name")
@click.option("--branch", default=None, help="Branch to import (default: the remote's default branch).")
@click.option("--depth", type=int, default=None, help="Shallow import of this many commits.")
@click.option("--description", default=None)
@click.option("--read-only/--no-read-only", default=False)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the import has finished.")
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds to wait.")
@command()
def import_(ctx: Ctx, namespace: str, source_url: str, name: str, branch: str | None, depth: int | None,
            description: str | None, read_only: bool, wait: bool, timeout: float) -> None:
    """Create repo NAME by cloning the public HTTPS Git remote URL."""
    url = source_url
    with Progress(f'Importing {url} into "{name}"', quiet=ctx.json) as p:
        got = ctx.backend.import_repo(namespace, name, url, branch=branch, depth=depth, read_only=read_only,
                                      description=description)
        if wait:
            def waiting(e: ArtifactsError) -> None:
                p.update("importing")

            p.update("importing")
            info = ctx.backend.wait_ready(namespace, name, timeout, waiting)
            got = {**got, "default_branch": info.get("default_branch", got.get("default_branch"))}
            p.update("ready")
    if ctx.json:
        emit_json(got)
    else:
        title = f'Imported {url} into "{name}".' if wait else f'Import of {url} into "{name}" started.'
        show_fields(got, CREATED_FIELDS, title)


@repos.command("issue-token")
@click.argument("repo")
@click.option("--scope", type=click.Choice(["read", "write"]), default="write", show_default=True)
@click.option("--ttl", type=int, default=86_400, show_default=True, help="Lifetime in seconds (60-31536000).")
@command()
def issue_token(ctx: Ctx, namespace: str, repo: str, scope: str, ttl: int) -> None:
    """Mint a Git token for REPO. Its plaintext is shown once, here."""
    got = ctx.backend.create_token(namespace, repo, scope, ttl)
    if ctx.json:
        emit_json(got)
    else:
        show_fields(got, TOKEN_FIELDS, f'Issued a {got["scope"]} token for repo "{repo}" in namespace "{namespace}".')
