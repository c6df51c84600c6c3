"""What ``receive.fsckObjects`` costs a push: mirror pushes of one repository into new
empty repos on git http-backend (nginx + fcgiwrap), artifactd, and artifactd with
``ARTIFACTD_GIT_FSCK_OBJECTS=false``, the servers taking turns (``push_full`` of
bench/scenarios.py).

    python -m bench.push_fsck bench/.cache/genrepo-50000obj-35mb-seed1.git --runs 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.artifactd_server import ArtifactdServer  # noqa: E402
from bench.baselines import NginxHttpBackend  # noqa: E402
from bench.scenarios import git_scenarios_interleaved  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="a local bare repository to push")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not (args.repo / "objects").is_dir():
        ap.error(f"not a bare git repository: {args.repo}")
    with tempfile.TemporaryDirectory(prefix="bench-pushfsck-") as tmp:
        servers = {
            "nginx": NginxHttpBackend(Path(tmp) / "nginx"),
            "artifactd": ArtifactdServer(Path(tmp) / "a"),
            "artifactd-nofsck": ArtifactdServer(Path(tmp) / "b", extra_env={"ARTIFACTD_GIT_FSCK_OBJECTS": "false"}),
        }
        try:
            for server in servers.values():
                server.start()
                server.add_repo("repo.git", args.repo)
            out = git_scenarios_interleaved(servers, args.repo, runs=args.runs, scenarios=("push_full",),
                                            log=lambda _: None)
        finally:
            for server in servers.values():
                server.stop()
    base = out["nginx"]["push_full"]["median_s"]
    for name, result in out.items():
        median = result["push_full"]["median_s"]
        print(f"{name:<18} push median {median:.3f} s  ({median / base:.2f} x http-backend)"
              f"  samples {result['push_full']['samples_s']}")


if __name__ == "__main__":
    main()
