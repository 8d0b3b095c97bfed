// Runs clients/conformance/*.json against a real `tenant-vault dev` (see ../../conformance/README.md).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { inspect } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { TenantVault, TenantVaultError, RateLimitedError } from "../src/index.js";
import { DevServer } from "./devserver.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "../../conformance");
const scenarios = readdirSync(dir)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));

const server = new DevServer();
let features = null;

before(async () => {
  await server.start();
  features = await server.features();
  console.log(`conformance: server features: ${[...features].join(", ") || "(none)"}`);
});
after(async () => {
  await server.cleanup();
});

for (const sc of scenarios) {
  test(`conformance: ${sc.name}`, async (t) => {
    if (!server.running) {
      await server.start();
      features = await server.features();
    }
    const missing = (sc.requires ?? []).filter((f) => !features.has(f));
    if (missing.length > 0) {
      const reason = `server lacks ${missing.join(", ")}`;
      console.log(`conformance: skipping ${sc.name}: ${reason}`);
      t.skip(reason);
      return;
    }
    await runScenario(sc);
  });
}

async function runScenario(sc) {
  const suffix = Math.random().toString(36).slice(2, 8);
  const slugs = {};
  const tokens = {};
  for (const name of sc.tenants ?? []) {
    slugs[name] = `cf-${suffix}-${name}`;
    tokens[name] = await server.tenantWithToken(slugs[name]);
  }
  const ctx = { slugs, tokens, clients: {}, logs: [], errors: [], lastSecret: null, values: new Set() };
  try {
    for (const [i, step] of sc.steps.entries()) {
      try {
        await runStep(ctx, step);
      } catch (err) {
        err.message = `step ${i + 1} (${step.op}): ${err.message}`;
        throw err;
      }
    }
    checkLogs(ctx);
  } finally {
    for (const c of Object.values(ctx.clients)) c.close();
  }
}

function secretsOf(ctx) {
  // The token's secret part is what must never leak; token ids may appear.
  return [...ctx.values, ...Object.values(ctx.tokens)];
}

function checkLogs(ctx) {
  const text = ctx.logs.join("\n");
  for (const s of secretsOf(ctx)) assert.ok(!text.includes(s), "a value or token appears in the captured client log");
  for (const s of secretsOf(ctx)) assert.ok(!server.output.includes(s), "a value or token appears in the server's output");
}

async function runStep(ctx, step) {
  const slug = (name) => ctx.slugs[name] ?? name;
  const client = () => {
    const c = ctx.clients[step.client];
    assert.ok(c, `no client ${step.client}`);
    return c;
  };
  switch (step.op) {
    case "write":
      ctx.values.add(step.value);
      await server.raw("PUT", `/v1/tenants/${slug(step.tenant)}/secrets/${step.key}`, ctx.tokens[step.tenant], { value: step.value });
      return;
    case "remove":
      await server.raw("DELETE", `/v1/tenants/${slug(step.tenant)}/secrets/${step.key}`, ctx.tokens[step.tenant]);
      return;
    case "service_token": {
      const tenants = step.tenants === "*" ? "*" : step.tenants.map(slug);
      ctx.tokens[step.name] = await server.serviceToken(tenants, step.scopes, step.key_pattern);
      return;
    }
    case "client": {
      const token = step.token === "invalid" ? "tvt_00000000000000000000000000000000_notarealtoken" : ctx.tokens[step.token];
      ctx.clients[step.name] = new TenantVault({
        url: server.addr,
        token,
        cacheTtlSeconds: step.cache_ttl_seconds ?? 60,
        maxStaleSeconds: step.max_stale_seconds ?? 300,
        events: step.events ?? true,
        logger: (level, message, fields) => ctx.logs.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`),
      });
      return;
    }
    case "wait_stream_ready":
      assert.equal(await client().waitForStream(step.within_ms ?? 5000), true, `stream not live (state ${client().streamState})`);
      return;
    case "get":
      return expectOutcome(ctx, step.expect, () => client().getSecretEntry(slug(step.tenant), step.key), (s) => {
        ctx.lastSecret = s;
        if ("value" in step.expect) assert.equal(s.value, step.expect.value, "value");
        if ("version" in step.expect) assert.equal(s.version, step.expect.version, "version");
        if ("source" in step.expect) assert.equal(s.source, step.expect.source, "source");
      });
    case "get_concurrent": {
      const values = await Promise.all(Array.from({ length: step.count }, () => client().getSecret(slug(step.tenant), step.key)));
      assert.deepEqual(values, Array(step.count).fill(step.expect.value));
      return;
    }
    case "get_many":
      return expectOutcome(ctx, step.expect, () => client().getSecrets(slug(step.tenant), step.keys), (m) => {
        assert.deepEqual({ ...m }, step.expect.values);
      });
    case "set":
      ctx.values.add(step.value);
      return expectOutcome(ctx, step.expect, () => client().setSecret(slug(step.tenant), step.key, step.value, step.cas === undefined ? {} : { cas: step.cas }), (r) => {
        if ("version" in step.expect) assert.equal(r.version, step.expect.version, "version");
      });
    case "delete":
      return expectOutcome(ctx, step.expect, () => client().deleteSecret(slug(step.tenant), step.key), () => {});
    case "list":
      return expectOutcome(ctx, step.expect, () => client().listSecrets(slug(step.tenant)), (list) => {
        assert.deepEqual(list.map((s) => s.key).sort(), step.expect.keys);
      });
    case "requests":
      assert.equal(client().stats().requests, step.expect.count, "requests sent");
      return;
    case "eventually": {
      const deadline = Date.now() + step.within_ms;
      for (;;) {
        try {
          await runStep(ctx, step.step);
          return;
        } catch (err) {
          if (Date.now() > deadline) throw new Error(`not within ${step.within_ms} ms: ${err.message}`);
        }
        await sleep(10);
      }
    }
    case "burst": {
      for (let i = 0; i < step.max_requests; i++) {
        try {
          await client().getSecret(slug(step.tenant), step.key);
        } catch (err) {
          ctx.errors.push(err);
          assert.equal(errorName(err), step.expect.error);
          if (err instanceof RateLimitedError) assert.ok(err.retryAfterSeconds >= (step.expect.min_retry_after_seconds ?? 1), "retryAfterSeconds");
          return;
        }
      }
      assert.fail(`no error after ${step.max_requests} requests`);
      return;
    }
    case "stop_server":
      await server.stop();
      return;
    case "sleep":
      await sleep(step.ms);
      return;
    case "check_redaction": {
      const shown = [inspect(client()), String(client()), JSON.stringify(client())];
      if (ctx.lastSecret) shown.push(inspect(ctx.lastSecret), String(ctx.lastSecret), JSON.stringify(ctx.lastSecret));
      for (const e of ctx.errors) shown.push(inspect(e), String(e), e.message, JSON.stringify(e));
      const text = shown.join("\n");
      for (const s of secretsOf(ctx)) assert.ok(!text.includes(s), "a value or token appears in a printed client, secret or error");
      return;
    }
    case "check_logs":
      checkLogs(ctx);
      return;
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

function errorName(err) {
  assert.ok(err instanceof TenantVaultError, `not a TenantVaultError: ${err}`);
  return err.name.replace(/Error$/, "");
}

async function expectOutcome(ctx, expect, call, check) {
  let result;
  try {
    result = await call();
  } catch (err) {
    ctx.errors.push(err);
    if (!expect.error) throw err;
    assert.equal(errorName(err), expect.error, `error kind (${err.message})`);
    return;
  }
  assert.ok(!expect.error, `expected ${expect.error}, got a result`);
  check(result);
}
