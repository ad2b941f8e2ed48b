"""KeyRing (service/auth.py) on a real SQLite database, without HTTP: which organization each key
is, which headers are no key at all, what the database file holds, the configured (bootstrap) key,
and how long the ring keeps an answer. tests/service/test_auth.py has the open/closed rules and
the CLI; this file does not repeat them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import event, select

from service import auth
from service.api_keys import KEY_PREFIX, create_api_key, list_api_keys, revoke_api_key
from service.auth import KeyRing, Principal, any_key_created, hash_key
from service.config import Settings
from service.errors import AuthenticationFailed
from service.store import ApiKeyRow, Database

ENV_KEY = "sk-env-bootstrap-key-0123456789"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.migrate()
    yield database
    database.close()


class Clock:
    """service.auth's view of `time`: stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth, "time", fake)
    return fake


class Queries:
    """Counts the SQL statements run on a database."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


def bearer(key: str) -> str:
    return f"Bearer {key}"


def refused(ring: KeyRing, authorization: str | None) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as failed:
        ring.authenticate(authorization)
    assert failed.value.status_code == 401
    return failed.value


def key_id(db: Database, key: str) -> str:
    """The id of the stored key `key` (found the way an operator would: by its hint)."""
    [info] = [k for k in list_api_keys(db) if key.startswith(k.hint)]
    return info.id


# --- Keys and organizations ----------------------------------------------------------------------


def test_every_key_authenticates_as_its_own_organization_only(db: Database, clock: Clock) -> None:
    keys = {org: [create_api_key(db, org) for _ in range(2)] for org in ("acme", "globex", "acme-eu")}
    ring = KeyRing(Settings(), db)
    for _ in range(2):  # the second round answers from the ring's cache: the same answers
        for org, org_keys in keys.items():
            for key in org_keys:
                principal = ring.authenticate(bearer(key))
                assert principal == Principal(f"org-{org}") and principal.organization == org
    # A ring with nothing cached (another worker, a restarted server) agrees.
    fresh = KeyRing(Settings(), db)
    assert {org: {fresh.authenticate(bearer(k)) for k in ks} for org, ks in keys.items()} == {
        org: {Principal(f"org-{org}")} for org in keys
    }


def test_revoking_a_key_leaves_the_organizations_other_keys_and_other_organizations(
    db: Database, clock: Clock
) -> None:
    first, second, other = (
        create_api_key(db, "acme"),
        create_api_key(db, "acme"),
        create_api_key(db, "globex"),
    )
    revoke_api_key(db, key_id(db, first))
    ring = KeyRing(Settings(), db)
    assert refused(ring, bearer(first)).code == "invalid_api_key"
    assert ring.authenticate(bearer(second)) == Principal("org-acme")
    assert ring.authenticate(bearer(other)) == Principal("org-globex")


def test_a_key_for_an_invalid_organization_name_is_not_made(db: Database) -> None:
    for name in ("", "Acme", "acme corp", "org/acme", "-acme", "a" * 65):
        with pytest.raises(ValueError, match="invalid organization name"):
            create_api_key(db, name)
    assert not any_key_created(db)


# --- What is not a valid key ---------------------------------------------------------------------

Header = Callable[[str], str | None]


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (lambda key: None, "missing_api_key"),
        (lambda key: "", "missing_api_key"),
        (lambda key: "Bearer", "invalid_api_key"),
        (lambda key: "Bearer ", "invalid_api_key"),
        (lambda key: "Bearer    ", "invalid_api_key"),
        (lambda key: key, "invalid_api_key"),  # no scheme
        (lambda key: f"Basic {key}", "invalid_api_key"),
        (lambda key: f"Token {key}", "invalid_api_key"),
        (lambda key: bearer(key[:-1]), "invalid_api_key"),
        (lambda key: bearer(key + "x"), "invalid_api_key"),
        (lambda key: bearer(key.upper()), "invalid_api_key"),
        (lambda key: bearer(key[: len(KEY_PREFIX) + 4]), "invalid_api_key"),  # its stored hint
        (lambda key: bearer(hash_key(key)), "invalid_api_key"),  # its stored digest
        (lambda key: bearer(KEY_PREFIX + "x" * 40), "invalid_api_key"),
        (lambda key: bearer(ENV_KEY), "invalid_api_key"),  # no env key is configured here
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "scheme-and-space",
        "scheme-and-spaces",
        "no-scheme",
        "basic",
        "token",
        "truncated",
        "extended",
        "other-case",
        "hint",
        "digest",
        "made-up",
        "env-key-unset",
    ],
)
def test_what_is_not_a_valid_key_is_refused(db: Database, clock: Clock, header: Header, code: str) -> None:
    key = create_api_key(db, "acme")
    ring = KeyRing(Settings(), db)
    assert refused(ring, header(key)).code == code
    assert ring.authenticate(bearer(key)) == Principal("org-acme")  # the key itself still works


@pytest.mark.parametrize("form", ["bearer {}", "BEARER {}", "Bearer  {}", "Bearer {} ", "Bearer {}\n"])
def test_the_scheme_is_case_insensitive_and_spaces_around_the_key_do_not_count(
    db: Database, clock: Clock, form: str
) -> None:
    key = create_api_key(db, "acme")
    assert KeyRing(Settings(), db).authenticate(form.format(key)) == Principal("org-acme")


# --- What the database holds -----------------------------------------------------------------------


def _database_bytes(tmp_path: Path) -> bytes:
    """The database file and its WAL and shared-memory files, as they are on disk now."""
    files = sorted(tmp_path.glob("db.sqlite*"))
    assert files
    return b"".join(path.read_bytes() for path in files)


def test_only_a_digest_and_a_short_hint_of_each_key_are_stored(
    db: Database, tmp_path: Path, clock: Clock
) -> None:
    keys = [create_api_key(db, "acme"), create_api_key(db, "globex")]
    ring = KeyRing(Settings(api_key=SecretStr(ENV_KEY)), db)
    for key in [*keys, ENV_KEY]:
        ring.authenticate(bearer(key))
    on_disk = [_database_bytes(tmp_path)]  # with the WAL not yet checkpointed
    db.close()
    on_disk.append(_database_bytes(tmp_path))  # and after: all in the database file
    for stored in on_disk:
        for key in [*keys, ENV_KEY]:
            assert key.encode() not in stored
            assert key[len(KEY_PREFIX) + 4 :].encode() not in stored  # what the hint leaves out
        for key in keys:
            assert hash_key(key).encode() in stored  # the check can find what is there
    with db.session() as session:
        rows = {row.key_hash: row for row in session.scalars(select(ApiKeyRow))}
    assert set(rows) == {hash_key(key) for key in keys}  # the env key is never stored
    for key in keys:
        row = rows[hash_key(key)]
        assert len(row.key_hash) == 64 and row.hint == key[: len(KEY_PREFIX) + 4] and len(key) > 40


# --- The configured (bootstrap) key ----------------------------------------------------------------


def test_the_env_key_is_the_configured_organizations_and_closes_the_server(
    db: Database, clock: Clock
) -> None:
    ring = KeyRing(Settings(api_key=SecretStr(ENV_KEY), organization="ops"), db)
    assert not any_key_created(db) and not ring.is_open()
    assert ring.authenticate(bearer(ENV_KEY)) == Principal("org-ops")
    assert refused(ring, None).code == "missing_api_key"
    assert refused(ring, bearer("sk-ot-wrong")).code == "invalid_api_key"
    assert refused(ring, bearer(ENV_KEY[:-1])).code == "invalid_api_key"


def test_the_env_key_and_stored_keys_work_side_by_side(db: Database, clock: Clock) -> None:
    acme, ops = create_api_key(db, "acme"), create_api_key(db, "ops")
    ring = KeyRing(Settings(api_key=SecretStr(ENV_KEY), organization="ops"), db)
    assert ring.authenticate(bearer(ENV_KEY)) == Principal("org-ops")
    assert ring.authenticate(bearer(ops)) == Principal("org-ops")
    assert ring.authenticate(bearer(acme)) == Principal("org-acme")
    # Revoking every stored key leaves the env key working: it is not a stored key.
    for info in list_api_keys(db):
        revoke_api_key(db, info.id)
    clock.now += KeyRing.CACHE_S
    assert ring.authenticate(bearer(ENV_KEY)) == Principal("org-ops")
    refused(ring, bearer(acme))
    refused(ring, bearer(ops))


def test_an_empty_env_key_is_no_key(db: Database, clock: Clock) -> None:
    ring = KeyRing(Settings(api_key=SecretStr("")), db)
    assert ring.is_open()  # no key configured nor created: open, as with no env key at all
    assert ring.authenticate(None) == Principal("org-default")
    create_api_key(db, "acme")
    closed = KeyRing(Settings(api_key=SecretStr("")), db)
    assert not closed.is_open()
    assert refused(closed, "Bearer ").code == "invalid_api_key"
    assert refused(closed, None).code == "missing_api_key"


# --- The ring's cache ------------------------------------------------------------------------------


def test_answers_are_kept_for_cache_s_then_asked_again(db: Database, clock: Clock) -> None:
    key = create_api_key(db, "acme")
    ring = KeyRing(Settings(), db)
    queries = Queries(db)
    assert ring.authenticate(bearer(key)) == Principal("org-acme")
    assert queries.taken() > 0
    refused(ring, bearer("sk-ot-wrong"))
    assert queries.taken() > 0
    clock.now += KeyRing.CACHE_S - 0.01
    for _ in range(3):
        assert ring.authenticate(bearer(key)) == Principal("org-acme")
        refused(ring, bearer("sk-ot-wrong"))
    assert queries.taken() == 0, "a cached answer costs no query"
    clock.now += 0.01
    assert ring.authenticate(bearer(key)) == Principal("org-acme")
    assert queries.taken() > 0, "an answer CACHE_S old is asked again"


def test_a_revoked_key_is_refused_once_its_cached_answer_expires(db: Database, clock: Clock) -> None:
    """Revoking (the CLI, another process) cannot reach a running ring's cache: a revoked key works
    there until its answer is CACHE_S old, as revoke_api_key's docstring says; never longer."""
    key = create_api_key(db, "acme")
    ring = KeyRing(Settings(), db)
    assert ring.authenticate(bearer(key)) == Principal("org-acme")
    clock.now += 1
    revoke_api_key(db, key_id(db, key))
    assert refused(KeyRing(Settings(), db), bearer(key)).code == "invalid_api_key"  # nothing cached
    assert ring.authenticate(bearer(key)) == Principal("org-acme")  # cached 1 s ago
    clock.now += KeyRing.CACHE_S - 1
    assert refused(ring, bearer(key)).code == "invalid_api_key"
    clock.now += 3600
    assert refused(ring, bearer(key)).code == "invalid_api_key"


