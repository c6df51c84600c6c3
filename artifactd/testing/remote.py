"""A second Git server for import tests: C ``git http-backend`` behind a tiny Python
HTTP(S) server on loopback, with the misbehaviours an import must survive.

Paths (under the root directory of bare repos):
- ``/<repo>.git/...``              smart HTTP via ``git http-backend``;
- ``/private/<repo>.git/...``      the same, but HTTP Basic ``user:password`` required;
- ``/stall/<repo>.git/...``        holds every request until ``release()`` is called;
- ``/redirect/<anything>``         301 to the same path without ``/redirect``;
- ``/notgit/<anything>``           200 text/html that is not Git;
- ``/error/<anything>``            502.
Every request's path and ``Authorization`` header are recorded in ``requests``.
"""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class SeenRequest:
    method: str
    path: str
    authorization: str | None


@dataclass
class GitRemoteServer:
    root: Path
    username: str = "importer"
    password: str = "s3cr3t-P@ss"
    certfile: Path | None = None
    keyfile: Path | None = None
    requests: list[SeenRequest] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None
    _gate: threading.Event = field(default_factory=threading.Event)
    #: Set when a stalled request has arrived (and is being held).
    stalled: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def release(self) -> None:
        self._gate.set()

    def start(self) -> GitRemoteServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("content-length") or 0)
                return self.rfile.read(n) if n else b""

            def _simple(self, status: int, body: bytes, ctype: str = "text/plain", extra: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self):
                path, _, query = self.path.partition("?")
                server.requests.append(SeenRequest(self.command, path, self.headers.get("authorization")))
                body = self._body() if self.command == "POST" else b""
                if path.startswith("/redirect/"):
                    return self._simple(301, b"moved", extra={"Location": self.path[len("/redirect"):]})
                if path.startswith("/notgit/"):
                    return self._simple(200, b"<html><body>Not a git server</body></html>", "text/html")
                if path.startswith("/error/"):
                    return self._simple(502, b"bad gateway")
                if path.startswith("/stall/"):
                    server.stalled.set()
                    server._gate.wait()
                    path = path[len("/stall"):]
                if path.startswith("/private/"):
                    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
                    if self.headers.get("authorization") != expected:
                        return self._simple(401, b"auth required", extra={"WWW-Authenticate": 'Basic realm="t"'})
                    path = path[len("/private"):]
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": os.devnull,
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("content-type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "uploadpack.allowFilter",
                    "GIT_CONFIG_VALUE_0": "true",
                }
                if self.headers.get("git-protocol"):
                    env["GIT_PROTOCOL"] = self.headers["git-protocol"]
                if self.headers.get("content-encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["content-encoding"]
                proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.split(b"\r\n"):
                    k, _, v = line.decode("latin-1").partition(":")
                    if k.lower() == "status":
                        status = int(v.strip().split()[0])
                    elif k:
                        headers.append((k, v.strip()))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = handle_any
            do_POST = handle_any

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.certfile), str(self.keyfile))
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost), made with the openssl binary."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key
