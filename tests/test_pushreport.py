"""Reading receive-pack's report-status (artifactd/gitserver/pushreport.py), on the bytes
real git writes: a push recorded before the client can see that it succeeded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from artifactd.gitserver.pushreport import PushReport
from artifactd.testing import GitClient, ServerProcess


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def sideband(inner: bytes, progress: bytes = b"") -> bytes:
    out = pkt(b"\x02" + progress) if progress else b""
    return out + pkt(b"\x01" + inner) + b"0000"


def receive_pack_output(tmp: Path, git: GitClient, *, sideband_caps: bool, atomic_fail: bool = False) -> bytes:
    """What ``git receive-pack --stateless-rpc`` writes for a push made by real git."""
    src = git.make_repo(tmp / "src", commits=2)
    target = tmp / "target.git"
    subprocess.run(["git", "init", "-q", "--bare", str(target)], check=True)
    head = git.out("rev-parse", "HEAD", cwd=src)
    caps = "report-status" + (" side-band-64k" if sideband_caps else "")
    old = "0" * 40
    if atomic_fail:  # an update whose old value is wrong: refused with "ng"
        old = "1" * 40
    commands = pkt(f"{old} {head} refs/heads/main\0{caps}\n".encode()) + b"0000"
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], cwd=src, input=f"{head}\n".encode(),
                          capture_output=True, check=True).stdout
    p = subprocess.run(["git", "receive-pack", "--stateless-rpc", str(target)], input=commands + pack,
                       capture_output=True, check=True)
    return p.stdout


@pytest.mark.parametrize("sideband_caps", [True, False])
def test_real_report_is_seen_at_the_ok_line_even_byte_by_byte(tmp_path: Path, git: GitClient, sideband_caps: bool):
    out = receive_pack_output(tmp_path, git, sideband_caps=sideband_caps)
    assert b"ok refs/heads/main" in out
    whole = PushReport()
    assert whole.feed(out) is True
    seen_at = None
    r = PushReport()
    for i in range(len(out)):
        if r.feed(out[i:i + 1]):
            seen_at = i
            break
    # Not before the last byte of the "ok" pkt-line has arrived; under side-band, by the
    # end of the packet that carries it (the client reads whole packets), before the flush.
    end_of_ok = out.index(b"ok refs/heads/main") + len(b"ok refs/heads/main\n") - 1
    assert seen_at is not None and end_of_ok <= seen_at < len(out) - 4
    if not sideband_caps:
        assert seen_at == end_of_ok


def test_refused_update_is_not_a_push(tmp_path: Path, git: GitClient):
    out = receive_pack_output(tmp_path, git, sideband_caps=True, atomic_fail=True)
    assert b"ng refs/heads/main" in out
    assert PushReport().feed(out) is False


def test_progress_and_unpack_errors_are_not_pushes():
    r = PushReport()
    assert r.feed(sideband(pkt(b"unpack error\n") + pkt(b"ng refs/heads/x unpacker error\n") + b"0000",
                           progress=b"ok refs/heads/fake in a progress message\n")) is False
    assert PushReport().feed(b"garbage that is not pkt-lines") is False


def test_last_push_at_is_written_when_the_push_returns(server: ServerProcess, git: GitClient, tmp_path: Path):
    for i in range(5):
        repo = server.create_repo("report")
        src = git.make_repo(tmp_path / f"src{i}", commits=1)
        git.run("push", repo["remote"], "main", cwd=src, token=repo["token"])
        with server.api() as c:
            assert c.get(f"/namespaces/report/repos/{repo['name']}").json()["result"]["last_push_at"] is not None
