"""The Git servers artifactd is measured against, each serving a directory of
bare repositories on 127.0.0.1 with a free port.

Why: a number for artifactd means little alone. The floor is ``file://`` (no
HTTP at all); the reference is C git's own ``git http-backend`` behind the
classic nginx + fcgiwrap stack, as an admin would run it; the pure-Python
alternative is dulwich's WSGI server.

Every server has the same small interface (``GitServer``), which is all the
harness in ``bench.suite`` needs, so artifactd plugs in by subclassing it::

    with NginxHttpBackend(root) as srv:          # root: a directory of NAME.git
        srv.add_repo("NAME.git", "/path/to/bare.git")   # or put repos in root yourself
        url = srv.url("NAME.git")                # http://127.0.0.1:PORT/NAME.git
        git -c <srv.git_config...> clone url     # extra client config, e.g. auth
        srv.pids, srv.cpu_seconds()              # server process roots (RSS), CPU

Servers (``BASELINES``): file, nginx, nginx-acct, dulwich, dulwich-nobitmap.
Smoke test:  python -m bench.baselines --smoke
Benchmark:   python -m bench.baselines --bench [--objects 50000] [--runs 3]
"""

from __future__ import annotations

import atexit
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.measure import tree_cpu_seconds

HOST = "127.0.0.1"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"

#: Server-side git config for the C git servers, passed as GIT_CONFIG_* so no
#: repository is edited: anonymous push, partial clone, fetch of any blob by id
#: (lazy fetches of partial clones), and ownership checks off (the harness may
#: run as another user than the one owning the repos).
SERVER_GIT_CONFIG: dict[str, str] = {
    "http.receivepack": "true",
    "uploadpack.allowFilter": "true",
    "uploadpack.allowAnySHA1InWant": "true",
    "safe.directory": "*",
}


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """Block until something accepts on ``port``; fail fast if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args!r} exited with {p.returncode} during startup")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {HOST}:{port} after {timeout} s")


def hermetic_env(home: Path) -> dict[str, str]:
    """Environment for server-side git: no system/global config leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    return env


def git_config_env(config: dict[str, str]) -> dict[str, str]:
    """``config`` as GIT_CONFIG_COUNT/KEY_n/VALUE_n variables (git >= 2.31)."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a process started in its own session, then its whole group if needed."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    try:  # reap leftovers of the group (e.g. CGI children), ours only
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class GitServer:
    """Base class: a Git server over a directory of bare repos, as a context manager.

    Subclasses implement ``_start``/``_stop`` and set ``base_url``. ``git_config``
    holds ``key=value`` strings a client must pass with ``-c`` (e.g. an
    ``http.extraHeader`` with a token for artifactd); ``pids`` the root PIDs of
    the server's process trees, for memory sampling.
    """

    name = "server"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.base_url = ""
        self.git_config: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workdir: Path | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def cpu_seconds(self) -> float | None:
        """CPU used so far by the server (difference two readings), or None if unknown.

        Default: user+sys of the process trees, reaped children included.
        """
        return tree_cpu_seconds(self.pids) if self.pids else None

    def url(self, repo: str) -> str:
        """Clone URL of ``repo`` (a directory name under ``root``, e.g. "x.git")."""
        return f"{self.base_url}/{repo}"

    def add_repo(self, name: str, source: str | os.PathLike[str]) -> None:
        """Serve a copy of the bare repo ``source`` as ``name`` (before or after start).

        A server with its own storage (artifactd) overrides this, e.g. create
        the repo through its API and ``git push --mirror`` into it.
        """
        dest = self.root / name
        if dest.exists():
            raise FileExistsError(dest)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, dest, symlinks=True)

    def start(self) -> Self:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        atexit.unregister(self.stop)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server's logs, for error messages."""
        if self.workdir is None:
            return ""
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def _start(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url or 'stopped'} root={self.root}>"


