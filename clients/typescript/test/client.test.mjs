// Unit tests against a tiny local HTTP server: 429 + Retry-After, coalescing, the event
// stream dropping entries, stale serving, redaction.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { inspect } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { TenantVault, RateLimitedError, NotFoundError, UnavailableError, ForbiddenError, InvalidRequestError } from "../src/index.js";

const TOKEN = "tvt_0123abcd_SUPERSECRETTOKENTEXT";
const VALUE = "sk_live_unit_value_do_not_print";

// A fake tenant-vault: secrets in a map, optional 429s, an SSE stream the test pushes into.
async function fakeServer({ rateLimit = false, events = true, batch = false } = {}) {
  const secrets = new Map([["acme/STRIPE_KEY", { value: VALUE, version: 1 }]]);
  const streams = new Set();
  const seen = [];
  let gets = 0;
  let gate = null; // a promise GETs wait on (to hold concurrent misses)
  const srv = http.createServer(async (req, res) => {
    seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, lastEventId: req.headers["last-event-id"] });
    if (req.url === "/v1/events") {
      if (!events) return send(res, 404, { error: { code: "not_found", message: "no route" } });
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("event: ready\ndata: {}\n\n");
      streams.add(res);
      req.on("close", () => streams.delete(res));
      return;
    }
    if (req.url === "/v1/secrets/batch-get" && req.method === "POST") {
      if (!batch) return send(res, 404, { error: { code: "not_found", message: "no route" } });
      let raw = "";
      for await (const chunk of req) raw += chunk;
      const results = JSON.parse(raw).items.map(({ tenant, key }) => {
        const s = secrets.get(`${tenant}/${key}`);
        return s ? { tenant, key, value: s.value, version: s.version, updated_at: "2026-01-01T00:00:00Z", source: "cache" } : { tenant, key, error: { code: "secret_not_found", message: "no such secret" } };
      });
      return send(res, 200, { results });
    }
    const m = /^\/v1\/tenants\/([^/]+)\/secrets\/([^/]+)$/.exec(req.url);
    if (!m) return send(res, 404, { error: { code: "not_found", message: "no route" } });
    if (rateLimit) {
      res.setHeader("retry-after", "7");
      return send(res, 429, { error: { code: "rate_limited", message: "slow down" } });
    }
    if (m[1] !== "acme") return send(res, 403, { error: { code: "forbidden", message: "not your tenant" } });
    // A read-only token with a key pattern: writes and keys outside the pattern are 403 insufficient_scope.
    if (req.method === "PUT" || req.method === "DELETE" || m[2] === "SCOPED_KEY") {
      return send(res, 403, { error: { code: "insufficient_scope", message: "the token's scopes do not allow this" } });
    }
    if (req.method === "GET") {
      gets++;
      if (gate) await gate;
      const s = secrets.get(`${m[1]}/${m[2]}`);
      if (!s) return send(res, 404, { error: { code: "secret_not_found", message: "no such secret" } });
      res.setHeader("x-secret-source", "database");
      return send(res, 200, { key: m[2], value: s.value, version: s.version, updated_at: "2026-01-01T00:00:00Z" });
    }
    send(res, 405, { error: { code: "method_not_allowed", message: "no" } });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${srv.address().port}`;
  return {
    url,
    secrets,
    seen,
    get gets() {
      return gets;
    },
    hold() {
      let open;
      gate = new Promise((r) => (open = r));
      return () => {
        gate = null;
        open();
      };
    },
    push(text) {
      for (const s of streams) s.write(text);
    },
    dropStreams() {
      for (const s of streams) s.destroy();
      streams.clear();
    },
    async close() {
      for (const s of streams) s.destroy();
      srv.closeAllConnections?.();
      await new Promise((r) => srv.close(r));
    },
  };
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function capture() {
  const lines = [];
  return { lines, logger: (level, message, fields) => lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`) };
}

test("429 becomes RateLimitedError with Retry-After seconds", async () => {
  const srv = await fakeServer({ rateLimit: true });
  const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
  try {
    const err = await c.getSecret("acme", "STRIPE_KEY").then(() => null, (e) => e);
    assert.ok(err instanceof RateLimitedError);
    assert.equal(err.retryAfterSeconds, 7);
    assert.equal(err.status, 429);
    assert.equal(err.code, "rate_limited");
  } finally {
    c.close();
    await srv.close();
  }
});

