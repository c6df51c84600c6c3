#!/usr/bin/env bash
# Node 22 + wrangler 4.164 (tools/install-node-tools.sh, from the npm registry) for the
# tests that run the real `wrangler login` against artifactd. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x tools/install-node-tools.sh ] || { echo "install.d/wrangler.sh: tools/install-node-tools.sh missing" >&2; exit 1; }
if ! command -v npm >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
tools/install-node-tools.sh >/dev/null
