"""API keys, the organizations they belong to, and when the server is open.

A key is required on every /v1 request as soon as one exists: `OPENTUNE_API_KEY` (a key of the
`default` organization) or any key made with `opentune keys create --org NAME`. Only SHA-256
digests are stored; keys are never logged.

Failing closed: the server is open (every caller is the `default` organization) only when
`insecure_no_auth` is set, or when no key was ever configured nor created. A revoked key keeps its
row (with `revoked_at`), so revoking the last key leaves the server closed, never open. The CLI
refuses to start a server that would be open on a non-loopback address (`startup_refusal`).

Reinforcement jobs' trainers authenticate with grader tokens (service/grader_tokens.py): the
job's organization, on chat completions only, while the job runs; never the open server's default.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from service.config import Settings
from service.errors import AuthenticationFailed
from service.grader_tokens import GRADER_ROUTES, GraderTokens, is_grader_token
from service.store import ApiKeyRow, Database

ORG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
INVALID_GRADER_TOKEN = "invalid_grader_token"


@dataclass(frozen=True)
class Principal:
    organization_id: str
    # Set for a job's grader token (service/grader_tokens.py): the job it was minted for. Such a
    # caller may call only GRADER_ROUTES; an API key's (None) may call every route.
    grader_job_id: str | None = None

    @property
    def organization(self) -> str:
        """The organization's name, as it appears in `ft:` model names."""
        return self.organization_id.removeprefix("org-")

    def may_call(self, method: str, path: str) -> bool:
        return self.grader_job_id is None or (method, path) in GRADER_ROUTES


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def organization_id(name: str) -> str:
    if not ORG_NAME.match(name):
        raise ValueError(
            f"invalid organization name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return f"org-{name}"


def any_key_created(db: Database) -> bool:
    """Whether a key was ever stored, revoked ones included."""
    with db.session() as session:
        return session.scalar(select(ApiKeyRow.id).limit(1)) is not None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def startup_refusal(settings: Settings, keys_created: bool) -> str | None:
    """Why a server with these settings must not start, or None.

    A server without any key would be open to everyone who can reach it: allowed on a loopback
    address (local development), refused elsewhere unless `insecure_no_auth` says it is meant.
    """
    if settings.insecure_no_auth or settings.api_key or keys_created or is_loopback(settings.host):
        return None
    return (
        f"no API key is configured and {settings.host} is not a loopback address, so anyone could "
        "use this server: set OPENTUNE_API_KEY, create a key with `opentune keys create --org NAME`, "
        "or pass --insecure-no-auth (OPENTUNE_INSECURE_NO_AUTH=1) to serve without authentication"
    )


class KeyRing:
    """Checks keys against the env key and the database; remembers stored keys' answers briefly, so
    a request costs no database query (a key created or revoked with the CLI counts within CACHE_S
    seconds)."""

    CACHE_S = 5.0

    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self._default_org = settings.organization_id
        self._insecure = settings.insecure_no_auth
        secret = settings.api_key.get_secret_value() if settings.api_key else None
        self._env_hash = hash_key(secret) if secret else None
        self._cache: dict[str, tuple[float, str | None]] = {}
        self.grader_tokens = GraderTokens(db)

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
                return session.scalar(
                    select(ApiKeyRow.organization_id).where(
                        ApiKeyRow.key_hash == digest, ApiKeyRow.revoked_at.is_(None)
                    )
                )

        return self._remembered(digest, look_up)

    def is_open(self) -> bool:
        """Whether callers without a valid key are let in (as the default organization)."""
        if self._insecure:
            return True
        if self._env_hash is not None:
            return False
        # Revoked keys count: once a key existed, the server stays closed.
        return self._remembered("<any>", lambda: "yes" if any_key_created(self.db) else None) is None

    def authenticate(self, authorization: str | None) -> Principal:
        try:
            return self._check(authorization)
        except AuthenticationFailed as refused:
            # A grader token that is no longer valid is refused even by an open server: its
            # trainer must learn that its job ended, not carry on as the default organization.
            if self.is_open() and refused.code != INVALID_GRADER_TOKEN:
                return Principal(self._default_org)
            raise

    def _check(self, authorization: str | None) -> Principal:
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
        if is_grader_token(key.strip()):
            # Not cached: the job's status decides, so the token stops working when the job ends.
            holder = self.grader_tokens.holder(key.strip())
            if holder is None:
                raise AuthenticationFailed(
                    "This grader token is not valid: its fine-tuning job is no longer running.",
                    code=INVALID_GRADER_TOKEN,
                )
            return Principal(holder.organization_id, grader_job_id=holder.job_id)
        # Looked up by digest: the index compares digests, which reveal nothing about the key.
        org = self._stored_org(digest)
        if org is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return Principal(org)
