"""The service container shared by every adapter."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from artifactd.config import Settings
from artifactd.gitserver.storage import GitStorage
from artifactd.store.db import Database
from artifactd.store.models import Account

if TYPE_CHECKING:
    from artifactd.services.recovery import Leases

log = logging.getLogger("artifactd")


@dataclass
class Bootstrap:
    account_id: str
    api_token: str | None  # plaintext only on the start that created it
    admin_email: str | None = None
    admin_password: str | None = None  # one-time password of the bootstrap admin, first start only


class Core:
    def __init__(self, settings: Settings | None = None):
        from artifactd.services.apitokens import ApiTokenService
        from artifactd.services.audit import AuditService
        from artifactd.services.namespaces import NamespaceService
        from artifactd.services.oauth import OAuthService
        from artifactd.services.ratelimit import RateLimiter
        from artifactd.services.repos import RepoService
        from artifactd.services.throttle import Throttle
        from artifactd.services.tokens import RepoTokenService
        from artifactd.services.user_tokens import UserTokenService
        from artifactd.services.users import UserService

        self.settings = settings or Settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.settings.resolved_database_url())
        self.storage = GitStorage(self.settings)
        self.namespaces = NamespaceService(self)
        self.repos = RepoService(self)
        self.tokens = RepoTokenService(self)
        self.api_tokens = ApiTokenService(self)
        self.users = UserService(self)
        self.user_tokens = UserTokenService(self)
        self.oauth = OAuthService(self)
        self.audit = AuditService(self)
        self.throttle = Throttle(self)
        self.rate_limits = RateLimiter(self)
        self.leases: Leases | None = None

    def start(self) -> Bootstrap:
        """Migrate, prepare storage, recover from a crash, and create the first account
        on an empty store."""
        # The store holds token digests and repos of every tenant: owner only.
        with contextlib.suppress(OSError):
            os.chmod(self.settings.data_dir, 0o700)
        self.db.migrate()
        self.storage.prepare()
        self.recover()
        return self.bootstrap()

    def register(self) -> None:
        """Announce this serving process (see :mod:`artifactd.services.recovery`)."""
        from artifactd.services.recovery import Leases

        if self.leases is None:
            self.leases = Leases(self)
            self.leases.register()

    def recover(self):
        from artifactd.services.recovery import Recovery

        self.register()
        assert self.leases is not None
        return Recovery(self, self.leases).run()

    def bootstrap(self) -> Bootstrap:
        path = self.settings.data_dir / "bootstrap.json"
        with self.db.session() as s:
            existing = s.scalars(select(Account.id).order_by(Account.created_at).limit(1)).first()
            if existing is not None:
                admin = self.users.ensure_bootstrap_admin(s, existing)
                if admin is not None:  # a store from before users existed: add its admin
                    old = json.loads(path.read_text()) if path.exists() else {"account_id": existing}
                    write_private_json(path, {**old, "admin_email": admin[0], "admin_password": admin[1]})
                return Bootstrap(account_id=existing, api_token=None)
            account_id, token = self.api_tokens.create_bootstrap(s)
            email, password = self.users.ensure_bootstrap_admin(s, account_id, bootstrap_token=token)
        write_private_json(path, {"account_id": account_id, "api_token": token,
                                  "admin_email": email, "admin_password": password})
        return Bootstrap(account_id=account_id, api_token=token, admin_email=email, admin_password=password)

    def close(self) -> None:
        if self.leases is not None:
            self.leases.close()
            self.leases = None
        self.rate_limits.close()
        self.db.dispose()


def write_private_json(path: Path, data: dict) -> None:
    """Write a secret-bearing file readable by its owner only (0600 from the start)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
