"""Naming rules of namespaces, repos and branches (reference §1.2, §1.3, §6)."""

from __future__ import annotations

import re

from artifactd.errors import ArtifactsError, ErrorCode, invalid

NAMESPACE_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9._])?$")
REPO_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
BRANCH_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._/-]*$")
HASH_RE = re.compile(r"^[0-9a-f]{40}$")
TOKEN_ID_RE = re.compile(r"^[0-9a-z]{16}$")

MAX_NAME = 63
#: Upper bound of integers with no documented maximum (page numbers): an INTEGER column.
MAX_INT32 = 2**31 - 1
MAX_DESCRIPTION = 1024
MAX_BRANCH = 256


def namespace_name(name: object) -> str:
    if not isinstance(name, str) or not (2 <= len(name) <= MAX_NAME) or not NAMESPACE_RE.match(name):
        raise invalid(
            "Invalid namespace name: 2-63 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit and not ending with '-'."
        )
    return name


def repo_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not (1 <= len(name) <= MAX_NAME)
        or not REPO_RE.match(name)
        or name.endswith(".git")
        or name.endswith(".lock")
    ):
        raise ArtifactsError(
            ErrorCode.INVALID_REPO_NAME,
            "Invalid repo name: 1-63 characters, letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (and not ending in '.git' or '.lock').",
        )
    return name


def description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("description must be a string.")
    if len(value) > MAX_DESCRIPTION:
        raise invalid(f"description must be at most {MAX_DESCRIPTION} characters.")
    return text(value, "description")


def text(value: str, field: str) -> str:
    """Free text that will be stored or compared in the database: no NUL characters
    (PostgreSQL cannot hold them in text, so they would otherwise become a 500)."""
    if "\x00" in value:
        raise invalid(f"Invalid {field}: must not contain NUL characters.")
    return value



def branch_name(value: object, field: str = "default_branch") -> str:
    """Branch names that are valid both by the schema and by git's ref rules."""
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string.")
    bad = (
        not (1 <= len(value) <= MAX_BRANCH)
        or not BRANCH_RE.match(value)
        or ".." in value
        or "//" in value
        or "@{" in value
        or value.endswith(("/", ".", ".lock"))
        or value == "HEAD"  # git refuses a branch of that name
        or value.startswith("refs/")  # would become refs/heads/refs/...: a full ref name given by mistake
        or any(seg.startswith(".") or seg.endswith(".lock") or seg == "" for seg in value.split("/"))
    )
    if bad:
        raise invalid(f"Invalid {field}: {value[:80]!r} is not a valid branch name.")
    return value


def boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{field} must be a boolean.")
    return value


def integer(value: object, field: str, lo: int, hi: int | None = None, *, code: ErrorCode = ErrorCode.INVALID_INPUT,
            message: str | None = None) -> int:
    ok = (isinstance(value, int) and not isinstance(value, bool) and value >= lo
          and value <= (MAX_INT32 if hi is None else hi))
    if not ok:
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ArtifactsError(code, message or f"Invalid {field}: must be an integer {rng}.")
    return value  # type: ignore[return-value]


def object_hash(value: str) -> str:
    if not HASH_RE.match(value or ""):
        raise invalid("Invalid hash: expected a 40-character SHA-1 hex hash.")
    return value
