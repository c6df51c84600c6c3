"""How artifactd runs C git: a clean environment, server-owned config, nothing from clients.

Git never reads a system or global config, never prompts, and runs only the server's
hooks. Configuration goes through ``GIT_CONFIG_COUNT`` so no repo config is edited.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from artifactd.config import Settings

#: What a ``Git-Protocol`` header may contain (``version=2``, ``key=value:key=value``).
GIT_PROTOCOL_RE = re.compile(r"^[0-9a-zA-Z_.-]+=[0-9a-zA-Z_.-]+(:[0-9a-zA-Z_.-]+=[0-9a-zA-Z_.-]+)*$")


def server_config(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("core.hooksPath", str(settings.hooks_dir.resolve())),
        ("safe.directory", "*"),
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowTipSHA1InWant", "true"),
        ("uploadpack.allowReachableSHA1InWant", "true"),
        ("uploadpack.keepAlive", "5"),
        ("lsrefs.unborn", "advertise"),
        ("receive.fsckObjects", "true" if settings.git_fsck_objects else "false"),
        ("receive.autogc", "false"),
        # A pack larger than this is refused by git itself, in-band (unpack / ng lines).
        ("receive.maxInputSize", str(settings.max_push_bytes)),
        ("receive.advertisePushOptions", "true"),
        ("gc.auto", "0"),
        ("core.logAllRefUpdates", "false"),
    ]


def git_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment of a git child: nothing inherited but PATH."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(settings.data_dir.resolve() / "git-home"),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_NO_LAZY_FETCH": "1",
    }
    config = server_config(settings)
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if extra:
        env.update(extra)
    return env


_isolated: set[str] = set()


def isolate_libgit2(settings: Settings) -> None:
    """libgit2 (pygit2) must not read the server user's ~/.gitconfig or /etc/gitconfig
    either: point every config search level at a directory of the server's own."""
    import pygit2
    from pygit2.enums import ConfigLevel

    home = settings.data_dir / "git-home" / "libgit2"
    if str(home) in _isolated:
        return
    home.mkdir(parents=True, exist_ok=True)
    _isolated.add(str(home))
    for level in (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM, ConfigLevel.PROGRAMDATA):
        try:
            pygit2.settings.search_path[level] = str(home)
        except (ValueError, pygit2.GitError):  # pragma: no cover - platform without that level
            pass


def valid_git_protocol(value: str | None) -> str | None:
    """The header value if it is well-formed, else None (it is then ignored)."""
    if value and len(value) <= 256 and GIT_PROTOCOL_RE.match(value):
        return value
    return None