class FileURL(GitServer):
    """The floor: ``git clone file://`` (upload-pack over a pipe, no HTTP)."""

    name = "file"

    def _start(self) -> None:
        self.base_url = f"file://{self.root}"

    def add_repo(self, name: str, source: str | os.PathLike[str]) -> None:
        """Copy, then write the upload-pack settings into the copy's own config.

        The client's ``-c`` options do not reach a local upload-pack (git drops
        GIT_CONFIG_PARAMETERS for the other repository), and without
        ``uploadpack.allowFilter`` a ``--filter`` clone silently takes everything.
        """
        super().add_repo(name, source)
        for key, value in SERVER_GIT_CONFIG.items():
            if key.startswith("uploadpack."):
                subprocess.run(["git", "config", "--file", str(self.root / name / "config"), key, value], check=True)


class NginxHttpBackend(GitServer):
    """C git's ``git http-backend`` (CGI) behind nginx + fcgiwrap.

    Both run as the current user with config, pid, logs and temp files in a
    temp dir. nginx buffers request bodies (so chunked pushes reach the CGI
    with a CONTENT_LENGTH) and streams responses (no pack-sized temp files).
    """

    name = "nginx"
    #: /bin/sh wrapper that logs the CPU of each git-http-backend run (``times``).
    CGI_WRAPPER = """#!/bin/sh
{backend}
rc=$?
times >> {log}
exit $rc
"""

    def __init__(self, root: str | os.PathLike[str], nginx_workers: int = 2, cgi_workers: int = 8,
                 account_cpu: bool = False) -> None:
        super().__init__(root)
        self.nginx_workers = nginx_workers
        self.cgi_workers = cgi_workers
        self.account_cpu = account_cpu
        self._nginx: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        assert self.workdir is not None
        for tool in ("nginx", "fcgiwrap"):
            if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
                raise FileNotFoundError(f"{tool} is not installed: run bench/setup.sh")
        sock = self.workdir / "fcgiwrap.sock"
        fcgi_env = hermetic_env(self.workdir)
        fcgiwrap = self._spawn(["fcgiwrap", "-f", "-c", str(self.cgi_workers), "-s", f"unix:{sock}"],
                               fcgi_env, "fcgiwrap.log")
        _wait_for_path(sock, fcgiwrap)
        port = free_port()
        conf = self.workdir / "nginx.conf"
        conf.write_text(self._nginx_conf(port, sock))
        argv = ["nginx", "-p", str(self.workdir), "-e", str(self.workdir / "error.log"), "-c", str(conf),
                "-g", "daemon off;"]
        self._nginx = nginx = self._spawn(argv, os.environ.copy(), "nginx-stderr.log")
        try:
            wait_for_port(port, [fcgiwrap, nginx])
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}\n{self.log_tail()}") from e
        self.base_url = f"http://{HOST}:{port}"

    def _spawn(self, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        with open(self.workdir / log, "ab") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, cwd=self.workdir)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        # nginx: QUIT = graceful shutdown of master and workers.
        if self._nginx is not None:
            stop_process(self._nginx, signal.SIGQUIT)
            self._nginx = None
        super().stop()

    def cpu_seconds(self) -> float | None:
        """nginx + fcgiwrap CPU, plus the CGIs' if ``account_cpu`` (else None).

        fcgiwrap ignores SIGCHLD, so the kernel discards its CGI children's CPU
        times: /proc cannot see git-http-backend/upload-pack/pack-objects. With
        ``account_cpu`` a tiny /bin/sh wrapper (~1 ms per request) logs them.
        """
        if not self.account_cpu or self.workdir is None:
            return None
        log = self.workdir / "cgi-cpu.log"
        cgi = 0.0
        if log.exists():
            for line in log.read_text().splitlines():
                for field in line.split():  # "0m0.012000s 0m0.004000s" (shell, then children)
                    minutes, _, secs = field.rstrip("s").partition("m")
                    cgi += int(minutes) * 60 + float(secs)
        return tree_cpu_seconds(self.pids) + cgi

    def _cgi_script(self) -> str:
        if not self.account_cpu:
            return GIT_HTTP_BACKEND
        assert self.workdir is not None
        wrapper = self.workdir / "git-http-backend.sh"
        wrapper.write_text(self.CGI_WRAPPER.format(backend=GIT_HTTP_BACKEND, log=self.workdir / "cgi-cpu.log"))
        wrapper.chmod(0o755)
        return str(wrapper)

    def _nginx_conf(self, port: int, sock: Path) -> str:
        w = self.workdir
        user = ""
        if os.geteuid() == 0:  # otherwise workers would drop to "nobody" and lose the repos
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        env = {"GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1", "HOME": str(w),
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
               **git_config_env(SERVER_GIT_CONFIG)}
        params = "\n".join(f"            fastcgi_param {k} \"{v}\";" for k, v in env.items())
        return f"""\
worker_processes {self.nginx_workers};
{user}
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/client_body;
    fastcgi_temp_path {w}/fastcgi;
    proxy_temp_path {w}/proxy;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65;
    client_max_body_size 0;           # pushes of any size
    client_body_buffer_size 1m;       # bodies above spill to client_body_temp_path
    server {{
        listen {HOST}:{port};
        location / {{
            fastcgi_pass unix:{sock};
            fastcgi_param SCRIPT_FILENAME {self._cgi_script()};
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param PATH_INFO $uri;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param GIT_PROTOCOL $http_git_protocol if_not_empty;
{params}
            fastcgi_request_buffering on;  # de-chunk pushes, set CONTENT_LENGTH
            fastcgi_buffering off;         # stream packs straight to the client
            fastcgi_read_timeout 600s;
            fastcgi_send_timeout 600s;
        }}
    }}
}}
"""


