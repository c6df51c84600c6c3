"""Reading repo content without Git: log, commit, tree, blob, file, raw (reference §2.3, §3.3).

Objects are read through pygit2 (libgit2); nothing here parses a Git object by hand.
Field names inside results are camelCase, as the reference specifies even for REST.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2

from artifactd import validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.gitserver.engine import isolate_libgit2

if TYPE_CHECKING:
    from artifactd.services.core import Core

LOG_MAX = 1000
LOG_DEFAULT = 50
HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")

MODE_TYPE = {
    0o040000: ("40000", "tree"),
    0o100644: ("100644", "blob"),
    0o100664: ("100644", "blob"),
    0o100755: ("100755", "exec"),
    0o120000: ("120000", "symlink"),
    0o160000: ("160000", "gitlink"),
}

#: Extensions whose type the simulator and common sense agree on; everything else is sniffed.
EXTRA_TYPES = {
    ".md": "text/markdown", ".ts": "text/plain", ".tsx": "text/plain", ".py": "text/plain", ".rs": "text/plain",
    ".go": "text/plain", ".toml": "text/plain", ".yaml": "text/plain", ".yml": "text/plain", ".sh": "text/plain",
}


def _text(raw: bytes | None, encoding: str | None = None) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode(encoding or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def _enc(sig: pygit2.Signature) -> str | None:
    return getattr(sig, "_encoding", None)


@dataclass
class FileData:
    data: bytes
    oid: str
    path: str
    commit: str
    immutable: bool  # the ref was a full commit hash


class ContentService:
    def __init__(self, core: Core):
        self.core = core
        isolate_libgit2(core.settings)

    # -- opening ----------------------------------------------------------------------

    def open(self, account_id: str, namespace: str, name: str) -> pygit2.Repository:
        with self.core.db.read() as s:
            repo = self.core.repos.require(s, account_id, namespace, name)
        try:
            path = self.core.storage.ensure(repo.storage_path, repo.default_branch)
            return pygit2.Repository(str(path))
        except (pygit2.GitError, OSError):
            raise ArtifactsError(ErrorCode.INTERNAL_ERROR, "Repository storage unavailable.") from None

    # -- refs -------------------------------------------------------------------------

    @staticmethod
    def resolve(repo: pygit2.Repository, ref: str) -> pygit2.Commit | None:
        """HEAD, a 40-hex commit hash, ``refs/...``, or a short branch then tag name;
        annotated tags are peeled. None when nothing matches or it is not a commit."""
        if not ref or len(ref) > 1024 or "\x00" in ref:
            return None
        target = None
        try:
            if HEX40.match(ref):
                target = repo.get(ref.lower())
            else:
                candidates = [ref] if ref == "HEAD" or ref.startswith("refs/") else [f"refs/heads/{ref}",
                                                                                       f"refs/tags/{ref}"]
                for name in candidates:
                    try:
                        reference = repo.references.get(name) if name != "HEAD" else repo.lookup_reference("HEAD")
                    except (KeyError, pygit2.InvalidSpecError, ValueError):
                        reference = None
                    if reference is None:
                        continue
                    try:
                        target = repo.get(reference.resolve().target)
                    except (KeyError, pygit2.GitError):
                        target = None
                    if target is not None:
                        break
            if target is None:
                return None
            peeled = target.peel(pygit2.Commit)
            return peeled if isinstance(peeled, pygit2.Commit) else None
        except (pygit2.GitError, ValueError, KeyError, pygit2.InvalidSpecError):
            return None

    # -- metadata ---------------------------------------------------------------------

    @staticmethod
    def commit_dict(c: pygit2.Commit) -> dict:
        message = _text(c.raw_message, c.message_encoding)
        if message.endswith("\n"):
            message = message[:-1]
        a, m = c.author, c.committer
        return {
            "hash": str(c.id),
            "treeHash": str(c.tree_id),
            "message": message,
            "author": {"name": _text(a.raw_name, _enc(a)), "email": _text(a.raw_email, _enc(a))},
            "committer": {"name": _text(m.raw_name, _enc(m)), "email": _text(m.raw_email, _enc(m))},
            "parents": [str(p) for p in c.parent_ids],
            "authoredAt": a.time,
            "committedAt": m.time,
        }

    def log(self, account_id: str, namespace: str, name: str, *, ref: Any = None, limit: Any = LOG_DEFAULT,
            offset: Any = 0) -> list[dict]:
        """First-parent walk from ``ref`` (default HEAD), newest first; [] if it does not resolve."""
        limit = validation.integer(limit, "limit", 1, LOG_MAX, message=f"Invalid limit: must be between 1 and {LOG_MAX}.")
        offset = validation.integer(offset, "offset", 0, message="Invalid offset: must be an integer >= 0.")
        if ref is not None and (not isinstance(ref, str) or ref == ""):
            raise invalid("Invalid ref: ref required.")
        repo = self.open(account_id, namespace, name)
        start = self.resolve(repo, ref or "HEAD")
        if start is None:
            return []
        out: list[dict] = []
        walker = repo.walk(start.id, pygit2.enums.SortMode.NONE)
        walker.simplify_first_parent()
        for i, c in enumerate(walker):
            if i < offset:
                continue
            out.append(self.commit_dict(c))
            if len(out) >= limit:
                break
        return out

    def commit(self, account_id: str, namespace: str, name: str, hash: str) -> dict:
        validation.object_hash(hash)
        repo = self.open(account_id, namespace, name)
        obj = repo.get(hash)
        if not isinstance(obj, pygit2.Commit):
            raise not_found(f"Commit not found: {hash}.")
        return self.commit_dict(obj)

    def tree(self, account_id: str, namespace: str, name: str, hash: str) -> list[dict]:
        validation.object_hash(hash)
        repo = self.open(account_id, namespace, name)
        obj = repo.get(hash)
        if not isinstance(obj, pygit2.Tree):
            raise not_found(f"Tree not found: {hash}.")
        out = []
        for e in obj:
            mode, kind = MODE_TYPE.get(e.filemode, (f"{e.filemode:o}", "blob"))
            out.append({"name": _text(e.raw_name if hasattr(e, "raw_name") else e.name.encode()), "mode": mode,
                        "hash": str(e.id), "type": kind})
        return out

    def _check_size(self, repo: pygit2.Repository, oid: pygit2.Oid | str) -> None:
        size = repo.odb.read_header(oid)[1]
        limit = self.core.settings.content_max_bytes
        if size > limit:
            raise ArtifactsError(ErrorCode.MEMORY_LIMIT, f"Object too large: {size} bytes exceeds the limit of {limit}.")

    def blob(self, account_id: str, namespace: str, name: str, hash: str) -> bytes:
        validation.object_hash(hash)
        repo = self.open(account_id, namespace, name)
        try:
            kind = repo.odb.read_header(hash)[0]
        except KeyError:
            raise not_found(f"Blob not found: {hash}.") from None
        if kind != pygit2.enums.ObjectType.BLOB:
            raise not_found(f"Blob not found: {hash}.")
        self._check_size(repo, hash)
        return repo.odb.read(hash)[1]

    @staticmethod
    def split_path(path: str) -> list[str] | None:
        """Repo-relative path segments; None (nothing) for absolute paths or any ``..``."""
        if not path or path.startswith("/") or "\x00" in path:
            return None
        segs = [s for s in path.split("/") if s not in ("", ".")]
        if not segs or any(s == ".." for s in segs):
            return None
        return segs

    def file(self, account_id: str, namespace: str, name: str, ref: Any, path: Any) -> FileData:
        if not isinstance(ref, str) or not ref:
            raise invalid("Invalid ref: ref required.")
        if not isinstance(path, str) or not path:
            raise invalid("Invalid path: path required.")
        repo = self.open(account_id, namespace, name)
        got = self._file_in(repo, ref, path)
        if got is None:
            raise not_found("File not found")
        return got

    def _file_in(self, repo: pygit2.Repository, ref: str, path: str) -> FileData | None:
        segs = self.split_path(path)
        if segs is None:
            return None
        commit = self.resolve(repo, ref)
        if commit is None:
            return None
        try:
            entry = commit.tree["/".join(segs)]
        except (KeyError, ValueError):
            return None
        if entry.filemode not in (0o100644, 0o100664, 0o100755, 0o120000):
            return None  # a directory or a submodule
        self._check_size(repo, entry.id)
        data = repo.odb.read(entry.id)[1]
        return FileData(data=data, oid=str(entry.id), path="/".join(segs), commit=str(commit.id),
                        immutable=bool(HEX40.match(ref)))

    def raw(self, account_id: str, namespace: str, name: str, ref_and_path: str) -> FileData:
        """``raw/{ref}/{path}``: the ref may hold slashes; the shortest ref that resolves
        and holds the path wins."""
        repo = self.open(account_id, namespace, name)
        segs = ref_and_path.split("/")
        for i in range(1, min(len(segs), 32)):
            ref, path = "/".join(segs[:i]), "/".join(segs[i:])
            if not ref or not path:
                continue
            got = self._file_in(repo, ref, path)
            if got is not None:
                return got
        raise not_found("File not found")

    def archive_commit(self, account_id: str, namespace: str, name: str, ref: str) -> tuple[Path, str]:
        """The storage path and the 40-hex commit an archive of ``ref`` is made from."""
        repo = self.open(account_id, namespace, name)
        commit = self.resolve(repo, ref)
        if commit is None:
            raise not_found(f"Ref not found: {ref[:200]}.")
        return Path(repo.path), str(commit.id)


def sniff_type(path: str, data: bytes) -> str:
    """A Content-Type for ``raw``: by extension, else text if it decodes as UTF-8."""
    ext = ("." + path.rsplit(".", 1)[1].lower()) if "." in path.rsplit("/", 1)[-1] else ""
    guessed = EXTRA_TYPES.get(ext) or (mimetypes.guess_type("x" + ext)[0] if ext else None)
    head = data[:8192]
    binary = b"\x00" in head
    if guessed and (guessed.startswith(("image/", "audio/", "video/", "font/")) or guessed in (
            "application/pdf", "application/zip", "application/gzip", "application/wasm")):
        return guessed
    if binary:
        return "application/octet-stream"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not merely a character cut at the 8 KiB boundary
            return "application/octet-stream"
    if guessed in ("text/html", "application/json", "image/svg+xml", "text/css", "text/csv", "text/markdown",
                   "application/xml", "text/xml", "application/javascript", "text/javascript"):
        return f"{guessed}; charset=utf-8"
    return "text/plain; charset=utf-8"


def content_of(core: Core) -> ContentService:
    svc = core.__dict__.get("_content")
    if svc is None:
        svc = core.__dict__.setdefault("_content", ContentService(core))
    return svc
