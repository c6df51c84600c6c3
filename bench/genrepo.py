#!/usr/bin/env python3
"""Deterministic generator of realistic Git repositories for benchmarks.

Why: clone/fetch/push numbers are only comparable when every server is fed the
very same repository, and only meaningful when that repository looks like real
history: thousands of commits making small edits to source-like text files (so
delta compression and negotiation matter), merged feature branches, release
branches, annotated and lightweight tags, and some binary files.

The history is produced in one pass by piping a stream into ``git fast-import``
(stdlib + the ``git`` binary only), then repacked the way a server's repository
would be (``repack -adf``, bitmaps for bare repos, packed refs, commit-graph).

Determinism: the same seed, object target and size target give the same
objects (byte-identical commits, trees, blobs and tags, so the same SHAs) and the
same refs; author/committer names and dates are fixed by the seed. The final
pack is written with ``pack.threads=1`` so it is byte-identical too.

CLI:  python bench/genrepo.py OUT_DIR [--objects N] [--size-mb M] [--seed S] [--bare]
API:  from bench.genrepo import generate
      stats = generate(path, objects=50_000, size_mb=None, seed=1, bare=True)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_OBJECTS = 50_000
#: Default packed size is proportional to the object count: 50k objects -> 35 MiB.
DEFAULT_MIB_PER_OBJECT = 35 / 50_000
#: Measured packed bytes per object of the text-only part (commits, trees,
#: source blobs); used to decide how many large binary bytes to add.
TEXT_PACKED_BYTES_PER_OBJECT = 250
MIB = 1 << 20
#: Blobs above this are stored whole, without a delta search. The large filler
#: blobs are random (undeltifiable); searching deltas among them made a 500 MiB
#: repack take minutes instead of seconds. Only used while generating: the
#: repository's own config is left at git's defaults.
BIG_FILE_THRESHOLD = "1m"
#: A line template: (indent, ident a, ident b, ident c, number) -> line.
Template = Callable[[str, str, str, str, int], str]
EPOCH = 1_500_000_000  # 2017-07-14: first commit date of every generated repo

# --------------------------------------------------------------------------
# Vocabulary and people (fixed tables: part of the determinism contract)
# --------------------------------------------------------------------------

_WORDS = """
buffer cache config handler request response parse token stream index node tree
commit ref pack delta object store read write open close flush size count offset
length header value key item entry list map queue worker task job state status
error result path name file dir data bytes text line chunk block page user account
session timeout retry limit lock mutex event signal hook plugin module client server
socket port host url query filter sort merge split join format encode decode hash
digest sign verify load save fetch push pull clone sync update delete create init
reset start stop run spawn wait check valid option flag mode level log debug trace
info warn metric stat report schema table row column record field type kind version
tag branch remote local temp pool thread proc context scope graph edge vertex walk
visit emit render view model layout style theme color image font icon asset billing
invoice order cart price tax quota tenant region shard replica leader follower vote
term batch window frame packet route proxy gateway auth grant role policy audit
""".split()

_SYLLABLES = "ka ri to mu ne sa lo vi de ga po zu fe hi ja ko la me no pe qu ra se ti".split()

_AUTHORS = [  # (name, email, tz)
    ("Ada Lindqvist", "ada@example.org", "+0100"),
    ("Bruno Carvalho", "bruno@example.org", "-0300"),
    ("Chen Wei", "chen.wei@example.org", "+0800"),
    ("Dana Okafor", "dana@example.org", "+0100"),
    ("Emil Novak", "emil.novak@example.org", "+0200"),
    ("Farah Haddad", "farah@example.org", "+0300"),
    ("Gus Johansson", "gus@example.org", "+0200"),
    ("Hana Sato", "hana.sato@example.org", "+0900"),
    ("Ivan Petrov", "ivan@example.org", "+0300"),
    ("Jules Martin", "jules@example.org", "+0100"),
    ("Kim Larsen", "kim@example.org", "-0700"),
    ("Lea Fischer", "lea@example.org", "-0500"),
]

_VERBS = ["Fix", "Add", "Refactor", "Update", "Remove", "Improve", "Handle", "Simplify", "Document",
          "Rename", "Optimize", "Clean up"]

_TOP_DIRS = [  # (top-level dir, file extension, weight)
    ("src", ".py", 6), ("lib", ".c", 4), ("include", ".h", 1), ("web", ".js", 3),
    ("tests", ".py", 3), ("docs", ".md", 2), ("tools", ".py", 1), ("scripts", ".sh", 1),
]

_BINARY_PATHS = [  # paths used for the large, incompressible size-filling blobs
    "assets/images/hero-banner.png", "data/fixtures/sample.sqlite",
    "vendor/prebuilt/libcodec.so", "models/ranker.bin", "assets/video/intro.webm",
    "assets/fonts/Inter-Regular.woff2", "data/fixtures/events.parquet",
    "vendor/prebuilt/libcrypto.a", "models/embeddings.bin", "assets/images/screenshot.png",
    "data/geo/regions.mbtiles", "assets/audio/notify.ogg",
]

_MAGIC = {
    ".png": b"\x89PNG\r\n\x1a\n", ".sqlite": b"SQLite format 3\x00", ".so": b"\x7fELF\x02\x01\x01",
    ".a": b"!<arch>\n", ".webm": b"\x1aE\xdf\xa3", ".woff2": b"wOF2", ".parquet": b"PAR1",
    ".ogg": b"OggS", ".bin": b"\x93NUMPY", ".mbtiles": b"SQLite format 3\x00",
}

# --------------------------------------------------------------------------
# Source-like text
# --------------------------------------------------------------------------


class TextModel:
    """Produces source-code-like lines and small realistic edits, from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        extra = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(300)]
        self.words = _WORDS + extra
        self.idents = [self._ident() for _ in range(4000)]
        self.types = ["int", "size_t", "uint32_t", "char *", "struct " + rng.choice(self.words), "bool"]
        self.templates = self._templates()

    def _ident(self) -> str:
        return "_".join(self.rng.choice(self.words) for _ in range(self.rng.randint(1, 3)))

    def ident(self) -> str:
        return self.rng.choice(self.idents)

    def camel(self) -> str:
        return "".join(w.capitalize() for w in self.ident().split("_"))

    def sentence(self, lo: int = 4, hi: int = 12) -> str:
        words = [self.rng.choice(self.words) for _ in range(self.rng.randint(lo, hi))]
        return " ".join(words).capitalize()

    def line(self, ext: str, depth: int) -> str:
        """One statement-like line for a file of type ``ext`` at nesting ``depth``."""
        r = self.rng
        a, b, c, n = self.ident(), self.ident(), self.ident(), r.randint(0, 4096)
        template = self.templates.get(ext, self.templates[".md"])[r.randrange(10)]
        return template("    " * depth, a, b, c, n)  # only the chosen one draws more randomness

    def _templates(self) -> dict[str, tuple[Template, ...]]:
        """Ten line shapes per file type; lazily evaluated so unused ones cost nothing."""
        hex32 = lambda: self.rng.getrandbits(32)
        s = self.sentence
        py: tuple[Template, ...] = (
            lambda i, a, b, c, n: f"{i}{a} = {b}({c}, {n})",
            lambda i, a, b, c, n: f"{i}{a} = {b}.{c}(timeout={n})",
            lambda i, a, b, c, n: f"{i}if {a} > {n}:",
            lambda i, a, b, c, n: f"{i}    return {a}",
            lambda i, a, b, c, n: f"{i}for {a} in {b}({c}):",
            lambda i, a, b, c, n: f"{i}# {s()}",
            lambda i, a, b, c, n: f"{i}self.{a} = {b}",
            lambda i, a, b, c, n: f'{i}raise {self.camel()}Error("{s(2, 6)}")',
            lambda i, a, b, c, n: f"{i}{a}.append({b}[{n}])",
            lambda i, a, b, c, n: f'{i}log.debug("{a}=%s {b}=%x", {a}, 0x{hex32():08x})',
        )
        c_like: tuple[Template, ...] = (
            lambda i, a, b, c, n: f"{i}{self.rng.choice(self.types)} {a} = {b}({c}, {n});",
            lambda i, a, b, c, n: f"{i}if ({a} >= {n})",
            lambda i, a, b, c, n: f"{i}\treturn -E{a.upper()[:8]};",
            lambda i, a, b, c, n: f"{i}/* {s()} */",
            lambda i, a, b, c, n: f"{i}{a}->{b} = {c};",
            lambda i, a, b, c, n: f"{i}memcpy({a}, {b}, sizeof(*{a}) * {n});",
            lambda i, a, b, c, n: f"#define {a.upper()} 0x{hex32():x}",
            lambda i, a, b, c, n: f"{i}{a} += {b}[{n} & {c}_mask];",
            lambda i, a, b, c, n: f"{i}goto out_{b};",
            lambda i, a, b, c, n: f"{i}ret = {a}_{b}(ctx, {c}, {n});",
        )
        js: tuple[Template, ...] = (
            lambda i, a, b, c, n: f"{i}const {a} = await {b}({c}, {n});",
            lambda i, a, b, c, n: f"{i}if ({a} > {n}) {{",
            lambda i, a, b, c, n: f"{i}}}",
            lambda i, a, b, c, n: f"{i}// {s()}",
            lambda i, a, b, c, n: f"{i}this.{a} = {b};",
            lambda i, a, b, c, n: f"{i}return {a}.{b}({c});",
            lambda i, a, b, c, n: f"{i}export const {a.upper()} = 0x{hex32():x};",
            lambda i, a, b, c, n: f"{i}{a}.push({{ {b}, {c}: {n} }});",
            lambda i, a, b, c, n: f"{i}let {a} = {b} ?? {n};",
            lambda i, a, b, c, n: f"{i}throw new {self.camel()}Error('{s(2, 5)}');",
        )
        sh: tuple[Template, ...] = (
            lambda i, a, b, c, n: f'{i}{a.upper()}="${{{b.upper()}:-{n}}}"',
            lambda i, a, b, c, n: f'{i}if [ -z "${a}" ]; then',
            lambda i, a, b, c, n: f"{i}fi",
            lambda i, a, b, c, n: f"{i}# {s()}",
            lambda i, a, b, c, n: f'{i}{a} "${b}" --{c.replace("_", "-")}={n}',
            lambda i, a, b, c, n: f'{i}echo "{s(2, 6)}" >&2',
            lambda i, a, b, c, n: f"{i}export {a.upper()}={n}",
            lambda i, a, b, c, n: f'{i}for {a} in "${{{b}[@]}}"; do',
            lambda i, a, b, c, n: f"{i}done",
            lambda i, a, b, c, n: f"{i}{a} || exit {n % 120}",
        )
        md: tuple[Template, ...] = (
            lambda i, a, b, c, n: s(8, 20) + ".",
            lambda i, a, b, c, n: s(6, 18) + ".",
            lambda i, a, b, c, n: "",
            lambda i, a, b, c, n: f"## {s(2, 5)}",
            lambda i, a, b, c, n: f"- {s(3, 9)}",
            lambda i, a, b, c, n: f"    {a}({b}, {n})",
            lambda i, a, b, c, n: s(10, 24) + ".",
            lambda i, a, b, c, n: "",
            lambda i, a, b, c, n: f"See `{a}` and `{b}` for details.",
            lambda i, a, b, c, n: f"| {a} | {n} | {s(2, 4)} |",
        )
        return {".py": py, ".c": c_like, ".h": c_like, ".js": js, ".sh": sh, ".md": md}

    def block(self, ext: str) -> list[str]:
        """A function/class/section sized group of lines, as edits insert them."""
        r = self.rng
        body = [self.line(ext, 1 + (r.random() < 0.3)) for _ in range(r.randint(2, 14))]
        if ext == ".py":
            head = f"def {self.ident()}({self.ident()}, {self.ident()}={r.randint(0, 99)}):"
            return [head, f'    """{self.sentence()}."""', *body, ""]
        if ext in (".c", ".h", ".js"):
            kw = "function" if ext == ".js" else "static int"
            return [f"{kw} {self.ident()}({self.ident()}, {self.ident()})", "{", *body, "}", ""]
        if ext == ".sh":
            return [f"{self.ident()}() {{", *body, "}", ""]
        return [f"### {self.sentence(2, 6)}", "", *[self.line(ext, 0) for _ in range(r.randint(2, 8))], ""]

    def new_file(self, ext: str) -> list[str]:
        """Initial content: a header comment then blocks, lognormal line count."""
        r = self.rng
        target = max(5, min(1500, int(r.lognormvariate(4.3, 0.8))))
        lead = {".py": "# ", ".c": "/* ", ".h": "/* ", ".js": "// ", ".sh": "# "}.get(ext, "")
        lines = [f"{lead}{self.sentence()}", f"{lead}Copyright (c) the authors. Licensed under MIT.", ""]
        while len(lines) < target:
            lines.extend(self.block(ext))
        return lines

    def edit(self, lines: list[str], ext: str) -> list[str]:
        """Apply one to three small edits, as a developer's commit would."""
        r = self.rng
        out = list(lines)
        for _ in range(r.choice((1, 1, 1, 2, 2, 3))):
            op = r.random()
            pos = r.randrange(len(out) + 1)
            if op < 0.40 and out:  # tweak a few lines
                for j in range(pos, min(len(out), pos + r.randint(1, 4))):
                    out[j] = self.line(ext, 1)
            elif op < 0.75 or len(out) < 20:  # add a function / section
                out[pos:pos] = self.block(ext)
            elif op < 0.92:  # delete a few lines
                del out[pos:pos + r.randint(1, 10)]
            else:  # rename an identifier throughout the file
                old = out[pos - 1].split("(")[0].split()[-1:] if pos and out[pos - 1].strip() else []
                if old and len(old[0]) > 3:
                    new = self.ident()
                    out = [ln.replace(old[0], new) for ln in out]
        if len(out) > 2500:  # keep files from growing without bound
            cut = r.randrange(len(out) - 300)
            del out[cut:cut + 300]
        return out


