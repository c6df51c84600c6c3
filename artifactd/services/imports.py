"""Imports: a new repo cloned from an external Git remote in the background.

Safety (docs/imports.md):
- only ``https://`` remotes (``http://`` when the operator allows it);
- the host is resolved once, every address is checked (loopback, private, link-local,
  shared, reserved and cloud-metadata addresses are refused unless the operator lists
  their network), and git connects to exactly the checked addresses
  (``http.curloptResolve``), never following redirects;
- credentials embedded in the URL are taken out of it and handed to git as an
  ``Authorization`` header through ``GIT_CONFIG_*`` environment entries (never argv),
  for this clone only: they are never stored, logged, shown in errors, or written to
  the repo's config;
- git runs with the clean server environment, no prompts, no credential helpers, no
  templates or hooks, only the http(s) transport, object checking on, and time and
  size limits.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from artifactd import ids, validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid
from artifactd.gitserver.engine import git_env
from artifactd.services.jobs import jobs_of
from artifactd.services.repos import Created
from artifactd.store.models import Repo
from artifactd.store.models_jobs import RepoJob
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.imports")

MAX_URL = 2048
#: Cloud metadata endpoints that are not already non-global (AWS IPv6, Alibaba, ...).
METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200",
                                                "169.254.170.2")}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass
class RemotePlan:
    """A checked remote: where git may connect, with what; ``secret`` is never persisted."""

    url: str  # without userinfo and fragment
    scheme: str
    host: str
    port: int
    addresses: list[str]
    source: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.password is not None

    def auth_header(self) -> str | None:
        if not self.has_credentials:
            return None
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Authorization: Basic " + base64.b64encode(raw).decode()

    def secrets(self) -> list[str]:
        out = [x for x in (self.password, self.username) if x]
        header = self.auth_header()
        if header:
            out.append(header.split(" ", 2)[2])
        return out


def _embedded_v4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour:
            return ip.sixtofour
        if ip.teredo:
            return ip.teredo[1]
    return None


def address_allowed(addr: str, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if any(ip.version == n.version and ip in n for n in allowed):
        return True
    inner = _embedded_v4(ip)
    if inner is not None:
        if any(inner.version == n.version and inner in n for n in allowed):
            return True
        if not inner.is_global or inner in METADATA:
            return False
    return ip.is_global and ip not in METADATA and not ip.is_multicast


def allowed_networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for part in (spec or "").split(","):
        part = part.strip()
        if part:
            nets.append(ipaddress.ip_network(part, strict=False))
    return nets


def source_of(url: str) -> str:
    """Provenance: ``github:owner/repo`` for GitHub, else ``git:<url without secrets>``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segs = [s for s in parts.path.split("/") if s]
    if host in ("github.com", "www.github.com") and len(segs) == 2:
        repo = segs[1][:-4] if segs[1].endswith(".git") else segs[1]
        return f"github:{segs[0]}/{repo}"
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port:
        netloc += f":{parts.port}"
    return "git:" + urlunsplit((parts.scheme.lower(), netloc, parts.path, "", ""))