def test_a_key_stored_after_it_was_refused_works_once_the_refusal_expires(db: Database, clock: Clock) -> None:
    key = KEY_PREFIX + "a" * 40
    ring = KeyRing(Settings(), db)
    create_api_key(db, "globex")  # the server is closed
    refused(ring, bearer(key))
    with db.session() as session:  # as `opentune keys create` would store it
        session.add(
            ApiKeyRow(
                id="key-late", organization_id="org-acme", key_hash=hash_key(key), hint=key[:10], created_at=1
            )
        )
    clock.now += KeyRing.CACHE_S / 2
    refused(ring, bearer(key))
    clock.now += KeyRing.CACHE_S / 2
    assert ring.authenticate(bearer(key)) == Principal("org-acme")


def test_an_open_server_closes_once_a_created_key_is_seen(db: Database, clock: Clock) -> None:
    ring = KeyRing(Settings(), db)
    assert ring.is_open() and ring.authenticate(None) == Principal("org-default")
    key = create_api_key(db, "acme")
    assert ring.authenticate(bearer(key)) == Principal("org-acme")  # never cached: found at once
    clock.now += KeyRing.CACHE_S - 0.01
    assert ring.is_open()  # the cached "no key exists" holds until CACHE_S
    clock.now += 0.01
    assert not ring.is_open()
    assert refused(ring, None).code == "missing_api_key"
    assert refused(ring, bearer("sk-ot-wrong")).code == "invalid_api_key"
