"""``artifactd maintenance``: repack and collect garbage in every repo (docs/forks.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ARTIFACTD_DATA_DIR", default="./data",
              show_default=True)
@click.option("--database-url", envvar="ARTIFACTD_DATABASE_URL", default="")
@click.option("--repo", "repos", multiple=True, metavar="NAMESPACE/NAME",
              help="Only these repos (repeatable); default: every ready repo.")
@click.option("--prune-grace", type=int, default=None, metavar="SECONDS",
              help="Keep unreachable objects younger than this (default: ARTIFACTD_MAINTENANCE_PRUNE_GRACE_SECONDS, "
                   "two weeks).")
@click.option("--full", is_flag=True, help="Also rewrite packs shared with forks (purges this repo's garbage "
                                           "from them at the cost of disk).")
@click.option("--force", is_flag=True, help="Run even on repos unchanged since their last maintenance.")
@click.option("--quiet", "-q", is_flag=True)
def maintenance(data_dir: Path, database_url: str, repos: tuple[str, ...], prune_grace: int | None, full: bool,
                force: bool, quiet: bool) -> None:
    """Repack, collect garbage and write commit-graphs in every ready repo.

    Safe while the server runs: a repo being forked or maintained is skipped, and an
    object that a fork reaches is never removed from it (each repo owns its objects).
    """
    from rich.console import Console

    from artifactd.config import Settings
    from artifactd.services import Core
    from artifactd.services.maintenance import run_maintenance

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings(data_dir=data_dir, database_url=database_url)
    core = Core(settings)
    core.db.migrate()
    pairs = []
    for r in repos:
        ns, sep, name = r.partition("/")
        if not sep or not ns or not name:
            raise click.BadParameter(f"{r!r}: expected NAMESPACE/NAME", param_hint="--repo")
        pairs.append((ns, name))
    console = Console(stderr=True, quiet=quiet)
    counts = {"ran": 0, "skipped": 0, "failed": 0}

    def progress(label, res):
        if res.errors:
            counts["failed"] += 1
            console.print(f"[red]failed[/red] {label}: {res.errors[0]}")
        elif res.ran:
            counts["ran"] += 1
            console.print(f"repacked {label}: packs {res.packs_before}->{res.packs_after}, "
                          f"loose {res.loose_before}, shared packs kept {res.shared_packs_kept} "
                          f"({res.seconds:.2f}s)")
        else:
            counts["skipped"] += 1
            console.print(f"[dim]skipped {label}: {res.reason}[/dim]")

    try:
        run_maintenance(core, repos=pairs or None, full=full, force=force, grace_seconds=prune_grace,
                        progress=progress)
    finally:
        core.close()
    console.print(f"maintenance: {counts['ran']} repacked, {counts['skipped']} skipped, {counts['failed']} failed")
    if counts["failed"]:
        sys.exit(1)
