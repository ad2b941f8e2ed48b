"""`opentune serve ...`: the command line. Flags override OPENTUNE_* environment variables."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import uvicorn

from service.config import DEFAULT_MODEL, Settings
from service.engine.model_source import ModelUnavailable, resolve_model_path


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
    serve.add_argument("--models-file", help="several base models, each with its own engine (JSON or YAML)")

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create an API key for an organization and print it (shown once)")
    create.add_argument("--org", required=True, help="organization name (lowercase letters, digits, - and _)")
    create.add_argument("--data-dir", help="the server's data folder (default ./data)")
    return parser


def _create_key(settings: Settings, organization: str) -> None:
    from service.auth import create_api_key
    from service.store.database import open_database

    db = open_database(settings)
    try:
        key = create_api_key(db, organization)
    except ValueError as exc:
        sys.stderr.write(f"opentune: {exc}\n")
        sys.exit(2)
    finally:
        db.close()
    sys.stdout.write(key + "\n")
    sys.stderr.write(f"Created an API key for organization '{organization}'. It is shown only once.\n")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("command", "keys_command", "org")}
    overrides: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    settings = Settings(**overrides)
    if args.command == "keys":
        _create_key(settings, args.org)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from service.engine.fleet import configured_base_models

    try:
        paths = {m.name: resolve_model_path(m.model) for m in configured_base_models(settings)}
    except (ModelUnavailable, ValueError, OSError) as exc:
        sys.stderr.write(f"opentune: {exc}\n".replace("\n\n", "\n"))
        sys.exit(2)

    from service.app import create_app

    uvicorn.run(create_app(settings, paths), host=settings.host, port=settings.port, log_level="info")
