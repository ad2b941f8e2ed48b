"""`opentune serve ...` and `opentune keys ...`: the command line. Flags override OPENTUNE_* variables.
`opentune jobs ...` and `opentune models list` are a client of a running server (client_cli.py).

Start errors (a model that cannot load, a server that would be open to the network) are one line on
stderr and exit status 2, before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, NoReturn

import uvicorn

from service.client_cli import add_commands as add_client_commands
from service.client_cli import run as run_client
from service.config import DEFAULT_MODEL, Settings
from service.engine.model_source import resolve_model_path
from service.errors import ModelUnavailable
from service.openapi import render

logger = logging.getLogger("opentune")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opentune", description="OpenAI-compatible fine-tuning server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the API server (and its vLLM engine)")
    serve.add_argument("--model", help=f"hub id or local folder of the base model (default {DEFAULT_MODEL})")
    serve.add_argument("--served-model-name", help="name clients use for the base model (default: --model)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--data-dir", help="folder for the database, files and adapters (default ./data)")
    serve.add_argument("--engine-url", help="use an already running vLLM server instead of starting one")
    serve.add_argument("--engine-replicas", type=int, help="managed vLLM engines for the model (default 1)")
    serve.add_argument("--models-file", help="several base models, each with its own engines (JSON or YAML)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="serve without authentication, even on a network address (callers act as org 'default')",
    )

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key for an organization and print it (shown once)")
    create.add_argument("--org", required=True, help="organization name (lowercase letters, digits, - and _)")
    listing = keys.add_parser("list", help="list API keys: id, organization, hint, created, revoked")
    listing.add_argument("--org", help="only this organization's keys")
    revoke = keys.add_parser("revoke", help="revoke an API key by id (servers refuse it within 5 s)")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    for command in (create, listing, revoke):
        command.add_argument("--data-dir", help="the server's data folder (default ./data)")
    commands.add_parser("openapi", help="print the API description (openapi.yaml) and exit")
    add_client_commands(commands)
    return parser


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"opentune: {message}\n".replace("\n\n", "\n"))
    sys.exit(2)


def _timestamp(seconds: int | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _keys(settings: Settings, args: argparse.Namespace) -> None:
    from service.api_keys import Revocation, create_api_key, list_api_keys, revoke_api_key
    from service.store.database import open_database

    db = open_database(settings)
    try:
        if args.keys_command == "create":
            key = create_api_key(db, args.org)
            sys.stdout.write(key + "\n")
            sys.stderr.write(f"Created an API key for organization '{args.org}'. It is shown only once.\n")
        elif args.keys_command == "list":
            rows = [("ID", "ORGANIZATION", "HINT", "CREATED", "REVOKED")]
            rows += [
                (k.id, k.organization, k.hint + "...", _timestamp(k.created_at), _timestamp(k.revoked_at))
                for k in list_api_keys(db, args.org)
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            for row in rows:
                sys.stdout.write(
                    "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                )
                sys.stdout.write("\n")
        else:
            outcome = revoke_api_key(db, args.key_id)
            if outcome is Revocation.NOT_FOUND:
                _fail(f"no API key with id {args.key_id!r} (see `opentune keys list`)")
            sys.stderr.write(f"API key {args.key_id}: {outcome.value}.\n")
    except ValueError as exc:  # an invalid organization name
        _fail(str(exc))
    finally:
        db.close()


def _open_access_warning(settings: Settings) -> str | None:
    """Refuse to serve open to the network (exit 2); say so when serving open on loopback.
    Runs before logging is set up, so the migrations' log lines do not bury a refusal."""
    from service.auth import any_key_created, startup_refusal
    from service.store.database import open_database

    db = open_database(settings)
    try:
        keys_created = any_key_created(db)
    finally:
        db.close()
    refusal = startup_refusal(settings, keys_created)
    if refusal:
        _fail(refusal)
    if settings.insecure_no_auth:
        return "--insecure-no-auth: /v1 accepts requests without a valid key, as organization 'default'"
    if not settings.api_key and not keys_created:
        return (
            f"No API key configured: /v1 is open to anyone who can reach {settings.host} (loopback "
            "only). Create one with `opentune keys create --org NAME` or set OPENTUNE_API_KEY."
        )
    return None


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in ("jobs", "models"):
        sys.exit(run_client(args))  # a client of a server: no settings of ours
    ignored = ("command", "keys_command", "org", "key_id")
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ignored and v is not None}
    settings = Settings(**overrides)
    if args.command == "keys":
        _keys(settings, args)
        return
    if args.command == "openapi":
        from service.app import create_app

        sys.stdout.write(render(create_app(settings)))
        return
    open_access = _open_access_warning(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: each relayed completion and each engine health check.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from service.engine.models_file import configured_base_models

    try:
        paths = {m.name: resolve_model_path(m.model) for m in configured_base_models(settings)}
    except (ModelUnavailable, ValueError, OSError) as exc:
        _fail(str(exc))
    if open_access:
        logger.warning(open_access)

    from service.app import create_app

    # Open streams get 10 s to finish on shutdown: then trainers and engines are stopped (app.py).
    uvicorn.run(
        create_app(settings, paths),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
