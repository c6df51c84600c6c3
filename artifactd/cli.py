"""The ``artifactd`` command."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from artifactd import __version__, logsafe
from artifactd.config import Settings


@click.group()
@click.version_option(__version__, prog_name="artifactd")
def main() -> None:
    """artifactd: versioned storage that speaks Git."""


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ARTIFACTD_DATA_DIR", default="./data",
              show_default=True, help="Where repos, the SQLite store and bootstrap.json live.")
@click.option("--host", envvar="ARTIFACTD_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="ARTIFACTD_PORT", type=int, default=8787, show_default=True)
@click.option("--public-url", envvar="ARTIFACTD_PUBLIC_URL", default="",
              help="Base URL clients use to reach this server (remotes are built from it).")
@click.option("--database-url", envvar="ARTIFACTD_DATABASE_URL", default="",
              help="SQLAlchemy URL; default SQLite in the data dir. E.g. postgresql://user@host/db")
@click.option("--git-host-template", envvar="ARTIFACTD_GIT_HOST_TEMPLATE", default="",
              help="Per-account Git host, e.g. '{account_id}.git.example.com'.")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes (share one store).")
@click.option("--log-level", envvar="ARTIFACTD_LOG_LEVEL", default="info", show_default=True)
@click.option("--tls-cert", envvar="ARTIFACTD_TLS_CERTFILE", default="",
              help="Serve HTTPS with this PEM certificate chain (needs --tls-key).")
@click.option("--tls-key", envvar="ARTIFACTD_TLS_KEYFILE", default="", help="PEM private key for --tls-cert.")
def serve(data_dir: Path, host: str, port: int, public_url: str, database_url: str, git_host_template: str,
          workers: int, log_level: str, tls_cert: str, tls_key: str) -> None:
    """Run the server (REST control plane and Git smart HTTP)."""
    import uvicorn

    from artifactd.http.app import SUPERVISOR_PID_ENV, create_app
    from artifactd.services import Core

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together.")
    settings = Settings(data_dir=data_dir, host=host, port=port, public_url=public_url,
                        database_url=database_url, git_host_template=git_host_template, log_level=log_level,
                        tls_certfile=tls_cert, tls_keyfile=tls_key)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafe.install_root()
    core = Core(settings)
    boot = core.start()
    if boot.api_token:
        click.echo("artifactd: created the bootstrap account and API token (shown once; also in "
                   f"{settings.data_dir / 'bootstrap.json'}, mode 0600):")
        click.echo(f"  account_id: {boot.account_id}")
        click.echo(f"  api_token:  {boot.api_token}")
        if boot.admin_password:
            click.echo(f"  admin:      {boot.admin_email} (one-time password in bootstrap.json; "
                       "choose your own at the first sign-in)")
    click.echo(f"artifactd {__version__} serving on {settings.resolved_public_url()} "
               f"(account {boot.account_id}, data in {settings.data_dir})", err=True)
    common = dict(host=host, port=port, log_level=log_level.lower(), proxy_headers=False, loop=settings.event_loop,
                  timeout_keep_alive=30, server_header=False,
                  http="artifactd.http.protocol:GuardedHttpToolsProtocol", log_config=logsafe.uvicorn_log_config())
    if tls_cert:
        common.update(ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    if workers > 1:
        # Workers rebuild their settings from the environment.
        os.environ.update({
            "ARTIFACTD_DATA_DIR": str(settings.data_dir), "ARTIFACTD_HOST": host, "ARTIFACTD_PORT": str(port),
            "ARTIFACTD_PUBLIC_URL": public_url, "ARTIFACTD_DATABASE_URL": database_url,
            "ARTIFACTD_GIT_HOST_TEMPLATE": git_host_template,
            "ARTIFACTD_TLS_CERTFILE": tls_cert, "ARTIFACTD_TLS_KEYFILE": tls_key,
            SUPERVISOR_PID_ENV: str(os.getpid()),
        })
        core.close()
        uvicorn.run("artifactd.http.app:app_from_env", factory=True, workers=workers, **common)
    else:
        try:
            uvicorn.run(create_app(core), **common)
        finally:
            core.close()


from artifactd.cli_admin import admin, audit  # noqa: E402  (identity: server-side admin commands)
from artifactd.cli_login import login, logout, whoami  # noqa: E402  (identity: OAuth login for the CLI)

for _cmd in (admin, audit, login, logout, whoami):
    main.add_command(_cmd)

from artifactd.cli_maintenance import maintenance as _maintenance  # noqa: E402  (issue 3)

main.add_command(_maintenance)

from artifactd.cli_binding import register as _register_binding_commands  # noqa: E402

_register_binding_commands(main)


if __name__ == "__main__":  # pragma: no cover
    main()