test("typed errors: 404, 403, bad options", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
  try {
    await assert.rejects(c.getSecret("acme", "NOPE"), NotFoundError);
    await assert.rejects(c.getSecret("globex", "STRIPE_KEY"), ForbiddenError);
    assert.throws(() => new TenantVault({ url: srv.url, token: TOKEN, cacheTtlSeconds: 3601 }), InvalidRequestError);
    assert.throws(() => new TenantVault({ url: srv.url, token: TOKEN, cacheTtlSeconds: -1 }), InvalidRequestError);
  } finally {
    c.close();
    await srv.close();
  }
});

test("403 insufficient_scope (read-only or key-pattern token) is a ForbiddenError", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
  try {
    for (const call of [() => c.getSecret("acme", "SCOPED_KEY"), () => c.setSecret("acme", "STRIPE_KEY", "sk_never_written"), () => c.deleteSecret("acme", "STRIPE_KEY")]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof ForbiddenError, `${err}`);
        assert.equal(err.status, 403);
        assert.equal(err.code, "insufficient_scope");
        return true;
      });
    }
    // A key the token covers still reads.
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), srv.secrets.get("acme/STRIPE_KEY").value);
  } finally {
    c.close();
    await srv.close();
  }
});

test("concurrent misses of one key make one request; then hits make none", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
  try {
    const open = srv.hold();
    const reads = Array.from({ length: 20 }, () => c.getSecret("acme", "STRIPE_KEY"));
    await sleep(50);
    open();
    assert.deepEqual(await Promise.all(reads), Array(20).fill(VALUE));
    assert.equal(srv.gets, 1);
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE);
    assert.equal((await c.getSecretEntry("acme", "STRIPE_KEY")).source, "cache");
    assert.equal(srv.gets, 1);
    // The token goes in the Authorization header only.
    assert.equal(srv.seen[0].auth, `Bearer ${TOKEN}`);
  } finally {
    c.close();
    await srv.close();
  }
});

test("cacheTtlSeconds 0 disables the cache", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, cacheTtlSeconds: 0 });
  try {
    await c.getSecret("acme", "STRIPE_KEY");
    await c.getSecret("acme", "STRIPE_KEY");
    assert.equal(srv.gets, 2);
    assert.equal(c.streamState, "disabled");
  } finally {
    c.close();
    await srv.close();
  }
});

test("an event drops the entry at once; reset drops everything", async () => {
  const srv = await fakeServer();
  const log = capture();
  const seen = [];
  const c = new TenantVault({ url: srv.url, token: TOKEN, logger: log.logger, onEvent: (type, d) => seen.push([type, d]) });
  try {
    assert.equal(await c.waitForStream(2000), true);
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE);
    srv.secrets.set("acme/STRIPE_KEY", { value: "v2_value", version: 2 });
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE, "cached until the event");
    // An event split over writes, with CRLF line ends and a heartbeat comment.
    srv.push(": heartbeat\r\n");
    srv.push('id: 41\r\nevent: secret.written\r\ndata: {"tenant":"acme",');
    srv.push('"key":"STRIPE_KEY","version":2}\r\n\r\n');
    for (let i = 0; i < 100 && c.stats().entries > 0; i++) await sleep(10);
    assert.equal(c.stats().entries, 0);
    assert.deepEqual(seen.at(-1), ["secret.written", { tenant: "acme", key: "STRIPE_KEY", version: 2 }]);
    const s = await c.getSecretEntry("acme", "STRIPE_KEY");
    assert.equal(s.value, "v2_value");
    assert.equal(s.source, "server");
    assert.equal(c.stats().entries, 1);
    srv.push('id: 42\nevent: reset\ndata: {"reason":"lagged"}\n\n');
    for (let i = 0; i < 100 && c.stats().entries > 0; i++) await sleep(10);
    assert.equal(c.stats().entries, 0);
    // Other tenants and other tokens leave the entry; its tenant or our own token drop it.
    const refill = async () => {
      await c.getSecret("acme", "STRIPE_KEY");
      assert.equal(c.stats().entries, 1);
    };
    const dropsWith = async (event, data, drops) => {
      srv.push(`event: ${event}\ndata: ${data}\n\nevent: secret.deleted\ndata: {"tenant":"zz","key":"MARK"}\n\n`);
      await sleep(50);
      assert.equal(c.stats().entries, drops ? 0 : 1, `${event} ${data}`);
    };
    await refill();
    await dropsWith("tenant.deleted", '{"tenant":"globex"}', false);
    await dropsWith("token.revoked", '{"token_id":"99999999"}', false);
    await dropsWith("token.revoked", '{"token_id":"0123-ABCD"}', true);
    await refill();
    await dropsWith("tenant.deleted", '{"tenant":"acme"}', true);
  } finally {
    c.close();
    await srv.close();
  }
  assert.ok(!log.lines.join("\n").includes("v2_value"));
});

