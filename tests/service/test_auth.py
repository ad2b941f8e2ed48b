"""Keys and when the server is open: it fails closed once any key existed, and revoked keys stop
working; the start-up rule refuses an open server on a network address."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.api_keys import Revocation, create_api_key, list_api_keys, revoke_api_key
from service.auth import KeyRing, Principal, any_key_created, startup_refusal
from service.cli import main
from service.config import Settings
from service.errors import AuthenticationFailed
from service.store import Database
from service.store.database import open_database

DEFAULT = Principal("org-default")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(Settings(data_dir=tmp_path))


def ring(db: Database, **settings: object) -> KeyRing:
    keys = KeyRing(Settings(**settings), db)  # type: ignore[arg-type]
    keys.CACHE_S = 0.0  # every call sees the database as it is now
    return keys


def test_no_key_ever_is_open_as_the_default_organization(db: Database) -> None:
    keys = ring(db)
    assert keys.is_open()
    assert keys.authenticate(None) == DEFAULT
    assert keys.authenticate("Bearer sk-anything") == DEFAULT


def test_env_key_closes_the_server(db: Database) -> None:
    keys = ring(db, api_key=SecretStr("sk-env"))
    assert keys.authenticate("Bearer sk-env") == DEFAULT
    with pytest.raises(AuthenticationFailed) as missing:
        keys.authenticate(None)
    assert missing.value.code == "missing_api_key"
    with pytest.raises(AuthenticationFailed) as wrong:
        keys.authenticate("Bearer sk-wrong")
    assert wrong.value.code == "invalid_api_key"


def test_revoked_key_stops_working_and_the_server_stays_closed(db: Database) -> None:
    keys = ring(db)
    key = create_api_key(db, "acme")
    assert keys.authenticate(f"Bearer {key}") == Principal("org-acme")
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(None)
    [info] = list_api_keys(db)
    assert revoke_api_key(db, info.id) is Revocation.REVOKED
    # The last key is gone, yet the server does not open: neither the revoked key nor none works.
    assert not keys.is_open() and any_key_created(db)
    for authorization in (f"Bearer {key}", None, "Bearer sk-anything"):
        with pytest.raises(AuthenticationFailed):
            keys.authenticate(authorization)


def test_revocation_counts_within_the_cache_time(db: Database) -> None:
    keys = KeyRing(Settings(), db)
    key = create_api_key(db, "acme")
    assert keys.authenticate(f"Bearer {key}") == Principal("org-acme")
    revoke_api_key(db, list_api_keys(db)[0].id)
    keys._cache = {k: (v[0] - KeyRing.CACHE_S, v[1]) for k, v in keys._cache.items()}  # time passes
    with pytest.raises(AuthenticationFailed):
        keys.authenticate(f"Bearer {key}")


def test_insecure_flag_opens_even_with_keys(db: Database) -> None:
    key = create_api_key(db, "acme")
    keys = ring(db, api_key=SecretStr("sk-env"), insecure_no_auth=True)
    assert keys.authenticate(None) == DEFAULT
    assert keys.authenticate("Bearer sk-wrong") == DEFAULT
    assert keys.authenticate(f"Bearer {key}") == Principal("org-acme")  # keys keep their organization


def test_revoke_outcomes_and_listing_hides_keys(db: Database) -> None:
    keys = {"acme": create_api_key(db, "acme"), "globex": create_api_key(db, "globex")}
    listed = sorted(list_api_keys(db), key=lambda k: k.organization)  # created in the same second
    assert [k.organization for k in listed] == ["acme", "globex"]
    assert [k.organization for k in list_api_keys(db, "globex")] == ["globex"]
    for info in listed:
        assert keys[info.organization].startswith(info.hint) and len(info.hint) < 12
        assert info.revoked_at is None
    assert revoke_api_key(db, listed[0].id) is Revocation.REVOKED
    assert revoke_api_key(db, listed[0].id) is Revocation.ALREADY_REVOKED
    assert revoke_api_key(db, "key-nope") is Revocation.NOT_FOUND
    revoked_at = list_api_keys(db, "acme")[0].revoked_at
    assert revoked_at is not None and abs(revoked_at - time.time()) < 60


@pytest.mark.parametrize(
    ("host", "settings", "keys_created", "refused"),
    [
        ("0.0.0.0", {}, False, True),
        ("::", {}, False, True),
        ("10.1.2.3", {}, False, True),
        ("example.com", {}, False, True),
        ("0.0.0.0", {"insecure_no_auth": True}, False, False),
        ("0.0.0.0", {"api_key": SecretStr("sk-env")}, False, False),
        ("0.0.0.0", {}, True, False),  # keys exist, even if all are revoked: closed, not open
        ("127.0.0.1", {}, False, False),
        ("127.0.0.2", {}, False, False),
        ("::1", {}, False, False),
        ("localhost", {}, False, False),
    ],
)
def test_startup_refuses_an_open_server_off_loopback(
    host: str, settings: dict[str, object], keys_created: bool, refused: bool
) -> None:
    refusal = startup_refusal(Settings(host=host, **settings), keys_created)  # type: ignore[arg-type]
    assert (refusal is not None) == refused
    if refusal:
        assert host in refusal and "--insecure-no-auth" in refusal and "OPENTUNE_API_KEY" in refusal


def test_keys_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "create", "--org", "acme", "--data-dir", str(tmp_path)])
    key = capsys.readouterr().out.strip()
    main(["keys", "list", "--data-dir", str(tmp_path)])
    listing = capsys.readouterr().out
    header, row = listing.strip().splitlines()
    assert header.split() == ["ID", "ORGANIZATION", "HINT", "CREATED", "REVOKED"]
    key_id, org, hint, _created, revoked = row.split()
    assert org == "acme" and key.startswith(hint.removesuffix("...")) and revoked == "-"
    assert key not in listing and key[len(hint) :] not in listing
    main(["keys", "revoke", key_id, "--data-dir", str(tmp_path)])
    assert "revoked" in capsys.readouterr().err
    main(["keys", "list", "--org", "acme", "--data-dir", str(tmp_path)])
    assert capsys.readouterr().out.strip().splitlines()[1].split()[-1] != "-"
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "revoke", "key-nope", "--data-dir", str(tmp_path)])
    assert exit_.value.code == 2 and "no API key with id" in capsys.readouterr().err
