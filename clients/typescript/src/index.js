// tenant-vault client for Node 18+: built-in fetch, no runtime dependencies.
// Types: index.d.ts beside this file.
import { inspect } from "node:util";
import { performance } from "node:perf_hooks";

const REDACTED = "[redacted]";
const MAX_TTL_SECONDS = 3600; // the server's TENANT_VAULT_CACHE_TTL_SECS maximum
const BATCH_LIMIT = 100; // the server's default batch-get size
const SEP = "\u0000"; // cannot occur in a tenant slug or a secret key

/** Base class of every error this client throws. Never carries a value or a token. */
export class TenantVaultError extends Error {
  constructor(message, { status = 0, code = "", tenant, key, retryAfterSeconds } = {}) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    if (tenant !== undefined) this.tenant = tenant;
    if (key !== undefined) this.key = key;
    if (retryAfterSeconds !== undefined) this.retryAfterSeconds = retryAfterSeconds;
  }
}
/** 404: the secret (or tenant) does not exist. */
export class NotFoundError extends TenantVaultError {}
/** 403: the token may not do this (another tenant, missing scope). */
export class ForbiddenError extends TenantVaultError {}
/** 401: no token, or an unknown, revoked or expired one. */
export class UnauthenticatedError extends TenantVaultError {}
/** 409: check-and-set failed (`cas_conflict`). */
export class ConflictError extends TenantVaultError {}
/** 429: slow down; `retryAfterSeconds` comes from Retry-After. */
export class RateLimitedError extends TenantVaultError {}
/** The server could not be reached, timed out, or answered 502/503/504. */
export class UnavailableError extends TenantVaultError {}
/** 400, 413, 415: a bad name, value or request. */
export class InvalidRequestError extends TenantVaultError {}
/** Any other answer (500 `integrity_error`, ...). Never replaced by a stale value. */
export class ServerError extends TenantVaultError {}

/** One read: the value plus where it came from. Printing it never shows the value. */
export class Secret {
  #value;
  constructor(tenant, key, value, version, updatedAt, source, serverSource, ageSeconds) {
    this.tenant = tenant;
    this.key = key;
    this.#value = value;
    this.version = version;
    this.updatedAt = updatedAt;
    /** `server` (fetched now), `cache` (in-process hit) or `stale` (server unreachable). */
    this.source = source;
    /** The server's `x-secret-source` when it was fetched (`cache`, `database`, `infisical`). */
    this.serverSource = serverSource;
    /** Seconds since it was fetched from the server. */
    this.ageSeconds = ageSeconds;
  }
  get value() {
    return this.#value;
  }
  get stale() {
    return this.source === "stale";
  }
  toString() {
    return `Secret(${this.tenant}/${this.key} v${this.version} ${this.source} value=${REDACTED})`;
  }
  toJSON() {
    return { tenant: this.tenant, key: this.key, version: this.version, updatedAt: this.updatedAt, source: this.source, value: REDACTED };
  }
  [inspect.custom]() {
    return this.toString();
  }
}

function defaultLogger(level, message, fields) {
  if (level !== "warn" && level !== "error") return;
  if (fields && Object.keys(fields).length > 0) console.warn(`tenant-vault: ${message}`, fields);
  else console.warn(`tenant-vault: ${message}`);
}

// Token ids: the token text holds the uuid without dashes, events may carry it with them.
function normalizeId(id) {
  return typeof id === "string" && id ? id.replace(/-/g, "").toLowerCase() : null;
}

function checkName(what, s) {
  if (typeof s !== "string" || s.length === 0) throw new InvalidRequestError(`${what} must be a non-empty string`, { code: `invalid_${what}` });
}

function retryAfterSeconds(header) {
  if (!header) return 1;
  const n = Number(header);
  if (Number.isFinite(n)) return Math.max(1, Math.ceil(n));
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(1, Math.ceil((at - Date.now()) / 1000)) : 1;
}

/**
 * A tenant-vault client with an in-process cache kept fresh by the server's event stream.
 * One instance per process; call close() on shutdown.
 */
