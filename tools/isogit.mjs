#!/usr/bin/env node
// Minimal isomorphic-git driver for exercising artifactd's Git smart-HTTP endpoint
// the way Cloudflare's isomorphic-git example does.
//
// Run it with the Node 22 from tools/ (tools/node22 tools/isogit.mjs ...) or any
// Node >= 18 that can resolve tools/node_modules/isomorphic-git.
//
//   isogit.mjs clone     <url> <dir> <token> [--ref BRANCH] [--depth N] [--no-single-branch] [--no-checkout]
//   isogit.mjs push      <dir> <url> <token> [ref] [--remote-ref REF] [--force] [--delete]
//                        (ref = local branch, default the current one; --delete deletes
//                         --remote-ref (default: same name as ref) and still needs a local ref)
//   isogit.mjs fetch     <dir> <url> <token> [ref] [--depth N]
//   isogit.mjs ls-remote <url> <token> [--protocol 1|2]
//   isogit.mjs commit    <dir> <file> <content> [--message MSG] [--branch B]   (local helper, no network)
//
// Auth (applies to clone/push/fetch/ls-remote):
//   --auth basic   (default) onAuth returns {username: 'x', password: <token>}, i.e. the
//                  request is first sent without credentials, and after the server's
//                  401 it is retried with "Authorization: Basic base64(x:<token>)".
//   --auth bearer  every request carries "Authorization: Bearer <token>" from the start
//                  (onAuth returns the same header if the server still answers 401).
//   --user NAME    username for basic auth (default "x"; Artifacts ignores it).
//   token "-" or ""  -> no credentials at all.
// The environment variable ISOGIT_AUTH=basic|bearer sets the default mode.
//
// Exit status: 0 on success; 1 on any failure (error printed to stderr, including the
// HTTP status and response body isomorphic-git saw); 2 on bad usage.
// Machine-readable result: one JSON line on stdout.

import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
let git, http
try {
  git = require(path.join(here, 'node_modules/isomorphic-git/index.cjs'))
  http = require(path.join(here, 'node_modules/isomorphic-git/http/node/index.cjs'))
} catch (e) {
  console.error(`isogit: cannot load isomorphic-git from ${here}/node_modules (run tools/install-node-tools.sh): ${e.message}`)
  process.exit(2)
}

function usage(msg) {
  if (msg) console.error(`isogit: ${msg}`)
  console.error(`usage:
  isogit.mjs clone     <url> <dir> <token> [--ref BRANCH] [--depth N] [--no-single-branch] [--no-checkout]
  isogit.mjs push      <dir> <url> <token> [ref] [--remote-ref REF] [--force] [--delete]
  isogit.mjs fetch     <dir> <url> <token> [ref] [--depth N]
  isogit.mjs ls-remote <url> <token> [--protocol 1|2]
  isogit.mjs commit    <dir> <file> <content> [--message MSG] [--branch B]
common: --auth basic|bearer (default basic, or $ISOGIT_AUTH)  --user NAME  --verbose`)
  process.exit(2)
}

// ---- argument parsing: positionals + --flag [value] ----
const BOOL_FLAGS = new Set(['force', 'delete', 'no-single-branch', 'no-checkout', 'verbose'])
function parseArgs(argv) {
  const pos = []
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      let [k, v] = a.slice(2).split(/=(.*)/s, 2)
      if (v === undefined) {
        if (BOOL_FLAGS.has(k)) v = true
        else if (i + 1 < argv.length) v = argv[++i]
        else usage(`--${k} needs a value`)
      }
      opts[k] = v
    } else {
      pos.push(a)
    }
  }
  return { pos, opts }
}

function authOptions(token, opts) {
  const mode = String(opts.auth || process.env.ISOGIT_AUTH || 'basic').toLowerCase()
  const username = opts.user || 'x'
  if (token === undefined || token === '' || token === '-') return { headers: {} }
  let failures = 0
  // Returning {cancel: true} from onAuthFailure makes isomorphic-git stop retrying
  // and surface the 401 as an error instead of looping.
  const onAuthFailure = (url, auth) => {
    failures++
    if (opts.verbose) console.error(`isogit: server rejected credentials for ${url} (attempt ${failures})`)
    return { cancel: true }
  }
  if (mode === 'basic') {
    return {
      headers: {},
      onAuth: (url) => {
        if (opts.verbose) console.error(`isogit: onAuth(${url}) -> basic ${username}:<token>`)
        return { username, password: token }
      },
      onAuthFailure,
    }
  }
  if (mode === 'bearer') {
    const headers = { Authorization: `Bearer ${token}` }
    return {
      headers,
      onAuth: (url) => {
        if (opts.verbose) console.error(`isogit: onAuth(${url}) -> bearer header`)
        return { headers }
      },
      onAuthFailure,
    }
  }
  usage(`unknown --auth mode: ${mode}`)
}

function describeError(e) {
  const lines = [`${e.code || e.name || 'Error'}: ${e.message}`]
  if (e.data) {
    const d = e.data
    if (d.statusCode !== undefined) lines.push(`  HTTP ${d.statusCode} ${d.statusMessage || ''}`.trimEnd())
    if (d.response) lines.push(`  response: ${String(d.response).slice(0, 2000)}`)
    if (d.prettyDetails) lines.push(`  details: ${d.prettyDetails}`)
    if (d.result) lines.push(`  result: ${JSON.stringify(d.result)}`)
  }
  return lines.join('\n')
}

