"""Benchmark harness for artifactd: a deterministic repository generator, the
baseline Git servers artifactd is compared against, and timing helpers.

Modules:
    genrepo        -- ``generate()``: deterministic realistic repository (git fast-import)
    baselines      -- file://, nginx+fcgiwrap+git-http-backend, dulwich.web servers
    dulwich_server -- the dulwich WSGI server process that ``baselines`` starts
    measure        -- medians of git commands, ls-remote latency, peak RSS and CPU of a tree
    suite          -- the scenarios and capability checks, run against any server
"""
