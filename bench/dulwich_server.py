"""Serve a directory of repositories with dulwich's smart-HTTP WSGI app.

Run as a subprocess by ``bench.baselines.DulwichWeb`` (so its CPU and memory
are measured apart from the harness)::

    python bench/dulwich_server.py ROOT --port 8080 [--single-threaded]

This mirrors what ``dulwich web`` does (``make_wsgi_chain`` on wsgiref), with
two changes a benchmark needs: it serves every repository under ROOT rather
than one, and it handles requests in threads (``dulwich web`` is strictly one
request at a time) unless ``--single-threaded`` is given.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from socketserver import ThreadingMixIn
from typing import cast

from dulwich.server import BackendRepo, FileSystemBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain


class RootedBackend(FileSystemBackend):
    """FileSystemBackend that accepts dulwich.web's "/name.git" prefixes.

    dulwich.web passes the URL prefix with a leading slash, which
    ``os.path.join(root, "/x")`` turns into the absolute path "/x"; the stock
    backend then refuses it as outside the root unless the root is "/".
    """

    def open_repository(self, path: str | bytes) -> BackendRepo:  # type: ignore[override]
        # Discovery passes str, the RPC handlers pass bytes.
        name = os.fsdecode(path).lstrip("/")
        return super().open_repository(name)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServerLogger):
    """wsgiref server with a thread per request (HTTP/1.0, no keep-alive)."""

    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--single-threaded", action="store_true", help="exactly like `dulwich web`")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr)
    app = make_wsgi_chain(cast(FileSystemBackend, RootedBackend(args.root)))
    server_class = WSGIServerLogger if args.single_threaded else ThreadingWSGIServer
    server = make_server(args.host, args.port, app, server_class=server_class,
                         handler_class=WSGIRequestHandlerLogger)
    print(f"listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