# --------------------------------------------------------------------------
# fast-import stream
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One file content on a branch: its blob mark and (for text) its lines."""

    mark: int
    lines: tuple[str, ...] | None  # None for binary files


@dataclass
class Branch:
    """A branch being written: its files, tip commit and bookkeeping."""

    name: str
    state: dict[str, Version]
    tip: int = 0
    focus: str = ""  # directory most of its commits touch
    base_tip: int = 0  # main's tip when the branch forked (feature branches)
    planned: int = 0
    commits: int = 0
    touched: set[str] = field(default_factory=set)


class FastImport:
    """Writes the fast-import stream and counts the objects it creates."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.marks = itertools.count(1)
        self.objects = 0

    def blob(self, data: bytes) -> int:
        mark = next(self.marks)
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
        self.out.write(data)
        self.out.write(b"\n")
        self.objects += 1
        return mark

    def commit(self, ref: str, who: tuple[str, str, str], when: int, message: str, parents: list[int],
               changes: dict[str, Version | None]) -> int:
        """Write a commit; ``changes`` maps path -> new Version, or None to delete."""
        mark = next(self.marks)
        name, email, tz = who
        msg = message.encode()
        head = [f"commit {ref}", f"mark :{mark}", f"author {name} <{email}> {when - 97} {tz}",
                f"committer {name} <{email}> {when} {tz}", f"data {len(msg)}"]
        self.out.write(("\n".join(head) + "\n").encode() + msg + b"\n")
        lines = [f"from :{parents[0]}"] if parents else []
        lines += [f"merge :{p}" for p in parents[1:]]
        for path in sorted(changes):
            v = changes[path]
            lines.append(f"D {path}" if v is None else f"M 100644 :{v.mark} {path}")
        self.out.write(("\n".join(lines) + "\n\n").encode())
        self.objects += 1 + _dirty_tree_count(changes)
        return mark

    def annotated_tag(self, name: str, target: int, who: tuple[str, str, str], when: int, message: str) -> None:
        msg = message.encode()
        tagger = f"tagger {who[0]} <{who[1]}> {when} {who[2]}"
        self.out.write(f"tag {name}\nfrom :{target}\n{tagger}\ndata {len(msg)}\n".encode() + msg + b"\n")
        self.objects += 1

    def lightweight_tag(self, name: str, target: int) -> None:
        self.out.write(f"reset refs/tags/{name}\nfrom :{target}\n\n".encode())


