"""``artifactd namespaces list|get|create|delete``."""

from __future__ import annotations

import click

from artifactd.cli_common import Ctx, command, confirm_or_abort, emit_json, show_fields, show_table

NS_FIELDS = ["namespace", "jurisdiction", "repo_count", "created_at", "updated_at"]


@click.group("namespaces")
def namespaces() -> None:
    """Manage namespaces (the containers of repos)."""


@namespaces.command("list")
@command(needs_namespace=False)
def list_(ctx: Ctx) -> None:
    """List every namespace of the account."""
    items: list[dict] = []
    cursor = None
    while True:
        page, cursor = ctx.backend.list_namespaces(200, cursor)
        items += page
        if not cursor:
            break
    if ctx.json:
        emit_json(items)
    else:
        show_table(items, NS_FIELDS, "No namespaces found.")


@namespaces.command("get")
@click.argument("name")
@command(needs_namespace=False)
def get(ctx: Ctx, name: str) -> None:
    """Show one namespace."""
    ns = ctx.backend.get_namespace(name)
    emit_json(ns) if ctx.json else show_fields(ns, NS_FIELDS)


@namespaces.command("create")
@click.argument("name")
@click.option("--jurisdiction", type=click.Choice(["unrestricted", "us", "eu", "fedramp"]), default=None,
              help="Where the namespace's data may live (fixed at creation; default unrestricted).")
@command(needs_namespace=False)
def create(ctx: Ctx, name: str, jurisdiction: str | None) -> None:
    """Create a namespace explicitly (a repo create also creates its namespace)."""
    ns = ctx.backend.create_namespace(name, jurisdiction)
    emit_json(ns) if ctx.json else show_fields(ns, NS_FIELDS, f'Created namespace "{name}".')


@namespaces.command("delete")
@click.argument("name")
@click.option("--force", "-y", is_flag=True, help="Do not ask for confirmation.")
@command(needs_namespace=False)
def delete(ctx: Ctx, name: str, force: bool) -> None:
    """Delete an empty namespace."""
    confirm_or_abort(f'Delete namespace "{name}"?', force)
    ctx.backend.delete_namespace(name)
    if ctx.json:
        emit_json({"deleted": True, "namespace": name})
    else:
        click.echo(f'Deleted namespace "{name}".')
