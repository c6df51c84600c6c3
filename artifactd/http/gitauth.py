"""Reading Git credentials from an Authorization header (Bearer or Basic)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "bearer" | "basic"
    secret: str | None  # None: the header was malformed


def parse_authorization(header: bytes | str | None) -> Credentials | None:
    """None when no credentials were sent at all.

    Basic: the username is ignored (never logged); the password is the secret or the
    percent-encoded full token. Bearer: the full token or the secret alone.
    """
    if not header:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            return Credentials("bearer", None)
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return Credentials("bearer", value or None)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return Credentials("basic", None)
        _, sep, password = decoded.partition(":")
        if not sep or not password:
            return Credentials("basic", None)
        return Credentials("basic", unquote(password))
    return Credentials("bearer", None)
