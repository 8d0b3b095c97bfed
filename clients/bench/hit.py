"""Client-side cache hit latency of the Python client: 1,000 tenants x 10 keys cached (primed
from a local stub server), then timed get calls in random order."""

import json
import os
import platform
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python", "src"))
from tenant_vault import SecretsClient  # noqa: E402

TENANTS, KEYS, CALLS = 1000, 10, int(os.environ.get("CALLS", "200000"))


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"key": self.path.rsplit("/", 1)[-1], "value": "v" * 40, "version": 1,
                           "updated_at": "2026-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
threading.Thread(target=srv.serve_forever, daemon=True).start()
c = SecretsClient(f"http://127.0.0.1:{srv.server_address[1]}", "tvt_bench_x", events=False)
pairs = [(f"tenant-{t}", f"KEY_{k}") for t in range(TENANTS) for k in range(KEYS)]
for t, k in pairs:
    c.get(t, k)
order = [random.choice(pairs) for _ in range(CALLS)]
ns = []
clock = time.perf_counter_ns
get = c.get
for t, k in order:
    a = clock()
    get(t, k)
    ns.append(clock() - a)
a = clock()
for t, k in order:
    get(t, k)
mean = (clock() - a) / CALLS
ns.sort()
reqs = c.stats()["requests"]
c.close()
srv.shutdown()
assert reqs == len(pairs), f"expected only the {len(pairs)} priming requests, saw {reqs}"
print(json.dumps({"lang": "python", "runtime": f"CPython {platform.python_version()}", "cached": len(pairs),
                  "calls": CALLS, "p50_ns": ns[CALLS // 2], "p99_ns": ns[int(CALLS * 0.99)], "mean_ns": round(mean)}))