export class TenantVault {
  #url;
  #token;
  #tokenId;
  #ttlMs;
  #maxStaleMs;
  #timeoutMs;
  #maxEntries;
  #fetch;
  #log;
  #cache = new Map(); // tenant SEP key -> entry
  #inflight = new Map(); // tenant SEP key -> { promise, invalidated }
  #epoch = 0; // bumped on every invalidation; a batch result older than one is not cached
  #stats = { requests: 0, hits: 0, misses: 0, stale: 0 };
  #everLive = false; // the event stream has been live at least once
  #batchGet = undefined; // unknown until tried: true or false
  #closed = false;
  #stream = "disabled"; // disabled | connecting | live | down | unsupported | refused | closed
  #streamAbort = null;
  #streamWaiters = [];
  #wake = null;
  #lastEventId = null;
  #idleMs;
  #onEvent;

  constructor({ url, token, cacheTtlSeconds = 60, maxStaleSeconds = 300, events = true, timeoutMs = 10000, maxEntries = 100000, streamIdleTimeoutMs = 45000, logger, onEvent, fetch: fetchImpl } = {}) {
    if (typeof url !== "string" || !/^https?:\/\//.test(url)) throw new InvalidRequestError("url must be an http(s) URL", { code: "invalid_url" });
    if (typeof token !== "string" || token.length === 0) throw new InvalidRequestError("token must be a non-empty string", { code: "invalid_token" });
    if (!Number.isInteger(cacheTtlSeconds) || cacheTtlSeconds < 0 || cacheTtlSeconds > MAX_TTL_SECONDS) {
      throw new InvalidRequestError(`cacheTtlSeconds must be an integer from 0 (off) to ${MAX_TTL_SECONDS}`, { code: "invalid_option" });
    }
    if (!(maxStaleSeconds >= 0)) throw new InvalidRequestError("maxStaleSeconds must be 0 or more", { code: "invalid_option" });
    this.#url = url.replace(/\/+$/, "");
    this.#token = token;
    this.#tokenId = normalizeId(/^tvt_([^_]+)_/.exec(token)?.[1]);
    this.#ttlMs = cacheTtlSeconds * 1000;
    this.#maxStaleMs = maxStaleSeconds * 1000;
    this.#timeoutMs = timeoutMs;
    this.#maxEntries = maxEntries;
    this.#idleMs = streamIdleTimeoutMs;
    this.#fetch = fetchImpl ?? globalThis.fetch;
    this.#log = logger ?? defaultLogger;
    this.#onEvent = onEvent;
    // Without a cache there is nothing for the stream to keep fresh.
    if (events && this.#ttlMs > 0) {
      this.#stream = "connecting";
      this.#runStream().catch(() => this.#setStream("down"));
    }
  }

  /** The value of `key` for `tenant`. */
  async getSecret(tenant, key) {
    const e = this.#cache.get(tenant + SEP + key);
    if (e !== undefined && performance.now() < e.freshUntil) {
      this.#stats.hits++;
      return e.value;
    }
    return (await this.getSecretEntry(tenant, key)).value;
  }

  /** Like getSecret, with version and source (`server`, `cache`, `stale`). */
  async getSecretEntry(tenant, key) {
    checkName("tenant", tenant);
    checkName("key", key);
    const ck = tenant + SEP + key;
    const now = performance.now();
    const e = this.#cache.get(ck);
    if (e !== undefined && now < e.freshUntil) {
      this.#stats.hits++;
      return e.secret(tenant, key, "cache", now);
    }
    this.#stats.misses++;
    let flight = this.#inflight.get(ck);
    if (flight === undefined) {
      // Concurrent misses of one key share this request.
      flight = { invalidated: false, promise: null };
      flight.promise = this.#load(tenant, key, ck, flight).finally(() => this.#inflight.delete(ck));
      this.#inflight.set(ck, flight);
    }
    return flight.promise;
  }

  async #load(tenant, key, ck, flight) {
    let res;
    try {
      res = await this.#request("GET", `/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(key)}`, undefined, { tenant, key });
    } catch (err) {
      if (err instanceof UnavailableError) {
        const stale = this.#staleEntry(ck, tenant, key);
        if (stale) return stale;
      } else if (err instanceof NotFoundError || err instanceof ForbiddenError || err instanceof UnauthenticatedError) {
        this.#cache.delete(ck);
      }
      throw err;
    }
    const body = res.body;
    const entry = this.#entry(body.value, body.version, body.updated_at, res.headers.get("x-secret-source") ?? undefined);
    if (!flight.invalidated) this.#store(ck, entry);
    return entry.secret(tenant, key, "server", entry.fetchedAt);
  }

