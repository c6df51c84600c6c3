"""What the control-plane commands share: connection options, output, errors, confirmation.

Every command takes ``--json`` and the connection options (``--url``, ``--account-id``,
``--local DIR``); the credential comes from the environment or ``artifactd login``
(never from a flag, so it stays out of shell history and process lists). On failure a
command prints the error's name, number and message to stderr and exits 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from artifactd.errors import ArtifactsError, ErrorCode

EXIT_ERROR = 1


def out_console() -> Console:
    tty = sys.stdout.isatty()
    return Console(highlight=False, soft_wrap=not tty, width=None if tty else 10_000)


def err_console() -> Console:
    tty = sys.stderr.isatty()
    return Console(stderr=True, highlight=False, width=None if tty else 10_000)


class Ctx:
    """The backend a command talks to, built lazily from the options."""

    def __init__(self, url: str | None, account_id: str | None, local: str | None, as_json: bool):
        self.url = url
        self.account_id = account_id
        self.local = local
        self.json = as_json
        self._backend: Any = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            if self.local:
                from artifactd.binding.local import LocalBackend

                self._backend = LocalBackend(self.local)
            else:
                from artifactd.binding.remote import RemoteBackend
                from artifactd.credentials import resolve_connection

                conn = resolve_connection(self.url, self.account_id)
                self._backend = RemoteBackend(conn.url, conn.account_id, conn.token)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def default_namespace() -> str:
    return os.environ.get("ARTIFACTD_NAMESPACE") or "default"


def print_error(err: ArtifactsError, as_json: bool) -> None:
    if as_json:
        body = {"success": False, "errors": [{"code": err.numeric_code, "name": str(err.code),
                                              "message": err.message}]}
        click.echo(json.dumps(body, indent=2), err=True)
    else:
        err_console().print(f"[bold red]✘ {err.code} ({err.numeric_code}):[/] {err.message}", markup=True,
                            highlight=False)


def command(needs_namespace: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the shared options to a command and turn ArtifactsError into exit code 1.

    The wrapped function receives ``ctx: Ctx`` (and ``namespace`` when ``needs_namespace``)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, url: str | None, account_id: str | None, local: str | None, as_json: bool,
                **kwargs: Any) -> None:
            ctx = Ctx(url, account_id, local, as_json)
            try:
                fn(ctx, *args, **kwargs)
            except ArtifactsError as e:
                print_error(e, as_json)
                sys.exit(EXIT_ERROR)
            finally:
                ctx.close()

        opts = [
            click.option("--json", "as_json", is_flag=True, help="Print JSON (the REST result) instead of text."),
            click.option("--url", default=None, metavar="URL",
                         help="Server URL (default: $ARTIFACTD_URL, $CLOUDFLARE_API_BASE_URL, then the login)."),
            click.option("--account-id", default=None,
                         help="Account id (default: $ARTIFACTD_ACCOUNT_ID, $CLOUDFLARE_ACCOUNT_ID, then the login)."),
            click.option("--local", type=click.Path(file_okay=False), default=None, metavar="DATA_DIR",
                         help="Work in-process on a data directory instead of a server (no token)."),
        ]
        if needs_namespace:
            opts.append(click.option("--namespace", "-n", default=default_namespace,
                                     help="Namespace (default: $ARTIFACTD_NAMESPACE or 'default')."))
        for opt in reversed(opts):
            run = opt(run)
        return run

    return wrap


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def show_fields(data: dict, keys: Iterable[str], title: str | None = None) -> None:
    """``label:  value`` lines (the format wrangler uses for single objects)."""
    keys = [k for k in keys if k in data]
    if title:
        click.echo(title)
    width = max((len(k) for k in keys), default=0) + 2
    for k in keys:
        click.echo(f"{k + ':':<{width}} {fmt(data[k])}".rstrip())


def show_table(rows: list[dict], columns: list[str], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    table = Table(show_edge=True, header_style="bold", pad_edge=True)
    for c in columns:
        table.add_column(c, overflow="fold", no_wrap=True)
    for r in rows:
        table.add_row(*(fmt(r.get(c)) for c in columns))
    out_console().print(table)


def confirm_or_abort(question: str, force: bool) -> None:
    """Ask before a destructive action; ``--force`` skips. Without a terminal to ask on,
    refuse (exit 1) rather than guess."""
    if force:
        return
    if not sys.stdin.isatty():
        raise ArtifactsError(ErrorCode.INVALID_INPUT,
                             f"{question} Refusing without confirmation: no terminal to ask on; pass --force.")
    if not click.confirm(question, default=False, err=True):
        click.echo("Cancelled; nothing was changed.", err=True)
        sys.exit(EXIT_ERROR)


class Progress:
    """A live status line while a fork or import runs: a spinner on a terminal, one line
    per change otherwise (so logs of non-interactive runs show it too)."""

    def __init__(self, what: str, quiet: bool = False):
        self.what = what
        self.quiet = quiet
        self.started = time.monotonic()
        self.console = err_console()
        self._status = None
        self._last: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Progress:
        if self.quiet:
            return self
        if self.console.is_terminal:
            self._status = self.console.status(f"{self.what}…")
            self._status.__enter__()
        else:
            click.echo(f"{self.what}…", err=True)
        return self

    def update(self, state: str) -> None:
        if self.quiet:
            return
        line = f"{self.what}: {state} ({self.elapsed():.1f} s)"
        if self._status is not None:
            self._status.update(line)
        elif state != self._last:
            click.echo(line, err=True)
        self._last = state

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)

    def run_while(self, fn: Callable[[], Any], state: str = "running", tick: float = 0.1) -> Any:
        """Run a blocking call in a thread and keep the display alive until it returns."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as e:  # re-raised in the caller's thread
                box["error"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        while t.is_alive():
            self.update(state)
            t.join(tick)
        if "error" in box:
            raise box["error"]
        return box["value"]
