"""Unit tests against a tiny local HTTP server: 429 + Retry-After, coalescing, the event
stream dropping entries, stale serving, redaction."""

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tenant_vault import (AsyncSecretsClient, Forbidden, InvalidRequest, NotFound, RateLimited,
                          SecretsClient, Unavailable)

TOKEN = "tvt_0123abcd_SUPERSECRETTOKENTEXT"
VALUE = "sk_live_unit_value_do_not_print"


class Fake:
    """A fake tenant-vault: secrets in a dict, optional 429s, an SSE stream the test pushes into."""

    def __init__(self, rate_limit=False, events=True, batch=False):
        self.secrets = {("acme", "STRIPE_KEY"): (VALUE, 1)}
        self.rate_limit, self.events, self.batch = rate_limit, events, batch
        self.gets = 0
        self.seen = []
        self.gate = None
        self.streams = []
        self.conns = []
        self.lock = threading.Lock()
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.conns.append(self.connection)

            def send_json(self, status, body, headers=()):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                fake.seen.append((self.path, self.headers.get("Authorization"), None))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                if self.path != "/v1/secrets/batch-get" or not fake.batch:
                    return self.send_json(404, {"error": {"code": "not_found", "message": "no route"}})
                results = []
                for item in body["items"]:
                    s = fake.secrets.get((item["tenant"], item["key"]))
                    results.append(dict(item, value=s[0], version=s[1], updated_at="2026-01-01T00:00:00Z", source="cache")
                                   if s else dict(item, error={"code": "secret_not_found", "message": "no such secret"}))
                self.send_json(200, {"results": results})

            def insufficient_scope(self):
                self.send_json(403, {"error": {"code": "insufficient_scope",
                                               "message": "the token's scopes do not allow this"}})

            def do_PUT(self):  # a read-only token: every write is refused
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.insufficient_scope()

            def do_DELETE(self):
                self.insufficient_scope()

            def do_GET(self):
                fake.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Last-Event-ID")))
                if self.path == "/v1/events":
                    if not fake.events:
                        return self.send_json(404, {"error": {"code": "not_found", "message": "no route"}})
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    ev = threading.Event()
                    with fake.lock:  # registered before "ready", so a push after it reaches us
                        fake.streams.append((self, ev))
                        self.wfile.write(b"event: ready\ndata: {}\n\n")
                        self.wfile.flush()
                    ev.wait(30)
                    self.close_connection = True
                    return
                parts = self.path.split("/")
                if fake.rate_limit:
                    return self.send_json(429, {"error": {"code": "rate_limited", "message": "slow down"}},
                                          [("Retry-After", "7")])
                if len(parts) != 6 or parts[1:3] != ["v1", "tenants"]:
                    return self.send_json(404, {"error": {"code": "not_found", "message": "no route"}})
                tenant, key = parts[3], parts[5]
                if tenant != "acme":
                    return self.send_json(403, {"error": {"code": "forbidden", "message": "not your tenant"}})
                if key == "SCOPED_KEY":  # outside the token's key pattern
                    return self.insufficient_scope()
                with fake.lock:
                    fake.gets += 1
                if fake.gate is not None:
                    fake.gate.wait(5)
                s = fake.secrets.get((tenant, key))
                if s is None:
                    return self.send_json(404, {"error": {"code": "secret_not_found", "message": "no such secret"}})
                self.send_json(200, {"key": key, "value": s[0], "version": s[1], "updated_at": "2026-01-01T00:00:00Z"},
                               [("x-secret-source", "database")])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def push(self, text):
        with self.lock:
            for h, _ in self.streams:
                h.wfile.write(text.encode())
                h.wfile.flush()

    def drop_streams(self):
        with self.lock:
            for _, ev in self.streams:
                ev.set()
            self.streams.clear()

    def close(self):
        self.drop_streams()
        self.httpd.shutdown()
        self.httpd.server_close()
        import socket
        with self.lock:
            for conn in self.conns:  # like a stopped server: kept-alive connections go too
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def logs():
    lines = []

    class H(logging.Handler):
        def emit(self, record):
            lines.append(f"{record.levelname} {record.getMessage()}")

    h = H(logging.DEBUG)
    logger = logging.getLogger("tenant_vault")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(h)
    logger.setLevel(old)


