"""The README's binding example (examples/binding.py) and its CLI and credential-helper
sessions run as shown."""

from __future__ import annotations

import re
import subprocess
import sys

from binding_util import ROOT, cli_env

from artifactd.testing import ServerProcess


def test_binding_example_runs(server: ServerProcess):
    example = ROOT / "examples" / "binding.py"
    assert len(example.read_text().splitlines()) <= 10
    readme = (ROOT / "README.md").read_text()
    assert example.read_text().strip() in readme  # the README shows exactly this file
    p = subprocess.run([sys.executable, str(example)], env=cli_env(server), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    remote, token_line, last = p.stdout.splitlines()
    assert remote == f"{server.base_url}/git/{server.account_id}/agents/agent-42.git"
    assert re.fullmatch(r"read \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00 2", token_line)
    assert last == "True True"