function onMessage(opts) {
  return opts.verbose ? (m) => process.stderr.write(`remote: ${m}`) : undefined
}

async function cmdClone(pos, opts) {
  const [url, dir, token] = pos
  if (!url || !dir) usage('clone needs <url> <dir> [<token>]')
  const auth = authOptions(token, opts)
  fs.mkdirSync(dir, { recursive: true })
  await git.clone({
    fs, http, dir, url,
    ref: opts.ref,
    singleBranch: !opts['no-single-branch'],
    depth: opts.depth ? Number(opts.depth) : undefined,
    noCheckout: !!opts['no-checkout'],
    onMessage: onMessage(opts),
    ...auth,
  })
  let head = null
  let branch = null
  try { head = await git.resolveRef({ fs, dir, ref: 'HEAD' }) } catch { /* empty repo */ }
  try { branch = await git.currentBranch({ fs, dir, fullname: false }) } catch { /* detached */ }
  return { ok: true, op: 'clone', dir, head, branch }
}

async function cmdPush(pos, opts) {
  const [dir, url, token, refArg] = pos
  if (!dir || !url) usage('push needs <dir> <url> [<token>] [ref]')
  const auth = authOptions(token, opts)
  const ref = refArg || opts.ref || (await git.currentBranch({ fs, dir, fullname: false })) || 'main'
  const result = await git.push({
    fs, http, dir, url,
    ref,
    remoteRef: opts['remote-ref'],
    force: !!opts.force,
    delete: !!opts.delete,
    onMessage: onMessage(opts),
    ...auth,
  })
  const refErrors = Object.entries(result.refs || {}).filter(([, v]) => !v.ok)
  if (!result.ok || result.error || refErrors.length) {
    const err = new Error(`push rejected: ${result.error || refErrors.map(([k, v]) => `${k}: ${v.error}`).join('; ')}`)
    err.code = 'PushRejected'
    err.data = { result }
    throw err
  }
  return { ok: true, op: 'push', dir, ref, refs: result.refs, headers: result.headers }
}

async function cmdFetch(pos, opts) {
  const [dir, url, token, ref] = pos
  if (!dir || !url) usage('fetch needs <dir> <url> [<token>] [ref]')
  const auth = authOptions(token, opts)
  const res = await git.fetch({
    fs, http, dir, url,
    ref,
    singleBranch: !!ref,
    depth: opts.depth ? Number(opts.depth) : undefined,
    tags: false,
    onMessage: onMessage(opts),
    ...auth,
  })
  return { ok: true, op: 'fetch', dir, fetchHead: res.fetchHead, defaultBranch: res.defaultBranch }
}

async function cmdLsRemote(pos, opts) {
  const [url, token] = pos
  if (!url) usage('ls-remote needs <url> [<token>]')
  const protocolVersion = opts.protocol ? Number(opts.protocol) : 2
  // getRemoteInfo2 gives the capability advertisement (and refs for v1 only);
  // listServerRefs gives the refs for either protocol version (v2: ls-refs).
  const info = await git.getRemoteInfo2({ http, url, protocolVersion, ...authOptions(token, opts) })
  const refs = await git.listServerRefs({ http, url, protocolVersion, symrefs: true, peelTags: true, ...authOptions(token, opts) })
  return { ok: true, op: 'ls-remote', protocolVersion: info.protocolVersion, capabilities: info.capabilities, refs }
}

async function cmdCommit(pos, opts) {
  const [dir, file, content] = pos
  if (!dir || !file || content === undefined) usage('commit needs <dir> <file> <content>')
  const branch = opts.branch || 'main'
  if (!fs.existsSync(path.join(dir, '.git'))) {
    fs.mkdirSync(dir, { recursive: true })
    await git.init({ fs, dir, defaultBranch: branch })
  }
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
  fs.writeFileSync(path.join(dir, file), content)
  await git.add({ fs, dir, filepath: file })
  const oid = await git.commit({
    fs, dir,
    message: opts.message || `update ${file}`,
    author: { name: 'isogit', email: 'isogit@example.invalid' },
  })
  return { ok: true, op: 'commit', dir, oid }
}

const COMMANDS = { clone: cmdClone, push: cmdPush, fetch: cmdFetch, 'ls-remote': cmdLsRemote, commit: cmdCommit }

async function main() {
  const [cmd, ...rest] = process.argv.slice(2)
  if (!cmd || cmd === '-h' || cmd === '--help') usage()
  const fn = COMMANDS[cmd]
  if (!fn) usage(`unknown command: ${cmd}`)
  const { pos, opts } = parseArgs(rest)
  try {
    const out = await fn(pos, opts)
    process.stdout.write(JSON.stringify(out) + '\n')
  } catch (e) {
    console.error(`isogit ${cmd} failed: ${describeError(e)}`)
    if (opts.verbose && e.stack) console.error(e.stack)
    process.exitCode = 1
  }
}

main()
