"""Results of bench/run.py as JSON, a markdown table and PNG charts, and the goals checked.

    paths = write(results, Path("bench/results"))   # results.json, results.md, *.png
    text = markdown(results)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE = "nginx"  # git http-backend behind nginx + fcgiwrap
GIT_ROWS = [  # (scenario, metric, label); git_rows() fills in this run's {fetch}, {ls} and {concurrent}
    ("clone_full", "median_s", "full clone (s)"),
    ("clone_depth1", "median_s", "--depth 1 clone (s)"),
    ("clone_blobless", "median_s", "--filter=blob:none clone (s)"),
    ("fetch_10", "median_s", "fetch {fetch} new commits (s)"),
    ("push_full", "median_s", "push whole repo (s)"),
    ("ls_remote", "p50_ms", "ls-remote p50 over {ls} calls (ms)"),
    ("ls_remote", "p99_ms", "ls-remote p99 over {ls} calls (ms)"),
    ("concurrent_clones", "total_s", "{concurrent} concurrent clones (s)"),
]
#: what a run writes; removed first, so no older run's chart sits beside a newer run's tables
OUTPUTS = ("results.json", "results.md", "git_ratios.png", "fork_time.png")
SYSTEM_LABELS = {
    "file": "git clone file://", "nginx": "git http-backend (nginx+fcgiwrap)", "dulwich": "dulwich web",
    "artifactd": "artifactd (SQLite)", "artifactd-pg": "artifactd (PostgreSQL)", "artifactd-w2": "artifactd (SQLite, 2 workers)",
    "artifactd-base": "artifactd before (--compare-src)",
}
#: "flat" server memory under concurrent clones: growth of the server's own processes (PSS)
FLAT_MEMORY_MIB = 16.0
#: fork times within this many ms (or 25 %) of each other are "within noise"
FORK_NOISE_MS = 5.0
#: list/get at 100,000 repos "no slower" than at 100: within 20 % or 1 ms
SCALE_SLACK = 0.20
SCALE_SLACK_MS = 1.0


def _get(d: dict, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def counts(results: dict) -> dict[str, int]:
    """The counts the labels name, as measured (a short history fetches fewer than 10
    commits; ls-remote runs in blocks of 10, so n may exceed the setting); older
    results.json files without them: the settings."""
    s = results.get("settings", {})
    git = [r for r in (results.get("git") or {}).values() if isinstance(r, dict)]

    def first(scen: str, key: str) -> Any:
        return next((v for r in git if (v := _get(r, scen, key)) is not None), None)

    fetch = first("fetch_10", "commits")
    return {"fetch": 10 if fetch is None else fetch, "ls": first("ls_remote", "n") or s.get("ls_remote_calls", 200),
            "concurrent": first("concurrent_clones", "clients") or s.get("concurrent", 16)}


def git_rows(results: dict) -> list[tuple[str, str, str]]:
    """GIT_ROWS labelled with this run's counts."""
    n = counts(results)
    rows = []
    for scen, metric, label in GIT_ROWS:
        if scen == "fetch_10" and n["fetch"] <= 1:
            label = "fetch 1 new commit (s)" if n["fetch"] == 1 else "fetch new commits (s)"
        rows.append((scen, metric, label.format(**n)))
    return rows


