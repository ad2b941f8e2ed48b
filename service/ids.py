"""Object identifiers in OpenAI's style: a type prefix and random alphanumerics."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24, separator: str = "-") -> str:
    """`new_id("file")` -> `file-AbC...`. OpenAI's prefixes: file-, ftjob-, ftevent-, ftckpt_."""
    return f"{prefix}{separator}{random_token(length)}"
