"""Managing API keys (the `opentune keys` commands): create, list, revoke.

Only a key's SHA-256 digest and a short hint (its first characters) are stored; the plain key is
shown once, at creation. Revoking keeps the row with `revoked_at` set: listings show it, and the
server knows a key existed, so revoking the last one leaves it closed (see service/auth.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import select

from service.auth import hash_key, organization_id
from service.ids import new_id, random_token
from service.store import ApiKeyRow, Database

KEY_PREFIX = "sk-ot-"


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never the key or its digest."""

    id: str
    organization: str
    hint: str
    created_at: int
    revoked_at: int | None


class Revocation(Enum):
    REVOKED = "revoked"
    ALREADY_REVOKED = "already revoked"
    NOT_FOUND = "not found"


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


def list_api_keys(db: Database, organization: str | None = None) -> list[KeyInfo]:
    """Oldest first; only `organization`'s keys when given."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if organization is not None:
        query = query.where(ApiKeyRow.organization_id == organization_id(organization))
    with db.session() as session:
        return [
            KeyInfo(
                row.id,
                row.organization_id.removeprefix("org-"),
                row.hint,
                row.created_at,
                row.revoked_at,
            )
            for row in session.scalars(query)
        ]


def revoke_api_key(db: Database, key_id: str) -> Revocation:
    """Mark the key revoked; running servers refuse it within their cache time (KeyRing.CACHE_S)."""
    with db.session() as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            return Revocation.NOT_FOUND
        if row.revoked_at is not None:
            return Revocation.ALREADY_REVOKED
        row.revoked_at = int(time.time())
        return Revocation.REVOKED
