"""Background jobs of repos being forked or imported (who runs them, last sign of life).

One row per repo while it is ``forking`` or ``importing``. A job whose owner stopped
reporting (crash, restart) is taken over by any server process: a fork is redone, an
import ends as a visible failure. Never holds a secret: import URLs are stored without
credentials.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from artifactd.store.models import Base
from artifactd.store.types import UTCDateTime, utcnow


class RepoJob(Base):
    __tablename__ = "repo_jobs"

    repo_id: Mapped[str] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    #: fork | import
    kind: Mapped[str] = mapped_column(String(16))
    #: ``host:pid:nonce`` of the process running it.
    owner: Mapped[str] = mapped_column(String(160))
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Non-secret parameters (fork: parent_id, default_branch_only; import: branch, depth).
    params: Mapped[dict] = mapped_column(JSON, default=dict)
