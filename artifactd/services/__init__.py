"""Core services: the one place where rules, limits and errors live.

REST, the CLI and the in-process binding are thin adapters over :class:`Core`.
"""

from artifactd.services.core import Core

__all__ = ["Core"]
