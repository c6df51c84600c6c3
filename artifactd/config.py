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
    #: Largest gzip-inflated Git request body (either service), bytes.
    max_inflated_request_bytes: int = 100 * 1024 * 1024
    #: Largest upload-pack request body (the fetch negotiation: wants and haves), bytes.
    max_negotiation_bytes: int = 100 * 1024 * 1024
    #: Largest push (receive-pack request body), bytes; git itself refuses a larger pack
    #: in-band (``receive.maxInputSize``), so the client reads ``unpack`` / ``ng`` lines.
    max_push_bytes: int = 2 * 1024 * 1024 * 1024
    #: Largest size of one repository on disk (its own objects), bytes; a push that
    #: would pass it is declined and leaves the repo as it was.
    max_repo_bytes: int = 1024 * 1024 * 1024
    #: Largest file (blob) a push may carry, bytes.
    max_file_bytes: int = 32 * 1024 * 1024
    #: Largest JSON request body of the REST API, bytes.
    max_json_body_bytes: int = 1024 * 1024
    #: Largest request header block (all headers together), bytes.
    max_header_bytes: int = 16 * 1024
    #: A Git request body that sends nothing for this long is dropped, seconds.
    body_idle_timeout_seconds: float = 60.0
    #: A connection that has not finished sending its headers by then is closed, seconds.
    header_timeout_seconds: float = 30.0

    #: Rate limits (reference section 6): control-plane requests per namespace (per account
    #: for routes without one) and Git requests per repo, per window. 0 turns one off.
    rate_limit_control_plane: int = 10000
    rate_limit_git: int = 2000
    rate_limit_window_seconds: int = 10
    #: Where the counters live: ``memory`` (one process only), ``redis`` (needs
    #: ``rate_limit_redis_url``) or ``database`` (the metadata store). Several server
    #: processes must use ``redis`` or ``database`` to share one budget.
    rate_limit_backend: str = "memory"
    rate_limit_redis_url: str = "redis://127.0.0.1:6379/0"

    #: Start-up recovery leaves alone leftovers younger than this (another server process
    #: sharing the repo directory may still be using them), seconds.
    recovery_grace_seconds: float = 3600.0
    #: Concurrent git subprocesses serving the wire protocol.
    max_git_processes: int = 32
    #: uvicorn's event loop: ``asyncio`` or ``uvloop``. uvloop spawns a child with fork(),
    #: copying the server's page tables: ~6 ms per git process against ~1.6 ms for
    #: asyncio's vfork-based spawn (docs/benchmarks.md), and every Git request spawns git.
    event_loop: str = "asyncio"
    #: Check every pushed object (``receive.fsckObjects``).
    git_fsck_objects: bool = True
    #: Log level for the ``artifactd`` loggers.
    log_level: str = "info"

    # -- identity: users, API tokens, OAuth (docs/identity.md) --
    #: Serve HTTPS with this certificate chain and key (PEM files); both or neither.
    tls_certfile: str = ""
    tls_keyfile: str = ""
    #: Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    #: E-mail (login name) of the admin user created on the first start.
    bootstrap_admin_email: str = "admin@localhost"
    #: last_used_on / last IP of a token are written at most once per this many seconds.
    token_last_used_resolution: int = 60
    #: Longest lifetime an API token may be given, days (0: no limit; expiry stays optional).
    api_token_max_ttl_days: int = 0
    #: OAuth access tokens live this long (seconds).
    oauth_access_token_ttl: int = 3600
    #: OAuth refresh tokens (each rotation issues a new one) live this long (seconds).
    oauth_refresh_token_ttl: int = 30 * 86400
    #: Authorization codes must be exchanged within this many seconds.
    oauth_code_ttl: int = 300
    #: Device codes (RFC 8628) expire after this many seconds.
    oauth_device_code_ttl: int = 600
    #: Smallest polling interval told to device-flow clients (seconds).
    oauth_device_poll_interval: int = 5
    #: Client id of artifactd's own CLI (a public client, loopback redirects, device flow).
    oauth_cli_client_id: str = "artifactd-cli"
    #: Client id wrangler sends (its built-in default, or WRANGLER_CLIENT_ID).
    oauth_wrangler_client_id: str = "54d11594-84e4-41aa-b438-e81b8fa78ee7"
    #: Browser login sessions on the consent pages last this long (seconds).
    web_session_ttl: int = 8 * 3600
    #: Failed password logins from one client (or for one user) before slowing down.
    login_failure_threshold: int = 5
    #: Failed API/OAuth token checks from one client before slowing down.
    token_failure_threshold: int = 20
    #: Failures are counted over this window (seconds).
    auth_failure_window: int = 300
    #: First back-off once over the threshold (seconds); doubles per failure, capped.
    #: Comma-separated CIDRs never slowed down (the server's own machine by default).
    throttle_exempt: str = "127.0.0.0/8,::1/128"
    auth_backoff_base: float = 2.0
    auth_backoff_max: float = 300.0

    # -- forks, imports, content reads, maintenance (docs/forks.md, docs/imports.md) --
    #: How long a fork waits for its parent's maintenance to finish before 503.
    fork_lock_timeout_seconds: float = 300
    #: Seconds between storage maintenance runs inside the server; 0 disables them.
    maintenance_interval_seconds: int = 86_400
    #: Unreachable objects younger than this are kept (protects racing pushes).
    maintenance_prune_grace_seconds: int = 1_209_600
    #: pack.threads for maintenance repacks (keeps a repack from taking every core).
    maintenance_pack_threads: int = 1
    #: Wall-clock limit of one import, seconds.
    import_timeout_seconds: int = 600
    #: Largest repository an import may bring in (bytes on disk).
    import_max_bytes: int = 1024 * 1024 * 1024
    #: Imports running at once per server process (others wait as ``importing``).
    import_max_concurrent: int = 4
    #: Allow plain ``http://`` import remotes (and credentials over them).
    import_allow_http: bool = False
    #: Comma-separated CIDRs that imports may reach although they are not public
    #: (loopback, private, link-local, metadata), e.g. ``127.0.0.0/8,10.1.0.0/16``.
    import_allow_networks: str = ""
    #: CA bundle that import TLS connections trust (a private CA); empty: system CAs.
    import_ca_file: str = ""
    #: Largest object the content routes (blob, file, raw) return; larger ones get 413.
    content_max_bytes: int = 32 * 1024 * 1024
    #: An import or fork whose worker has not reported for this long is taken over.
    job_stale_seconds: int = 120

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'artifactd.db').resolve()}"

    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls_certfile else "http"
        return f"{scheme}://{host}:{self.port}"

    def trusted_proxy_networks(self) -> list:
        import ipaddress

        return [ipaddress.ip_network(c.strip(), strict=False) for c in self.trusted_proxies.split(",") if c.strip()]

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def trash_dir(self) -> Path:
        return self.data_dir / "trash"

    @property
    def hooks_dir(self) -> Path:
        return self.data_dir / "hooks"
