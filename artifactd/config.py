"""Settings: every default works on one machine, every limit is a setting.

Each field can be set through the environment as ``ARTIFACTD_<FIELD>`` (for example
``ARTIFACTD_DATA_DIR``); the CLI flags of ``artifactd serve`` override them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARTIFACTD_", extra="ignore")

    data_dir: Path = Path("./data")
    #: SQLAlchemy URL; empty means SQLite at ``<data_dir>/artifactd.db``.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8787
    #: Base URL clients reach this server at; empty means ``http://<host>:<port>``.
    public_url: str = ""
    #: Optional per-account Git host, e.g. ``{account_id}.git.example.com``. When set,
    #: remotes are ``<scheme>://<host>/git/<ns>/<repo>.git`` and the account comes from
    #: the Host header; the path form ``/git/<account>/<ns>/<repo>.git`` keeps working.
    git_host_template: str = ""

    git_binary: str = "git"
    #: Largest gzip-inflated request body accepted for upload-pack negotiation.
    max_inflated_request_bytes: int = 100 * 1024 * 1024
    #: Largest push (receive-pack request body), bytes.
    max_push_bytes: int = 2 * 1024 * 1024 * 1024
    #: Concurrent git subprocesses serving the wire protocol.
    max_git_processes: int = 32
    #: Check every pushed object (``receive.fsckObjects``).
    git_fsck_objects: bool = True
    #: Log level for the ``artifactd`` loggers.
    log_level: str = "info"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'artifactd.db').resolve()}"

    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / "trash"

    @property
    def hooks_dir(self) -> Path:
        return self.data_dir / "hooks"
