#!/usr/bin/env bash
# Install what the benchmark baselines need: nginx + fcgiwrap (Debian) for
# git-http-backend, dulwich (PyPI) for the pure-Python server.
# Idempotent and quiet when everything is already there.
# PYTHON selects the interpreter that will run the harness (default: python3).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v git >/dev/null || missing+=(git)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
[ -x /usr/sbin/fcgiwrap ] || command -v fcgiwrap >/dev/null || missing+=(fcgiwrap)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench/setup.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq >/dev/null
    # The nginx package may try to start the system service; harmless here
    # (the harness runs its own nginx on a free port with its own config).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c 'import dulwich.web' 2>/dev/null; then
    echo "bench/setup.sh: installing dulwich into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
    "$PYTHON" -m pip install -q --disable-pip-version-check dulwich
fi
