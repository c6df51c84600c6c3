"""Shared fixtures: one real artifactd server per test session, real git, real HTTP.

Set ``ARTIFACTD_TEST_DATABASE`` to a PostgreSQL URL to run the whole suite against
PostgreSQL (a fresh database is created and dropped); otherwise SQLite is used.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactd.testing import GitClient, ServerProcess, temporary_database


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        yield url


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server") / "data", database_url=database_url).start()
    yield srv
    srv.stop()


@pytest.fixture
def git(tmp_path: Path) -> GitClient:
    return GitClient(tmp_path / "home")


@pytest.fixture
def repo(server: ServerProcess) -> dict:
    """A fresh repo in namespace ``default``; its initial write token is ``repo['token']``."""
    return server.create_repo("default", f"repo-{secrets.token_hex(4)}")
