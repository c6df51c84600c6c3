#!/usr/bin/env bash
# What bench/ (and its smoke test, tests/test_bench_smoke.py) needs: nginx + fcgiwrap
# (Debian) for the git http-backend baseline, and the `bench` extra (dulwich, matplotlib)
# in the project's .venv. Idempotent; quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=.venv/bin/python bash bench/setup.sh
if ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("dulwich") and u.find_spec("matplotlib")))'; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]"
fi
