"""Users, accounts and memberships.

A user logs in with an e-mail address and a password (argon2id). An account has members;
an ``admin`` member manages the account's tokens and members, a ``member`` uses what
their tokens allow.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from artifactd import ids
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.store.models import Account
from artifactd.store.models_identity import Membership, User
from artifactd.store.types import isoformat, utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

ROLES = ("admin", "member")
MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so the reply takes as long."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def normalize_email(email: str) -> str:
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise invalid("Invalid email: expected an address like name@example.com.")
    return email.strip().lower()


def check_password_strength(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise invalid(f"Invalid password: use at least {MIN_PASSWORD_LENGTH} characters.")


@dataclass(frozen=True)
class AccountRole:
    account_id: str
    account_name: str
    role: str


class UserService:
    def __init__(self, core: Core):
        self.core = core

    # -- users -------------------------------------------------------------------------

    def create(self, s: Session, email: str, password: str | None, name: str = "", *,
               must_change_password: bool = False) -> User:
        email = normalize_email(email)
        if password is not None:
            check_password_strength(password)
        if s.scalars(select(User).where(User.email == email)).first() is not None:
            raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"A user with email {email} already exists.")
        user = User(id=ids.new_id(32), email=email, name=name or email.split("@")[0],
                    password_hash=hash_password(password) if password else None, status="active",
                    must_change_password=must_change_password)
        s.add(user)
        try:
            s.flush()
        except IntegrityError:
            raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"A user with email {email} already exists.") from None
        return user

    def find(self, s: Session, ref: str) -> User | None:
        """A user by id or e-mail address."""
        user = s.get(User, ref)
        if user is None and isinstance(ref, str):
            user = s.scalars(select(User).where(User.email == ref.strip().lower())).first()
        return user

    def require(self, s: Session, ref: str) -> User:
        user = self.find(s, ref)
        if user is None:
            raise not_found(f"User not found: {ref}.")
        return user

    def set_password(self, s: Session, ref: str, password: str) -> User:
        check_password_strength(password)
        user = self.require(s, ref)
        user.password_hash = hash_password(password)
        user.must_change_password = False
        user.modified_at = utcnow()
        return user

    def set_status(self, s: Session, ref: str, status: str) -> User:
        if status not in ("active", "disabled"):
            raise invalid("Invalid status: must be active or disabled.")
        user = self.require(s, ref)
        user.status = status
        user.modified_at = utcnow()
        return user

    def check_password(self, s: Session, email: str, password: str) -> User | None:
        """The active user with this e-mail and password, or None (same work either way)."""
        try:
            key = normalize_email(email)
        except ArtifactsError:
            key = ""
        user = s.scalars(select(User).where(User.email == key)).first() if key else None
        ok = verify_password(user.password_hash if user else None, password or "")
        if not ok or user is None or user.status != "active":
            return None
        if _hasher.check_needs_rehash(user.password_hash or ""):
            user.password_hash = hash_password(password)
        user.last_login_at = utcnow()
        return user

    def list(self, s: Session) -> list[User]:
        return list(s.scalars(select(User).order_by(User.created_at, User.id)))

    def ensure_bootstrap_admin(self, s: Session, account_id: str,
                               bootstrap_token: str | None = None) -> tuple[str, str] | None:
        """On a store without users: the admin of the bootstrap account, with a one-time
        password (it must be changed at the first browser login). The bootstrap API
        token becomes the admin's, with Artifacts Read + Edit and API Tokens Write."""
        if s.scalars(select(User.id).limit(1)).first() is not None:
            return None
        from artifactd.services.user_tokens import bootstrap_policies
        from artifactd.store.models import ApiToken

        password = generate_password()
        user = self.create(s, self.core.settings.bootstrap_admin_email, password, "Admin",
                           must_change_password=True)
        self.add_member(s, account_id, user.id, "admin")
        if bootstrap_token is not None:
            row = s.scalars(select(ApiToken).where(ApiToken.digest == ids.digest(bootstrap_token))).one()
            row.user_id = user.id
            row.policies = bootstrap_policies(account_id, user.id)
            row.modified_on = utcnow()
        return user.email, password

    # -- accounts and memberships --------------------------------------------------------

    def create_account(self, s: Session, name: str, admin: str | None = None) -> Account:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise invalid("Invalid account name.")
        account = Account(id=ids.new_account_id(), name=name.strip())
        s.add(account)
        s.flush()
        if admin:
            self.add_member(s, account.id, admin, "admin")
        return account

    def require_account(self, s: Session, account_id: str) -> Account:
        account = s.get(Account, account_id)
        if account is None:
            raise not_found(f"Account not found: {account_id}.")
        return account

    def list_accounts(self, s: Session) -> list[Account]:
        return list(s.scalars(select(Account).order_by(Account.created_at, Account.id)))

    def add_member(self, s: Session, account_id: str, user_ref: str, role: str = "member") -> Membership:
        if role not in ROLES:
            raise invalid(f"Invalid role: must be one of {', '.join(ROLES)}.")
        self.require_account(s, account_id)
        user = self.require(s, user_ref)
        existing = s.scalars(select(Membership).where(Membership.account_id == account_id,
                                                       Membership.user_id == user.id)).first()
        if existing is not None:
            existing.role = role
            return existing
        m = Membership(id=ids.new_id(32), account_id=account_id, user_id=user.id, role=role)
        s.add(m)
        s.flush()
        return m

    def remove_member(self, s: Session, account_id: str, user_ref: str) -> None:
        user = self.require(s, user_ref)
        m = s.scalars(select(Membership).where(Membership.account_id == account_id,
                                                Membership.user_id == user.id)).first()
        if m is None:
            raise not_found(f"{user.email} is not a member of account {account_id}.")
        if m.role == "admin":
            admins = s.scalars(select(Membership).where(Membership.account_id == account_id,
                                                         Membership.role == "admin")).all()
            if len(admins) <= 1:
                raise ArtifactsError(ErrorCode.CONFLICT, "Cannot remove the last admin of an account.")
        s.delete(m)

    def roles_of(self, s: Session, user_id: str) -> list[AccountRole]:
        rows = s.execute(
            select(Membership.account_id, Account.name, Membership.role)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.user_id == user_id)
            .order_by(Account.created_at, Account.id)
        ).all()
        return [AccountRole(a, n, r) for a, n, r in rows]

    def role_in(self, s: Session, user_id: str, account_id: str) -> str | None:
        return s.scalar(select(Membership.role).where(Membership.user_id == user_id,
                                                      Membership.account_id == account_id))

    def members(self, s: Session, account_id: str) -> list[tuple[Membership, User]]:
        return list(s.execute(
            select(Membership, User).join(User, User.id == Membership.user_id)
            .where(Membership.account_id == account_id).order_by(Membership.created_at)
        ).all())

    # -- shapes --------------------------------------------------------------------------

    @staticmethod
    def user_dict(user: User) -> dict:
        """The Cloudflare ``/user`` shape (the fields a client reads)."""
        first, _, last = (user.name or "").partition(" ")
        return {
            "id": user.id,
            "email": user.email,
            "first_name": first or None,
            "last_name": last or None,
            "username": user.email.split("@")[0],
            "suspended": user.status != "active",
            "two_factor_authentication_enabled": False,
            "created_on": isoformat(user.created_at),
            "modified_on": isoformat(user.modified_at),
        }

    @staticmethod
    def membership_dict(m: Membership, account_name: str, user: User | None = None) -> dict:
        out = {
            "id": m.id,
            "status": "accepted",
            "account": {"id": m.account_id, "name": account_name},
            "roles": ["Administrator"] if m.role == "admin" else ["Member"],
            "role": m.role,
            "permissions": {
                "artifacts": {"read": True, "write": True},
                "api_tokens": {"read": True, "write": m.role == "admin"},
                "members": {"read": True, "write": m.role == "admin"},
            },
        }
        if user is not None:
            out["user"] = {"id": user.id, "email": user.email}
        return out