class DulwichWeb(GitServer):
    """dulwich's smart-HTTP WSGI app on wsgiref, in a subprocess.

    Known limits (see bench/README.md): protocol v0 only (no v2, the client
    falls back), no ``--deepen``/``--unshallow``/``--shallow-since``, slow
    ``--filter``; HTTP/1.0 without keep-alive.
    """

    name = "dulwich"

    def __init__(self, root: str | os.PathLike[str], threaded: bool = True, python: str = sys.executable) -> None:
        super().__init__(root)
        self.threaded = threaded
        self.python = python

    def _start(self) -> None:
        assert self.workdir is not None
        port = free_port()
        script = Path(__file__).with_name("dulwich_server.py")
        argv = [self.python, str(script), str(self.root), "--port", str(port)]
        if not self.threaded:
            argv.append("--single-threaded")
        with open(self.workdir / "dulwich.log", "ab") as out:
            proc = subprocess.Popen(argv, env=hermetic_env(self.workdir), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True)
        self.procs.append(proc)
        try:
            wait_for_port(port, [proc])
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}\n{self.log_tail()}") from e
        self.base_url = f"http://{HOST}:{port}"


class DulwichWebNoBitmap(DulwichWeb):
    """``DulwichWeb`` serving copies without pack bitmaps (the kind baseline).

    dulwich 1.2.21 decodes a whole ``.bitmap`` in pure Python on every ref
    advertisement (~0.2-0.3 s per ls-remote on the 50k-object repo instead of
    ~30 ms) and crashes on fetches once a pushed pack without bitmap sits next
    to it. git writes bitmaps by default when repacking bare repos.
    """

    name = "dulwich-nobitmap"

    def add_repo(self, name: str, source: str | os.PathLike[str]) -> None:
        super().add_repo(name, source)
        for bitmap in (self.root / name / "objects" / "pack").glob("*.bitmap"):
            bitmap.unlink()


def _wait_for_path(path: Path, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)


class NginxHttpBackendAccounted(NginxHttpBackend):
    """``NginxHttpBackend`` with ``account_cpu=True``: server CPU is measurable,
    at the price of one /bin/sh per request."""

    name = "nginx-acct"

    def __init__(self, root: str | os.PathLike[str], nginx_workers: int = 2, cgi_workers: int = 8) -> None:
        super().__init__(root, nginx_workers, cgi_workers, account_cpu=True)


#: name -> server class, in the order reports list them.
BASELINES: dict[str, type[GitServer]] = {
    "file": FileURL,
    "nginx": NginxHttpBackend,
    "nginx-acct": NginxHttpBackendAccounted,
    "dulwich": DulwichWeb,
    "dulwich-nobitmap": DulwichWebNoBitmap,
}
#: What the CLI runs unless told otherwise.
DEFAULT_SERVERS = ("file", "nginx", "dulwich")


if __name__ == "__main__":
    from bench.suite import main

    sys.exit(main())
