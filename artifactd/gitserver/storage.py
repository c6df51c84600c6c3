"""Bare repositories on local disk, addressed by repo id (never by name)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from artifactd.config import Settings

log = logging.getLogger("artifactd.storage")

PRE_RECEIVE_HOOK = r"""#!/bin/sh
# Written by artifactd on start. Declines a push whose new objects break the size limits.
# Until this hook accepts, pushed objects sit in a quarantine directory that git deletes
# when the push is declined: a refused push leaves the repository exactly as it was.
updates=$(cat)
[ -n "$GIT_QUARANTINE_PATH" ] || exit 0
max_file=${ARTIFACTD_MAX_FILE_BYTES:-0}
max_repo=${ARTIFACTD_MAX_REPO_BYTES:-0}
if [ "$max_file" -gt 0 ]; then
    # Only the quarantined (new) objects: no alternates, not the repository's own store;
    # in pack order (--unordered), which reads the pack front to back.
    big=$(env -u GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_OBJECT_DIRECTORY="$GIT_QUARANTINE_PATH" \
          git cat-file --batch-all-objects --unordered --batch-check='%(objecttype) %(objectsize) %(objectname)' |
          awk -v max="$max_file" '$1 == "blob" && $2 > max { print $3 " " $2; exit }')
    if [ -n "$big" ]; then
        sha=${big% *}
        size=${big#* }
        where=$(printf '%s\n' "$updates" | awk '$2 !~ /^0+$/ { print $2 }' |
                git rev-list --objects --stdin --not --all 2>/dev/null |
                awk -v sha="$sha" '$1 == sha { sub(/^[^ ]+ /, ""); print; exit }')
        echo "artifactd: push declined: file ${where:-$sha} is $size bytes; the limit is $max_file bytes per file." >&2
        exit 1
    fi
fi
if [ "$max_repo" -gt 0 ]; then
    # The repository's own objects (not the quarantines of other pushes in flight, which
    # git may delete mid-count) plus this push's quarantine.
    own=$(du -sb --exclude='tmp_objdir-*' "$GIT_DIR/objects" 2>/dev/null | awk '{ print $1 }')
    new=$(du -sb "$GIT_QUARANTINE_PATH" 2>/dev/null | awk '{ print $1 }')
    total=$(( ${own:-0} + ${new:-0} ))
    if [ "$total" -gt "$max_repo" ]; then
        echo "artifactd: push declined: the repository would take $total bytes; the limit is $max_repo bytes." >&2
        exit 1
    fi
fi
exit 0
"""

#: Hooks of earlier versions, removed on start (the hooks directory is the server's own).
OBSOLETE_HOOKS = ("reference-transaction", "post-receive")

HOOKS = {
    "pre-receive": PRE_RECEIVE_HOOK,
}

#: Name prefix of a repo being built in ``tmp/`` by :meth:`GitStorage.ensure`.
NEW_REPO_PREFIX = "newrepo-"

#: The config ``git init --bare`` writes on Linux.
BARE_CONFIG = b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"

def create_bare_repo(path: Path, default_branch: str) -> None:
    """An empty bare repository at ``path`` (which must not exist): HEAD, config,
    objects/, objects/pack/ and refs/ -- what git and libgit2 need to recognise a
    repository (git creates refs/heads/, refs/tags/ and objects/info/ when it first
    writes there), and no sample hooks, description or info/exclude. Written with
    plain syscalls: it dominated a repo creation, and pygit2's init took ~9 ms against
    ~1 ms here; each mkdir costs ~0.1-0.3 ms on a busy disk (bench/README.md).
    ``default_branch`` is already validated."""
    os.mkdir(path)
    for sub in ("objects", "objects/pack", "refs"):
        os.mkdir(os.path.join(path, sub))
    for name, data in (("config", BARE_CONFIG), ("HEAD", f"ref: refs/heads/{default_branch}\n".encode())):
        fd = os.open(os.path.join(path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

class GitStorage:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.repos_dir
        self.trash = settings.trash_dir
        self.hooks = settings.hooks_dir
        self.home = settings.data_dir / "git-home"
        #: Private scratch space on the repos' filesystem (repos being built).
        self.tmp = settings.data_dir / "tmp"

    def prepare(self) -> None:
        """Create the directories and the server-owned hooks; idempotent."""
        for d in (self.root, self.trash, self.hooks, self.home):
            d.mkdir(parents=True, exist_ok=True)
        for name in OBSOLETE_HOOKS:
            (self.hooks / name).unlink(missing_ok=True)
        for name, text in HOOKS.items():
            hook = self.hooks / name
            if not hook.exists() or hook.read_text() != text:
                # A private temporary name: several server processes may start at once.
                tmp = self.hooks / f".{name}.{uuid.uuid4().hex}.tmp"
                tmp.write_text(text)
                tmp.chmod(0o755)
                tmp.replace(hook)
        self.empty_trash_async()

    @staticmethod
    def relative_path_for(repo_id: str) -> str:
        return f"{repo_id[:2]}/{repo_id}.git"

    def path(self, storage_path: str) -> Path:
        return self.root / storage_path

    def ensure(self, storage_path: str, default_branch: str) -> Path:
        """The repo's storage, created on first use.

        A new repo is a row only: an empty repository is fully described by its default
        branch, and its files (six inodes, ~2.5 ms of filesystem work here) wait for the
        first Git or content request, so fleets of never-pushed repos cost no disk and
        creation costs one transaction (docs/benchmarks.md). Concurrent first requests
        build in private temporary directories and one rename wins."""
        path = self.path(storage_path)
        if self.exists(path):
            return path
        tmp = self.tmp / f"{NEW_REPO_PREFIX}{path.name}.{uuid.uuid4().hex}"
        try:
            create_bare_repo(tmp, default_branch)
        except FileNotFoundError:
            self.tmp.mkdir(parents=True, exist_ok=True)
            create_bare_repo(tmp, default_branch)
        try:
            try:
                os.rename(tmp, path)
            except FileNotFoundError:  # first repo of this shard directory
                path.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.exists(path):
                raise
        return path

    @staticmethod
    def exists(path: Path) -> bool:
        """Whether the repo at ``path`` has its files yet (see :meth:`ensure`)."""
        return os.path.isfile(os.path.join(path, "HEAD"))

    def remove(self, storage_path: str) -> None:
        """Take a repo off its path at once (atomic rename); delete its files later."""
        path = self.path(storage_path)
        if not path.exists():
            return
        target = self.trash / f"{path.name}.{uuid.uuid4().hex}"
        try:
            os.replace(path, target)
        except OSError:
            log.exception("could not move %s to trash; deleting in place", path)
            shutil.rmtree(path, ignore_errors=True)
            return
        self.empty_trash_async()

    def empty_trash_async(self) -> None:
        threading.Thread(target=self._empty_trash, name="artifactd-trash", daemon=True).start()

    def _empty_trash(self) -> None:
        for entry in list(self.trash.iterdir()) if self.trash.exists() else []:
            shutil.rmtree(entry, ignore_errors=True)
