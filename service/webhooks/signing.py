"""Standard Webhooks signatures (https://www.standardwebhooks.com/), as OpenAI signs its deliveries
and `client.webhooks.unwrap(body, headers, secret=...)` checks them: HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{body}` keyed with the base64-decoded part of a `whsec_` secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

_PREFIX = "whsec_"


def new_signing_secret() -> str:
    return _PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    """Enough to tell secrets apart in a listing, nothing to sign with."""
    return f"{_PREFIX}...{secret[-4:]}"


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(_PREFIX))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signed_headers(secrets_: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt. Several secrets (during a rotation that keeps the old one) give
    several space-separated signatures; a receiver accepts the delivery if any one matches."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, webhook_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
        "user-agent": "opentune-webhooks/1",
    }
