"""What `python -m trainer.export` reports on stdout, one JSON object per line, typed on both ends.

The export process writes these; the gateway (service/exports/launcher.py) reads them back with
`parse_export_event`. `message` and `error` are the trainer's own kinds (trainer/events.py); an
export that succeeded ends with one `exported`. No heavy imports: the gateway imports this module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from trainer.events import ErrorEvent, MessageEvent

logger = logging.getLogger(__name__)


class ExportedEvent(BaseModel):
    """The zip is complete at the export's output location."""

    model_config = ConfigDict(frozen=True)

    event: Literal["exported"] = "exported"
    bytes: int = Field(ge=0)  # the zip's size
    shards: int = Field(ge=1)  # safetensors files in it
    dtype: str  # of the merged weights: the base's own
    seconds: float = Field(ge=0)


ExportEvent = Annotated[MessageEvent | ErrorEvent | ExportedEvent, Field(discriminator="event")]
_EVENT = TypeAdapter[ExportEvent](ExportEvent)


def parse_export_event(line: bytes | str) -> ExportEvent | None:
    """One line of the export's output as an event; None (logged) for anything else."""
    try:
        return _EVENT.validate_json(line)
    except ValidationError as exc:
        logger.debug("Not an export event (%s): %r", exc.errors()[0]["msg"], line[:200])
        return None


def partial_zip(out: str) -> Path:
    """Where the export writes a local zip before renaming it to `out`: what an interrupted
    export leaves behind (the gateway removes it)."""
    return Path(out).with_name(Path(out).name + ".partial")


class ExportEventWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def emit(self, event: MessageEvent | ErrorEvent | ExportedEvent) -> None:
        try:
            self._stream.write(event.model_dump_json() + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the gateway is gone: nobody listens, and the process dies with it anyway

    def message(self, message: str) -> None:
        self.emit(MessageEvent(message=message))

    def error(self, code: str, message: str) -> None:
        self.emit(ErrorEvent(code=code, message=message))
