"""Results of bench/run.py as JSON, a markdown table and PNG charts, and the goals checked.

    paths = write(results, Path("bench/results"))   # results.json, results.md, *.png
    text = markdown(results)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE = "nginx"  # git http-backend behind nginx + fcgiwrap
GIT_ROWS = [  # (scenario, metric, label)
    ("clone_full", "median_s", "full clone (s)"),
    ("clone_depth1", "median_s", "--depth 1 clone (s)"),
    ("clone_blobless", "median_s", "--filter=blob:none clone (s)"),
    ("fetch_10", "median_s", "fetch 10 new commits (s)"),
    ("push_full", "median_s", "push whole repo (s)"),
    ("ls_remote", "p50_ms", "ls-remote p50 (ms)"),
    ("ls_remote", "p99_ms", "ls-remote p99 (ms)"),
    ("concurrent_clones", "total_s", "16 concurrent clones (s)"),
]
SYSTEM_LABELS = {
    "file": "git clone file://", "nginx": "git http-backend (nginx+fcgiwrap)", "dulwich": "dulwich web",
    "artifactd": "artifactd (SQLite)", "artifactd-pg": "artifactd (PostgreSQL)", "artifactd-w2": "artifactd (SQLite, 2 workers)",
    "artifactd-base": "artifactd before (--compare-src)",
}
#: "flat" server memory under 16 concurrent clones: growth of the server's own processes
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
                "" if r is None else f"{r:.2f} x")
            a = _get(results, "git", system, scen, "median_s")
            d = _get(results, "git", "dulwich", scen, "median_s")
            derr = _get(results, "git", "dulwich", scen, "error")
            if a and d:
                add(f"{label} via {system} >= 4 x faster than dulwich", d / a >= 4, f"{d / a:.1f} x faster")
            elif a and derr:
                add(f"{label} via {system} >= 4 x faster than dulwich", True, f"dulwich failed: {derr}")
            else:
                add(f"{label} via {system} >= 4 x faster than dulwich", None, "")
    for system in ("artifactd", "artifactd-pg"):
        r = ratio(results, system, "ls_remote", "p50_ms")
        add(f"ls-remote p50 via {system} <= 1.2 x git http-backend", None if r is None else r <= 1.2,
            "" if r is None else f"{r:.2f} x")
    for system in ("artifactd", "artifactd-pg"):
        c = _get(results, "git", system, "concurrent_clones")
        if not c or "total_s" not in c:
            add(f"16 concurrent clones via {system}: no error, flat server memory", None, "")
            continue
        growth = c.get("server_own_rss_growth_mib", 0.0)
        add(f"{c['clients']} concurrent clones via {system}: no error, flat server memory",
            c["failures"] == 0 and growth <= FLAT_MEMORY_MIB,
            f"{c['failures']} failed; own RSS {c.get('server_own_rss_before_mib')} -> "
            f"{c.get('server_own_rss_peak_mib')} MiB (+{growth}; flat means <= {FLAT_MEMORY_MIB:g})")
    for system in ("artifactd", "artifactd-w2"):
        cr = _get(results, "rest", system, "create")
        if not cr or "per_second" not in cr:
            continue
        add(f"REST repo creation on SQLite ({system}) >= 500/s, p99 <= 20 ms",
            cr["per_second"] >= 500 and cr["p99_ms"] <= 20 and cr["errors"] == 0,
            f"{cr['per_second']}/s, p99 {cr['p99_ms']} ms, {cr['concurrency']} connections")
    rows = _get(results, "forks", "artifactd")
    if rows:
        small, big = rows[0], rows[-1]
        medians = [r["fork_ms_median"] for r in rows]
        diff = big["fork_ms_median"] - small["fork_ms_median"]
        within = abs(diff) <= max(FORK_NOISE_MS, 0.25 * small["fork_ms_median"])
        add("fork time independent of repo size and < 50 ms", within and max(medians) < 50,
            ", ".join(f"{r['parent_mib']} MiB: {r['fork_ms_median']} ms" for r in rows))
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


def markdown(results: dict) -> str:
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
    if repo:
        lines.append("")
        lines.append(f"Repository: {repo.get('objects'):,} objects, {repo.get('pack_mib')} MiB packed, "
                     f"{repo.get('commits'):,} commits ({'given: ' + repo['path'] if repo.get('given') else 'generated'}).")
    s = results.get("settings", {})
    git = results.get("git") or {}
    if git:
        systems = list(git)
        lines += ["", f"## Git (median of {s.get('runs')} runs; ratio to git http-backend in brackets)", ""]
        lines.append("| | " + " | ".join(SYSTEM_LABELS.get(x, x) for x in systems) + " |")
        lines.append("| --- |" + " ---: |" * len(systems))
        for scen, metric, label in GIT_ROWS:
            cells = []
            for x in systems:
                r = git[x].get(scen, {}) if isinstance(git[x], dict) else {}
                if "error" in git[x] and len(git[x]) == 1:
                    cells.append("system failed")
                    continue
                if "error" in r:
                    cells.append(f"error: {r['error'][:60]}")
                    continue
                v = r.get(metric)
                q = ratio(results, x, scen, metric)
                cells.append(_fmt(v, metric) + (f" ({q:.2f}x)" if q is not None and x != REFERENCE else ""))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
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
        lines.append("| server's own RSS during 16 clones, MiB (whole tree with git) | " + " | ".join(mem) + " |")
        fails = [str(git[x].get("concurrent_clones", {}).get("failures", "-")) if isinstance(git[x], dict) else "-"
                 for x in systems]
        lines.append("| failed concurrent clones | " + " | ".join(fails) + " |")
    rest = results.get("rest") or {}
    if rest:
        lines += ["", f"## REST ({s.get('rest_requests')} requests over {s.get('rest_concurrency')} keep-alive "
                  "connections; sequential: 1 connection)", "",
                  "| | creations/s | p50 ms | p99 ms | server CPU ms/creation | sequential creations/s | p99 ms "
                  "| token mints/s | p50 ms | p99 ms | server CPU ms/mint |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for x, r in rest.items():
            if "error" in r:
                lines.append(f"| {SYSTEM_LABELS.get(x, x)} | error: {r['error'][:80]} |")
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
                lines.append(f"| {SYSTEM_LABELS.get(x, x)} | error: {by['error'][:80]} |")
                continue
            for n in sorted(by, key=int):
                r = by[n]
                lines.append(f"| {SYSTEM_LABELS.get(x, x)} | {int(n):,} | "
                             + " | ".join(f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f}"
                                          for k in ("get", "list_first_page", "list_mid_page")) + " |")
    g = goals(results)
    if g:
        lines += ["", "## Goals", "", "| goal | status | measured |", "| --- | --- | --- |"]
        for row in g:
            lines.append(f"| {row['goal']} | **{row['status']}** | {row['detail']} |")
    return "\n".join(lines) + "\n"


def _load(v: Any) -> str:
    return "/".join(f"{x:.1f}" for x in v) if v else "?"


# -- charts ----------------------------------------------------------------------------


def charts(results: dict, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the bench extra installs it
        return []
    paths: list[Path] = []
    git = {k: v for k, v in (results.get("git") or {}).items() if isinstance(v, dict) and "error" not in v}
    if git and REFERENCE in git:
        rows = [(s, m, label) for s, m, label in GIT_ROWS if m != "p99_ms"]
        systems = [x for x in git if x != REFERENCE]
        fig, ax = plt.subplots(figsize=(11, 5.5))
        width = 0.8 / max(1, len(systems))
        for i, x in enumerate(systems):
            vals = [ratio(results, x, s, m) for s, m, _ in rows]
            xs = [j + i * width for j in range(len(rows))]
            bars = ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=SYSTEM_LABELS.get(x, x))
            for b, v in zip(bars, vals):
                if v is not None:
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.1, color="red", linewidth=0.8, linestyle="--", label="goal 1.10 x")
        ax.set_yscale("log")
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
    if forks:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [r["parent_mib"] for r in forks]
        ys = [r["fork_ms_median"] for r in forks]
        err = [[y - r["fork_ms_min"] for y, r in zip(ys, forks)], [r["fork_ms_max"] - y for y, r in zip(ys, forks)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label="fork time (median, min-max)")
        ax.axhline(50, color="red", linestyle="--", linewidth=0.8, label="goal: < 50 ms")
        ax.set_xscale("log")
        ax.set_xlabel("parent repository on disk (MiB, log scale)")
        ax.set_ylabel("fork time over REST (ms)")
        ax.set_ylim(0, max(60, max(r["fork_ms_max"] for r in forks) * 1.2))
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
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "goals": goals(results)}
    j = out / "results.json"
    j.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md = out / "results.md"
    md.write_text(markdown(results))
    return [j, md, *charts(results, out)]


if __name__ == "__main__":  # re-render from a results.json
    import sys

    src = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/results.json")
    data = json.loads(src.read_text())
    print(markdown(data))
    print(write(data, src.parent))