test("reconnects with Last-Event-ID after the stream drops", async () => {
  const srv = await fakeServer();
  const c = new TenantVault({ url: srv.url, token: TOKEN, logger: () => {} });
  try {
    assert.equal(await c.waitForStream(2000), true);
    srv.push('id: 77\nevent: secret.deleted\ndata: {"tenant":"acme","key":"X"}\n\n');
    await sleep(50);
    const streamsSeen = () => srv.seen.filter((s) => s.url === "/v1/events");
    const before = streamsSeen().length;
    srv.dropStreams();
    for (let i = 0; i < 300 && streamsSeen().length === before; i++) await sleep(10);
    assert.ok(streamsSeen().length > before, "reconnected");
    assert.equal(streamsSeen().at(-1).lastEventId, "77");
    assert.equal(await c.waitForStream(2000), true);
  } finally {
    c.close();
    await srv.close();
  }
});

test("a server without GET /v1/events: TTL only", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, logger: () => {} });
  try {
    assert.equal(await c.waitForStream(2000), false);
    assert.equal(c.streamState, "unsupported");
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE);
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE);
    assert.equal(srv.gets, 1);
  } finally {
    c.close();
    await srv.close();
  }
});

test("stale entry served while the server is unreachable, and said so; never beyond maxStaleSeconds", async () => {
  const srv = await fakeServer({ events: false });
  const log = capture();
  const c = new TenantVault({ url: srv.url, token: TOKEN, cacheTtlSeconds: 1, maxStaleSeconds: 60, logger: log.logger });
  const strict = new TenantVault({ url: srv.url, token: TOKEN, cacheTtlSeconds: 1, maxStaleSeconds: 0, events: false });
  try {
    assert.equal(await c.getSecret("acme", "STRIPE_KEY"), VALUE);
    assert.equal(await strict.getSecret("acme", "STRIPE_KEY"), VALUE);
    await srv.close();
    await sleep(1100);
    const s = await c.getSecretEntry("acme", "STRIPE_KEY");
    assert.equal(s.value, VALUE);
    assert.equal(s.source, "stale");
    assert.equal(s.stale, true);
    assert.equal(c.stats().stale, 1);
    assert.ok(log.lines.some((l) => l.startsWith("warn") && l.includes("stale")), "a warning says so");
    await assert.rejects(c.getSecret("acme", "OTHER"), UnavailableError);
    await assert.rejects(strict.getSecret("acme", "STRIPE_KEY"), UnavailableError);
    assert.ok(!log.lines.join("\n").includes(VALUE));
    assert.ok(!log.lines.join("\n").includes("SUPERSECRET"));
  } finally {
    c.close();
    strict.close();
  }
});

test("no value or token in printed objects and errors", async () => {
  const srv = await fakeServer({ events: false });
  const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
  try {
    const s = await c.getSecretEntry("acme", "STRIPE_KEY");
    const err = await c.getSecret("globex", "STRIPE_KEY").then(() => null, (e) => e);
    const shown = [inspect(c), String(c), JSON.stringify(c), inspect(s), String(s), JSON.stringify(s), inspect(err), String(err), JSON.stringify(err), inspect(c, { showHidden: true, depth: 5 })].join("\n");
    assert.ok(!shown.includes(VALUE), shown);
    assert.ok(!shown.includes("SUPERSECRET"), shown);
    assert.ok(shown.includes("[redacted]"));
    assert.equal(s.value, VALUE);
  } finally {
    c.close();
    await srv.close();
  }
});

test("getSecrets: one batch-get for the misses when the server has it, else key by key", async () => {
  for (const batch of [true, false]) {
    const srv = await fakeServer({ events: false, batch });
    srv.secrets.set("acme/OTHER_KEY", { value: "other_value", version: 4 });
    const c = new TenantVault({ url: srv.url, token: TOKEN, events: false });
    try {
      const got = await c.getSecrets("acme", ["STRIPE_KEY", "MISSING", "OTHER_KEY"]);
      assert.deepEqual({ ...got }, { STRIPE_KEY: VALUE, OTHER_KEY: "other_value" });
      assert.equal(c.stats().requests, batch ? 1 : 4, `batch=${batch}`);
      assert.equal((await c.getSecretEntry("acme", "OTHER_KEY")).source, "cache");
      // A server without batch-get is not asked again.
      await c.getSecrets("acme", ["STRIPE_KEY", "MISSING", "ALSO_MISSING"]);
      assert.equal(c.stats().requests, batch ? 2 : 6, `batch=${batch}`);
      assert.equal(srv.seen.filter((r) => r.url === "/v1/secrets/batch-get").length, batch ? 2 : 1);
    } finally {
      c.close();
      await srv.close();
    }
  }
});