  #entry(value, version, updatedAt, serverSource) {
    const fetchedAt = performance.now();
    return {
      value,
      version,
      updatedAt,
      serverSource,
      fetchedAt,
      freshUntil: fetchedAt + this.#ttlMs,
      secret(tenant, key, source, now) {
        return new Secret(tenant, key, this.value, this.version, this.updatedAt, source, this.serverSource, Math.max(0, (now - this.fetchedAt) / 1000));
      },
    };
  }

  #store(ck, entry) {
    if (this.#ttlMs === 0 || this.#closed) return;
    this.#cache.delete(ck);
    if (this.#cache.size >= this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value); // oldest first
    this.#cache.set(ck, entry);
  }

  #staleEntry(ck, tenant, key) {
    const e = this.#cache.get(ck);
    const now = performance.now();
    if (e === undefined || now > e.freshUntil + this.#maxStaleMs) return null;
    this.#stats.stale++;
    const s = e.secret(tenant, key, "stale", now);
    this.#log("warn", "server unreachable: serving a stale cached entry", { tenant, key, version: e.version, ageSeconds: Math.round(s.ageSeconds) });
    return s;
  }

  /** Several keys of one tenant: an object of the keys that exist (missing keys are left out). */
  async getSecrets(tenant, keys) {
    checkName("tenant", tenant);
    const found = new Map();
    const misses = [];
    const now = performance.now();
    for (const key of new Set(keys)) {
      checkName("key", key);
      const e = this.#cache.get(tenant + SEP + key);
      if (e !== undefined && now < e.freshUntil) {
        this.#stats.hits++;
        found.set(key, e.value);
      } else misses.push(key);
    }
    let rest = misses;
    if (misses.length > 1 && this.#batchGet !== false) {
      rest = [];
      for (let i = 0; i < misses.length; i += BATCH_LIMIT) {
        rest.push(...(await this.#batch(tenant, misses.slice(i, i + BATCH_LIMIT), found)));
      }
    }
    if (rest.length > 0) {
      const results = await Promise.all(
        rest.map((key) =>
          this.getSecretEntry(tenant, key).then(
            (s) => [key, s.value],
            (err) => {
              if (err instanceof NotFoundError) return null;
              throw err;
            },
          ),
        ),
      );
      for (const r of results) if (r) found.set(r[0], r[1]);
    }
    return Object.fromEntries(keys.filter((k) => found.has(k)).map((k) => [k, found.get(k)]));
  }

  // One batch-get; returns the keys left for key-by-key reads: all of them when the server has
  // no batch-get or cannot be reached, those whose item failed as unavailable (a single read
  // can serve a stale entry).
  async #batch(tenant, keys, found) {
    const epoch = this.#epoch;
    let res;
    try {
      res = await this.#request("POST", "/v1/secrets/batch-get", { items: keys.map((key) => ({ tenant, key })) }, { tenant });
    } catch (err) {
      if ((err instanceof NotFoundError && !/^(secret|tenant)_not_found$/.test(err.code)) || err.status === 405) {
        this.#batchGet = false;
        this.#log("debug", "server has no batch-get: reading keys one by one", {});
        return keys;
      }
      if (err instanceof UnavailableError) return keys;
      throw err;
    }
    const rest = [];
    this.#batchGet = true;
    this.#stats.misses += keys.length;
    for (const item of res.body.results ?? []) {
      if (item.error) {
        if (item.error.code === "secret_not_found") {
          this.#cache.delete(item.tenant + SEP + item.key);
          continue;
        }
        const status = STATUS_OF_CODE[item.error.code] ?? 500;
        if (status === 503) {
          rest.push(item.key);
          continue;
        }
        throw errorFor(status, item.error.code, String(item.error.message ?? ""), { tenant: item.tenant, key: item.key });
      }
      const entry = this.#entry(item.value, item.version, item.updated_at, item.source);
      if (epoch === this.#epoch && !this.#inflight.has(item.tenant + SEP + item.key)) this.#store(item.tenant + SEP + item.key, entry);
      found.set(item.key, item.value);
    }
    return rest;
  }

  /** Names and versions of a tenant's secrets (never values; not cached). */
  async listSecrets(tenant) {
    checkName("tenant", tenant);
    const res = await this.#request("GET", `/v1/tenants/${encodeURIComponent(tenant)}/secrets`, undefined, { tenant });
    return (res.body.secrets ?? []).map((s) => ({ key: s.key, version: s.version, updatedAt: s.updated_at }));
  }

  /** Writes a value; `cas` = the version you expect (0: only if absent). Returns the new version. */
  async setSecret(tenant, key, value, { cas } = {}) {
    checkName("tenant", tenant);
    checkName("key", key);
    if (typeof value !== "string") throw new InvalidRequestError("value must be a string", { code: "invalid_value", tenant, key });
    const body = cas === undefined || cas === null ? { value } : { value, cas };
    try {
      const res = await this.#request("PUT", `/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(key)}`, body, { tenant, key });
      return { key: res.body.key, version: res.body.version };
    } finally {
      this.#drop(tenant + SEP + key);
    }
  }

  /** Deletes a secret (NotFoundError when there is none). */
  async deleteSecret(tenant, key) {
    checkName("tenant", tenant);
    checkName("key", key);
    try {
      await this.#request("DELETE", `/v1/tenants/${encodeURIComponent(tenant)}/secrets/${encodeURIComponent(key)}`, undefined, { tenant, key });
    } finally {
      this.#drop(tenant + SEP + key);
    }
  }

  /** Counters: requests sent (event stream not counted), cache hits, misses, stale answers, entries. */
  stats() {
    return { ...this.#stats, entries: this.#cache.size, stream: this.#stream };
  }

  /** The event stream's state: disabled, connecting, live, down, unsupported, refused, closed. */
  get streamState() {
    return this.#stream;
  }

  /** Resolves true once the event stream is live, false after `timeoutMs` or if it cannot be. */
  waitForStream(timeoutMs = 5000) {
    if (this.#stream === "live") return Promise.resolve(true);
    if (["disabled", "unsupported", "refused", "closed"].includes(this.#stream)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w = { resolve, timer: setTimeout(() => { this.#streamWaiters = this.#streamWaiters.filter((x) => x !== w); resolve(false); }, timeoutMs) };
      this.#streamWaiters.push(w);
    });
  }

  /** Drops every cached entry of a tenant (or all of them without an argument). */
  invalidate(tenant, key) {
    if (tenant === undefined) this.#dropAll();
    else if (key === undefined) this.#dropTenant(tenant);
    else this.#drop(tenant + SEP + key);
  }

  /** Stops the event stream and forgets the cache. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#setStream("closed");
    this.#streamAbort?.abort();
    this.#wake?.();
    this.#dropAll();
  }

  toString() {
    return `TenantVault(${this.#url}, cacheTtlSeconds=${this.#ttlMs / 1000}, stream=${this.#stream})`;
  }
  toJSON() {
    return { url: this.#url, cacheTtlSeconds: this.#ttlMs / 1000, stream: this.#stream };
  }
  [inspect.custom]() {
    return this.toString();
  }

  #drop(ck) {
    this.#epoch++;
    this.#cache.delete(ck);
    const f = this.#inflight.get(ck);
    if (f) f.invalidated = true;
  }
  // An event may arrive after our own read of the version it announces: an entry already
  // that new stays (a read in flight may predate it and is not cached).
  #dropOlder(ck, version) {
    const e = this.#cache.get(ck);
    if (e !== undefined && typeof version === "number" && e.version >= version) {
      const f = this.#inflight.get(ck);
      if (f) f.invalidated = true;
      return;
    }
    this.#drop(ck);
  }
  #dropTenant(tenant) {
    this.#epoch++;
    const prefix = tenant + SEP;
    for (const ck of this.#cache.keys()) if (ck.startsWith(prefix)) this.#cache.delete(ck);
    for (const [ck, f] of this.#inflight) if (ck.startsWith(prefix)) f.invalidated = true;
  }
  #dropAll() {
    this.#epoch++;
    this.#cache.clear();
    for (const f of this.#inflight.values()) f.invalidated = true;
  }

  async #request(method, path, body, where) {
    this.#stats.requests++;
    const headers = { authorization: `Bearer ${this.#token}`, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await this.#fetch(this.#url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      // Only the reason's name or code: a cause could echo request details.
      const reason = err?.cause?.code ?? err?.name ?? "error";
      this.#log("debug", "request failed", { method, path: where.key ? "secret" : path, reason });
      throw new UnavailableError(`cannot reach tenant-vault (${reason})`, { code: "unreachable", ...where });
    }
    const text = await res.text().catch(() => "");
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    this.#log("debug", "request", { method, tenant: where.tenant, key: where.key, status: res.status });
    if (res.ok) return { status: res.status, headers: res.headers, body: parsed ?? {} };
    const code = parsed?.error?.code ?? `http_${res.status}`;
    const message = typeof parsed?.error?.message === "string" ? parsed.error.message : `HTTP ${res.status}`;
    throw errorFor(res.status, code, message, { ...where, retryAfterSeconds: res.status === 429 ? retryAfterSeconds(res.headers.get("retry-after")) : undefined });
  }

  // ---- event stream ------------------------------------------------------------------------

  #setStream(state) {
    this.#stream = state;
    if (state !== "connecting" && state !== "down") {
      const ok = state === "live";
      for (const w of this.#streamWaiters.splice(0)) {
        clearTimeout(w.timer);
        w.resolve(ok);
      }
    }
  }

  async #runStream() {
    let backoffMs = 500;
    while (!this.#closed) {
      const ac = new AbortController();
      this.#streamAbort = ac;
      let live = false;
      try {
        const headers = { authorization: `Bearer ${this.#token}`, accept: "text/event-stream" };
        const resumed = this.#lastEventId !== null;
        if (resumed) headers["last-event-id"] = this.#lastEventId;
        const res = await this.#fetch(`${this.#url}/v1/events`, { headers, signal: ac.signal });
        if (res.status === 404 || res.status === 405) {
          this.#log("warn", "the server has no event stream (GET /v1/events answered 404): cached entries live for their TTL", {});
          this.#setStream("unsupported");
          res.body?.cancel().catch(() => {});
          return;
        }
        if (res.status === 401 || res.status === 403) {
          this.#log("warn", `the event stream was refused (${res.status}): cached entries live for their TTL`, {});
          this.#setStream("refused");
          res.body?.cancel().catch(() => {});
          return;
        }
        if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
        await this.#readEvents(res.body, ac, () => {
          live = true;
          backoffMs = 500;
          // Without a resume point after a live stream, changes while we were away are
          // unknown: start over. (Entries cached while the first stream was connecting are
          // only a moment old; dropping them would make every first read count twice.)
          if (!resumed && this.#everLive) this.#dropAll();
          this.#everLive = true;
          this.#setStream("live");
        });
      } catch (err) {
        if (this.#closed) return;
        this.#log("debug", "event stream error", { reason: err?.cause?.code ?? err?.name ?? "error" });
      }
      if (this.#closed) return;
      this.#setStream("down");
      this.#log(live ? "warn" : "debug", "event stream down: cached entries live for their TTL until it reconnects", { retryInMs: backoffMs });
      await new Promise((resolve) => {
        const t = setTimeout(resolve, backoffMs * (0.5 + Math.random() / 2));
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = null;
      backoffMs = Math.min(backoffMs * 2, 30000);
    }
  }

  async #readEvents(body, ac, onReady) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let ev = { id: null, event: "", data: [] };
    let idle = null;
    const armIdle = () => {
      clearTimeout(idle);
      // Heartbeats come every 15 s: silence for longer means a dead connection.
      idle = setTimeout(() => ac.abort(), this.#idleMs);
    };
    armIdle();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        armIdle();
        buf += decoder.decode(value, { stream: true });
        for (;;) {
          const m = /\r\n|\n|\r/.exec(buf);
          if (!m) break;
          if (m[0] === "\r" && m.index === buf.length - 1) break; // maybe half of \r\n
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === "") {
            if (ev.data.length > 0 || ev.event) this.#dispatch(ev.event || "message", ev.data.join("\n"), onReady);
            ev = { id: null, event: "", data: [] };
            continue;
          }
          if (line.startsWith(":")) continue; // comment, e.g. heartbeat
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "data") ev.data.push(val);
          else if (field === "event") ev.event = val;
          else if (field === "id" && !val.includes("\0")) this.#lastEventId = val;
        }
      }
    } finally {
      clearTimeout(idle);
      reader.cancel().catch(() => {});
    }
  }

  #dispatch(type, data, onReady) {
    let d = {};
    try {
      d = data ? JSON.parse(data) : {};
    } catch {
      this.#log("debug", "event with malformed data ignored", { type });
      return;
    }
    switch (type) {
      case "ready":
        onReady();
        break;
      case "secret.written":
      case "secret.deleted":
      case "secret.synced":
        if (typeof d.tenant === "string" && typeof d.key === "string") this.#dropOlder(d.tenant + SEP + d.key, d.version);
        break;
      case "tenant.deleted":
        if (typeof d.tenant === "string") this.#dropTenant(d.tenant);
        break;
      case "token.revoked":
        // Our own token: whatever we cached we may no longer read.
        if (this.#tokenId && normalizeId(d.token_id) === this.#tokenId) this.#dropAll();
        break;
      case "reset":
        this.#dropAll();
        break;
      default:
        break;
    }
    this.#log("debug", "event", { type, tenant: d.tenant, key: d.key });
    if (this.#onEvent) {
      try {
        this.#onEvent(type, d);
      } catch {
        /* a hook's failure must not stop the stream */
      }
    }
  }
}

// Status of a per-item error code in a batch-get answer (the codes of the single routes).
const STATUS_OF_CODE = {
  secret_not_found: 404,
  tenant_not_found: 404,
  forbidden: 403,
  insufficient_scope: 403,
  unauthenticated: 401,
  rate_limited: 429,
  invalid_tenant: 400,
  invalid_secret_key: 400,
  dependency_error: 502,
  dependency_unavailable: 503,
  not_ready: 503,
};

function errorFor(status, code, message, where) {
  const full = `${message} (${code}${where.tenant ? `, ${where.tenant}${where.key ? "/" + where.key : ""}` : ""})`;
  const opts = { status, code, ...where };
  if (status === 404) return new NotFoundError(full, opts);
  if (status === 403) return new ForbiddenError(full, opts);
  if (status === 401) return new UnauthenticatedError(full, opts);
  if (status === 409) return new ConflictError(full, opts);
  if (status === 429) return new RateLimitedError(full, opts);
  if (status === 502 || status === 503 || status === 504) return new UnavailableError(full, opts);
  if (status === 400 || status === 413 || status === 415 || status === 422) return new InvalidRequestError(full, opts);
  return new ServerError(full, opts);
}

export default TenantVault;