def wait_for(cond, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_429_is_rate_limited_with_retry_after():
    fake = Fake(rate_limit=True)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        with pytest.raises(RateLimited) as info:
            c.get("acme", "STRIPE_KEY")
        assert info.value.retry_after == 7
        assert info.value.status == 429
        assert info.value.code == "rate_limited"
    finally:
        c.close()
        fake.close()


def test_insufficient_scope_is_forbidden():
    """403 insufficient_scope (a read-only token, a key outside its pattern) is Forbidden."""
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        for call in (lambda: c.get("acme", "SCOPED_KEY"),
                     lambda: c.set("acme", "STRIPE_KEY", "sk_never_written"),
                     lambda: c.delete("acme", "STRIPE_KEY")):
            with pytest.raises(Forbidden) as info:
                call()
            assert info.value.status == 403
            assert info.value.code == "insufficient_scope"
        assert c.get("acme", "STRIPE_KEY") == fake.secrets[("acme", "STRIPE_KEY")][0]
    finally:
        c.close()
        fake.close()


def test_typed_errors_and_options():
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        with pytest.raises(NotFound):
            c.get("acme", "NOPE")
        with pytest.raises(Forbidden):
            c.get("globex", "STRIPE_KEY")
        with pytest.raises(InvalidRequest):
            SecretsClient(fake.url, TOKEN, cache_ttl_seconds=3601)
        with pytest.raises(InvalidRequest):
            SecretsClient(fake.url, TOKEN, cache_ttl_seconds=-1)
    finally:
        c.close()
        fake.close()


def test_concurrent_misses_make_one_request_then_hits_make_none():
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        fake.gate = threading.Event()
        results = []
        threads = [threading.Thread(target=lambda: results.append(c.get("acme", "STRIPE_KEY"))) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        fake.gate.set()
        for t in threads:
            t.join()
        assert results == [VALUE] * 20
        assert fake.gets == 1
        assert c.get_entry("acme", "STRIPE_KEY").source == "cache"
        assert fake.gets == 1
        assert fake.seen[0][1] == f"Bearer {TOKEN}"
    finally:
        c.close()
        fake.close()


def test_ttl_zero_disables_the_cache():
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, cache_ttl_seconds=0)
    try:
        c.get("acme", "STRIPE_KEY")
        c.get("acme", "STRIPE_KEY")
        assert fake.gets == 2
        assert c.stream_state == "disabled"
    finally:
        c.close()
        fake.close()


def test_event_drops_entry_and_reset_drops_all(logs):
    fake = Fake()
    c = SecretsClient(fake.url, TOKEN)
    try:
        assert c.wait_for_stream(2)
        assert c.get("acme", "STRIPE_KEY") == VALUE
        fake.secrets[("acme", "STRIPE_KEY")] = ("v2_value", 2)
        assert c.get("acme", "STRIPE_KEY") == VALUE  # cached until the event
        fake.push(": heartbeat\r\n")
        fake.push('id: 41\r\nevent: secret.written\r\ndata: {"tenant":"acme","key":"STRIPE_KEY","version":2}\r\n\r\n')
        assert wait_for(lambda: c.stats()["entries"] == 0)
        s = c.get_entry("acme", "STRIPE_KEY")
        assert (s.value, s.source, s.version) == ("v2_value", "server", 2)
        fake.push('id: 42\nevent: reset\ndata: {"reason":"lagged"}\n\n')
        assert wait_for(lambda: c.stats()["entries"] == 0)
        # Other tenants and other tokens leave the entry; its tenant or our own token drop it.
        for event, data, drops in [("tenant.deleted", '{"tenant":"globex"}', False),
                                   ("token.revoked", '{"token_id":"99999999"}', False),
                                   ("token.revoked", '{"token_id":"0123-ABCD"}', True),
                                   ("tenant.deleted", '{"tenant":"acme"}', True)]:
            c.get("acme", "STRIPE_KEY")
            assert c.stats()["entries"] == 1
            fake.push(f"event: {event}\ndata: {data}\n\n")
            time.sleep(0.1)
            assert c.stats()["entries"] == (0 if drops else 1), (event, data)
    finally:
        c.close()
        fake.close()
    assert "v2_value" not in "\n".join(logs)


def test_reconnects_with_last_event_id():
    fake = Fake()
    c = SecretsClient(fake.url, TOKEN)
    try:
        assert c.wait_for_stream(2)
        fake.push('id: 77\nevent: secret.deleted\ndata: {"tenant":"acme","key":"X"}\n\n')
        time.sleep(0.05)
        n = len([s for s in fake.seen if s[0] == "/v1/events"])
        fake.drop_streams()
        assert wait_for(lambda: len([s for s in fake.seen if s[0] == "/v1/events"]) > n, 5)
        assert [s for s in fake.seen if s[0] == "/v1/events"][-1][2] == "77", fake.seen
        assert c.wait_for_stream(2)
    finally:
        c.close()
        fake.close()


def test_server_without_events_means_ttl_only():
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN)
    try:
        assert not c.wait_for_stream(2)
        assert c.stream_state == "unsupported"
        c.get("acme", "STRIPE_KEY")
        c.get("acme", "STRIPE_KEY")
        assert fake.gets == 1
    finally:
        c.close()
        fake.close()


