// Client-side cache hit latency of the TypeScript client: 1,000 tenants x 10 keys cached
// (primed from a local stub server), then timed getSecret calls in random order.
import http from "node:http";
import { TenantVault } from "../typescript/src/index.js";

const TENANTS = 1000, KEYS = 10, CALLS = Number(process.env.CALLS ?? 200000);
const srv = http.createServer((req, res) => {
  const key = req.url.split("/").pop();
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ key, value: "v".repeat(40), version: 1, updated_at: "2026-01-01T00:00:00Z" }));
});
await new Promise((r) => srv.listen(0, "127.0.0.1", r));
const c = new TenantVault({ url: `http://127.0.0.1:${srv.address().port}`, token: "tvt_bench_x", events: false });
const pairs = [];
for (let t = 0; t < TENANTS; t++) for (let k = 0; k < KEYS; k++) pairs.push([`tenant-${t}`, `KEY_${k}`]);
for (let i = 0; i < pairs.length; i += 50) await Promise.all(pairs.slice(i, i + 50).map(([t, k]) => c.getSecret(t, k)));
const order = Array.from({ length: CALLS }, () => pairs[Math.floor(Math.random() * pairs.length)]);
for (const [t, k] of order.slice(0, 20000)) await c.getSecret(t, k); // warm up the JIT
const ns = new Float64Array(CALLS);
for (let i = 0; i < CALLS; i++) {
  const [t, k] = order[i];
  const a = process.hrtime.bigint();
  await c.getSecret(t, k);
  ns[i] = Number(process.hrtime.bigint() - a);
}
const a = process.hrtime.bigint();
for (let i = 0; i < CALLS; i++) await c.getSecret(order[i][0], order[i][1]);
const mean = Number(process.hrtime.bigint() - a) / CALLS;
ns.sort();
const reqs = c.stats().requests;
c.close();
srv.close();
if (reqs !== pairs.length) throw new Error(`expected only the ${pairs.length} priming requests, saw ${reqs}`);
console.log(JSON.stringify({ lang: "typescript", runtime: `node ${process.version}`, cached: pairs.length, calls: CALLS, p50_ns: ns[Math.floor(CALLS * 0.5)], p99_ns: ns[Math.floor(CALLS * 0.99)], mean_ns: Math.round(mean) }));
