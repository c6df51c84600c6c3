"""Benchmark harness for artifactd: a deterministic repository generator, the
baseline Git servers artifactd is compared against, and timing helpers.

Modules:
    genrepo   -- ``generate()``: deterministic realistic repository (git fast-import)
    baselines -- nginx+fcgiwrap+git-http-backend, dulwich.web, file:// servers
    measure   -- medians of git commands, ls-remote latency, peak RSS of a tree
"""