def test_stale_served_while_unreachable_and_said_so(logs):
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, cache_ttl_seconds=1, max_stale_seconds=60, events=False)
    strict = SecretsClient(fake.url, TOKEN, cache_ttl_seconds=1, max_stale_seconds=0, events=False)
    try:
        assert c.get("acme", "STRIPE_KEY") == VALUE
        assert strict.get("acme", "STRIPE_KEY") == VALUE
        fake.close()
        time.sleep(1.1)
        s = c.get_entry("acme", "STRIPE_KEY")
        assert (s.value, s.source, s.stale) == (VALUE, "stale", True)
        assert c.stats()["stale"] == 1
        assert any(l.startswith("WARNING") and "stale" in l for l in logs)
        with pytest.raises(Unavailable):
            c.get("acme", "OTHER")
        with pytest.raises(Unavailable):
            strict.get("acme", "STRIPE_KEY")
        text = "\n".join(logs)
        assert VALUE not in text and "SUPERSECRET" not in text
    finally:
        c.close()
        strict.close()


def test_no_value_or_token_in_printed_objects_and_errors():
    fake = Fake(events=False)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        s = c.get_entry("acme", "STRIPE_KEY")
        with pytest.raises(Forbidden) as info:
            c.get("globex", "STRIPE_KEY")
        shown = "\n".join([repr(c), str(c), repr(s), str(s), repr(info.value), str(info.value)])
        assert VALUE not in shown and "SUPERSECRET" not in shown
        assert "[redacted]" in shown
        assert s.value == VALUE
        with pytest.raises(TypeError):
            import pickle
            pickle.dumps(c)
    finally:
        c.close()
        fake.close()


def test_async_variant():
    fake = Fake(events=False)

    async def main():
        async with AsyncSecretsClient(fake.url, TOKEN, events=False) as c:
            assert await c.get("acme", "STRIPE_KEY") == VALUE
            assert await c.get("acme", "STRIPE_KEY") == VALUE
            with pytest.raises(NotFound):
                await c.get("acme", "NOPE")
            return c.stats()

    try:
        stats = asyncio.run(main())
        assert stats["hits"] == 1 and fake.gets == 2
    finally:
        fake.close()


@pytest.mark.parametrize("batch", [True, False])
def test_get_many_uses_batch_get_when_the_server_has_it(batch):
    fake = Fake(events=False, batch=batch)
    fake.secrets[("acme", "OTHER_KEY")] = ("other_value", 4)
    c = SecretsClient(fake.url, TOKEN, events=False)
    try:
        assert c.get_many("acme", ["STRIPE_KEY", "MISSING", "OTHER_KEY"]) == {"STRIPE_KEY": VALUE, "OTHER_KEY": "other_value"}
        assert c.stats()["requests"] == (1 if batch else 4)
        assert c.get_entry("acme", "OTHER_KEY").source == "cache"
        # A server without batch-get is not asked again.
        c.get_many("acme", ["STRIPE_KEY", "MISSING", "ALSO_MISSING"])
        assert c.stats()["requests"] == (2 if batch else 6)
        assert len([s for s in fake.seen if s[0] == "/v1/secrets/batch-get"]) == (2 if batch else 1)
    finally:
        c.close()
        fake.close()
