#!/usr/bin/env bash
# The import tests make a self-signed certificate for their loopback HTTPS Git server.
set -euo pipefail
command -v openssl >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q openssl >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q openssl >/dev/null; }
fi
command -v openssl >/dev/null 2>&1 || { echo "openssl is required by the import tests" >&2; exit 1; }
