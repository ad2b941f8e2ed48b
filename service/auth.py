"""API keys. When a key is configured, every /v1 request must carry it as a bearer token.

Keys are compared by their SHA-256 digests in constant time; a key is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from service.config import Settings
from service.errors import AuthenticationFailed


@dataclass(frozen=True)
class Principal:
    organization_id: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self._default_org = settings.organization_id
        secret = settings.api_key.get_secret_value() if settings.api_key else None
        self._hashes = {hash_key(secret): settings.organization_id} if secret else {}

    @property
    def required(self) -> bool:
        return bool(self._hashes)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.required:
            return Principal(self._default_org)
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationFailed("The Authorization header must be 'Bearer YOUR_KEY'.")
        digest = hash_key(key.strip())
        for known, org in self._hashes.items():
            if hmac.compare_digest(known, digest):
                return Principal(org)
        raise AuthenticationFailed("Incorrect API key provided.")
