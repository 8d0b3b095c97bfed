// Two replicas on one database: replica A is `tenant-vault dev`, replica B is `tenant-vault serve`
// on the same PostgreSQL and Infisical (from A's dev.env). A TypeScript client subscribes to
// B's GET /v1/events; each round PUTs a new value through A and times until the client applied
// the secret.written event (its cache entry dropped). Then 1,000 event streams are opened on B
// and B's resident memory is read before and after.
//
//   node clients/bench/propagation.mjs            # ROUNDS=1000 STREAMS=1000 by default
//
// Needs a server with GET /v1/events; without it, prints why and exits 0.
import { spawn } from "node:child_process";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DevServer, serverBinary } from "../typescript/test/devserver.mjs";
import { TenantVault } from "../typescript/src/index.js";

const ROUNDS = Number(process.env.ROUNDS ?? 1000);
const STREAMS = Number(process.env.STREAMS ?? 1000);

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

// One token makes every round's reads and writes: the per-token rate limit would measure the
// limiter, not the propagation (A inherits these from this process's environment).
const NO_RATE_LIMITS = { TENANT_VAULT_RATE_LIMIT_TOKEN_RPS: "0", TENANT_VAULT_RATE_LIMIT_TENANT_RPS: "0" };
Object.assign(process.env, NO_RATE_LIMITS);
const a = new DevServer();
let b = null;
const bDir = mkdtempSync(join(tmpdir(), "tv-replica-b-"));
try {
  await a.start();
  const env = Object.fromEntries(
    readFileSync(join(a.dataDir, "dev.env"), "utf8")
      .split("\n")
      .filter((l) => l.includes("="))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const port = await freePort();
  const bAddr = `http://127.0.0.1:${port}`;
  b = spawn(serverBinary(), ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", bDir, "--skip-migrations"], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: env.DATABASE_URL, INFISICAL_SITE_URL: env.INFISICAL_SITE_URL, INFISICAL_CLIENT_ID: env.INFISICAL_CLIENT_ID, INFISICAL_CLIENT_SECRET: env.INFISICAL_CLIENT_SECRET, INFISICAL_PROJECT_ID: env.INFISICAL_PROJECT_ID, INFISICAL_ENVIRONMENT: env.INFISICAL_ENVIRONMENT, TENANT_VAULT_LOG: "warn", ...NO_RATE_LIMITS },
    stdio: ["ignore", "inherit", "inherit"],
  });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${bAddr}/readyz`)).status === 200) break;
    } catch {
      /* not yet */
    }
    if (i > 600) throw new Error("replica B did not become ready");
    await sleep(100);
  }

  const token = await a.tenantWithToken("bench-prop");
  const probe = await fetch(`${bAddr}/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2000) }).catch(() => null);
  if (!probe || probe.status === 404 || probe.status === 405) {
    console.log(JSON.stringify({ bench: "propagation", skipped: "the server has no GET /v1/events" }));
    process.exitCode = 0;
  } else {
    probe.body?.cancel().catch(() => {});
    await a.raw("PUT", "/v1/tenants/bench-prop/secrets/ROTATING_KEY", token, { value: "v-0" });
    let waiter = null;
    const client = new TenantVault({
      url: bAddr,
      token,
      logger: () => {},
      onEvent: (type, d) => {
        if (type === "secret.written" && d.key === "ROTATING_KEY" && waiter && d.version === waiter.version) waiter.resolve(process.hrtime.bigint());
      },
    });
    if (!(await client.waitForStream(10000))) throw new Error("client stream not live");
    const ms = [];
    for (let i = 1; i <= ROUNDS; i++) {
      await client.getSecret("bench-prop", "ROTATING_KEY"); // cached
      const got = new Promise((resolve) => (waiter = { resolve, version: i + 1 }));
      const t0 = process.hrtime.bigint();
      await a.raw("PUT", "/v1/tenants/bench-prop/secrets/ROTATING_KEY", token, { value: `v-${i}` });
      const t1 = await Promise.race([got, sleep(5000).then(() => null)]);
      if (t1 === null) throw new Error(`round ${i}: no event within 5 s`);
      ms.push(Number(t1 - t0) / 1e6);
    }
    client.close();
    ms.sort((x, y) => x - y);

    // Memory with many open streams on replica B.
    const before = rssKiB(b.pid);
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    const reqs = [];
    let ready = 0;
    await Promise.all(
      Array.from({ length: STREAMS }, () =>
        new Promise((resolve, reject) => {
          const req = http.get(`${bAddr}/v1/events`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
            res.setEncoding("utf8");
            let seen = false;
            res.on("data", (chunk) => {
              if (!seen && chunk.includes("ready")) {
                seen = true;
                ready++;
                resolve();
              }
            });
            res.on("error", () => {});
          });
          req.on("error", reject);
          reqs.push(req);
        }),
      ),
    );
    await sleep(2000);
    const after = rssKiB(b.pid);
    for (const r of reqs) r.destroy();
    agent.destroy();
    console.log(
      JSON.stringify({
        bench: "propagation",
        rounds: ROUNDS,
        put_to_drop_ms: { p50: +pct(ms, 0.5).toFixed(2), p99: +pct(ms, 0.99).toFixed(2), max: +ms.at(-1).toFixed(2) },
        streams: ready,
        replica_b_rss_mib: { before: +(before / 1024).toFixed(1), with_streams: +(after / 1024).toFixed(1), per_stream_kib: +((after - before) / ready).toFixed(1) },
      }),
    );
  }
} finally {
  if (b && b.exitCode === null) {
    b.kill("SIGTERM");
    await Promise.race([new Promise((r) => b.once("exit", r)), sleep(20000)]);
    if (b.exitCode === null) b.kill("SIGKILL");
  }
  await a.cleanup();
  rmSync(bDir, { recursive: true, force: true });
}
