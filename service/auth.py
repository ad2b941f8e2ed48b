"""API keys and the organizations they belong to.

A key is required on every /v1 request as soon as one exists: `OPENTUNE_API_KEY` (a key of the
`default` organization) or any key made with `opentune keys create --org NAME`. Only SHA-256
digests are stored; keys are never logged. Without any key the server is open, as one organization.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from service.config import Settings
from service.errors import AuthenticationFailed
from service.ids import new_id, random_token
from service.store import ApiKeyRow, Database

ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KEY_PREFIX = "sk-ot-"


@dataclass(frozen=True)
class Principal:
    organization_id: str

    @property
    def organization(self) -> str:
        """The organization's name, as it appears in `ft:` model names."""
        return self.organization_id.removeprefix("org-")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def organization_id(name: str) -> str:
    if not ORG_NAME.match(name):
        raise ValueError(
            f"invalid organization name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return f"org-{name}"


def create_api_key(db: Database, organization: str) -> str:
    """A new key for the organization; the plain key is returned once and not stored."""
    org_id = organization_id(organization)
    key = KEY_PREFIX + random_token(40)
    with db.session() as session:
        session.add(
            ApiKeyRow(
                id=new_id("key"),
                organization_id=org_id,
                key_hash=hash_key(key),
                hint=key[: len(KEY_PREFIX) + 4],
                created_at=int(time.time()),
            )
        )
    return key


class KeyRing:
    """Checks keys against the env key and the database; remembers stored keys' answers briefly, so
    a request costs no database query (a key created with the CLI works within CACHE_S seconds)."""

    CACHE_S = 5.0

    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self._default_org = settings.organization_id
        secret = settings.api_key.get_secret_value() if settings.api_key else None
        self._env_hash = hash_key(secret) if secret else None
        self._cache: dict[str, tuple[float, str | None]] = {}

    def _remembered(self, name: str, look_up: Callable[[], str | None]) -> str | None:
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self.CACHE_S:
            return hit[1]
        value = look_up()
        if len(self._cache) > 10_000:  # wrong keys must not grow it without bound
            self._cache.clear()
        self._cache[name] = (now, value)
        return value

    def _stored_org(self, digest: str) -> str | None:
        def look_up() -> str | None:
            with self.db.session() as session:
                return session.scalar(select(ApiKeyRow.organization_id).where(ApiKeyRow.key_hash == digest))

        return self._remembered(digest, look_up)

    def _any_stored(self) -> bool:
        def look_up() -> str | None:
            with self.db.session() as session:
                return session.scalar(select(ApiKeyRow.id).limit(1))

        return self._remembered("<any>", look_up) is not None

    def authenticate(self, authorization: str | None) -> Principal:
        if self._env_hash is None and not self._any_stored():
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
        if self._env_hash is not None and hmac.compare_digest(self._env_hash, digest):
            return Principal(self._default_org)
        # Looked up by digest: the index compares digests, which reveal nothing about the key.
        org = self._stored_org(digest)
        if org is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return Principal(org)
