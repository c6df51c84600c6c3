"""Typed results of the binding (reference §2.4), shared by the remote and local backends.

Both backends produce the REST shapes (snake_case metadata, camelCase commit fields, as
the hosted API does); the constructors here turn them into dataclasses with Python names.
Timestamps of metadata are timezone-aware UTC ``datetime``; commit times stay Unix
seconds, as the hosted binding returns them. Secrets (``token``, ``plaintext``) are left
out of ``repr()`` so that logging a result never logs a credential.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any


def isoformat(value: dt.datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, as the REST API prints times."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return isoformat(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Result:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the field names of this class (times as ISO-8601 strings)."""
        return _plain(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class NamespaceInfo(_Result):
    namespace: str
    jurisdiction: str
    repo_count: int
    created_at: dt.datetime | None
    updated_at: dt.datetime | None

    @classmethod
    def from_rest(cls, d: dict) -> NamespaceInfo:
        return cls(
            namespace=d["namespace"],
            jurisdiction=d.get("jurisdiction") or "unrestricted",
            repo_count=int(d.get("repo_count") or 0),
            created_at=parse_time(d.get("created_at")),
            updated_at=parse_time(d.get("updated_at")),
        )


@dataclass(frozen=True)
class RepoInfo(_Result):
    """``ArtifactsRepoInfo`` (plus ``status``, which REST and ``list()`` carry)."""

    id: str
    name: str
    description: str | None
    default_branch: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    last_push_at: dt.datetime | None
    source: str | None
    read_only: bool
    remote: str | None
    status: str = "ready"

    @classmethod
    def from_rest(cls, d: dict) -> RepoInfo:
        return cls(
            id=d["id"],
            name=d["name"],
            description=d.get("description"),
            default_branch=d.get("default_branch") or "main",
            created_at=parse_time(d.get("created_at")),
            updated_at=parse_time(d.get("updated_at")),
            last_push_at=parse_time(d.get("last_push_at")),
            source=d.get("source"),
            read_only=bool(d.get("read_only", False)),
            remote=d.get("remote"),
            status=d.get("status") or "ready",
        )


@dataclass(frozen=True)
class CreateRepoResult(_Result):
    """``ArtifactsCreateRepoResult``: the new repo and its initial write token (24 h).

    ``objects`` is set for forks only (objects the fork holds)."""

    id: str
    name: str
    description: str | None
    default_branch: str
    remote: str
    token: str = field(repr=False)
    read_only: bool = False
    objects: int | None = None

    @classmethod
    def from_rest(cls, d: dict) -> CreateRepoResult:
        return cls(
            id=d["id"],
            name=d["name"],
            description=d.get("description"),
            default_branch=d.get("default_branch") or "main",
            remote=d["remote"],
            token=d["token"],
            read_only=bool(d.get("read_only", False)),
            objects=d.get("objects"),
        )


@dataclass(frozen=True)
class RepoListResult(_Result):
    """``ArtifactsRepoListResult``: one page, newest first; ``cursor`` is None on the last page."""

    repos: list[RepoInfo]
    total: int
    cursor: str | None = None


@dataclass(frozen=True)
class CreateTokenResult(_Result):
    id: str
    plaintext: str = field(repr=False)
    scope: str = "write"
    expires_at: dt.datetime | None = None

    @classmethod
    def from_rest(cls, d: dict) -> CreateTokenResult:
        return cls(id=d["id"], plaintext=d["plaintext"], scope=d["scope"], expires_at=parse_time(d.get("expires_at")))


@dataclass(frozen=True)
class TokenInfo(_Result):
    id: str
    scope: str
    state: str
    created_at: dt.datetime | None
    expires_at: dt.datetime | None

    @classmethod
    def from_rest(cls, d: dict) -> TokenInfo:
        return cls(id=d["id"], scope=d["scope"], state=d["state"], created_at=parse_time(d.get("created_at")),
                   expires_at=parse_time(d.get("expires_at")))


@dataclass(frozen=True)
class TokenListResult(_Result):
    tokens: list[TokenInfo]
    total: int


@dataclass(frozen=True)
class Signature(_Result):
    name: str
    email: str


@dataclass(frozen=True)
class CommitMetadata(_Result):
    """``ArtifactsCommitMetadata``; ``authored_at``/``committed_at`` are Unix seconds."""

    hash: str
    tree_hash: str
    message: str
    author: Signature
    committer: Signature
    parents: list[str]
    authored_at: int
    committed_at: int

    @classmethod
    def from_rest(cls, d: dict) -> CommitMetadata:
        return cls(
            hash=d["hash"],
            tree_hash=d["treeHash"],
            message=d["message"],
            author=Signature(**d["author"]),
            committer=Signature(**d["committer"]),
            parents=list(d.get("parents") or []),
            authored_at=int(d["authoredAt"]),
            committed_at=int(d["committedAt"]),
        )


@dataclass(frozen=True)
class TreeEntry(_Result):
    """One immediate child of a tree; ``type`` is tree, blob, exec, symlink or gitlink."""

    name: str
    mode: str
    hash: str
    type: str

    @classmethod
    def from_rest(cls, d: dict) -> TreeEntry:
        return cls(name=d["name"], mode=d["mode"], hash=d["hash"], type=d["type"])


@dataclass(frozen=True)
class Blob:
    """Raw bytes, like the hosted binding's ``Blob``: ``type`` is empty for ``read_blob``
    and the MIME type for ``read_file``."""

    data: bytes = field(repr=False)
    type: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def text(self, encoding: str = "utf-8") -> str:
        return self.data.decode(encoding)

    def __repr__(self) -> str:
        return f"Blob(size={len(self.data)}, type={self.type!r})"


__all__ = [
    "Blob", "CommitMetadata", "CreateRepoResult", "CreateTokenResult", "NamespaceInfo", "RepoInfo",
    "RepoListResult", "Signature", "TokenInfo", "TokenListResult", "TreeEntry",
]
