// Starts a real `tenant-vault dev` on a free port with a temporary data dir, for the
// conformance suite. Binary: $TENANT_VAULT_BIN, else ${CARGO_TARGET_DIR:-<repo>/target}/release/tenant-vault
// (built with `cargo build --release` when missing).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, chmodSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export function serverBinary() {
  if (process.env.TENANT_VAULT_BIN) return process.env.TENANT_VAULT_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, "target");
  const bin = join(target, "release", "tenant-vault");
  if (!existsSync(bin)) {
    const r = spawnSync("cargo", ["build", "--release", "--bin", "tenant-vault"], { cwd: repo, stdio: "inherit" });
    if (r.status !== 0) throw new Error("cargo build --release failed");
  }
  return bin;
}

export class DevServer {
  constructor() {
    this.dataDir = null;
    this.proc = null;
    this.output = "";
    this.addr = null;
    this.adminToken = null;
  }

  async start() {
    if (!this.dataDir) {
      this.dataDir = mkdtempSync(join(tmpdir(), "tv-conformance-"));
      chmodSync(this.dataDir, 0o755); // the postgres user (when run as root) must reach it
    }
    rmSync(join(this.dataDir, "dev.env"), { force: true });
    const env = { ...process.env };
    // A clean environment, but rate limits may be set by the caller (the propagation bench).
    for (const k of Object.keys(env)) if (k === "DATABASE_URL" || k.startsWith("INFISICAL_") || (k.startsWith("TENANT_VAULT_") && !k.startsWith("TENANT_VAULT_RATE_LIMIT_"))) delete env[k];
    env.TENANT_VAULT_LOG = "info";
    this.proc = spawn(serverBinary(), ["dev", "--data-dir", this.dataDir, "--listen", "127.0.0.1:0"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise((r) => this.proc.once("exit", r));
    this.exited = exited;
    this.proc.stdout.on("data", (d) => (this.output += d));
    this.proc.stderr.on("data", (d) => (this.output += d));
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`tenant-vault dev exited early:\n${this.output.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`tenant-vault dev did not become ready:\n${this.output.slice(-3000)}`);
      const envFile = join(this.dataDir, "dev.env");
      if (existsSync(envFile)) {
        const vars = Object.fromEntries(
          readFileSync(envFile, "utf8")
            .split("\n")
            .filter((l) => l.includes("="))
            .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
        );
        this.addr = vars.TENANT_VAULT_ADDR;
        this.adminToken = vars.TENANT_VAULT_ADMIN_TOKEN;
        try {
          const r = await fetch(`${this.addr}/readyz`);
          if (r.status === 200) return;
        } catch {
          /* not listening yet */
        }
      }
      await sleep(100);
    }
  }

  get running() {
    return this.proc !== null && this.proc.exitCode === null;
  }

  async stop() {
    if (!this.running) return;
    this.proc.kill("SIGTERM");
    const done = await Promise.race([this.exited.then(() => true), sleep(20_000).then(() => false)]);
    if (!done) {
      this.proc.kill("SIGKILL");
      await this.exited;
    }
    this.proc = null;
  }

  async cleanup() {
    await this.stop();
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  async admin(method, path, body) {
    const r = await fetch(this.addr + path, {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : {};
  }

  async tenantWithToken(slug) {
    await this.admin("POST", "/v1/admin/tenants", { slug, name: slug });
    return (await this.admin("POST", `/v1/admin/tenants/${slug}/tokens`, { description: "conformance" })).token;
  }

  /** A service token for the given tenant slugs (or "*"). */
  async serviceToken(tenants, scopes, keyPattern) {
    const body = { tenants, description: "conformance" };
    if (scopes !== undefined) body.scopes = scopes;
    if (keyPattern !== undefined) body.key_pattern = keyPattern;
    return (await this.admin("POST", "/v1/admin/service-tokens", body)).token;
  }

  async raw(method, path, token, body) {
    const r = await fetch(this.addr + path, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
    return text ? JSON.parse(text) : {};
  }

  /** Which optional server features the running server has. */
  async features() {
    const out = new Set();
    const slug = `cf-probe-${Math.random().toString(36).slice(2, 8)}`;
    const token = await this.tenantWithToken(slug);
    const ac = new AbortController();
    try {
      const r = await fetch(`${this.addr}/v1/events`, { headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" }, signal: ac.signal });
      if (r.status !== 404 && r.status !== 405) out.add("events");
    } finally {
      ac.abort();
    }
    const b = await fetch(`${this.addr}/v1/secrets/batch-get`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ tenant: slug, key: "PROBE" }] }),
    });
    await b.text();
    if (b.status !== 404 && b.status !== 405) out.add("batch_get");
    const g = await fetch(`${this.addr}/v1/tenants/${slug}/secrets/PROBE`, { headers: { authorization: `Bearer ${token}` } });
    await g.text();
    if (g.headers.has("ratelimit-policy")) out.add("rate_limits");
    // An empty body is a 400 where service tokens exist; an older server has no such route (404).
    const st = await fetch(`${this.addr}/v1/admin/service-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.adminToken}`, "content-type": "application/json" },
      body: "{}",
    });
    await st.text();
    if (st.status !== 404 && st.status !== 405) out.add("service_tokens");
    return out;
  }
}
