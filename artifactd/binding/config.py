"""Finding the binding in a project's config file (reference §2.1, §7.1).

Searched from the current directory upwards; in each directory the first of
``artifactd.toml``, ``wrangler.jsonc``, ``wrangler.json``, ``wrangler.toml`` that exists wins.
Every file holds the hosted product's ``artifacts`` array::

    # wrangler.toml                         // wrangler.jsonc
    [[artifacts]]                           { "artifacts": [ { "binding": "ARTIFACTS",
    binding = "ARTIFACTS"                        "namespace": "default", "remote": true } ] }
    namespace = "default"
    remote = true

``artifactd.toml`` may also carry ``url`` and ``account_id`` (top level or per entry) and
``data_dir`` (the local store). A named environment (``env=`` or ``CLOUDFLARE_ENV``) reads
``env.<name>.artifacts`` instead, as wrangler does (the array is not inherited).

``remote``: ``true`` talks to a server; ``false`` or absent uses the local backend on
``data_dir`` (default ``<config dir>/.artifactd/state``), as the hosted product's local
simulator does. ``ARTIFACTD_REMOTE=1|0`` overrides it.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifactd.errors import ArtifactsError, ErrorCode

CONFIG_FILES = ("artifactd.toml", "wrangler.jsonc", "wrangler.json", "wrangler.toml")


@dataclass
class BindingConfig:
    binding: str
    namespace: str
    remote: bool
    path: Path
    url: str | None = None
    account_id: str | None = None
    data_dir: Path | None = None


def strip_jsonc(text: str) -> str:
    """JSON with comments (``//``, ``/* */``) and trailing commas, as wrangler accepts, to JSON."""
    out: list[str] = []
    i, n = 0, len(text)
    in_str = False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_str = False
            i += 1
            continue
        if c == '"':
            in_str = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ",":
            # Drop a comma followed (after whitespace/comments) by a closing bracket.
            j = i + 1
            while j < n:
                if text[j] in " \t\r\n":
                    j += 1
                elif text.startswith("//", j):
                    k = text.find("\n", j)
                    j = n if k < 0 else k
                elif text.startswith("/*", j):
                    k = text.find("*/", j + 2)
                    j = n if k < 0 else k + 2
                else:
                    break
            if j < n and text[j] in "]}":
                i += 1
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"Cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(strip_jsonc(text))
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"Cannot parse {path}: {e}") from None
    if not isinstance(data, dict):
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{path}: the top level must be an object/table.")
    return data


def find_config(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        for name in CONFIG_FILES:
            p = d / name
            if p.is_file():
                return p
    return None


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_binding(binding: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 env: str | None = None) -> BindingConfig:
    """The ``artifacts`` entry named ``binding`` (or the only/first one) of the config file."""
    cfg_path = Path(path) if path is not None else find_config()
    if cfg_path is None:
        raise ArtifactsError(
            ErrorCode.INVALID_INPUT,
            f"No config file found from {Path.cwd()} upwards (looked for {', '.join(CONFIG_FILES)}).",
        )
    cfg_path = cfg_path.resolve()
    data = load_file(cfg_path)
    env = env if env is not None else os.environ.get("CLOUDFLARE_ENV") or None
    scope = data
    if env:
        scope = (data.get("env") or {}).get(env)
        if not isinstance(scope, dict):
            raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{cfg_path}: no environment named {env!r}.")
    entries = scope.get("artifacts") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{cfg_path}: `artifacts` must be an array of tables/objects.")
    where = f"{cfg_path}" + (f" (env {env})" if env else "")
    if not entries:
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{where}: no `artifacts` binding configured.")
    if binding is None:
        entry = entries[0]
    else:
        found = [e for e in entries if e.get("binding") == binding]
        if not found:
            names = ", ".join(str(e.get("binding")) for e in entries)
            raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{where}: no artifacts binding {binding!r} (have: {names}).")
        entry = found[0]
    namespace = entry.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ArtifactsError(ErrorCode.INVALID_INPUT, f"{where}: binding {entry.get('binding')!r} has no namespace.")
    remote = bool(entry.get("remote", False))
    if os.environ.get("ARTIFACTD_REMOTE"):
        remote = _truthy(os.environ["ARTIFACTD_REMOTE"])
    own = cfg_path.name == "artifactd.toml"
    raw_dir = entry.get("data_dir") or (data.get("data_dir") if own else None)
    data_dir = (cfg_path.parent / raw_dir) if raw_dir else cfg_path.parent / ".artifactd" / "state"
    url = entry.get("url") or (data.get("url") if own else None)
    account_id = entry.get("account_id") or (data.get("account_id") if own else None)
    return BindingConfig(binding=str(entry.get("binding") or "ARTIFACTS"), namespace=namespace, remote=remote,
                         path=cfg_path, url=url, account_id=account_id, data_dir=data_dir.resolve())
