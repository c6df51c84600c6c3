"""The benchmark's smoke run (``bench/run --quick``), so the benchmark cannot rot.

It runs every section against real servers started on this machine -- file://,
git http-backend behind nginx + fcgiwrap, dulwich, artifactd on SQLite (and on
PostgreSQL when the suite runs on PostgreSQL) -- on a tiny generated repository, and
checks that every measurement produced a number (no scenario failed), that every clone
under concurrency completed, and that the JSON, markdown and PNG outputs were written.
No timing is asserted: the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_every_section(tmp_path: Path) -> None:
    pg = os.environ.get("ARTIFACTD_TEST_DATABASE", "")
    systems = "file,nginx,dulwich,artifactd" + (",artifactd-pg" if pg else "")
    flavours = "artifactd" + (",artifactd-pg" if pg else "")
    env = {**os.environ, "ARTIFACTD_BENCH_DATABASE": pg}
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results", str(out), "--cache", str(tmp_path / "cache"),
         "--systems", systems, "--rest-systems", flavours],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    data = json.loads((out / "results.json").read_text())
    assert set(systems.split(",")) == set(data["git"])
    for system, scenarios in data["git"].items():
        assert "error" not in scenarios, (system, scenarios)
        assert set(scenarios) == {"clone_full", "clone_depth1", "clone_blobless", "fetch_10", "push_full",
                                  "ls_remote", "concurrent_clones"}, system
        for name, r in scenarios.items():
            assert "error" not in r, (system, name, r)
        conc = scenarios["concurrent_clones"]
        assert conc["failures"] == 0 and conc["completed"] == conc["clients"] == 4, (system, conc)
        assert scenarios["ls_remote"]["n"] == 10 and scenarios["ls_remote"]["p99_ms"] > 0
        if system != "file":  # a server of our own: its memory was sampled
            assert conc["server_own_rss_peak_mib"] > 0
    for flavour in flavours.split(","):
        rest = data["rest"][flavour]
        for kind in ("create", "mint", "create_sequential"):
            assert rest[kind]["errors"] == 0 and rest[kind]["per_second"] > 0, (flavour, kind, rest[kind])
        scale = data["scale"][flavour]
        assert set(scale) == {"100", "500"}
        for by_size in scale.values():
            assert all(by_size[op]["errors"] == 0 for op in ("get", "list_first_page", "list_mid_page")), by_size
    forks = data["forks"]["artifactd"]
    assert len(forks) == 1 and forks[0]["forks"] == 2 and forks[0]["extra_kib_median"] < 1024
    goals = {g["goal"]: g["status"] for g in data["goals"]}
    assert goals and all(s in ("met", "missed", "not measured") for s in goals.values())

    md = (out / "results.md").read_text()
    assert "| full clone (s) |" in md and "## Goals" in md and "## Forks" in md
    for png in ("git_ratios.png", "fork_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