def one_line(text: Any, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[:limit - 1].rstrip() + "…"


def cell(text: Any, limit: int = 60) -> str:
    """``text`` fit for one markdown table cell: one line, pipes escaped, at most ``limit``
    characters (an error's traceback or SQL used to break the table)."""
    return one_line(text, limit).replace("|", "\\|")


def size(kib: float) -> str:
    """A size in KiB below 1 MiB, else in MiB (a small repo is not "0.0 MiB")."""
    return f"{kib:.0f} KiB" if kib < 1024 else f"{kib / 1024:.1f} MiB"


def failures(results: dict) -> list[str]:
    """Every measurement that failed, one line each; bench/run exits non-zero if any did."""
    out = [f"section {e}" for e in results.get("errors") or []]

    def line(where: str, why: Any) -> None:
        out.append(f"{where}: {one_line(why, 300)}")

    for system, scens in (results.get("git") or {}).items():
        if not isinstance(scens, dict):
            continue
        if isinstance(scens.get("error"), str):
            line(f"git/{system}", scens["error"])
            continue
        for scen, r in scens.items():
            if isinstance(r, dict) and "error" in r:
                line(f"git/{system}/{scen}", r["error"])
            elif scen == "concurrent_clones" and isinstance(r, dict) and r.get("failures"):
                line(f"git/{system}/{scen}", f"{r['failures']} of {r['clients']} clones failed: "
                     + "; ".join(r.get("errors") or []))
    for name in ("rest", "scale"):
        for system, by in (results.get(name) or {}).items():
            if "error" in by:
                line(f"{name}/{system}", by["error"])
                continue
            for key, r in by.items():
                kinds = r.items() if name == "scale" and isinstance(r, dict) else [(None, r)]
                for op, m in kinds:
                    if isinstance(m, dict) and m.get("errors"):
                        where = f"{name}/{system}/{key}" + (f"/{op}" if op else "")
                        line(where, f"{m['errors']} of {m['requests']} requests failed: "
                             + "; ".join(map(str, m.get("first_errors") or [])))
    forks = _get(results, "forks", "artifactd")
    if isinstance(forks, dict) and "error" in forks:
        line("forks/artifactd", forks["error"])
    return out


def ratio(results: dict, system: str, scenario: str, metric: str) -> float | None:
    ref = _get(results, "git", REFERENCE, scenario, metric)
    val = _get(results, "git", system, scenario, metric)
    if not ref or val is None:
        return None
    return val / ref


def goals(results: dict) -> list[dict[str, Any]]:
    """Each goal of issue 6: met / missed / not measured, with the numbers behind it."""
    out: list[dict[str, Any]] = []

    def add(goal: str, ok: bool | None, detail: str) -> None:
        out.append({"goal": goal, "status": "not measured" if ok is None else ("met" if ok else "missed"),
                    "detail": detail})

    for scen, label in (("clone_full", "full clone"), ("push_full", "push")):
        for system in ("artifactd", "artifactd-pg"):
            r = ratio(results, system, scen, "median_s")
            add(f"{label} via {system} <= 1.10 x git http-backend", None if r is None else r <= 1.10,
                "" if r is None else f"{r:.3f} x")
            a = _get(results, "git", system, scen, "median_s")
            d = _get(results, "git", "dulwich", scen, "median_s")
            derr = _get(results, "git", "dulwich", scen, "error")
            if a and d:
                add(f"{label} via {system} >= 4 x faster than dulwich", d / a >= 4,
                    f"{d / a:.1f} x faster" if d >= a else f"{a / d:.1f} x slower")
            elif a and derr:
                add(f"{label} via {system} >= 4 x faster than dulwich", True, f"dulwich failed: {derr}")
            else:
                add(f"{label} via {system} >= 4 x faster than dulwich", None, "")
    for system in ("artifactd", "artifactd-pg"):
        r = ratio(results, system, "ls_remote", "p50_ms")
        add(f"ls-remote p50 via {system} <= 1.2 x git http-backend", None if r is None else r <= 1.2,
            "" if r is None else f"{r:.3f} x")
    for system in ("artifactd", "artifactd-pg"):
        c = _get(results, "git", system, "concurrent_clones")
        if not c or "total_s" not in c:
            add(f"{counts(results)['concurrent']} concurrent clones via {system}: no error, flat server memory",
                None, "")
            continue
        growth = c.get("server_own_rss_growth_mib", 0.0)
        add(f"{c['clients']} concurrent clones via {system}: no error, flat server memory",
            c["failures"] == 0 and growth <= FLAT_MEMORY_MIB,
            f"{c['failures']} failed; own PSS {c.get('server_own_rss_before_mib')} -> "
            f"{c.get('server_own_rss_peak_mib')} MiB (+{growth}; flat: growth <= {FLAT_MEMORY_MIB:g} MiB)")
    for system in ("artifactd", "artifactd-w2"):
        cr = _get(results, "rest", system, "create")
        if not cr or "per_second" not in cr:
            continue
        add(f"REST repo creation on SQLite ({system}) >= 500/s, p99 <= 20 ms",
            cr["per_second"] >= 500 and cr["p99_ms"] <= 20 and cr["errors"] == 0,
            f"{cr['per_second']}/s, p99 {cr['p99_ms']} ms, {cr['concurrency']} connections")
    rows = _get(results, "forks", "artifactd")
    if isinstance(rows, list) and rows:
        small, big = rows[0], rows[-1]
        medians = [r["fork_ms_median"] for r in rows]
        measured = ", ".join(f"{r['parent_mib']} MiB: {r['fork_ms_median']} ms" for r in rows)
        if len(rows) < 2:  # one size says nothing about independence of size
            add("fork time independent of repo size", None, f"one size ({measured})")
        else:
            diff = big["fork_ms_median"] - small["fork_ms_median"]
            add("fork time independent of repo size",
                abs(diff) <= max(FORK_NOISE_MS, 0.25 * small["fork_ms_median"]), measured)
        add("fork time < 50 ms", max(medians) < 50, measured)
    for system in ("artifactd", "artifactd-pg"):
        sc = _get(results, "scale", system)
        if not sc or "error" in sc:
            continue
        keys = sorted(sc, key=int)
        if len(keys) < 2:
            continue
        lo, hi = sc[keys[0]], sc[keys[-1]]
        worst = []
        ok = True
        for op in ("get", "list_first_page", "list_mid_page"):
            a, b = lo[op]["p50_ms"], hi[op]["p50_ms"]
            if b > a * (1 + SCALE_SLACK) and b - a > SCALE_SLACK_MS:
                ok = False
            worst.append(f"{op} {a} -> {b} ms")
        add(f"list/get p50 at {int(keys[-1]):,} repos no slower than at {int(keys[0]):,} ({system})", ok,
            "; ".join(worst))
    return out


# -- markdown --------------------------------------------------------------------------


def _fmt(v: Any, metric: str) -> str:
    if v is None:
        return "-"
    if metric.endswith("_ms"):
        return f"{v:.1f}"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _row(label: str, cells: list[str], width: int) -> str:
    """A table row of exactly ``width`` columns (an error row used to end after two)."""
    cells = (cells + ["-"] * width)[:width - 1]
    return f"| {label} | " + " | ".join(cells) + " |"


def markdown(results: dict, charts_written: list[str] | None = None) -> str:
    """results.md; ``charts_written``: the PNGs ``write`` made (None: the ones with data)."""
    lines: list[str] = []
    m = results.get("machine", {})
    repo = results.get("repo", {})
    lines.append(f"# artifactd benchmark{' (quick smoke run)' if results.get('quick') else ''}")
    lines.append("")
    lines.append(f"`{results.get('command', 'bench/run')}` -- {results.get('started', '')}, "
                 f"{m.get('cpus')} CPUs, {m.get('mem_total_gib')} GiB, {m.get('git')}, {m.get('nginx')}, "
                 f"dulwich {m.get('dulwich')}, Python {m.get('python')}; load average "
                 f"{_load(m.get('load_average_start'))} at start, {_load(m.get('load_average_end'))} at end; "
                 f"CPU probe {m.get('cpu_probe_ms_start', '-')} ms at start, {m.get('cpu_probe_ms_end', '-')} ms at end; "
                 f"{results.get('seconds', 0):.0f} s in all.")
    for w in results.get("warnings") or []:
        lines += ["", f"**Warning:** {w}"]
    if repo:
        packed = size(repo["pack_kib"]) if "pack_kib" in repo else f"{repo.get('pack_mib')} MiB"
        loose = (f" ({repo['loose_objects']:,} of them loose, {size(repo.get('loose_kib', 0))})"
                 if repo.get("loose_objects") else "")
        branch = f", branch {repo['branch']}" if repo.get("branch") else ""
        lines.append("")
        lines.append(f"Repository: {repo.get('objects'):,} objects{loose}, {packed} packed, "
                     f"{repo.get('commits'):,} commit{'' if repo.get('commits') == 1 else 's'}{branch} "
                     f"({'given: ' + repo['path'] if repo.get('given') else 'generated'}).")
    s = results.get("settings", {})
    git = results.get("git") or {}
    if git:
        systems = list(git)
        width = len(systems) + 1
        runs = s.get("runs")
        how = "1 run" if runs == 1 else f"median of {runs} runs"
        n = counts(results)
        lines += ["", f"## Git ({how}; ratio to git http-backend in brackets)", ""]
        lines.append("| | " + " | ".join(SYSTEM_LABELS.get(x, x) for x in systems) + " |")
        lines.append("| --- |" + " ---: |" * len(systems))
        for scen, metric, label in git_rows(results):
            cells = []
            for x in systems:
                r = git[x].get(scen, {}) if isinstance(git[x], dict) else {}
                if "error" in git[x] and len(git[x]) == 1:
                    cells.append("system failed")
                    continue
                if "error" in r:
                    cells.append("error: " + cell(r["error"], 50))
                    continue
                if "skipped" in r:
                    cells.append(f"n/a ({cell(r['skipped'], 40)})")
                    continue
                v = r.get(metric)
                q = ratio(results, x, scen, metric)
                cells.append(_fmt(v, metric) + (f" ({q:.2f}x)" if q is not None and x != REFERENCE else ""))
            lines.append(_row(label, cells, width))
        mem = []
        for x in systems:
            c = git[x].get("concurrent_clones", {}) if isinstance(git[x], dict) else {}
            if "server_own_rss_peak_mib" in c:
                mem.append(f"{c['server_own_rss_before_mib']} -> {c['server_own_rss_peak_mib']} "
                           f"(tree {c['server_tree_rss_peak_mib']})")
            elif "total_s" in c:
                mem.append("n/a")
            else:
                mem.append("-")
        lines.append(_row(f"server's own PSS during {n['concurrent']} clones, MiB (whole tree with git: RSS)",
                          mem, width))
        fails = [str(git[x].get("concurrent_clones", {}).get("failures", "-")) if isinstance(git[x], dict) else "-"
                 for x in systems]
        lines.append(_row("failed concurrent clones", fails, width))
    rest = results.get("rest") or {}
    if rest:
        lines += ["", f"## REST ({s.get('rest_requests')} requests over {s.get('rest_concurrency')} keep-alive "
                  "connections; sequential: 1 connection)", "",
                  "| | creations/s | p50 ms | p99 ms | server CPU ms/creation | sequential creations/s | p99 ms "
                  "| token mints/s | p50 ms | p99 ms | server CPU ms/mint |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for x, r in rest.items():
            if "error" in r:
                lines.append(_row(SYSTEM_LABELS.get(x, x), ["error: " + cell(r["error"])], 11))
                continue
            c, q, t = r["create"], r["create_sequential"], r["mint"]
            lines.append(f"| {SYSTEM_LABELS.get(x, x)} | {c['per_second']:.0f} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | "
                         f"{c.get('server_cpu_ms_per_request', '-')} | {q['per_second']:.0f} | {q['p99_ms']:.1f} | "
                         f"{t['per_second']:.0f} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | "
                         f"{t.get('server_cpu_ms_per_request', '-')} |")
    forks = _get(results, "forks", "artifactd")
    if forks:
        lines += ["", "## Forks (artifactd, SQLite; REST call, all branches)", "",
                  "| repo on disk | objects | fork median ms (min-max) | extra disk per fork |",
                  "| ---: | ---: | ---: | ---: |"]
        if isinstance(forks, dict):
            lines.append(_row("error: " + cell(forks.get("error")), [], 4))
        else:
            for r in forks:
                lines.append(f"| {r['parent_mib']} MiB | {r['objects'] or 0:,} | {r['fork_ms_median']:.1f} "
                             f"({r['fork_ms_min']:.1f}-{r['fork_ms_max']:.1f}) | {r['extra_kib_median']} KiB |")
    scale = results.get("scale") or {}
    if scale:
        lines += ["", "## Reads against namespace size (sequential, 1 connection)", "",
                  "| | repos | get p50 / p99 ms | list first page p50 / p99 ms | list mid page p50 / p99 ms |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for x, by in scale.items():
            if "error" in by:
                lines.append(_row(SYSTEM_LABELS.get(x, x), ["error: " + cell(by["error"])], 5))
                continue
            for k in sorted(by, key=int):
                r = by[k]
                lines.append(f"| {SYSTEM_LABELS.get(x, x)} | {int(k):,} | "
                             + " | ".join(f"{r[op]['p50_ms']:.1f} / {r[op]['p99_ms']:.1f}"
                                          for op in ("get", "list_first_page", "list_mid_page")) + " |")
    g = goals(results)
    if g:
        lines += ["", "## Goals", "", "| goal | status | measured |", "| --- | --- | --- |"]
        for row in g:
            lines.append(f"| {row['goal']} | **{row['status']}** | {cell(row['detail'], 200)} |")
    notes = chart_data(results)
    if charts_written is not None:
        notes = {k: (v if k in charts_written or v else "matplotlib unavailable") for k, v in notes.items()}
    lines += ["", "Charts: " + "; ".join(name if not why else f"{name} not written ({why})"
                                         for name, why in notes.items()) + "."]
    failed = failures(results)
    if failed:
        lines += ["", f"## Errors ({len(failed)}: this run's figures are incomplete)", ""]
        lines += [f"* {f}" for f in failed]
    return "\n".join(lines) + "\n"


def _load(v: Any) -> str:
    return "/".join(f"{x:.1f}" for x in v) if v else "?"


# -- charts ----------------------------------------------------------------------------


def chart_data(results: dict) -> dict[str, str]:
    """Each chart, and why it has no data ('' when it has): such a chart is not written."""
    git = {k: v for k, v in (results.get("git") or {}).items() if isinstance(v, dict) and "error" not in v}
    if not results.get("git"):
        why_git = "no Git section in this run"
    elif REFERENCE not in git:
        why_git = "no git http-backend (nginx) results to take ratios to"
    elif not any(ratio(results, x, sc, m) is not None for x in git if x != REFERENCE for sc, m, _ in GIT_ROWS):
        why_git = "no system besides git http-backend measured"
    else:
        why_git = ""
    forks = _get(results, "forks", "artifactd")
    why_forks = "" if isinstance(forks, list) and forks else (
        "no forks section in this run" if not results.get("forks") else "the forks section failed")
    return {"git_ratios.png": why_git, "fork_time.png": why_forks}


def _plain_log_axis(axis: Any, ticks: list[float] | None = None) -> None:
    """Log-axis ticks labelled 0.2, 0.5, 1, 2, 5 (not 2 x 10^-1): at 1-2-5 steps, or ``ticks``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(FixedLocator(ticks) if ticks else LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def charts(results: dict, out: Path) -> list[Path]:
    """The PNGs that have data (``chart_data``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the bench extra installs it
        return []
    import math

    paths: list[Path] = []
    todo = chart_data(results)
    git = {k: v for k, v in (results.get("git") or {}).items() if isinstance(v, dict) and "error" not in v}
    if not todo["git_ratios.png"]:
        rows = [(s, m, label) for s, m, label in git_rows(results) if m != "p99_ms"]
        systems = [x for x in git if x != REFERENCE]
        fig, ax = plt.subplots(figsize=(11, 5.5))
        width = 0.8 / max(1, len(systems))
        shown: list[float] = []
        for i, x in enumerate(systems):
            vals = [ratio(results, x, s, m) for s, m, _ in rows]
            shown += [v for v in vals if v]
            xs = [j + i * width for j in range(len(rows))]
            bars = ax.bar(xs, [v if v else math.nan for v in vals], width, label=SYSTEM_LABELS.get(x, x))
            for b, v in zip(bars, vals):
                if v:
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.1, color="red", linewidth=0.8, linestyle="--", label="goal 1.10 x")
        ax.set_yscale("log")
        # headroom over the tallest bar for its rotated label: ~1/8 of the decades shown
        lo, hi = min(shown + [1.0]) / 1.5, max(shown + [1.1])
        ax.set_ylim(lo, hi * 10 ** max(0.3, 0.15 * math.log10(hi / lo)))
        _plain_log_axis(ax.yaxis)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(rows))])
        ax.set_xticklabels([label.replace(" (s)", "").replace(" (ms)", "") for _, _, label in rows],
                           rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("time / git http-backend time (log scale; lower is faster)")
        ax.set_title("Git operations: ratio to git http-backend behind nginx + fcgiwrap")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / "git_ratios.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    forks = _get(results, "forks", "artifactd")
    if not todo["fork_time.png"]:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [r["parent_mib"] for r in forks]
        ys = [r["fork_ms_median"] for r in forks]
        err = [[y - r["fork_ms_min"] for y, r in zip(ys, forks)], [r["fork_ms_max"] - y for y, r in zip(ys, forks)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label="fork time (median, min-max)")
        ax.axhline(50, color="red", linestyle="--", linewidth=0.8, label="goal: < 50 ms")
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 2, max(xs) * 3)  # room for the disk labels right of the points
        _plain_log_axis(ax.xaxis, xs)
        ax.set_xlabel("parent repository on disk (MiB, log scale)")
        ax.set_ylabel("fork time over REST (ms)")
        ax.set_ylim(0, max(60, max(r["fork_ms_max"] for r in forks)) * 1.25)
        for x, r in zip(xs, forks):
            ax.annotate(f"+{r['extra_kib_median']} KiB disk", (x, r["fork_ms_median"]), fontsize=8,
                        xytext=(5, 8), textcoords="offset points")
        ax.set_title("artifactd fork time against repo size")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / "fork_time.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def write(results: dict, out: Path) -> list[Path]:
    """results.json, results.md and the charts with data, after removing this run's own
    outputs of an earlier run (a run without a Git section left the older chart behind)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    results = {**results, "goals": goals(results)}
    pngs = charts(results, out)
    j = out / "results.json"
    j.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md = out / "results.md"
    md.write_text(markdown(results, [p.name for p in pngs]))
    return [j, md, *pngs]


if __name__ == "__main__":  # re-render from a results.json
    import sys

    src = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/results.json")
    data = json.loads(src.read_text())
    print(markdown(data))
    print(write(data, src.parent))
