from artifactd import Artifacts

with Artifacts("agents") as art:                      # credentials: `artifactd login`, or ARTIFACTD_* / CLOUDFLARE_*
    created = art.create("agent-42", description="one agent's workspace")
    print(created.remote)                             # git push here with created.token (write, 24 h)
    repo = art.get("agent-42")
    read = repo.create_token("read", ttl=3600)        # for a worker that may only clone and fetch
    print(read.scope, read.expires_at, repo.list_tokens().total)
    print(repo.revoke_token(read.plaintext), art.delete("agent-42"))
