"""`opentune jobs ...` and `opentune models list`: a client of any opentune (or OpenAI) server,
through the `openai` SDK, for the common paths. `jobs follow` shows a job's status, a progress bar
over its steps with the latest loss and an ETA, and its events as they arrive, then exits with the
job's outcome: 0 succeeded, 1 failed, 3 cancelled (2: a usage or connection error).

The server and key come from `--base-url` / `--api-key`, else from OPENAI_BASE_URL /
OPENAI_API_KEY, as for the SDK itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

TERMINAL = {"succeeded": 0, "failed": 1, "cancelled": 3}


def add_commands(commands: Any) -> None:
    """The client's subcommands, on `opentune`'s parser (service/cli.py)."""
    jobs = commands.add_parser("jobs", help="fine-tuning jobs on a server (an OpenAI client)")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    follow = job_commands.add_parser("follow", help="watch a job until it ends; exit with its outcome")
    follow.add_argument("job_id")
    follow.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    job_commands.add_parser("list", help="the organization's jobs, newest first")
    create = job_commands.add_parser("create", help="upload a training file and start a job")
    create.add_argument("--file", required=True, type=Path, help="training data (JSONL)")
    create.add_argument("--model", required=True, help="the base model (or an ft: model to continue)")
    create.add_argument("--suffix")
    create.add_argument("--epochs", type=int, help="n_epochs (default: auto)")
    create.add_argument("--follow", action="store_true", help="then follow it (as `jobs follow`)")
    models = commands.add_parser("models", help="models on a server (an OpenAI client)")
    models.add_subparsers(dest="models_command", required=True).add_parser("list", help="model ids")
    for command in (follow, job_commands.choices["list"], create, models):
        command.add_argument("--base-url", help="the server's /v1 URL (default: OPENAI_BASE_URL)")
        command.add_argument("--api-key", help="an API key (default: OPENAI_API_KEY)")


def run(args: argparse.Namespace) -> int:
    console = Console()
    try:
        client = OpenAI(base_url=args.base_url, api_key=args.api_key)
        if args.command == "models":
            for model in client.models.list():
                console.print(model.id, highlight=False)
            return 0
        if args.jobs_command == "list":
            return _list(client, console)
        if args.jobs_command == "create":
            job = _create(client, args)
            console.print(f"Created {job.id} ({job.status})", highlight=False)
            return follow(client, job.id, console) if args.follow else 0
        return follow(client, args.job_id, console, args.interval)
    except openai.APIStatusError as exc:
        console.print(f"opentune: {exc.status_code}: {_message(exc)}", style="red", highlight=False)
    except (openai.APIConnectionError, openai.OpenAIError, OSError) as exc:
        console.print(f"opentune: {exc}", style="red", highlight=False)
    return 2


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    return str(error.get("message") if isinstance(error, dict) else exc.message)


def _list(client: OpenAI, console: Console) -> int:
    table = Table("ID", "STATUS", "MODEL", "FINE-TUNED MODEL", "CREATED", box=None)
    for job in client.fine_tuning.jobs.list(limit=50).data:
        table.add_row(job.id, job.status, job.model, job.fine_tuned_model or "-", _time(job.created_at))
    console.print(table)
    return 0


def _create(client: OpenAI, args: argparse.Namespace) -> FineTuningJob:
    with args.file.open("rb") as handle:
        file = client.files.create(file=(args.file.name, handle), purpose="fine-tune")
    hyperparameters = {"n_epochs": args.epochs} if args.epochs else {}
    return client.fine_tuning.jobs.create(
        model=args.model,
        training_file=file.id,
        suffix=args.suffix,
        hyperparameters=hyperparameters,  # type: ignore[arg-type]
    )


def follow(client: OpenAI, job_id: str, console: Console, interval_s: float = 2.0) -> int:
    """Show the job until it ends; its outcome as an exit status."""
    seen: set[str] = set()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job_id, total=None, loss="-")
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            for event in _new_events(client, job_id, seen):
                if event.type == "metrics" and isinstance(event.data, dict):
                    data: dict[str, Any] = event.data
                    progress.update(
                        task,
                        completed=int(data.get("step", 0)),
                        total=int(data.get("total_steps") or 0) or None,
                        loss=f"{float(data.get('train_loss', 0.0)):.4f}",
                    )
                else:
                    progress.console.print(
                        f"{_time(event.created_at)} {event.level:5s} {event.message}", highlight=False
                    )
            progress.update(task, description=f"{job_id} {job.status}")
            if job.status in TERMINAL:
                break
            time.sleep(interval_s)
    outcome = f"{job.id} {job.status}"
    if job.fine_tuned_model:
        outcome += f": {job.fine_tuned_model}"
    if job.error and job.error.message:
        outcome += f": {job.error.message}"
    console.print(outcome, highlight=False)
    return TERMINAL[job.status]


def _new_events(client: OpenAI, job_id: str, seen: set[str], pages: int = 20) -> list[FineTuningJobEvent]:
    """The job's events not shown yet, oldest first (the API pages newest first)."""
    new: list[FineTuningJobEvent] = []
    jobs = client.fine_tuning.jobs
    after: str | None = None
    for _ in range(pages):
        page = (
            jobs.list_events(job_id, limit=100, after=after) if after else jobs.list_events(job_id, limit=100)
        )
        fresh = [e for e in page.data if e.id not in seen]
        new += fresh
        if len(fresh) < len(page.data) or not page.has_more or not page.data:
            break
        after = page.data[-1].id
    seen.update(e.id for e in new)
    return list(reversed(new))


def _time(seconds: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(seconds))
