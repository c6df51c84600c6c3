"""How much authentication costs per REST request: the bootstrap API token, a user API
token with policies, and an OAuth access token, each on ``GET .../namespaces`` (the
cheapest authenticated route), sequentially over keep-alive.

    .venv/bin/python -m bench.identity_auth [--requests 500] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from artifactd.testing import ServerProcess, temporary_database
from artifactd.testing.identity import new_user, oauth_login


def measure(srv: ServerProcess, token: str, n: int) -> tuple[float, float]:
    times = []
    with srv.api(token) as c:
        c.get("/namespaces").raise_for_status()
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get("/namespaces")
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, temporary_database(args.database_url) as url:
        srv = ServerProcess(Path(d) / "data", database_url=url).start()
        try:
            email, password = new_user(srv)
            with httpx.Client(base_url=srv.base_url + "/client/v4",
                              headers={"Authorization": f"Bearer {srv.api_token}"}) as c:
                user_tok = c.post("/user/tokens", json={"name": "bench", "policies": [{
                    "effect": "allow", "permission_groups": [{"name": "Artifacts Read"}],
                    "resources": {f"com.cloudflare.api.account.{srv.account_id}": "*"}}],
                    "condition": {"request_ip": {"in": ["127.0.0.0/8"]}}}).json()["result"]["value"]
            oauth = oauth_login(srv, email, password, scope="artifacts:read")["access_token"]
            store = "PostgreSQL" if url else "SQLite"
            print(f"{args.requests} sequential GET /namespaces per credential, {store}, 1 server process")
            for label, tok in (("bootstrap API token", srv.api_token), ("user API token + IP rule", user_tok),
                               ("OAuth access token", oauth)):
                p50, p95 = measure(srv, tok, args.requests)
                print(f"  {label:28s} p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
