"""The synchronous client: stdlib only (http.client, threading)."""

from __future__ import annotations

import concurrent.futures
import email.utils
import http.client
import json
import logging
import random
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

from .errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    TenantVaultError,
    Unauthenticated,
    Unavailable,
    error_for,
    status_of_code,
)

log = logging.getLogger("tenant_vault")

REDACTED = "[redacted]"
MAX_TTL_SECONDS = 3600  # the server's TENANT_VAULT_CACHE_TTL_SECS maximum
BATCH_LIMIT = 100  # the server's default batch-get size


class Secret:
    """One read: the value plus where it came from. Printing it never shows the value."""

    __slots__ = ("tenant", "key", "_value", "version", "updated_at", "source", "server_source", "age_seconds")

    def __init__(self, tenant, key, value, version, updated_at, source, server_source, age_seconds):
        self.tenant = tenant
        self.key = key
        self._value = value
        self.version = version
        self.updated_at = updated_at
        #: ``server`` (fetched now), ``cache`` (in-process hit) or ``stale`` (server unreachable)
        self.source = source
        #: the server's ``x-secret-source`` when it was fetched
        self.server_source = server_source
        self.age_seconds = age_seconds

    @property
    def value(self) -> str:
        return self._value

    @property
    def stale(self) -> bool:
        return self.source == "stale"

    def __repr__(self) -> str:
        return (
            f"Secret(tenant={self.tenant!r}, key={self.key!r}, version={self.version}, "
            f"source={self.source!r}, value={REDACTED})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class SecretInfo:
    key: str
    version: int
    updated_at: str


class _Entry:
    __slots__ = ("value", "version", "updated_at", "server_source", "fetched_at", "fresh_until")

    def __init__(self, value, version, updated_at, server_source, ttl):
        self.value = value
        self.version = version
        self.updated_at = updated_at
        self.server_source = server_source
        self.fetched_at = time.monotonic()
        self.fresh_until = self.fetched_at + ttl

    def secret(self, tenant, key, source, now):
        return Secret(tenant, key, self.value, self.version, self.updated_at, source, self.server_source,
                      max(0.0, now - self.fetched_at))

    def __repr__(self) -> str:
        return f"_Entry(version={self.version}, value={REDACTED})"


class _Flight:
    """One request that concurrent misses of a key wait on."""

    __slots__ = ("done", "result", "error", "invalidated")

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.invalidated = False


def _normalize_id(token_id) -> Optional[str]:
    """The token text holds the uuid without dashes; events may carry it with them."""
    return token_id.replace("-", "").lower() if isinstance(token_id, str) and token_id else None


def _check_name(what: str, s) -> None:
    if not isinstance(s, str) or not s:
        raise InvalidRequest(f"{what} must be a non-empty string", code=f"invalid_{what}")


def _retry_after(header: Optional[str]) -> float:
    if not header:
        return 1.0
    try:
        return max(1.0, float(int(header.strip())))
    except ValueError:
        pass
    try:
        at = email.utils.parsedate_to_datetime(header).timestamp()
        return max(1.0, float(int(at - time.time() + 0.999)))
    except (TypeError, ValueError):
        return 1.0


class SecretsClient:
    """A tenant-vault client with an in-process cache kept fresh by the server's event stream.

    One instance per process, shared by its threads; ``close()`` on shutdown (or use ``with``).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        cache_ttl_seconds: int = 60,
        max_stale_seconds: float = 300,
        events: bool = True,
        timeout: float = 10.0,
        max_entries: int = 100_000,
        stream_idle_timeout: float = 45.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidRequest("url must be an http(s) URL", code="invalid_url")
        if not isinstance(token, str) or not token:
            raise InvalidRequest("token must be a non-empty string", code="invalid_token")
        if not isinstance(cache_ttl_seconds, int) or not 0 <= cache_ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"cache_ttl_seconds must be an integer from 0 (off) to {MAX_TTL_SECONDS}",
                                 code="invalid_option")
        if not max_stale_seconds >= 0:
            raise InvalidRequest("max_stale_seconds must be 0 or more", code="invalid_option")
        self._url = url.rstrip("/")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._base = parsed.path.rstrip("/")
        self._token = token
        m = re.match(r"^tvt_([^_]+)_", token)
        self._token_id = _normalize_id(m.group(1)) if m else None
        self._ttl = float(cache_ttl_seconds)
        self._max_stale = float(max_stale_seconds)
        self._timeout = timeout
        self._max_entries = max_entries
        self._idle = stream_idle_timeout
        self._cache: Dict[tuple, _Entry] = {}
        self._inflight: Dict[tuple, _Flight] = {}
        self._lock = threading.Lock()
        self._epoch = 0  # bumped on every invalidation; an older batch result is not cached
        self._stats = {"requests": 0, "hits": 0, "misses": 0, "stale": 0}
        self._batch_get: Optional[bool] = None
        self._local = threading.local()  # one keep-alive connection per thread
        self._closed = threading.Event()
        self._stream_state = "disabled"
        self._stream_cond = threading.Condition()
        self._stream_conn: Optional[http.client.HTTPConnection] = None
        self._last_event_id: Optional[str] = None
        self._ever_live = False  # the event stream has been live at least once
        self._thread: Optional[threading.Thread] = None
        # Without a cache there is nothing for the stream to keep fresh.
        if events and self._ttl > 0:
            self._stream_state = "connecting"
            self._thread = threading.Thread(target=self._run_stream, name="tenant-vault-events", daemon=True)
            self._thread.start()

    # ---- reads ----------------------------------------------------------------------------

    def get(self, tenant: str, key: str) -> str:
        """The value of ``key`` for ``tenant``."""
        e = self._cache.get((tenant, key))
        if e is not None and time.monotonic() < e.fresh_until:
            self._stats["hits"] += 1
            return e.value
        return self.get_entry(tenant, key).value

    def get_entry(self, tenant: str, key: str) -> Secret:
        """Like ``get``, with version and source (``server``, ``cache``, ``stale``)."""
        _check_name("tenant", tenant)
        _check_name("key", key)
        ck = (tenant, key)
        now = time.monotonic()
        e = self._cache.get(ck)
        if e is not None and now < e.fresh_until:
            self._stats["hits"] += 1
            return e.secret(tenant, key, "cache", now)
        with self._lock:
            self._stats["misses"] += 1
            flight = self._inflight.get(ck)
            leader = flight is None
            if leader:
                flight = _Flight()
                self._inflight[ck] = flight
        if not leader:
            # Concurrent misses of one key share the leader's request.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = self._load(tenant, key, ck, flight)
        except BaseException as err:
            flight.error = err
            raise
        finally:
            with self._lock:
                self._inflight.pop(ck, None)
            flight.done.set()
        return flight.result

    def _load(self, tenant, key, ck, flight) -> Secret:
        try:
            status, headers, body = self._request("GET", self._secret_path(tenant, key), tenant=tenant, key=key)
        except Unavailable:
            stale = self._stale_entry(ck, tenant, key)
            if stale is not None:
                return stale
            raise
        except (NotFound, Forbidden, Unauthenticated):
            with self._lock:
                self._cache.pop(ck, None)
            raise
        entry = _Entry(body.get("value"), body.get("version"), body.get("updated_at"),
                       headers.get("x-secret-source"), self._ttl)
        with self._lock:
            if not flight.invalidated:
                self._store(ck, entry)
        return entry.secret(tenant, key, "server", entry.fetched_at)

    def _store(self, ck, entry) -> None:  # under self._lock
        if self._ttl == 0 or self._closed.is_set():
            return
        self._cache.pop(ck, None)
        if len(self._cache) >= self._max_entries:
            self._cache.pop(next(iter(self._cache)))  # oldest first
        self._cache[ck] = entry

    def _stale_entry(self, ck, tenant, key) -> Optional[Secret]:
        e = self._cache.get(ck)
        now = time.monotonic()
        if e is None or now > e.fresh_until + self._max_stale:
            return None
        self._stats["stale"] += 1
        s = e.secret(tenant, key, "stale", now)
        log.warning("server unreachable: serving a stale cached entry for %s/%s (version %s, %.0f s old)",
                    tenant, key, e.version, s.age_seconds)
        return s

    def get_many(self, tenant: str, keys: Iterable[str]) -> Dict[str, str]:
        """Several keys of one tenant: a dict of the keys that exist (missing keys are left out)."""
        _check_name("tenant", tenant)
        keys = list(dict.fromkeys(keys))
        found: Dict[str, str] = {}
        misses: List[str] = []
        now = time.monotonic()
        for key in keys:
            _check_name("key", key)
            e = self._cache.get((tenant, key))
            if e is not None and now < e.fresh_until:
                self._stats["hits"] += 1
                found[key] = e.value
            else:
                misses.append(key)
        rest = misses
        if len(misses) > 1 and self._batch_get is not False:
            rest = []
            for i in range(0, len(misses), BATCH_LIMIT):
                rest.extend(self._batch(tenant, misses[i:i + BATCH_LIMIT], found))
        if len(rest) == 1:
            self._get_into(tenant, rest[0], found)
        elif rest:
            # Parallel reads, a bounded number at a time; the first error is raised here.
            with concurrent.futures.ThreadPoolExecutor(min(16, len(rest))) as pool:
                for f in [pool.submit(self._get_into, tenant, k, found) for k in rest]:
                    f.result()
        return {k: found[k] for k in keys if k in found}

    def _get_into(self, tenant, key, found) -> None:
        try:
            found[key] = self.get_entry(tenant, key).value
        except NotFound:
            pass

    def _batch(self, tenant, keys, found) -> List[str]:
        """One batch-get; returns the keys left for key-by-key reads."""
        epoch = self._epoch
        try:
            _, _, body = self._request("POST", "/v1/secrets/batch-get",
                                       {"items": [{"tenant": tenant, "key": k} for k in keys]}, tenant=tenant)
        except TenantVaultError as err:
            if (err.status == 404 and err.code not in ("secret_not_found", "tenant_not_found")) or err.status == 405:
                self._batch_get = False
                log.debug("server has no batch-get: reading keys one by one")
                return keys
            if isinstance(err, Unavailable):
                return keys
            raise
        self._batch_get = True
        self._stats["misses"] += len(keys)
        rest = []
        for item in body.get("results") or []:
            t, k = item.get("tenant"), item.get("key")
            if "error" in item:
                code = (item["error"] or {}).get("code", "")
                if code == "secret_not_found":
                    with self._lock:
                        self._cache.pop((t, k), None)
                    continue
                status = status_of_code(code)
                if status == 503:
                    rest.append(k)
                    continue
                raise error_for(status, code, str((item["error"] or {}).get("message", "")), tenant=t, key=k)
            entry = _Entry(item.get("value"), item.get("version"), item.get("updated_at"), item.get("source"), self._ttl)
            with self._lock:
                if epoch == self._epoch and (t, k) not in self._inflight:
                    self._store((t, k), entry)
            found[k] = item.get("value")
        return rest

    def list(self, tenant: str) -> List[SecretInfo]:
        """Names and versions of a tenant's secrets (never values; not cached)."""
        _check_name("tenant", tenant)
        _, _, body = self._request("GET", f"/v1/tenants/{urllib.parse.quote(tenant, safe='')}/secrets", tenant=tenant)
        return [SecretInfo(s["key"], s["version"], s.get("updated_at", "")) for s in body.get("secrets") or []]

    # ---- writes ---------------------------------------------------------------------------

    def set(self, tenant: str, key: str, value: str, *, cas: Optional[int] = None) -> int:
        """Writes a value; ``cas`` = the version you expect (0: only if absent). Returns the new version."""
        _check_name("tenant", tenant)
        _check_name("key", key)
        if not isinstance(value, str):
            raise InvalidRequest("value must be a string", code="invalid_value", tenant=tenant, key=key)
        body = {"value": value} if cas is None else {"value": value, "cas": cas}
        try:
            _, _, answer = self._request("PUT", self._secret_path(tenant, key), body, tenant=tenant, key=key)
            return answer.get("version")
        finally:
            self._drop((tenant, key))

    def delete(self, tenant: str, key: str) -> None:
        """Deletes a secret (``NotFound`` when there is none)."""
        _check_name("tenant", tenant)
        _check_name("key", key)
        try:
            self._request("DELETE", self._secret_path(tenant, key), tenant=tenant, key=key)
        finally:
            self._drop((tenant, key))

    # ---- state ----------------------------------------------------------------------------

    def stats(self) -> dict:
        """Requests sent (event stream not counted), cache hits, misses, stale answers, entries."""
        return dict(self._stats, entries=len(self._cache), stream=self._stream_state)

    @property
    def stream_state(self) -> str:
        """disabled, connecting, live, down, unsupported, refused or closed."""
        return self._stream_state

    def wait_for_stream(self, timeout: float = 5.0) -> bool:
        """True once the event stream is live; False after ``timeout`` or if it cannot be."""
        deadline = time.monotonic() + timeout
        with self._stream_cond:
            while self._stream_state in ("connecting", "down"):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._stream_cond.wait(left)
            return self._stream_state == "live"

    def invalidate(self, tenant: Optional[str] = None, key: Optional[str] = None) -> None:
        """Drops one entry, a tenant's entries, or everything."""
        if tenant is None:
            self._drop_all()
        elif key is None:
            self._drop_tenant(tenant)
        else:
            self._drop((tenant, key))

    def close(self) -> None:
        """Stops the event stream and forgets the cache."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._set_stream("closed")
        conn = self._stream_conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._drop_all()
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()

    def __enter__(self) -> "SecretsClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SecretsClient({self._url!r}, cache_ttl_seconds={int(self._ttl)}, stream={self._stream_state!r})"

    __str__ = __repr__

    def __getstate__(self):
        raise TypeError("SecretsClient holds a token and cannot be pickled")

    # ---- invalidation ---------------------------------------------------------------------

    def _drop(self, ck) -> None:
        with self._lock:
            self._epoch += 1
            self._cache.pop(ck, None)
            f = self._inflight.get(ck)
            if f is not None:
                f.invalidated = True

    def _drop_older(self, ck, version) -> None:
        """Drops an entry older than an announced version. An event may arrive after our own
        read of that version: an entry already that new stays (a read in flight may predate
        it and is not cached)."""
        with self._lock:
            e = self._cache.get(ck)
            if e is not None and isinstance(version, int) and isinstance(e.version, int) and e.version >= version:
                f = self._inflight.get(ck)
                if f is not None:
                    f.invalidated = True
                return
        self._drop(ck)

    def _drop_tenant(self, tenant) -> None:
        with self._lock:
            self._epoch += 1
            for ck in [ck for ck in self._cache if ck[0] == tenant]:
                del self._cache[ck]
            for ck, f in self._inflight.items():
                if ck[0] == tenant:
                    f.invalidated = True

    def _drop_all(self) -> None:
        with self._lock:
            self._epoch += 1
            self._cache.clear()
            for f in self._inflight.values():
                f.invalidated = True

    # ---- HTTP -----------------------------------------------------------------------------

    def _secret_path(self, tenant, key) -> str:
        return f"/v1/tenants/{urllib.parse.quote(tenant, safe='')}/secrets/{urllib.parse.quote(key, safe='')}"

    def _new_conn(self, timeout) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _request(self, method, path, body=None, *, tenant=None, key=None):
        with self._lock:
            self._stats["requests"] += 1
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = self._local.conn = self._new_conn(self._timeout)
            try:
                conn.request(method, self._base + path, body=data, headers=headers)
                res = conn.getresponse()
                raw = res.read()
                break
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                self._local.conn = None
                # A kept-alive connection the server closed meanwhile: one fresh try.
                if reused and attempt == 0 and isinstance(
                        err, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
                    continue
                reason = type(err).__name__
                log.debug("request failed: %s %s (%s)", method, "secret" if key else path, reason)
                raise Unavailable(f"cannot reach tenant-vault ({reason})", code="unreachable",
                                  tenant=tenant, key=key) from None
        if res.getheader("connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        log.debug("request %s %s/%s: %s", method, tenant, key, res.status)
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        if 200 <= res.status < 300:
            return res.status, {k.lower(): v for k, v in res.getheaders()}, parsed if isinstance(parsed, dict) else {}
        err = parsed.get("error") if isinstance(parsed, dict) else None
        code = err.get("code") if isinstance(err, dict) and isinstance(err.get("code"), str) else f"http_{res.status}"
        message = err.get("message") if isinstance(err, dict) and isinstance(err.get("message"), str) \
            else f"HTTP {res.status}"
        raise error_for(res.status, code, message, tenant=tenant, key=key,
                        retry_after=_retry_after(res.getheader("retry-after")))

    # ---- event stream ---------------------------------------------------------------------

    def _set_stream(self, state: str) -> None:
        with self._stream_cond:
            if self._stream_state == "closed":
                return
            self._stream_state = state
            self._stream_cond.notify_all()

    def _run_stream(self) -> None:
        backoff = 0.5
        while not self._closed.is_set():
            live = False
            conn = self._new_conn(self._idle)  # a read timeout longer than the heartbeat
            self._stream_conn = conn
            try:
                headers = {"Authorization": f"Bearer {self._token}", "Accept": "text/event-stream"}
                resumed = self._last_event_id is not None
                if resumed:
                    headers["Last-Event-ID"] = self._last_event_id
                conn.request("GET", self._base + "/v1/events", headers=headers)
                res = conn.getresponse()
                if res.status in (404, 405):
                    log.warning("the server has no event stream (GET /v1/events answered %s): "
                                "cached entries live for their TTL", res.status)
                    self._set_stream("unsupported")
                    return
                if res.status in (401, 403):
                    log.warning("the event stream was refused (%s): cached entries live for their TTL", res.status)
                    self._set_stream("refused")
                    return
                if res.status != 200:
                    raise http.client.HTTPException(f"status {res.status}")

                def ready():
                    nonlocal live, backoff
                    live, backoff = True, 0.5
                    # Without a resume point after a live stream, changes while we were away
                    # are unknown: start over. (Entries cached while the first stream was
                    # connecting are only a moment old.)
                    if not resumed and self._ever_live:
                        self._drop_all()
                    self._ever_live = True
                    self._set_stream("live")

                self._read_events(res, ready)
            except (OSError, http.client.HTTPException, ValueError) as err:
                if self._closed.is_set():
                    return
                log.debug("event stream error (%s)", type(err).__name__)
            finally:
                conn.close()
            if self._closed.is_set():
                return
            self._set_stream("down")
            (log.warning if live else log.debug)(
                "event stream down: cached entries live for their TTL until it reconnects")
            self._closed.wait(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, 30.0)

    def _read_events(self, res, ready) -> None:
        event, data = "", []
        while not self._closed.is_set():
            raw = res.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line == "":
                if data or event:
                    self._dispatch(event or "message", "\n".join(data), ready)
                event, data = "", []
                continue
            if line.startswith(":"):
                continue  # comment, e.g. heartbeat
            field, _, val = line.partition(":")
            if val.startswith(" "):
                val = val[1:]
            if field == "data":
                data.append(val)
            elif field == "event":
                event = val
            elif field == "id" and "\0" not in val:
                self._last_event_id = val

    def _dispatch(self, kind: str, data: str, ready) -> None:
        try:
            d = json.loads(data) if data else {}
        except ValueError:
            log.debug("event with malformed data ignored (%s)", kind)
            return
        if not isinstance(d, dict):
            return
        if kind == "ready":
            ready()
        elif kind in ("secret.written", "secret.deleted", "secret.synced"):
            if isinstance(d.get("tenant"), str) and isinstance(d.get("key"), str):
                self._drop_older((d["tenant"], d["key"]), d.get("version"))
        elif kind == "tenant.deleted":
            if isinstance(d.get("tenant"), str):
                self._drop_tenant(d["tenant"])
        elif kind == "token.revoked":
            # Our own token: whatever we cached we may no longer read.
            if self._token_id and _normalize_id(d.get("token_id")) == self._token_id:
                self._drop_all()
        elif kind == "reset":
            self._drop_all()
        log.debug("event %s %s/%s", kind, d.get("tenant"), d.get("key"))
