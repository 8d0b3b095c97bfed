"""Typed errors. None of them ever carries a secret value or a token."""

from __future__ import annotations

from typing import Optional


class TenantVaultError(Exception):
    """Base class of every error this client raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        tenant: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.tenant = tenant
        self.key = key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class NotFound(TenantVaultError):
    """404: the secret (or tenant) does not exist."""


class Forbidden(TenantVaultError):
    """403: the token may not do this (another tenant, a missing scope)."""


class Unauthenticated(TenantVaultError):
    """401: no token, or an unknown, revoked or expired one."""


class Conflict(TenantVaultError):
    """409: check-and-set failed (``cas_conflict``)."""


class RateLimited(TenantVaultError):
    """429: slow down; ``retry_after`` is the server's Retry-After in seconds (at least 1)."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(TenantVaultError):
    """The server could not be reached, timed out, or answered 502/503/504."""


class InvalidRequest(TenantVaultError):
    """400, 413, 415: a bad name, value or request (or a bad client option)."""


class ServerError(TenantVaultError):
    """Any other answer (500 ``integrity_error``, ...). Never replaced by a stale value."""


_STATUS_OF_CODE = {
    "secret_not_found": 404,
    "tenant_not_found": 404,
    "forbidden": 403,
    "insufficient_scope": 403,
    "unauthenticated": 401,
    "rate_limited": 429,
    "invalid_tenant": 400,
    "invalid_secret_key": 400,
    "dependency_error": 502,
    "dependency_unavailable": 503,
    "not_ready": 503,
}


def status_of_code(code: str) -> int:
    return _STATUS_OF_CODE.get(code, 500)


def error_for(
    status: int,
    code: str,
    message: str,
    *,
    tenant: Optional[str] = None,
    key: Optional[str] = None,
    retry_after: float = 1.0,
) -> TenantVaultError:
    where = f", {tenant}/{key}" if tenant and key else (f", {tenant}" if tenant else "")
    full = f"{message} ({code}{where})"
    kw = dict(status=status, code=code, tenant=tenant, key=key)
    if status == 404:
        return NotFound(full, **kw)
    if status == 403:
        return Forbidden(full, **kw)
    if status == 401:
        return Unauthenticated(full, **kw)
    if status == 409:
        return Conflict(full, **kw)
    if status == 429:
        return RateLimited(full, retry_after=retry_after, **kw)
    if status in (502, 503, 504):
        return Unavailable(full, **kw)
    if status in (400, 413, 415, 422):
        return InvalidRequest(full, **kw)
    return ServerError(full, **kw)
