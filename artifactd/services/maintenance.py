"""Maintenance over every ready repo (``artifactd maintenance`` and the server's schedule)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import select

from artifactd.gitserver.maintenance import MaintenanceResult, maintain
from artifactd.store.models import Namespace, Repo

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.maintenance")


def run_maintenance(core: Core, *, repos: list[tuple[str, str]] | None = None, full: bool = False,
                    force: bool = False, grace_seconds: int | None = None,
                    progress: Callable[[str, MaintenanceResult], None] | None = None) -> list[MaintenanceResult]:
    """Maintain every ready repo (or the ``(namespace, name)`` pairs given), one at a time."""
    grace = core.settings.maintenance_prune_grace_seconds if grace_seconds is None else grace_seconds
    # Deleted repos wait in the trash; removing them first drops their links to shared
    # packs, so maintenance sees which packs are really still shared.
    core.storage._empty_trash()
    with core.db.session() as s:
        q = select(Repo.id, Repo.storage_path, Namespace.name, Repo.name).join(
            Namespace, Repo.namespace_id == Namespace.id).where(Repo.status == "ready")
        rows = s.execute(q.order_by(Repo.created_at)).all()
    wanted = {(n.lower(), r.lower()) for n, r in repos} if repos else None
    results = []
    for _rid, storage_path, ns, name in rows:
        if wanted is not None and (ns.lower(), name.lower()) not in wanted:
            continue
        path = core.storage.path(storage_path)
        if not path.is_dir():
            continue
        result = maintain(core.settings, path, grace_seconds=grace, full=full, force=force)
        if result.ran or result.errors:
            log.info("maintenance %s/%s: %s", ns, name, result)
        if progress:
            progress(f"{ns}/{name}", result)
        results.append(result)
    return results
