// The console's only way to the server: the public JSON API, with the admin token from
// sessionStorage as a bearer header (no cookies, so no cross-site request can borrow it).

const TOKEN_KEY = 'tenant-vault.admin-token';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** True when the server has no such route (yet): a feature not on this server. */
export function isMissingRoute(err) {
  return err instanceof ApiError &&
    ((err.status === 404 && err.code === 'not_found') || err.status === 405);
}

/** Called on a 401 from any call: the token is no longer good. */
let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) { onUnauthenticated = fn; }

async function send(method, path, body, token) {
  const headers = { accept: 'application/json' };
  const bearer = token ?? session.token;
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached. Is tenant-vault running?');
  }
}

/** A JSON call. Resolves to the parsed body (null when empty); rejects with ApiError. */
export async function api(method, path, body, { token, quiet401 = false } = {}) {
  const res = await send(method, path, body, token);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const e = data && data.error;
    const err = new ApiError(res.status, e?.code ?? `http_${res.status}`,
      e?.message ?? `${res.status} ${res.statusText || 'error'}`);
    if (res.status === 401 && !quiet401) onUnauthenticated(err);
    throw err;
  }
  return { data, status: res.status };
}

/** A plain-text GET (for /metrics); no token needed. */
export async function getText(path) {
  const res = await send('GET', path, undefined, null);
  if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, `${path} answered ${res.status}`);
  return res.text();
}

/** A path segment, escaped (slugs and keys are validated by the server anyway). */
export const seg = (s) => encodeURIComponent(s);

/** A GET whose non-2xx answers are results too (`/readyz` says 503 with its reasons). */
export async function probe(path) {
  const res = await send('GET', path, undefined, null);
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  return { status: res.status, data };
}
