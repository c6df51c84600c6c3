"""pytest plugin: test your own code against real artifactd repos.

Installed with artifactd (entry point ``pytest11``); it only defines fixtures, and nothing
starts until a test asks for one:

``artifactd_server`` (session)
    A throwaway ``artifactd serve`` on a free loopback port with its own data directory
    (SQLite; ``ARTIFACTD_TEST_DATABASE=postgresql://...`` uses a fresh PostgreSQL database).
    ``.base_url``, ``.account_id``, ``.api_token``, ``.api()`` (an httpx client).
``artifacts``
    An :class:`~artifactd.binding.Artifacts` bound to a fresh namespace of that server
    (each test gets its own namespace, so tests never see each other's repos).
``artifacts_local``
    The same binding in local mode on a temporary data directory (no server; call
    ``artifacts_local.serve()`` when Git must reach it).
``artifactd_repo``
    A new repo in ``artifacts``' namespace: its ``CreateRepoResult`` (``.remote``, ``.token``).
``artifactd_git``
    The real ``git`` binary with a sandboxed config (``.run(...)``, ``.out(...)``,
    ``.make_repo(path)``).

Example::

    def test_agent_pushes(artifacts, artifactd_git, tmp_path):
        created = artifacts.create("session-1")
        src = artifactd_git.make_repo(tmp_path / "src")
        artifactd_git.run("push", created.remote, "HEAD:main", cwd=src, token=created.token)
        assert artifacts.get("session-1").log()[0].message == "commit 2"
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifactd_server(tmp_path_factory: pytest.TempPathFactory):
    """A real artifactd server for the whole test session."""
    from artifactd.testing.server import ServerProcess, temporary_database

    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        srv = ServerProcess(tmp_path_factory.mktemp("artifactd") / "data", database_url=url).start()
        try:
            yield srv
        finally:
            srv.stop()


@pytest.fixture
def artifacts(artifactd_server) -> Iterator:
    """The binding, bound to a fresh namespace on ``artifactd_server``."""
    from artifactd.binding import Artifacts

    namespace = f"test-{secrets.token_hex(5)}"
    art = Artifacts(namespace, url=artifactd_server.base_url, account_id=artifactd_server.account_id,
                    api_token=artifactd_server.api_token)
    try:
        yield art
    finally:
        art.close()


@pytest.fixture
def artifacts_local(tmp_path: Path) -> Iterator:
    """The binding in local mode on a temporary data directory (namespace ``default``)."""
    from artifactd.binding import Artifacts

    art = Artifacts.local(tmp_path / "artifactd-local")
    try:
        yield art
    finally:
        art.close()


@pytest.fixture
def artifactd_repo(artifacts):
    """A new, empty repo in ``artifacts``' namespace (its create result)."""
    return artifacts.create(f"repo-{secrets.token_hex(4)}")


@pytest.fixture
def artifactd_git(tmp_path: Path):
    """The real git binary, isolated from the user's and the system's Git config."""
    from artifactd.testing.server import GitClient

    return GitClient(tmp_path / "git-home")
