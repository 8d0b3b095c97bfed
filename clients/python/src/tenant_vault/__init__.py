"""tenant-vault client: per-tenant secrets with an in-process cache kept fresh by the server's
event stream. Standard library only."""

from .aio import AsyncSecretsClient
from .client import Secret, SecretInfo, SecretsClient
from .errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    TenantVaultError,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AsyncSecretsClient",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Secret",
    "SecretInfo",
    "SecretsClient",
    "ServerError",
    "TenantVaultError",
    "Unauthenticated",
    "Unavailable",
]
