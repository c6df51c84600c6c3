"""Identifiers and secrets: random, unguessable, in the shapes the hosted product uses."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_BASE36 = string.digits + string.ascii_lowercase


def new_id(length: int = 16) -> str:
    """Opaque 16-character base-36 id (repos, tokens), as the hosted product issues.

    One uniform draw below 36**length, then its digits: a ``secrets.choice`` per
    character cost 16 system-random calls (~2 % of a repo creation's CPU)."""
    n = secrets.randbelow(36**length)
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_BASE36[r])
    return "".join(out)


def new_account_id() -> str:
    return secrets.token_hex(16)


def digest(secret: str) -> str:
    """SHA-256 hex of a secret: the only form a secret is ever stored in."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
