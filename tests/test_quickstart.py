"""examples/quickstart.sh, run as documented against a real server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from artifactd.testing import GitClient, ServerProcess

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "quickstart.sh"


@pytest.mark.parametrize("branch", ["main", "master"])
def test_quickstart_script(server: ServerProcess, git: GitClient, tmp_path: Path, branch: str):
    # "master": the new repo's HEAD (main) names no branch of the source; the refused push
    # must still reach the server rather than fail in the local git.
    src = git.make_repo(tmp_path / "src", commits=4)
    if branch != "main":
        git.run("branch", "-m", branch, cwd=src)
    git.run("branch", "feature/x", "HEAD~1", cwd=src)
    git.run("tag", "v1.0", "HEAD~2", cwd=src)
    git.run("tag", "-a", "v2.0", "-m", "annotated", cwd=src)
    env = {**os.environ, **git.env, "ACCOUNT_ID": server.account_id, "API_TOKEN": server.api_token}
    p = subprocess.run(["bash", str(SCRIPT), str(src), server.base_url], env=env, capture_output=True, timeout=300)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "identical: 4 refs" in out
    assert "HTTP 403: Insufficient permissions" in out
    assert "remote: Insufficient permissions" in out
