"""``artifactd tokens list|revoke`` (repo-scoped Git tokens)."""

from __future__ import annotations

import sys

import click

from artifactd.cli_common import Ctx, command, confirm_or_abort, emit_json, show_table

TOKEN_FIELDS = ["id", "scope", "state", "created_at", "expires_at"]


@click.group("tokens")
def tokens() -> None:
    """List and revoke repo tokens (`repos issue-token` mints them)."""


@tokens.command("list")
@click.argument("repo")
@click.option("--state", type=click.Choice(["active", "expired", "revoked", "all"]), default="active",
              show_default=True)
@command()
def list_(ctx: Ctx, namespace: str, repo: str, state: str) -> None:
    """List a repo's tokens (metadata only: a token's secret is never shown again)."""
    items: list[dict] = []
    page = 1
    while True:
        got, info = ctx.backend.list_tokens(namespace, repo, state=state, page=page, per_page=100)
        items += got
        if not got or page * 100 >= int(info.get("total_count", 0)):
            break
        page += 1
    if ctx.json:
        emit_json(items)
    else:
        kind = "" if state == "all" else f"{state} "
        show_table(items, TOKEN_FIELDS, f'No {kind}tokens for repo "{repo}".')


@tokens.command("revoke")
@click.argument("token")
@click.option("--repo", default=None,
              help="The token's repo: then TOKEN may also be the token itself ('-' reads it from stdin).")
@click.option("--force", "-y", is_flag=True, help="Do not ask for confirmation.")
@command()
def revoke(ctx: Ctx, namespace: str, token: str, repo: str | None, force: bool) -> None:
    """Revoke a token by id (or, with --repo, by id or plaintext). Effective on the next Git request."""
    if token == "-":
        token = sys.stdin.readline().strip()
    shown = token if len(token) == 16 else "the given token"
    confirm_or_abort(f"Revoke {shown}{f' of repo {repo!r}' if repo else ''} in namespace {namespace!r}?", force)
    if repo:
        revoked = ctx.backend.revoke_token(namespace, repo, token)
        result = {"revoked": revoked}
        message = "Revoked." if revoked else "Nothing to revoke: no such active token on that repo."
    else:
        got = ctx.backend.revoke_token_id(namespace, token)
        result = {"revoked": True, "id": got["id"]}
        message = f"Revoked token {got['id']}."
    emit_json(result) if ctx.json else click.echo(message)