def plan_remote(url: Any, settings, resolve=socket.getaddrinfo) -> RemotePlan:
    """Validate the URL, resolve its host once, and check every address (SSRF policy)."""
    if not isinstance(url, str) or not url:
        raise invalid("Invalid url: must be a valid URL.")
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise invalid("Invalid url: must be a valid URL.")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise invalid("Invalid url: must be a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise invalid("Invalid url: must be an HTTPS URL.")
    if scheme == "http" and not settings.import_allow_http:
        raise invalid("Invalid url: must be an HTTPS URL (plain http is not allowed on this server).")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    port = port or (443 if scheme == "https" else 80)
    try:
        ascii_host = host.encode("idna").decode("ascii") if not _is_ip(host) else host
    except UnicodeError:
        raise invalid("Invalid url: the host name is not valid.") from None
    netloc = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))

    if _is_ip(ascii_host):
        addresses = [str(ipaddress.ip_address(ascii_host))]
    else:
        try:
            infos = resolve(ascii_host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise ArtifactsError(ErrorCode.UPSTREAM_UNAVAILABLE,
                                 f"Could not resolve the remote host {ascii_host}.") from None
        addresses = sorted({info[4][0] for info in infos})
        if not addresses:
            raise ArtifactsError(ErrorCode.UPSTREAM_UNAVAILABLE, f"Could not resolve the remote host {ascii_host}.")
    allowed = allowed_networks(settings.import_allow_networks)
    refused = [a for a in addresses if not address_allowed(a, allowed)]
    if refused:
        raise ArtifactsError(
            ErrorCode.INVALID_URL,
            f"Refused: {ascii_host} resolves to a non-public address ({refused[0]}). Imports reach public "
            "addresses only unless the operator allows the network (ARTIFACTD_IMPORT_ALLOW_NETWORKS).",
        )
    return RemotePlan(url=clean, scheme=scheme, host=ascii_host, port=port, addresses=addresses,
                      source=source_of(clean), username=username, password=password)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def git_import_config(plan: RemotePlan, settings) -> list[tuple[str, str]]:
    """The per-clone git configuration (passed as GIT_CONFIG_* entries, never argv)."""
    pinned = ",".join(f"[{a}]" if ":" in a else a for a in plan.addresses)
    cfg = [
        ("http.followRedirects", "false"),
        ("http.curloptResolve", f"{plan.host}:{plan.port}:{pinned}"),
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        ("credential.helper", ""),
        ("core.askPass", ""),
        ("http.lowSpeedLimit", "1"),
        ("http.lowSpeedTime", str(max(30, min(300, settings.import_timeout_seconds)))),
        ("fetch.fsckObjects", "true" if settings.git_fsck_objects else "false"),
        ("transfer.fsckObjects", "true" if settings.git_fsck_objects else "false"),
        ("init.defaultBranch", "main"),
    ]
    if settings.import_allow_http:
        cfg.append(("protocol.http.allow", "always"))
    if settings.import_ca_file:
        cfg.append(("http.sslCAInfo", settings.import_ca_file))
    header = plan.auth_header()
    if header:
        cfg.append(("http.extraHeader", header))
    return cfg


def classify(stderr: str) -> tuple[ErrorCode, str]:
    """Map git's (C-locale) complaint to a documented code and our own message.

    Never returns text from the remote: a hostile server could echo anything.
    """
    e = stderr.lower()
    if ("could not read username" in e or "could not read password" in e or "authentication failed" in e
            or "returned error: 401" in e or "returned error: 403" in e):
        return ErrorCode.REMOTE_AUTH_REQUIRED, "Authentication is required to access the remote repository."
    if "remote branch" in e and "not found" in e:
        return ErrorCode.NOT_FOUND, "Remote branch not found."
    if re.search(r"repository '.*' not found", e) or "returned error: 404" in e or "returned error: 410" in e:
        return ErrorCode.NOT_FOUND, "Remote repository not found."
    if re.search(r"returned error: 30\d", e):
        return ErrorCode.INVALID_URL, "The remote answered with a redirect; redirects are not followed. " \
                                      "Use the final URL."
    if ("not valid: is this a git repository" in e or "not a git repository" in e or "invalid server response" in e
            or "protocol error" in e or "expected flush" in e or "bad packet" in e or "dumb http" in e
            or "does not appear to be a git repository" in e):
        return ErrorCode.INVALID_URL, "The URL does not point to a git repository."
    return ErrorCode.UPSTREAM_UNAVAILABLE, "The upstream service is unavailable. Please retry."


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class ImportFailed(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ImportService:
    def __init__(self, core: Core):
        self.core = core

    def start(self, account_id: str, namespace: str, name: Any, url: Any, *, branch: Any = None, depth: Any = None,
              read_only: Any = False, description: Any = None) -> dict:
        """Check the request and the remote's address, create the repo ``importing``,
        and clone in the background. The result has the create-result shape."""
        validation.namespace_name(namespace)
        validation.repo_name(name)
        if branch is not None:
            branch = validation.branch_name(branch, "branch")
        if depth is not None:
            depth = validation.integer(depth, "depth", 1, 2**31 - 1)
        read_only = validation.boolean(read_only, "read_only")
        description = validation.description(description)
        settings = self.core.settings
        plan = plan_remote(url, settings)
        core = self.core
        jobs = jobs_of(core)
        repo_id = ids.new_id()
        storage_path = core.storage.relative_path_for(repo_id)
        try:
            with core.db.session() as s:
                ns = core.namespaces.get_or_create(s, account_id, namespace)
                if core.repos.find(s, account_id, namespace, name) is not None:
                    raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"repo already exists: {name}")
                now = utcnow()
                repo = Repo(id=repo_id, account_id=account_id, namespace_id=ns.id, name=name, name_key=name.lower(),
                            description=description, default_branch=branch or "main", read_only=read_only,
                            status="importing", source=plan.source, storage_path=storage_path,
                            created_at=now, updated_at=now)
                repo.namespace = ns
                s.add(repo)
                s.flush()
                s.add(RepoJob(repo_id=repo_id, kind="import", owner=jobs.owner, heartbeat_at=now, created_at=now,
                              params={"source": plan.source, "branch": branch, "depth": depth}))
                _, token = core.tokens.mint(s, repo, "write", 86_400)
        except IntegrityError:
            raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"repo already exists: {name}") from None
        jobs.track(repo_id)
        log.info("import of %s into %s/%s started (repo %s)", plan.source, namespace, name, repo_id)
        jobs.submit(self.run, repo_id, plan, branch, depth)
        return core.repos.created_dict(Created(repo=repo, token=token))

    # -- the background clone ---------------------------------------------------------

    def run(self, repo_id: str, plan: RemotePlan, branch: str | None, depth: int | None) -> None:
        core = self.core
        target = core.storage.path(core.storage.relative_path_for(repo_id))
        tmp = target.parent / f".importing-{target.name}-{uuid.uuid4().hex[:8]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            default_branch = self._clone(plan, branch, depth, tmp, repo_id)
            if not self._still_importing(repo_id):
                return
            os.replace(tmp, target)
            with core.db.session() as s:
                n = s.execute(update(Repo).where(Repo.id == repo_id, Repo.status == "importing").values(
                    status="ready", default_branch=default_branch, updated_at=utcnow())).rowcount
                s.execute(delete(RepoJob).where(RepoJob.repo_id == repo_id))
            if not n:
                shutil.rmtree(target, ignore_errors=True)
            else:
                log.info("import of %s into repo %s finished", plan.source, repo_id)
        except ImportFailed as e:
            log.warning("import of %s into repo %s failed: %s %s", plan.source, repo_id, e.code.name, e.message)
            self._fail(repo_id, e.code, e.message)
        except Exception:
            log.exception("import of %s into repo %s failed", plan.source, repo_id)
            self._fail(repo_id, ErrorCode.INTERNAL_ERROR, "The import failed with an internal error.")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            jobs_of(core).untrack(repo_id)

    def _still_importing(self, repo_id: str) -> bool:
        with self.core.db.session() as s:
            repo = s.get(Repo, repo_id)
            return repo is not None and repo.status == "importing"

    def _clone(self, plan: RemotePlan, branch: str | None, depth: int | None, tmp: Path, repo_id: str) -> str:
        settings = self.core.settings
        env = git_env(settings)
        cfg = git_import_config(plan, settings)
        n = int(env["GIT_CONFIG_COUNT"])
        for i, (k, v) in enumerate(cfg):
            env[f"GIT_CONFIG_KEY_{n + i}"] = k
            env[f"GIT_CONFIG_VALUE_{n + i}"] = v
        env["GIT_CONFIG_COUNT"] = str(n + len(cfg))
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ASKPASS"] = "/bin/false"
        env["SSH_ASKPASS"] = "/bin/false"
        args = [settings.git_binary, "clone", "--bare", "--quiet", "--template=", "--no-local"]
        if branch:
            args += ["--branch", branch, "--single-branch"]
        if depth:
            args += ["--depth", str(depth)]
        args += ["--", plan.url, str(tmp)]
        limit = settings.import_max_bytes
        deadline = time.monotonic() + settings.import_timeout_seconds
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True, cwd=str(tmp.parent))
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reason = None
        ticks = 0
        while proc.poll() is None:
            ticks += 1
            if time.monotonic() > deadline:
                reason = "timeout"
            elif tmp.exists() and _dir_size(tmp) > limit:
                reason = "size"
            elif ticks % 8 == 0 and not self._still_importing(repo_id):
                reason = "deleted"
            if reason:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                break
            time.sleep(0.25)
        reader.join(timeout=5)
        if reason == "timeout":
            raise ImportFailed(ErrorCode.UPSTREAM_UNAVAILABLE,
                               f"The import did not finish within {settings.import_timeout_seconds} seconds.")
        if reason == "size":
            raise ImportFailed(ErrorCode.MEMORY_LIMIT, f"The remote repository exceeds the import limit of {limit} bytes.")
        if reason == "deleted":
            raise ImportFailed(ErrorCode.NOT_FOUND, "The repository was deleted during its import.")
        stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
        if proc.returncode != 0:
            code, message = classify(stderr)
            log.info("git clone of %s exited %s: %s", plan.source, proc.returncode,
                     self._scrub(stderr.strip()[-600:], plan))
            raise ImportFailed(code, message)
        if _dir_size(tmp) > limit:
            raise ImportFailed(ErrorCode.MEMORY_LIMIT, f"The remote repository exceeds the import limit of {limit} bytes.")
        refs = subprocess.run([settings.git_binary, "--git-dir", str(tmp), "for-each-ref", "--count=1"], env=env,
                              capture_output=True).stdout
        if not refs and not self._speaks_smart_http(plan, env):
            # git falls back to the "dumb" protocol for anything that is not smart HTTP,
            # and reads a web page as an empty repository.
            raise ImportFailed(ErrorCode.INVALID_URL, "The URL does not point to a git repository.")
        return self._finish_storage(tmp, plan, env)

    def _speaks_smart_http(self, plan: RemotePlan, env: dict[str, str]) -> bool:
        """An empty clone is real only if the remote answered in pkt-lines (smart HTTP)."""
        probe = {**env, "GIT_TRACE_PACKET": "2"}
        try:
            p = subprocess.run([self.core.settings.git_binary, "ls-remote", "--", plan.url], env=probe,
                               capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0 and b"packet:" in p.stderr and b"git<" in p.stderr

    def _finish_storage(self, tmp: Path, plan: RemotePlan, env: dict[str, str]) -> str:
        """Leave a plain bare repo: no remote, no FETCH_HEAD, nothing naming the source."""
        git = self.core.settings.git_binary
        subprocess.run([git, "--git-dir", str(tmp), "config", "--remove-section", "remote.origin"], env=env,
                       capture_output=True)
        for leftover in ("FETCH_HEAD", "description", "hooks", "info", "logs"):
            p = tmp / leftover
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
        config = (tmp / "config").read_text(errors="replace")
        if plan.host.lower() in config.lower() or any(sec in config for sec in plan.secrets()):
            raise RuntimeError("repository config still names the remote")
        head = subprocess.run([git, "--git-dir", str(tmp), "symbolic-ref", "--quiet", "HEAD"], env=env,
                              capture_output=True).stdout.decode().strip()
        return head[len("refs/heads/"):] if head.startswith("refs/heads/") else "main"

    @staticmethod
    def _scrub(text: str, plan: RemotePlan) -> str:
        for sec in plan.secrets():
            text = text.replace(sec, "***")
            text = text.replace(quote(sec, safe=""), "***")
        return text

    def _fail(self, repo_id: str, code: ErrorCode, message: str) -> None:
        with self.core.db.session() as s:
            s.execute(update(Repo).where(Repo.id == repo_id, Repo.status == "importing").values(
                status="failed", status_code=code.name, status_message=message, updated_at=utcnow()))
            s.execute(delete(RepoJob).where(RepoJob.repo_id == repo_id))

    def abandon(self, repo_id: str, message: str) -> None:
        """Job recovery: an import whose process died ends as a visible failure."""
        self._fail(repo_id, ErrorCode.UPSTREAM_UNAVAILABLE, message)
        jobs_of(self.core).untrack(repo_id)
        target = self.core.storage.path(self.core.storage.relative_path_for(repo_id))
        if target.parent.exists():
            for leftover in target.parent.glob(f".importing-{target.name}-*"):
                shutil.rmtree(leftover, ignore_errors=True)


def imports_of(core: Core) -> ImportService:
    svc = core.__dict__.get("_imports")
    if svc is None:
        svc = core.__dict__.setdefault("_imports", ImportService(core))
    return svc
