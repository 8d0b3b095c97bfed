// Types for src/index.js (plain ESM, no build step).

export type Level = "debug" | "info" | "warn" | "error";
/** Receives log lines; fields never hold a value or a token. */
export type Logger = (level: Level, message: string, fields?: Record<string, unknown>) => void;

export interface TenantVaultOptions {
  /** e.g. "http://127.0.0.1:8210" */
  url: string;
  /** a tenant, service or admin token (`tvt_...`) */
  token: string;
  /** 0 disables the cache; at most 3600 (default 60, like the server). */
  cacheTtlSeconds?: number;
  /** How long past its TTL an entry may be served while the server is unreachable (default 300; 0: never). */
  maxStaleSeconds?: number;
  /** Subscribe to GET /v1/events so changes drop cached entries at once (default true). */
  events?: boolean;
  /** Per-request timeout (default 10000). */
  timeoutMs?: number;
  /** Cache bound; the oldest entry goes first (default 100000). */
  maxEntries?: number;
  /** Reconnect the stream after this much silence (default 45000; heartbeats come every 15 s). */
  streamIdleTimeoutMs?: number;
  logger?: Logger;
  /** Called after each stream event was applied (names and versions only, never values). */
  onEvent?: (type: string, data: Record<string, unknown>) => void;
  fetch?: typeof fetch;
}

export type ReadSource = "server" | "cache" | "stale";

export declare class Secret {
  readonly tenant: string;
  readonly key: string;
  readonly value: string;
  readonly version: number;
  readonly updatedAt: string;
  /** `server` (fetched now), `cache` (in-process hit) or `stale` (server unreachable). */
  readonly source: ReadSource;
  readonly stale: boolean;
  /** The server's x-secret-source when fetched. */
  readonly serverSource?: string;
  readonly ageSeconds: number;
}

export interface SecretInfo {
  key: string;
  version: number;
  updatedAt: string;
}

export type StreamState = "disabled" | "connecting" | "live" | "down" | "unsupported" | "refused" | "closed";

export interface Stats {
  requests: number;
  hits: number;
  misses: number;
  stale: number;
  entries: number;
  stream: StreamState;
}

export declare class TenantVault {
  constructor(options: TenantVaultOptions);
  getSecret(tenant: string, key: string): Promise<string>;
  getSecretEntry(tenant: string, key: string): Promise<Secret>;
  /** The keys that exist, missing keys left out. */
  getSecrets(tenant: string, keys: string[]): Promise<Record<string, string>>;
  listSecrets(tenant: string): Promise<SecretInfo[]>;
  setSecret(tenant: string, key: string, value: string, options?: { cas?: number }): Promise<{ key: string; version: number }>;
  deleteSecret(tenant: string, key: string): Promise<void>;
  invalidate(tenant?: string, key?: string): void;
  stats(): Stats;
  readonly streamState: StreamState;
  waitForStream(timeoutMs?: number): Promise<boolean>;
  close(): void;
}

export declare class TenantVaultError extends Error {
  readonly status: number;
  readonly code: string;
  readonly tenant?: string;
  readonly key?: string;
}
export declare class NotFoundError extends TenantVaultError {}
export declare class ForbiddenError extends TenantVaultError {}
export declare class UnauthenticatedError extends TenantVaultError {}
export declare class ConflictError extends TenantVaultError {}
export declare class RateLimitedError extends TenantVaultError {
  /** From Retry-After, at least 1. */
  readonly retryAfterSeconds: number;
}
export declare class UnavailableError extends TenantVaultError {}
export declare class InvalidRequestError extends TenantVaultError {}
export declare class ServerError extends TenantVaultError {}

export default TenantVault;
