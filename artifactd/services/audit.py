"""The audit log: token creation, roll, revocation and deletion, logins, failed
authentications, repo creation and deletion. Each event carries the actor, the token id
(never a secret), the client IP and the time. Account admins read it over REST and with
``artifactd audit``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from artifactd.errors import invalid
from artifactd.store.db import Executor
from artifactd.store.models_identity import AuditEvent
from artifactd.store.types import isoformat

if TYPE_CHECKING:
    from artifactd.services.apitokens import Principal
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.audit")
_INSERT = AuditEvent.__table__.insert()


class AuditService:
    def __init__(self, core: Core):
        self.core = core

    def record(self, action: str, **fields: Any) -> None:
        """Write one event in a transaction of its own (see :meth:`event`)."""
        try:
            with self.core.db.session() as s:
                self.add(s, action, **fields)
        except Exception:  # the audit log must never turn a good request into a 500
            log.exception("could not record audit event %s", action)

    @classmethod
    def add(cls, s: Executor, action: str, **fields: Any) -> None:
        """Insert one event in ``s``: in the transaction of the change it records."""
        s.execute(_INSERT, cls.event(action, **fields))

    @staticmethod
    def event(action: str, *, outcome: str = "success", account_id: str | None = None,
              actor_user_id: str | None = None, actor_email: str | None = None, actor_kind: str | None = None,
              token_id: str | None = None, client_ip: str | None = None, resource: str | None = None,
              details: dict[str, Any] | None = None, principal: Principal | None = None) -> dict[str, Any]:
        """The column values of an event row."""
        if principal is not None:
            actor_user_id = actor_user_id or principal.user_id
            actor_email = actor_email or principal.user_email
            actor_kind = actor_kind or principal.kind
            token_id = token_id or principal.token_id
            client_ip = client_ip or principal.client_ip
        return {"account_id": account_id, "action": action, "outcome": outcome, "actor_user_id": actor_user_id,
                "actor_email": actor_email, "actor_kind": actor_kind, "token_id": token_id,
                "client_ip": client_ip, "resource": resource, "details": details}

    def list(self, account_id: str | None, *, limit: int = 100, before: int | None = None,
             action: str | None = None) -> tuple[list[dict], int | None]:
        if not 1 <= limit <= 1000:
            raise invalid("Invalid limit: must be between 1 and 1000.")
        # account_id None: events tied to no account (unknown users or tokens), operator-only.
        q = select(AuditEvent).where(AuditEvent.account_id == account_id if account_id is not None
                                     else AuditEvent.account_id.is_(None))
        if before is not None:
            q = q.where(AuditEvent.id < before)
        if action:
            q = q.where(AuditEvent.action.startswith(action))
        with self.core.db.session() as s:
            rows = list(s.scalars(q.order_by(AuditEvent.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return [self.to_dict(r) for r in rows], (rows[-1].id if more and rows else None)

    @staticmethod
    def to_dict(e: AuditEvent) -> dict:
        return {
            "id": e.id,
            "when": isoformat(e.at),
            "action": e.action,
            "outcome": e.outcome,
            "account_id": e.account_id,
            "actor": {"user_id": e.actor_user_id, "email": e.actor_email, "kind": e.actor_kind},
            "token_id": e.token_id,
            "client_ip": e.client_ip,
            "resource": e.resource,
            "details": e.details or {},
        }
