"""The benchmark's smoke run (``bench/run --quick``), so the benchmark cannot rot.

It runs every section against real servers started on this machine -- file://,
git http-backend behind nginx + fcgiwrap, dulwich, artifactd on SQLite (and on
PostgreSQL when the suite runs on PostgreSQL) -- on a tiny generated repository, and
checks that every measurement produced a number (no scenario failed), that every clone
under concurrency completed, and that the JSON, markdown and PNG outputs were written.
No timing is asserted: the numbers of a smoke run mean nothing.

The other tests cost milliseconds: argument checking in process (bad input stops the
run before any section, exit code 2), and the report's labels on made-up results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.run import check_postgres, parse_args, parser

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE_PG = "postgresql://postgres:secret@127.0.0.1:1/postgres"


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
        assert scenarios["fetch_10"]["commits"] == 10, system
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
    assert "| 4 concurrent clones (s) |" in md and "| ls-remote p99 over 10 calls (ms) |" in md
    assert "## Errors" not in md
    for png in ("git_ratios.png", "fork_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


# -- arguments (in process, no section runs) ------------------------------------------


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2, argv
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--runs", "-1"], ["--ls-remote-calls", "0"],
                                  ["--concurrent", "0"], ["--rest-requests", "0"], ["--rest-concurrency", "0"],
                                  ["--forks", "0"], ["--scale-repos", "0"], ["--objects", "0"],
                                  ["--fork-sizes", "1,0"], ["--fork-sizes", "1,x"], ["--size-mb", "0"],
                                  ["--systems", "nginx,nope"], ["--sections", "git,nope"]])
def test_bad_counts_and_names_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(["--quick", *argv], capsys)
    assert err.startswith("bench/run: error:") and argv[0] in err + " ".join(argv), err


def test_defaults_fill_in_only_what_was_not_given() -> None:
    quick = parse_args(["--quick"])
    assert (quick.runs, quick.concurrent, quick.ls_remote_calls, quick.fork_sizes) == (1, 4, 10, [1])
    full = parse_args(["--runs", "2", "--fork-sizes", "1,35"])
    assert (full.runs, full.concurrent, full.rest_concurrency, full.fork_sizes) == (2, 16, 4, [1, 35])
    assert not full.systems_given and parse_args(["--systems", "nginx,nginx"]).systems == ["nginx"]


def test_relative_paths_mean_the_callers_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTIFACTD_BENCH_CWD", str(tmp_path))  # what bench/run exports before its cd
    args = parse_args(["--results", "out", "--cache", "c"])
    assert (args.results, args.cache) == (tmp_path / "out", tmp_path / "c")
    monkeypatch.delenv("ARTIFACTD_BENCH_CWD")
    monkeypatch.chdir(tmp_path)
    assert parse_args(["--results", "r2"]).results == tmp_path / "r2"


def _git(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", *argv], cwd=cwd, check=True,
                   capture_output=True)


def test_bad_repos_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain").mkdir()
    _git("init", "-q", "--bare", str(tmp_path / "empty.git"))
    _git("init", "-q", "-b", "trunk", str(tmp_path / "work"))
    (tmp_path / "work" / "sub").mkdir()
    assert "no such directory" in _refused(["--repo", str(tmp_path / "missing")], capsys)
    assert "plain: not a git repository" in _refused(["--repo", str(tmp_path / "plain")], capsys)
    assert "has no commits" in _refused(["--repo", str(tmp_path / "empty.git")], capsys)
    assert "has no commits" in _refused(["--repo", str(tmp_path / "work")], capsys)
    assert "inside the one at" in _refused(["--repo", str(tmp_path / "work" / "sub")], capsys)
    _git("commit", "-q", "--allow-empty", "-m", "one", cwd=tmp_path / "work")
    assert parse_args(["--repo", str(tmp_path / "work")]).repo == tmp_path / "work"


def test_bad_repo_fails_before_any_section(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--repo", str(tmp_path / "plain"),
                           "--results", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("plain: not a git repository"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == "" and not (tmp_path / "results").exists()


def test_unusable_output_folders_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert _refused(["--results", str(tmp_path / "file")], capsys).endswith("file: not a directory")
    assert _refused(["--cache", str(tmp_path / "file" / "sub")], capsys).endswith("Not a directory")


def test_wrapper_refuses_bad_arguments_before_installing(tmp_path: Path) -> None:
    # The project's .venv exists here (the suite runs in it): bench/run checks first.
    proc = subprocess.run([str(ROOT / "bench" / "run"), "--quick", "--runs", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "bench/run: error: argument --runs: must be at least 1, got 0"
    assert "install" not in proc.stderr and proc.stdout == ""


def test_unreachable_postgres(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ARTIFACTD_BENCH_DATABASE", UNREACHABLE_PG)
    args = parse_args(["--quick", "--sections", "git,rest"])  # defaults: artifactd-pg is dropped, with a warning
    [warning] = check_postgres(args, parser())
    assert "artifactd-pg" not in args.systems + args.rest_systems and "artifactd" in args.rest_systems
    assert warning.startswith("PostgreSQL at postgresql://postgres@127.0.0.1:1/postgres unreachable")
    assert "secret" not in warning + capsys.readouterr().err
    asked = parse_args(["--quick", "--sections", "git", "--systems", "nginx,artifactd-pg"])
    with pytest.raises(SystemExit) as e:  # asked for: the run stops
        check_postgres(asked, parser())
    assert e.value.code == 2 and "asked for in --systems" in capsys.readouterr().err
    assert check_postgres(parse_args(["--quick", "--sections", "forks"]), parser()) == []  # not used: not checked


# -- report labels (made-up results) --------------------------------------------------


def _results() -> dict:
    clone = {"median_s": 1.0}
    return {
        "settings": {"runs": 1, "concurrent": 4, "ls_remote_calls": 10},
        "repo": {"objects": 9, "pack_mib": 0.0, "pack_kib": 36, "commits": 1, "given": False},
        "git": {
            "nginx": {"clone_full": clone, "push_full": {"median_s": 1.0},
                      "fetch_10": {"skipped": "needs 2+ commits", "commits": 0},
                      "ls_remote": {"p50_ms": 10.0, "p99_ms": 12.0, "n": 10},
                      "concurrent_clones": {"clients": 4, "total_s": 1.0, "failures": 0}},
            "artifactd": {"clone_full": {"median_s": 1.0}, "push_full": {"error": "fatal: bad\nthing | with a pipe"},
                          "concurrent_clones": {"clients": 4, "total_s": 1.0, "failures": 0,
                                                "server_own_rss_before_mib": 1.0, "server_own_rss_peak_mib": 2.0,
                                                "server_own_rss_growth_mib": 1.0, "server_tree_rss_peak_mib": 3.0}},
            "dulwich": {"clone_full": {"median_s": 0.4}},
        },
        "rest": {"artifactd-pg": {"error": "OperationalError: line one\nline | two"}},
        "forks": {"artifactd": [{"parent_mib": 1.1, "objects": 9, "fork_ms_median": 20.0, "fork_ms_min": 19.0,
                                 "fork_ms_max": 21.0, "extra_kib_median": 28}]},
    }


def test_report_labels_say_what_ran() -> None:
    res = _results()
    md = report.markdown(res)
    goals = {g["goal"]: g for g in report.goals(res)}
    assert "## Git (1 run;" in md and "36 KiB packed, 1 commit (generated)" in md
    assert "| 4 concurrent clones (s) |" in md and "| ls-remote p50 over 10 calls (ms) |" in md
    assert "server's own PSS during 4 clones" in md and "| fetch new commits (s) | n/a (needs 2+ commits) |" in md
    assert goals["full clone via artifactd >= 4 x faster than dulwich"]["detail"] == "2.5 x slower"
    conc = goals["4 concurrent clones via artifactd: no error, flat server memory"]
    assert "flat: growth <= 16 MiB" in conc["detail"] and "own PSS" in conc["detail"]
    assert goals["fork time independent of repo size"]["status"] == "not measured"
    assert goals["fork time < 50 ms"]["status"] == "met"
    tables = [block.splitlines() for block in md.split("\n\n") if block.startswith("| ")]
    assert len(tables) == 4  # git, rest, forks, goals
    for rows in tables:  # error cells (newlines, pipes) keep every row of a table as wide as its header
        assert len({row.replace("\\|", "").count("|") for row in rows}) == 1, rows
    assert len(report.failures(res)) == 2 and "## Errors (2:" in md


def test_write_removes_stale_outputs(tmp_path: Path) -> None:
    (tmp_path / "fork_time.png").write_bytes(b"old")
    res = {k: v for k, v in _results().items() if k != "forks"}
    names = [p.name for p in report.write(res, tmp_path)]
    assert names == ["results.json", "results.md", "git_ratios.png"] and not (tmp_path / "fork_time.png").exists()
    assert "fork_time.png not written (no forks section in this run)" in (tmp_path / "results.md").read_text()
