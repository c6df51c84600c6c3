"""The Python binding: ``Artifacts`` (blocking) and ``AsyncArtifacts``, bound to one namespace.

    from artifactd.binding import Artifacts

    art = Artifacts.from_config()          # wrangler.jsonc / wrangler.toml / artifactd.toml
    created = art.create("agent-1")        # remote + initial write token
    repo = art.get("agent-1")
    print(repo.info().default_branch, [c.message for c in repo.log(limit=5)])

See docs/binding.md.
"""

from artifactd.binding.client import Artifacts, AsyncArtifacts, AsyncRepo, Repo
from artifactd.binding.types import (
    Blob,
    CommitMetadata,
    CreateRepoResult,
    CreateTokenResult,
    NamespaceInfo,
    RepoInfo,
    RepoListResult,
    Signature,
    TokenInfo,
    TokenListResult,
    TreeEntry,
)
from artifactd.errors import ArtifactsError, ErrorCode

__all__ = [
    "Artifacts", "ArtifactsError", "AsyncArtifacts", "AsyncRepo", "Blob", "CommitMetadata", "CreateRepoResult",
    "CreateTokenResult", "ErrorCode", "NamespaceInfo", "Repo", "RepoInfo", "RepoListResult", "Signature",
    "TokenInfo", "TokenListResult", "TreeEntry",
]
