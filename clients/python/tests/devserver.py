"""Starts a real `tenant-vault dev` on a free port with a temporary data dir, for the
conformance suite. Binary: $TENANT_VAULT_BIN, else ${CARGO_TARGET_DIR:-<repo>/target}/release/tenant-vault
(built with `cargo build --release` when missing)."""

import json
import os
import random
import shutil
import signal
import string
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def server_binary() -> str:
    if os.environ.get("TENANT_VAULT_BIN"):
        return os.environ["TENANT_VAULT_BIN"]
    target = os.path.join(REPO, os.environ.get("CARGO_TARGET_DIR", "target"))
    binary = os.path.join(target, "release", "tenant-vault")
    if not os.path.exists(binary):
        subprocess.run(["cargo", "build", "--release", "--bin", "tenant-vault"], cwd=REPO, check=True)
    return binary


def _http(method, url, token=None, body=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class DevServer:
    def __init__(self):
        self.data_dir = None
        self.proc = None
        self.output = []
        self.addr = None
        self.admin_token = None

    def start(self):
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="tv-conformance-")
            os.chmod(self.data_dir, 0o755)  # the postgres user (when run as root) must reach it
        env_file = os.path.join(self.data_dir, "dev.env")
        if os.path.exists(env_file):
            os.remove(env_file)
        env = {k: v for k, v in os.environ.items()
               if k != "DATABASE_URL" and not k.startswith("INFISICAL_") and not k.startswith("TENANT_VAULT_")}
        env["TENANT_VAULT_LOG"] = "info"
        self.proc = subprocess.Popen(
            [server_binary(), "dev", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        proc = self.proc
        threading.Thread(target=lambda: self.output.extend(iter(proc.stdout.readline, b"")), daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("tenant-vault dev exited early:\n" + self._tail())
            if time.monotonic() > deadline:
                raise RuntimeError("tenant-vault dev did not become ready:\n" + self._tail())
            if os.path.exists(env_file):
                with open(env_file) as f:
                    env_vars = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
                self.addr = env_vars.get("TENANT_VAULT_ADDR")
                self.admin_token = env_vars.get("TENANT_VAULT_ADMIN_TOKEN")
                try:
                    if _http("GET", self.addr + "/readyz", timeout=2)[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.1)

    def output_text(self):
        return b"".join(list(self.output)).decode("utf-8", "replace")

    def _tail(self):
        return b"".join(self.output).decode("utf-8", "replace")[-3000:]

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def admin(self, method, path, body=None):
        status, _, raw = _http(method, self.addr + path, self.admin_token, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {raw[:200]!r}")
        return json.loads(raw) if raw else {}

    def tenant_with_token(self, slug):
        self.admin("POST", "/v1/admin/tenants", {"slug": slug, "name": slug})
        return self.admin("POST", f"/v1/admin/tenants/{slug}/tokens", {"description": "conformance"})["token"]

    def service_token(self, tenants, scopes=None, key_pattern=None):
        """A service token for the given tenant slugs (or "*")."""
        body = {"tenants": tenants, "description": "conformance"}
        if scopes is not None:
            body["scopes"] = scopes
        if key_pattern is not None:
            body["key_pattern"] = key_pattern
        return self.admin("POST", "/v1/admin/service-tokens", body)["token"]

    def raw(self, method, path, token, body=None):
        status, _, raw = _http(method, self.addr + path, token, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {raw[:200]!r}")
        return json.loads(raw) if raw else {}

    def features(self):
        """Which optional server features the running server has."""
        out = set()
        slug = "cf-probe-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        token = self.tenant_with_token(slug)
        import http.client
        from urllib.parse import urlsplit
        u = urlsplit(self.addr)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}",
                                                       "Accept": "text/event-stream"})
            if conn.getresponse().status not in (404, 405):
                out.add("events")
        finally:
            conn.close()
        status, _, _ = _http("POST", self.addr + "/v1/secrets/batch-get", token,
                             {"items": [{"tenant": slug, "key": "PROBE"}]})
        if status not in (404, 405):
            out.add("batch_get")
        _, headers, _ = _http("GET", f"{self.addr}/v1/tenants/{slug}/secrets/PROBE", token)
        if any(k.lower() == "ratelimit-policy" for k in headers):
            out.add("rate_limits")
        # An empty body is a 400 where service tokens exist; an older server has no such route (404).
        status, _, _ = _http("POST", self.addr + "/v1/admin/service-tokens", self.admin_token, {})
        if status not in (404, 405):
            out.add("service_tokens")
        return out
