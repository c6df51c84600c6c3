#!/usr/bin/env bash
# The authentication guide's flow, with nothing but curl and git:
#   create a repo over REST, mint a write token, push a local repository (all branches
#   and tags), mint a read token, clone it back, compare the refs, and show that a push
#   with the read token is refused with 403.
#
# Usage: examples/quickstart.sh [SOURCE_REPO] [SERVER_URL]
#   SOURCE_REPO  a local Git repository (default: this project's repository)
#   SERVER_URL   a running artifactd (default: http://127.0.0.1:8787)
# Credentials: ACCOUNT_ID and API_TOKEN from the environment, else read from
# ${ARTIFACTD_DATA_DIR:-./data}/bootstrap.json.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
SRC=$(cd "${1:-$here}" && pwd)
SERVER=${2:-${ARTIFACTD_URL:-http://127.0.0.1:8787}}
NAMESPACE=${NAMESPACE:-default}
BOOT=${ARTIFACTD_DATA_DIR:-$here/data}/bootstrap.json

json() {  # json FIELD < body: the first string value of FIELD (enough for these replies)
    sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n1
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ACCOUNT_ID=${ACCOUNT_ID:-$(json account_id < "$BOOT")}
API_TOKEN=${API_TOKEN:-$(json api_token < "$BOOT")}
BASE="$SERVER/client/v4/accounts/$ACCOUNT_ID/artifacts/namespaces/$NAMESPACE"
REPO=${REPO:-quickstart-$(date +%s)-$$}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export GIT_TERMINAL_PROMPT=0

api() {  # api METHOD PATH [JSON]: prints the body, fails on a non-2xx status
    local out status
    out=$(curl -sS -w '\n%{http_code}' -X "$1" "$BASE$2" -H "Authorization: Bearer $API_TOKEN" \
        -H 'Content-Type: application/json' ${3:+--data "$3"})
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "${status:0:1}" != 2 ]; then echo "HTTP $status: $out" >&2; return 1; fi
    printf '%s\n' "$out"
}

step "1. create repo $NAMESPACE/$REPO"
created=$(api POST /repos "{\"name\":\"$REPO\",\"description\":\"quickstart\"}")
REMOTE=$(json remote <<< "$created")
echo "remote: $REMOTE"

step "2. mint a write token (1 hour)"
WRITE=$(api POST /tokens "{\"repo\":\"$REPO\",\"scope\":\"write\",\"ttl\":3600}" | json plaintext)
echo "write token: ${WRITE:0:14}… (shown once)"

step "3. push $SRC: all branches and tags"
time git -C "$SRC" -c http.extraHeader="Authorization: Bearer $WRITE" push --quiet "$REMOTE" \
    'refs/heads/*:refs/heads/*' 'refs/tags/*:refs/tags/*'

step "4. mint a read token"
READ=$(api POST /tokens "{\"repo\":\"$REPO\",\"scope\":\"read\",\"ttl\":3600}" | json plaintext)
echo "read token: ${READ:0:14}…"

step "5. clone with the read token"
time git -c http.extraHeader="Authorization: Bearer $READ" clone --quiet --mirror "$REMOTE" "$WORK/clone.git"

step "6. compare refs of source and clone"
git -C "$SRC" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags > "$WORK/src.refs"
git -C "$WORK/clone.git" for-each-ref --format='%(objectname) %(refname)' refs/heads refs/tags > "$WORK/clone.refs"
if diff -u "$WORK/src.refs" "$WORK/clone.refs"; then
    echo "identical: $(wc -l < "$WORK/src.refs") refs"
else
    echo "MISMATCH between source and clone" >&2; exit 1
fi

step "7. a push with the read token is refused"
status=$(curl -s -o "$WORK/denied.txt" -w '%{http_code}' -H "Authorization: Bearer $READ" \
    "$REMOTE/info/refs?service=git-receive-pack")
echo "GET info/refs?service=git-receive-pack with the read token: HTTP $status: $(cat "$WORK/denied.txt")"
[ "$status" = 403 ] || { echo "expected 403" >&2; exit 1; }
# Any commit of the clone (its HEAD may name a branch the source does not have).
some_commit=$(git -C "$WORK/clone.git" rev-list -n1 --all)
if git -C "$WORK/clone.git" -c http.extraHeader="Authorization: Bearer $READ" push "$REMOTE" \
        "$some_commit:refs/heads/denied" 2> "$WORK/push.err"; then
    echo "push with a read token succeeded: wrong" >&2; exit 1
fi
sed 's/^/  git: /' "$WORK/push.err"
grep -q "403" "$WORK/push.err" || { echo "expected git to be refused with 403" >&2; exit 1; }

step "done: $NAMESPACE/$REPO at $REMOTE"
