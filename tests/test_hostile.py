"""Hostile input (issue 7 item 3): generated input on every parser that reads client
bytes, path traversal in every path parameter, oversized headers, slow clients, and
corrupt or truncated packs. schemathesis over the OpenAPI description is in
``test_schemathesis.py``.

Property tests run the parsers in-process with many examples; the HTTP-level ones run
against the real server with a bounded number (``ARTIFACTD_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import base64
import gzip
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifactd import validation
from artifactd.errors import ArtifactsError
from artifactd.gitserver.engine import valid_git_protocol
from artifactd.http.git import PATH_RE
from artifactd.http.gitauth import parse_authorization
from artifactd.services.apitokens import generate_api_token, well_formed_api_token
from artifactd.services.namespaces import decode_cursor, encode_cursor
from artifactd.services.tokens import secret_of
from artifactd.testing import GitClient, ServerProcess
from tests.hardening_util import descendants, fsck, object_files, own_servers, refs, storage_of

EXAMPLES = int(os.environ.get("ARTIFACTD_FUZZ_EXAMPLES", "25"))
UNIT = settings(max_examples=max(300, EXAMPLES * 12), deadline=None)
LIVE = settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck), database=None)
COUNT = {"generated": 0}


def _count() -> None:
    COUNT["generated"] += 1


# -- parsers, in-process ----------------------------------------------------------------


@UNIT
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_authorization_parser_never_raises(header):
    _count()
    creds = parse_authorization(header)
    if not header:
        assert creds is None
    else:
        assert creds is not None and creds.scheme in ("bearer", "basic")
        assert creds.secret is None or isinstance(creds.secret, str)


@UNIT
@given(st.text(max_size=200), st.text(max_size=50))
def test_basic_credentials_round_trip(user, secret):
    _count()
    raw = base64.b64encode(f"{user}:{secret}".encode()).decode()
    creds = parse_authorization(f"Basic {raw}")
    assert creds is not None and creds.scheme == "basic"
    if ":" not in user and secret:
        from urllib.parse import unquote

        assert creds.secret == unquote(secret)


@UNIT
@given(st.text(max_size=120))
def test_token_parsers_accept_only_their_shapes(text):
    _count()
    secret = secret_of(text)
    assert secret is None or (secret.startswith("art_v") and "\x00" not in secret and len(secret) <= 50)
    ok = well_formed_api_token(text)
    assert ok is False or (text.startswith("artd_") and len(text) == 45)


@UNIT
@given(st.data())
def test_real_tokens_are_recognised_and_one_changed_character_is_not(data):
    _count()
    token = generate_api_token()
    assert well_formed_api_token(token)
    i = data.draw(st.integers(min_value=5, max_value=len(token) - 1))
    c = data.draw(st.sampled_from("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    mutated = token[:i] + c + token[i + 1:]
    assert well_formed_api_token(mutated) == (mutated == token)


def _validator_contract(fn, value):
    try:
        out = fn(value)
    except ArtifactsError as e:
        assert e.status == 400
        return None
    assert isinstance(out, str) and "\x00" not in out and "/" not in out.strip("/") or fn is validation.branch_name
    return out


@UNIT
@given(st.one_of(st.text(max_size=80), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_name_validators_raise_only_documented_errors(value):
    _count()
    for fn in (validation.namespace_name, validation.repo_name):
        out = _validator_contract(fn, value)
        if out is not None:
            assert out not in (".", "..") and not out.startswith(".") and len(out) <= 63
            assert out.isascii() and "\x00" not in out


BRANCHISH = st.text(alphabet=st.sampled_from(list("ab./-_@{}~^:?*[\\ \x00\x7f") + ["é"]), max_size=30)


@settings(max_examples=max(150, EXAMPLES * 6), deadline=None)
@given(st.one_of(BRANCHISH, st.text(max_size=40)))
def test_every_accepted_branch_name_is_a_valid_git_ref(value):
    """Checked against git itself: what we accept, git accepts."""
    _count()
    try:
        out = validation.branch_name(value)
    except ArtifactsError:
        return
    p = subprocess.run(["git", "check-ref-format", f"refs/heads/{out}"], capture_output=True)
    assert p.returncode == 0, out


@UNIT
@given(st.one_of(st.text(max_size=200), st.builds(encode_cursor, st.dictionaries(
    st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=10), st.none(), st.floats()), max_size=4))))
def test_cursor_decoder_raises_only_invalid_input(cursor):
    _count()
    try:
        assert isinstance(decode_cursor(cursor), dict)
    except ArtifactsError as e:
        assert e.status == 400


@UNIT
@given(st.text(max_size=300))
def test_git_protocol_header_is_either_clean_or_ignored(value):
    _count()
    out = valid_git_protocol(value)
    assert out is None or (out == value and len(out) <= 256 and out.isascii()
                           and not any(c in out for c in "\x00\n\r ;&|$`\"'"))


@UNIT
@given(st.text(max_size=200))
def test_git_path_parser_yields_only_safe_names(path):
    _count()
    m = PATH_RE.match(path)
    if m:
        for group in ("ns", "repo"):
            part = m.group(group)
            assert part and "/" not in part and "\x00" not in part and not part.startswith(".")


# -- the real server: generated query parameters the services decode ----------------------

CURSOR_VALUE = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=30), st.none(),
                         st.floats(), st.booleans(), st.sampled_from(["2026-01-01T00:00:00", "2026-01-01T00:00:00+00:00",
                                                                      "a" * 16, "a\x00", "9999-12-31T23:59:59Z"]))
CURSORS = st.one_of(
    st.text(max_size=60),
    st.fixed_dictionaries({"s": st.sampled_from(["name", "created_at", "x"]), "d": st.sampled_from(["asc", "desc"]),
                           "i": st.one_of(st.text(max_size=20), st.just("a" * 16)), "v": CURSOR_VALUE}).map(encode_cursor),
    st.fixed_dictionaries({"id": CURSOR_VALUE}).map(encode_cursor),
)


def test_generated_cursors_and_query_values(server: ServerProcess):
    server.create_repo("cursors", "c1")
    server.create_repo("cursors", "c2")

    @LIVE
    @given(cursor=CURSORS, sort=st.sampled_from(["name", "created_at", "last_push_at"]),
           direction=st.sampled_from(["asc", "desc"]), search=st.text(max_size=10),
           page=st.one_of(st.integers(min_value=-5, max_value=2**66), st.text(max_size=5)))
    def run(cursor, sort, direction, search, page):
        _count()
        with server.api() as c:
            r = c.get("/namespaces/cursors/repos", params={"cursor": cursor, "sort": sort, "direction": direction,
                                                           "search": search})
            assert r.status_code in (200, 400), r.text
            r = c.get("/namespaces", params={"cursor": cursor})
            assert r.status_code in (200, 400), r.text
            r = c.get("/namespaces/cursors/repos/c1/tokens", params={"page": page, "per_page": 100})
            assert r.status_code in (200, 400), r.text

    run()


# -- the real server: generated Git request bodies ---------------------------------------


def pkt(payload: bytes) -> bytes:
    return f"{len(payload) + 4:04x}".encode() + payload


PKT_STREAM = st.lists(st.one_of(
    st.binary(max_size=80).map(pkt),  # well-framed, arbitrary payload
    st.sampled_from([b"0000", b"0001", b"0002", b"0004", b"0003", b"ffff", b"zzzz"]),
    st.binary(max_size=40),  # unframed garbage
    st.sampled_from([b"command=ls-refs\n", b"command=fetch\n", b"want ", b"have ", b"done\n",
                     b"deepen 1\n", b"filter blob:none\n", b"shallow ", b"agent=x\n"]).map(pkt),
), max_size=12).map(b"".join)


@pytest.fixture(scope="module")
def target(server: ServerProcess, tmp_path_factory) -> dict:
    repo = server.create_repo("default", "hostile-target")
    git = GitClient(tmp_path_factory.mktemp("hostile-home"))
    src = git.make_repo(tmp_path_factory.mktemp("hostile-src") / "src", commits=3)
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    git.run("push", repo["remote"], "main:side", cwd=src, token=repo["token"])
    repo["bare"] = storage_of(server, "default", "hostile-target")
    repo["src"] = src
    return repo


def _git_children(server: ServerProcess) -> list[str]:
    """git processes the server started and did not end."""
    return [cmd.replace(b"\0", b" ").decode(errors="replace") for cmd, state in descendants(server.proc.pid).values()
            if b"git" in cmd.split(b"\0")[0] and state != "Z"]


def _settle(server: ServerProcess) -> list[str]:
    for _ in range(50):
        left = _git_children(server)
        if not left:
            return []
        time.sleep(0.1)
    return left


@pytest.mark.parametrize("service", ["git-upload-pack", "git-receive-pack"])
def test_generated_pkt_line_bodies_never_5xx_and_change_nothing(server: ServerProcess, target: dict, service: str):
    auth = {"Authorization": f"Bearer {target['token']}"}
    before_refs, before_objects = refs(target["bare"]), object_files(target["bare"])
    statuses: dict[int, int] = {}

    @LIVE
    @given(body=PKT_STREAM, v2=st.booleans(), gz=st.booleans())
    def run(body: bytes, v2: bool, gz: bool) -> None:
        _count()
        headers = {**auth, "content-type": f"application/x-{service}-request"}
        if v2:
            headers["git-protocol"] = "version=2"
        if gz:
            headers["content-encoding"] = "gzip"
            body = gzip.compress(body)
        r = httpx.post(f"{target['remote']}/{service}", headers=headers, content=body, timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400), (r.status_code, r.text[:200])

    run()
    assert refs(target["bare"]) == before_refs
    assert object_files(target["bare"]) == before_objects
    assert fsck(target["bare"]).returncode == 0
    assert _settle(server) == []
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


# -- Authorization headers, raw ----------------------------------------------------------


def raw_request(server: ServerProcess, head: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(head)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


HEADER_VALUE = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def test_generated_authorization_headers(server: ServerProcess, target: dict):
    git_path = target["remote"].split(str(server.port), 1)[1] + "/info/refs?service=git-upload-pack"
    rest_path = f"/client/v4/accounts/{server.account_id}/artifacts/namespaces/default/repos"

    @LIVE
    @given(value=st.one_of(HEADER_VALUE, HEADER_VALUE.map(lambda b: b"Bearer " + b),
                           HEADER_VALUE.map(lambda b: b"Basic " + base64.b64encode(b)),
                           st.sampled_from([b"Bearer art_v1_" + b"0" * 40, b"Basic Og==", b"Bearer ",
                                            b"Bearer artd_" + b"A" * 40, b"bearer\tx", b"Basic \xff\xfe"])))
    def run(value: bytes) -> None:
        _count()
        for path, allowed in ((git_path, {400, 401, 403}), (rest_path, {400, 401})):
            reply = raw_request(server, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                b"Authorization: " + value + b"\r\n\r\n")
            assert status_of(reply) in allowed, (value, reply[:200])

    run()


# -- path traversal ----------------------------------------------------------------------

TRAVERSALS = ["..", "%2e%2e", "%2E%2E", "..%2f..%2f..%2fetc", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..%5c..",
              "%00", "a%00b", "ok%00.git", "%2F", "a%2Fb", "....//", "%c0%ae%c0%ae", "..;", "%252e%252e",
              ".", "%2e", "~", "..%00", "\u2025", "%e2%80%a5", "x" * 300, "%ff"]


def test_path_traversal_in_every_path_parameter(server: ServerProcess, target: dict):
    acct = server.account_id
    rest_templates = [
        "/client/v4/accounts/{a}/artifacts/namespaces",
        "/client/v4/accounts/{a}/artifacts/namespaces/{ns}",
        "/client/v4/accounts/{a}/artifacts/namespaces/{ns}/repos",
        "/client/v4/accounts/{a}/artifacts/namespaces/{ns}/repos/{name}",
        "/client/v4/accounts/{a}/artifacts/namespaces/{ns}/repos/{name}/tokens",
        "/client/v4/accounts/{a}/artifacts/namespaces/{ns}/tokens/{tid}",
    ]
    git_templates = ["/git/{a}/{ns}/{name}.git/info/refs?service=git-upload-pack",
                     "/git/{a}/{ns}/{name}/git-upload-pack", "/git/{a}/{ns}/{name}.git/git-receive-pack"]
    good = {"a": acct, "ns": "default", "name": "hostile-target", "tid": "a" * 16}
    before = sorted(p.name for p in server.data_dir.parent.iterdir())
    seen: dict[int, int] = {}
    for template in rest_templates + git_templates:
        params = [k for k in good if "{" + k + "}" in template]
        for param in params:
            for evil in TRAVERSALS:
                path = template.format(**{**good, param: evil})
                for method in ("GET", "POST", "DELETE"):
                    _count()
                    reply = raw_request(server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                        f"Authorization: Bearer {target['token'] if path.startswith('/git') else server.api_token}\r\n"
                                        "Content-Length: 0\r\n\r\n".encode())
                    status = status_of(reply)
                    seen[status] = seen.get(status, 0) + 1
                    assert 400 <= status < 500, (method, path, reply[:300])
    assert sorted(p.name for p in server.data_dir.parent.iterdir()) == before
    assert refs(target["bare"])  # the target is intact
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


# -- oversized headers and slow clients --------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    env = {"ARTIFACTD_HEADER_TIMEOUT_SECONDS": "2", "ARTIFACTD_BODY_IDLE_TIMEOUT_SECONDS": "2",
           "ARTIFACTD_MAX_HEADER_BYTES": "8192"}
    with own_servers(tmp_path_factory.mktemp("guarded"), env=env) as (srv,):
        yield srv


def test_oversized_headers_get_431(guarded: ServerProcess):
    for head in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
                 b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(3000)) + b"\r\n"):
        _count()
        assert status_of(raw_request(guarded, head)) == 431


def test_slow_clients_are_cut_off_and_do_not_block_others(guarded: ServerProcess):
    socks = []
    try:
        for i in range(60):  # silent, or a header that never ends
            s = socket.create_connection(("127.0.0.1", guarded.port))
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        # Others are served while those connections are open.
        assert httpx.get(f"{guarded.base_url}/healthz", timeout=5).status_code == 200
        for s in socks:
            s.settimeout(10)
            data = b""
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
            assert data == b"" or status_of(data) == 408, data[:100]  # closed by the server
    finally:
        for s in socks:
            s.close()


def test_stalled_git_body_is_dropped_and_git_ended(guarded: ServerProcess, git: GitClient, tmp_path: Path):
    repo = guarded.create_repo("default", "stall")
    path = repo["remote"].split(str(guarded.port), 1)[1] + "/git-receive-pack"
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=20) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {repo['token']}\r\n"
                  "Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 100000\r\n\r\n"
                  "0094".encode())
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert status_of(data) == 408, data[:200]
    assert time.monotonic() - t0 < 15
    assert _settle(guarded) == []


def test_stalled_rest_body_is_dropped(guarded: ServerProcess):
    path = f"/client/v4/accounts/{guarded.account_id}/artifacts/namespaces/default/repos"
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=20) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {guarded.api_token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\": ".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert status_of(data) == 408 and b'"success":false' in data, data[:300]
    with guarded.api() as c:
        assert c.get("/namespaces/default/repos").status_code == 200


# -- corrupt and truncated packs ---------------------------------------------------------


def _push_body(git: GitClient, src: Path, old: str, new: str, ref: str = "refs/heads/main") -> tuple[bytes, bytes]:
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=src, env=git.env,
                          input=f"{new}\n^{old}\n".encode(), capture_output=True, check=True).stdout
    head = pkt(f"{old} {new} {ref}\0report-status agent=hostile\n".encode()) + b"0000"
    return head, pack


def test_corrupt_and_truncated_packs_leave_repo_unchanged(server: ServerProcess, git: GitClient, tmp_path: Path):
    repo = server.create_repo("default", "corrupt-target")
    src = git.make_repo(tmp_path / "src", commits=2)
    git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
    bare = storage_of(server, "default", "corrupt-target")
    old = git.out("rev-parse", "HEAD", cwd=src)
    for i in range(3):
        (src / f"new{i}.txt").write_bytes(os.urandom(2000))
        git.run("add", ".", cwd=src)
        git.run("commit", "-qm", f"new {i}", cwd=src)
    new = git.out("rev-parse", "HEAD", cwd=src)
    head, pack = _push_body(git, src, old, new)
    url = f"{repo['remote']}/git-receive-pack"
    auth = {"Authorization": f"Bearer {repo['token']}", "content-type": "application/x-git-receive-pack-request"}
    before_refs, before_objects = refs(bare), object_files(bare)
    outcomes: dict[str, int] = {}

    @LIVE
    @given(st.one_of(
        st.integers(min_value=0, max_value=len(pack) - 1).map(lambda n: ("truncate", n, 0)),
        st.tuples(st.just("flip"), st.integers(min_value=0, max_value=len(pack) - 1),
                  st.integers(min_value=1, max_value=255)),
        st.tuples(st.just("zero-tail"), st.integers(min_value=12, max_value=len(pack) - 1), st.just(0)),
    ))
    def run(mutation) -> None:
        _count()
        kind, at, x = mutation
        if kind == "truncate":
            bad = pack[:at]
        elif kind == "flip":
            bad = pack[:at] + bytes([pack[at] ^ x]) + pack[at + 1:]
        else:
            bad = pack[:at] + b"\0" * (len(pack) - at)
        r = httpx.post(url, headers=auth, content=head + bad, timeout=30)
        assert r.status_code in (200, 400), r.status_code
        if r.status_code == 200:
            assert b"unpack ok" not in r.content and b"ng refs/heads/main" in r.content, r.content[:300]
        outcomes[kind] = outcomes.get(kind, 0) + 1
        assert refs(bare) == before_refs
        assert object_files(bare) == before_objects

    run()
    assert fsck(bare).returncode == 0
    # And the intact pack still goes in.
    r = httpx.post(url, headers=auth, content=head + pack, timeout=30)
    assert r.status_code == 200 and b"unpack ok" in r.content and b"ok refs/heads/main" in r.content
    assert refs(bare)["refs/heads/main"] == new and fsck(bare).returncode == 0


def test_report_generated_counts():
    print(f"hostile inputs generated in this module: {COUNT['generated']}")
    assert COUNT["generated"] > 0
