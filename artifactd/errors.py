"""The one error type of the core services, with the documented names and codes.

Every adapter (REST envelope, binding, CLI) renders this same error; none invents its own.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """Name, numeric code and HTTP status of each documented Artifacts error.

    A member also compares equal to its name (``ErrorCode.NOT_FOUND == "NOT_FOUND"``) and
    prints as it, so the binding's ``ArtifactsError.code`` behaves like the hosted
    binding's string code while the core keeps using the enum.
    """

    INVALID_INPUT = (10100, 400)
    INVALID_REPO_NAME = (10101, 400)
    INVALID_TTL = (10103, 400)
    INVALID_URL = (10104, 422)
    REMOTE_AUTH_REQUIRED = (10106, 422)
    NOT_FOUND = (10200, 404)
    ALREADY_EXISTS = (10201, 409)
    CONFLICT = (10202, 409)
    CREATE_IN_PROGRESS = (10301, 409)
    IMPORT_IN_PROGRESS = (10302, 409)
    FORK_IN_PROGRESS = (10303, 409)
    INTERNAL_ERROR = (10400, 500)
    UPSTREAM_UNAVAILABLE = (10401, 502)
    MEMORY_LIMIT = (10402, 413)
    # Control-plane authentication (Cloudflare's own numbers for these situations).
    UNAUTHENTICATED = (10000, 401)
    FORBIDDEN = (10001, 403)
    RATE_LIMITED = (10429, 429)
    # Identity routes (Cloudflare's numbers): a token of the wrong kind for /user/tokens/verify,
    # and a credential without access to a user/account resource.
    INVALID_API_TOKEN = (1000, 401)
    UNAUTHORIZED_RESOURCE = (9109, 403)

    @property
    def numeric(self) -> int:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @classmethod
    def from_numeric(cls, numeric: object) -> ErrorCode | None:
        """The member with this numeric code, or None."""
        for member in cls:
            if member.value[0] == numeric:
                return member
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.name == other
        return self is other

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name


class ArtifactsError(Exception):
    """A failure with a documented code; safe to show to the caller as is.

    ``code`` is the :class:`ErrorCode` (equal to its name, e.g. ``"NOT_FOUND"``),
    ``numeric_code`` the number REST puts in ``errors[].code`` (e.g. 10200), ``status``
    the HTTP status. ``numeric`` overrides the number when a server answered with one
    that has no name here (the binding then picks the closest name by HTTP status).
    """

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None, numeric: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or code.status
        self._numeric = numeric
        #: Extra reply headers (e.g. ``Retry-After``).
        self.headers = headers

    @property
    def name(self) -> str:
        return self.code.name

    @property
    def numeric_code(self) -> int:
        return self._numeric if self._numeric is not None else self.code.numeric

    def __repr__(self) -> str:
        return f"ArtifactsError({self.code.name}, {self.message!r})"


def invalid(message: str) -> ArtifactsError:
    return ArtifactsError(ErrorCode.INVALID_INPUT, message)


def not_found(message: str) -> ArtifactsError:
    return ArtifactsError(ErrorCode.NOT_FOUND, message)


def rate_limited(retry_after: int, what: str) -> ArtifactsError:
    return ArtifactsError(
        ErrorCode.RATE_LIMITED,
        f"Rate limit exceeded for {what}; retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