def _dirs(paths: Iterable[str]) -> set[str]:
    """Every directory containing one of ``paths``, the root ("") included."""
    dirs: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        dirs.add("")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return dirs


def _dirty_tree_count(changes: Iterable[str]) -> int:
    """New tree objects a commit creates: the root plus every touched directory."""
    return len(_dirs(changes))


# --------------------------------------------------------------------------
# History plan
# --------------------------------------------------------------------------


@dataclass
class Plan:
    """Sizes derived from the object and byte targets."""

    objects: int
    files: int
    binary_sizes: list[int]
    releases: int
    snapshots: int

    @classmethod
    def make(cls, objects: int, size_mb: float, seed: int) -> Plan:
        objects = max(objects, 60)
        files = max(6, min(4000, objects // 28))
        fill = int(size_mb * MIB) - TEXT_PACKED_BYTES_PER_OBJECT * objects
        return cls(objects=objects, files=files, binary_sizes=_binary_sizes(fill, seed),
                   releases=max(1, min(40, objects // 4000)), snapshots=max(1, min(30, objects // 6000)))


def _binary_sizes(fill: int, seed: int) -> list[int]:
    """Split the bytes still missing after the text history into blob sizes."""
    if fill < 64 * 1024:
        return []
    avg = max(256 * 1024, min(8 * MIB, fill // 12))
    count = max(1, round(fill / avg))
    rng = random.Random(f"{seed}-binsizes")
    raw = [rng.uniform(0.7, 1.3) for _ in range(count)]
    sizes = [int(fill * w / sum(raw)) for w in raw]
    return sizes


def _binary_blob(path: str, size: int, key: str) -> bytes:
    """Incompressible content with a realistic magic header (stands in for media/builds)."""
    magic = _MAGIC.get(os.path.splitext(path)[1], b"\x00BIN")
    return magic + random.Random(key).randbytes(max(0, size - len(magic)))


def _small_binary(rng: random.Random, size: int) -> bytes:
    """A small icon-like file: partly repetitive, partly noise."""
    pattern = bytes(rng.getrandbits(8) for _ in range(64))
    chunks = [pattern if rng.random() < 0.5 else rng.randbytes(64) for _ in range(size // 64)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


class HistoryWriter:
    """Drives the whole history: initial import, commits, branches, merges, tags."""

    def __init__(self, fi: FastImport, plan: Plan, seed: int) -> None:
        self.fi, self.plan, self.seed = fi, plan, seed
        self.rng = random.Random(seed)
        self.text = TextModel(self.rng)
        self.clock = EPOCH
        self.author_weights = [1 / (i + 1) for i in range(len(_AUTHORS))]
        self.dirs: dict[str, list[str]] = {}  # leaf dir -> paths ever created there
        self.dir_weight: dict[str, float] = {}
        self.file_weight: dict[str, float] = {}
        self.leaf_ext: dict[str, str] = {}  # leaf dir -> file extension used there
        self.main = Branch("main", {})
        self.features: list[Branch] = []
        self.releases: list[Branch] = []
        self.kept: list[str] = []  # branch refs that survive
        self.deleted: list[str] = []  # merged branch refs removed after import
        self.tags = 0
        self.commits = 0
        self.binary_index = 0
        self.release_index = 0
        self.snapshot_index = 0

    # -- helpers ---------------------------------------------------------
    def who(self) -> tuple[str, str, str]:
        return self.rng.choices(_AUTHORS, self.author_weights)[0]

    def tick(self) -> int:
        self.clock += self.rng.randint(120, 30_000)
        return self.clock

    def text_version(self, lines: list[str]) -> Version:
        data = ("\n".join(lines) + "\n").encode()
        return Version(self.fi.blob(data), tuple(lines))

    def message(self, path: str) -> str:
        stem = os.path.splitext(os.path.basename(path))[0]
        subject = f"{self.rng.choice(_VERBS)} {stem} in {os.path.dirname(path) or 'top level'}"
        if self.rng.random() < 0.35:
            body = "\n".join(self.text.sentence(6, 14) + "." for _ in range(self.rng.randint(1, 3)))
            return f"{subject}\n\n{body}\n"
        return subject + "\n"

    def commit(self, br: Branch, changes: dict[str, Version | None], message: str,
               extra_parent: int = 0) -> None:
        parents = [p for p in (br.tip, extra_parent) if p]
        br.tip = self.fi.commit(f"refs/heads/{br.name}", self.who(), self.tick(), message, parents, changes)
        for path, v in changes.items():
            if v is None:
                br.state.pop(path, None)
            else:
                br.state[path] = v
            br.touched.add(path)
        br.commits += 1
        self.commits += 1

    # -- layout ----------------------------------------------------------
    def initial_import(self) -> None:
        """First commit: the project skeleton with all starting files."""
        rng, t = self.rng, self.text
        n_dirs = max(2, self.plan.files // 18)
        tops = [(d, e) for d, e, w in _TOP_DIRS for _ in range(w)]
        leaf_ext: dict[str, str] = {}
        while len(leaf_ext) < n_dirs:
            top, ext = rng.choice(tops)
            depth = rng.choice((1, 1, 2, 2, 3)) if self.plan.files > 60 else 1
            leaf = "/".join([top, *(rng.choice(t.words) for _ in range(depth - 1))])
            leaf_ext.setdefault(leaf, ext)
        changes: dict[str, Version | None] = {}
        for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md"):
            changes[name] = self.text_version(t.new_file(".md"))
        changes[".gitignore"] = self.text_version(["*.pyc", "__pycache__/", "build/", "dist/", ".env", "*.o"])
        changes[".gitattributes"] = self.text_version([f"*{e} binary" for e in sorted(_MAGIC)])
        changes["assets/images/logo.png"] = Version(self.fi.blob(_small_binary(rng, 6000)), None)
        changes["assets/images/favicon.ico"] = Version(self.fi.blob(_small_binary(rng, 1500)), None)
        leaves = sorted(leaf_ext)
        for i in range(self.plan.files):
            leaf = leaves[i % len(leaves)] if i < len(leaves) else rng.choice(leaves)
            path = self.new_path(leaf, leaf_ext[leaf])
            changes[path] = self.text_version(t.new_file(leaf_ext[leaf]))
        self.leaf_ext = leaf_ext
        self.commit(self.main, changes, "Initial import\n")

    def new_path(self, leaf: str, ext: str) -> str:
        """Register a new, unique file path under ``leaf``."""
        paths = self.dirs.setdefault(leaf, [])
        while True:
            path = f"{leaf}/{self.text.ident()}{ext}"
            if path not in self.file_weight:
                break
        paths.append(path)
        self.file_weight[path] = min(20.0, self.rng.paretovariate(1.3))
        self.dir_weight[leaf] = self.dir_weight.get(leaf, 0.0) + self.file_weight[path]
        return path

    # -- ordinary commits --------------------------------------------------
    def pick_files(self, br: Branch, k: int) -> list[str]:
        """k files, mostly in one directory (locality), hot files more often."""
        rng = self.rng
        leaf = br.focus if br.focus and rng.random() < 0.8 else \
            rng.choices(list(self.dir_weight), list(self.dir_weight.values()))[0]
        live = [p for p in self.dirs[leaf] if p in br.state]
        chosen: list[str] = []
        if live:
            weights = [self.file_weight[p] for p in live]
            chosen = list(dict.fromkeys(rng.choices(live, weights, k=min(k, len(live)))))
        for _ in range(k - len(chosen)):  # top up from random other directories
            other = rng.choice(list(self.dirs))
            cands = [p for p in self.dirs[other] if p in br.state and p not in chosen]
            if cands:
                chosen.append(rng.choice(cands))
            elif not chosen:
                break
        return chosen

    def work_commit(self, br: Branch) -> None:
        """A developer's commit: edit k files, sometimes add or delete one."""
        rng = self.rng
        k = rng.choice((1, 1, 1, 1, 2, 2, 2, 3, 3, 4)) if rng.random() > 0.05 else rng.randint(5, 25)
        changes: dict[str, Version | None] = {}
        for path in self.pick_files(br, k):
            old = list(br.state[path].lines or ())
            new = self.text.edit(old, os.path.splitext(path)[1])
            if new != old:
                changes[path] = self.text_version(new)
        roll = rng.random()
        if roll < 0.04:
            leaf = br.focus or rng.choice(list(self.dirs))
            ext = self.leaf_ext[leaf]
            changes[self.new_path(leaf, ext)] = self.text_version(self.text.new_file(ext))
        elif roll < 0.05:
            leaf = rng.choice(list(self.dirs))
            live = [p for p in self.dirs[leaf] if p in br.state and p not in changes]
            if len(live) > 3:
                changes[rng.choice(live)] = None
        if changes:
            self.commit(br, changes, self.message(next(iter(changes))))

    # -- branches, merges, tags -------------------------------------------
    def open_feature(self) -> None:
        rng = self.rng
        kind = rng.choice(("feature", "feature", "fix", "refactor"))
        name = f"{kind}/{rng.choice(self.text.words)}-{rng.choice(self.text.words)}-{len(self.deleted) + len(self.kept)}"
        br = Branch(name, dict(self.main.state), tip=self.main.tip, base_tip=self.main.tip,
                    focus=rng.choices(list(self.dir_weight), list(self.dir_weight.values()))[0],
                    planned=rng.randint(2, 12))
        self.features.append(br)

    def close_feature(self, br: Branch) -> None:
        """Merge into main (no-ff, branch wins conflicts) or abandon it."""
        self.features.remove(br)
        if self.rng.random() < 0.03:
            self.kept.append(br.name)  # stale, unmerged branch left on the server
            return
        changes: dict[str, Version | None] = {}
        for path in sorted(br.touched):
            new = br.state.get(path)
            if new is not self.main.state.get(path):
                changes[path] = new
        merged = {**self.main.state, **changes}
        differs = [p for p in merged.keys() | br.state.keys() if merged.get(p) is not br.state.get(p)]
        # A merged directory is a new tree unless it equals the branch tip's one.
        self.fi.objects -= _dirty_tree_count(changes) - len(_dirs(changes) & _dirs(differs))
        self.commit(self.main, changes, f"Merge branch '{br.name}'\n", extra_parent=br.tip)
        (self.kept if self.rng.random() < 0.02 else self.deleted).append(br.name)

    def release(self) -> None:
        """Annotated release tag on main, maybe with a maintenance branch."""
        self.release_index += 1
        ver = f"1.{self.release_index}"
        log = list(self.main.state["CHANGELOG.md"].lines or ())
        log[2:2] = [f"## v{ver}.0", "", *(f"- {self.text.sentence()}" for _ in range(4)), ""]
        self.commit(self.main, {"CHANGELOG.md": self.text_version(log)}, f"Release v{ver}.0\n")
        self.fi.annotated_tag(f"v{ver}.0", self.main.tip, self.who(), self.tick(), f"Release v{ver}.0\n")
        self.tags += 1
        if self.rng.random() < 0.6:
            self.releases.append(Branch(f"release/{ver}", dict(self.main.state), tip=self.main.tip))
            self.kept.append(f"release/{ver}")

    def patch_release(self) -> None:
        br = self.rng.choice(self.releases[-3:])
        self.work_commit(br)
        if self.rng.random() < 0.5:
            br.planned += 1
            name = f"v{br.name.split('/')[1]}.{br.planned}"
            self.fi.annotated_tag(name, br.tip, self.who(), self.tick(), f"Patch release {name}\n")
            self.tags += 1

    def snapshot(self) -> None:
        self.snapshot_index += 1
        self.fi.lightweight_tag(f"snapshot-{self.snapshot_index:03d}", self.main.tip)
        self.tags += 1

    def binary_commit(self) -> None:
        """Add or replace one large binary file (the size-filling blobs)."""
        i = self.binary_index
        self.binary_index += 1
        paths = _BINARY_PATHS[:max(1, min(len(_BINARY_PATHS), len(self.plan.binary_sizes) // 3))]
        path = paths[i % len(paths)]
        data = _binary_blob(path, self.plan.binary_sizes[i], f"{self.seed}-bin-{i}")
        v = Version(self.fi.blob(data), None)
        self.commit(self.main, {path: v}, f"{'Update' if path in self.main.state else 'Add'} {path}\n")

    # -- main loop ---------------------------------------------------------
    def run(self) -> None:
        self.initial_import()
        plan, rng = self.plan, self.rng
        goal = plan.objects - plan.releases - len(plan.binary_sizes) * 5
        while self.fi.objects < goal:
            progress = self.fi.objects / goal
            if self.binary_index < len(plan.binary_sizes) and progress >= (self.binary_index + 0.5) / len(plan.binary_sizes):
                self.binary_commit()
            elif progress >= (self.release_index + 0.8) / plan.releases:
                self.release()
            elif progress >= (self.snapshot_index + 0.5) / plan.snapshots:
                self.snapshot()
            elif self.releases and rng.random() < 0.02:
                self.patch_release()
            elif len(self.features) < 3 and (rng.random() < 0.07 or self.commits == 4):
                self.open_feature()
            elif self.features and rng.random() < 0.45:
                br = rng.choice(self.features)
                self.work_commit(br)
                if br.commits >= br.planned:
                    self.close_feature(br)
            else:
                self.work_commit(self.main)
        self.kept.extend(br.name for br in self.features)  # still open at the end


# --------------------------------------------------------------------------
# git plumbing
# --------------------------------------------------------------------------


def git_env() -> dict[str, str]:
    """Hermetic environment: no system/global config can change the output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C", TZ="UTC")
    return env


def _git(repo: Path, *args: str, input: bytes | None = None) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], input=input, env=git_env(),
                         check=True, stdout=subprocess.PIPE)
    return res.stdout.decode()


def count_objects(repo: Path) -> dict[str, int]:
    """``git count-objects -v`` as a dict (sizes in KiB, as git prints them)."""
    out = _git(repo, "count-objects", "-v")
    return {k: int(v) for k, v in (line.split(": ") for line in out.splitlines())}


def _import(repo: Path, write: Callable[[FastImport], HistoryWriter]) -> HistoryWriter:
    proc = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet", "--done",
                             f"--big-file-threshold={BIG_FILE_THRESHOLD}"],
                            stdin=subprocess.PIPE, env=git_env())
    assert proc.stdin is not None
    try:
        with proc.stdin as out:
            writer = write(FastImport(out))
            out.write(b"done\n")
    finally:
        if proc.wait() != 0:
            raise RuntimeError(f"git fast-import failed with exit code {proc.returncode}")
    return writer


def _finish(repo: Path, writer: HistoryWriter, bare: bool) -> None:
    """Drop merged branch refs and pack like a served repo."""
    if writer.deleted:
        _git(repo, "update-ref", "--stdin", input="".join(
            f"delete refs/heads/{name}\n" for name in writer.deleted).encode())
    _git(repo, "-c", "pack.threads=1", "-c", f"core.bigFileThreshold={BIG_FILE_THRESHOLD}",
         "repack", "-a", "-d", "-f", "-q",
         "--write-bitmap-index" if bare else "--no-write-bitmap-index")
    _git(repo, "pack-refs", "--all", "--prune")
    _git(repo, "commit-graph", "write", "--reachable", "--no-progress")
    _git(repo, "prune-packed")
    if not bare:
        _git(repo, "reset", "--hard", "-q")


def generate(path: str | os.PathLike[str], objects: int = DEFAULT_OBJECTS, size_mb: float | None = None,
             seed: int = 1, bare: bool = False) -> dict[str, Any]:
    """Create a deterministic repository at ``path`` (must not exist or be empty).

    ``objects`` is the target object count (reached within a few percent);
    ``size_mb`` the target packed size in MiB (default: 35 MiB per 50k objects).
    When the text history packs smaller than ``size_mb``, large incompressible
    blobs (images, databases, prebuilt libraries) fill the difference.
    Returns stats: objects, size_pack_bytes, commits, branches, tags, seconds.
    """
    start = time.monotonic()
    repo = Path(path)
    if repo.exists() and any(repo.iterdir()):
        raise FileExistsError(f"{repo} exists and is not empty")
    if size_mb is None:
        size_mb = objects * DEFAULT_MIB_PER_OBJECT
    plan = Plan.make(objects, size_mb, seed)
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--initial-branch=main", *(["--bare"] if bare else []), str(repo)],
                   env=git_env(), check=True)

    def write(fi: FastImport) -> HistoryWriter:
        hw = HistoryWriter(fi, plan, seed)
        hw.run()
        return hw

    writer = _import(repo, write)
    _finish(repo, writer, bare)
    counts = count_objects(repo)
    return {
        "path": str(repo),
        "objects": counts["count"] + counts["in-pack"],
        "size_pack_bytes": counts["size-pack"] * 1024,
        "estimated_objects": writer.fi.objects,
        "commits": writer.commits,
        "branches": 1 + len(writer.kept),
        "tags": writer.tags,
        "binary_blobs": len(plan.binary_sizes),
        "seconds": round(time.monotonic() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--objects", type=int, default=DEFAULT_OBJECTS, help="target object count (default 50000)")
    ap.add_argument("--size-mb", type=float, default=None, help="target packed MiB (default 35 per 50k objects)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare", action="store_true", help="create a bare repository")
    ap.add_argument("--json", action="store_true", help="print the stats as JSON")
    args = ap.parse_args(argv)
    stats = generate(args.out_dir, objects=args.objects, size_mb=args.size_mb, seed=args.seed, bare=args.bare)
    if args.json:
        print(json.dumps(stats))
    else:
        print(f"{stats['path']}: {stats['objects']} objects, {stats['size_pack_bytes'] / MIB:.1f} MiB packed, "
              f"{stats['commits']} commits, {stats['branches']} branches, {stats['tags']} tags, "
              f"{stats['binary_blobs']} large binary blobs, {stats['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
