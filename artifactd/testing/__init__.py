"""Test support: start a real artifactd server in a subprocess and talk to it.

Used by artifactd's own suite and, through the pytest plugin, by our users' suites.
"""

from artifactd.testing.server import GitClient, ServerProcess, temporary_database

__all__ = ["GitClient", "ServerProcess", "temporary_database"]
