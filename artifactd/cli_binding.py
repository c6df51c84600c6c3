"""Registers the control-plane commands and the Git credential helper on ``artifactd``."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    from artifactd.cli_namespaces import namespaces
    from artifactd.cli_repos import repos
    from artifactd.cli_tokens import tokens
    from artifactd.credential_helper import credential_helper

    for cmd in (namespaces, repos, tokens, credential_helper):
        main.add_command(cmd)
