"""The trainer's event protocol (trainer/events.py): what the writer writes the reader reads back
typed; anything else is dropped, never raised."""

from __future__ import annotations

import io

import pytest

from trainer.events import (
    BaseValidationEvent,
    CheckpointEvent,
    ErrorEvent,
    EventWriter,
    MessageEvent,
    MetricsEvent,
    ResultEvent,
    StoppedEvent,
    TrainerEvent,
    parse_event,
)

EVERY_KIND: list[TrainerEvent] = [
    MessageEvent(message="Tokenized 12 examples", level="warn"),
    MetricsEvent(step=3, total_steps=9, train_loss=1.5, valid_loss=None),
    BaseValidationEvent(valid_loss=6.9, valid_mean_token_accuracy=0.01),
    CheckpointEvent(
        step=3, path="out/checkpoint-3", epoch_end=True, metrics={"train_loss": 1.5}, kept_epoch_steps=[3]
    ),
    ErrorEvent(code="out_of_memory", message="Training ran out of memory"),
    ResultEvent(
        adapter_dir="out/adapter", metrics_csv="out/metrics.csv", trained_tokens=640, train_runtime_s=1.5
    ),
    StoppedEvent(step=3, checkpoint=None),
]


def test_every_kind_written_is_read_back_as_the_same_event() -> None:
    stream = io.StringIO()
    writer = EventWriter(stream)
    for event in EVERY_KIND:
        writer.emit(event)
    lines = stream.getvalue().splitlines()
    assert [parse_event(line) for line in lines] == EVERY_KIND
    assert [parse_event(line.encode()) for line in lines] == EVERY_KIND


def test_the_convenience_methods_write_the_same_events() -> None:
    stream = io.StringIO()
    writer = EventWriter(stream)
    writer.message("hello")
    writer.error("invalid_training_file", "Example 1: no messages", "training_file")
    writer.stopped(step=0, checkpoint=None)
    assert [parse_event(line) for line in stream.getvalue().splitlines()] == [
        MessageEvent(message="hello"),
        ErrorEvent(code="invalid_training_file", message="Example 1: no messages", param="training_file"),
        StoppedEvent(step=0, checkpoint=None),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Some library printed this",
        "",
        "{",
        "[]",
        '{"event": "celebration", "message": "a kind this gateway does not know"}',
        '{"message": "no kind"}',
        '{"event": "metrics", "step": "three", "total_steps": 9, "train_loss": 1.0}',
        '{"event": "metrics", "step": -1, "total_steps": 9, "train_loss": 1.0}',
        '{"event": "result", "adapter_dir": "out/adapter"}',
        '{"event": "message", "level": "shout", "message": "x"}',
        b"\xff\xfe not utf-8",
    ],
)
def test_anything_else_is_dropped(line: str | bytes) -> None:
    assert parse_event(line) is None


def test_a_writer_whose_reader_is_gone_keeps_quiet() -> None:
    class Closed(io.StringIO):
        def write(self, _: str) -> int:
            raise BrokenPipeError

    writer = EventWriter(Closed())
    writer.message("nobody listens")
    writer.message("still nobody")  # no second attempt, no exception
