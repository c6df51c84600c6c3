"""The pytest plugin (entry point ``pytest11`` -> ``artifactd.testing.plugin``) as our users
meet it: a separate project whose own tests use the fixtures, run by pytest in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_TESTS = '''
import pytest
from artifactd.binding import ArtifactsError


def test_agent_pushes_to_its_repo(artifacts, artifactd_git, tmp_path):
    created = artifacts.create("session-1")
    src = artifactd_git.make_repo(tmp_path / "src", commits=2)
    artifactd_git.run("push", "-q", created.remote, "HEAD:main", cwd=src, token=created.token)
    heads = artifactd_git.out("ls-remote", "--heads", created.remote, token=created.token)
    assert "refs/heads/main" in heads
    assert [r.name for r in artifacts.list().repos] == ["session-1"]


def test_each_test_gets_its_own_namespace(artifacts):
    assert artifacts.list().total == 0
    with pytest.raises(ArtifactsError) as e:
        artifacts.get("session-1")
    assert e.value.code == "NOT_FOUND"


def test_repo_fixture(artifactd_repo, artifacts):
    repo = artifacts.get(artifactd_repo.name)
    assert repo.list_tokens().total == 1


def test_local_mode(artifacts_local, artifactd_git, tmp_path):
    created = artifacts_local.create("offline")
    artifacts_local.serve()
    src = artifactd_git.make_repo(tmp_path / "src", commits=1)
    artifactd_git.run("push", "-q", created.remote, "HEAD:main", cwd=src, token=created.token)


def test_server_fixture(artifactd_server):
    with artifactd_server.api() as c:
        assert c.get("/namespaces").json()["success"] is True
'''


def run_pytest(project: Path, basetemp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ARTIFACTD_", "CLOUDFLARE_", "PYTEST_")) or k == "ARTIFACTD_TEST_DATABASE"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_users_tests_run_against_real_repos(tmp_path: Path):
    project = tmp_path / "user-project"
    project.mkdir()
    (project / "test_agent.py").write_text(USER_TESTS)
    p = run_pytest(project, tmp_path / "bt")
    assert p.returncode == 0 and "5 passed" in p.stdout, p.stdout + p.stderr


def test_plugin_starts_nothing_unless_asked(tmp_path: Path):
    project = tmp_path / "other-project"
    project.mkdir()
    (project / "test_plain.py").write_text("def test_nothing():\n    assert True\n")
    basetemp = tmp_path / "bt"
    p = run_pytest(project, basetemp)
    assert p.returncode == 0 and "1 passed" in p.stdout, p.stdout + p.stderr
    made = [d.name for d in basetemp.iterdir()] if basetemp.exists() else []
    assert not any(n.startswith("artifactd") for n in made), made
