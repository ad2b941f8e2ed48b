"""`python -m trainer SPEC.json`: train one job, JSON-line events on stdout.

Exit status: 0 when the adapter was written or training stopped on request (SIGTERM); 1 on a
reported error (an `error` event says why); 3 when asked twice to stop and it did not wait for a
checkpoint, -14 (SIGALRM) when the stop deadline passed (see trainer/stopping.py); anything else
is a crash (see stderr).
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from trainer.data import DataValidationError
from trainer.events import EventWriter, event_stream
from trainer.formatting import TemplateError
from trainer.model import ModelLoadError
from trainer.spec import TrainingSpec
from trainer.staging import StoredOutputEvents, stage
from trainer.stopping import StopRequest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    parser.add_argument("spec", help="job spec JSON (see trainer/spec.py): a path or an s3:// URL")
    args = parser.parse_args(argv)
    spec = TrainingSpec.read(args.spec)
    stream = event_stream()
    stop_requested = StopRequest()
    stop_requested.install()
    try:
        if spec.stored is None:
            return _train(spec, EventWriter(stream), stop_requested)
        # The job's bytes are in object storage: train in a scratch copy (trainer/staging.py).
        with tempfile.TemporaryDirectory(prefix=f"opentune-{spec.job_id}-") as scratch:
            staged = stage(spec, Path(scratch))
            return _train(staged, StoredOutputEvents(stream, staged), stop_requested)
    finally:
        stop_requested.answered()


def _train(spec: TrainingSpec, events: EventWriter, stop_requested: StopRequest) -> int:
    # One trainer per job folder: a trainer started for a job whose previous trainer is still
    # saving its last checkpoint (a restarted server) waits for it. (In object storage, the job's
    # lease keeps a second trainer away: service/jobs/leases.py.)
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    lock = (spec.output_dir / "trainer.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)

    # Heavy imports after the signal handler is in place.
    if spec.method == "dpo":
        from trainer.dpo import run_dpo as run
    elif spec.method == "reinforcement":
        from trainer.rft import run_rft as run
    else:
        from trainer.sft import run_sft as run
    return _run(run, spec, events, stop_requested)


def _run(
    run: Callable[[TrainingSpec, EventWriter, StopRequest], None],
    spec: TrainingSpec,
    events: EventWriter,
    stop_requested: StopRequest,
) -> int:
    """Run the training method; an error it reports becomes an `error` event and exit status 1."""
    try:
        run(spec, events, stop_requested)
    except DataValidationError as exc:
        events.error(exc.code, exc.message, exc.param)
        return 1
    except TemplateError as exc:
        events.error("invalid_training_file", str(exc), "training_file")
        return 1
    except ModelLoadError as exc:
        events.error("base_model_unavailable", str(exc), "model")
        return 1
    except Exception as exc:
        if _is_out_of_memory(exc):
            events.error(
                "out_of_memory",
                f"Training ran out of memory (batch size {spec.batch_size}, max sequence length "
                f"{spec.max_seq_length}). Try a smaller batch_size, or a smaller "
                "'opentune.max_seq_length' in the job's metadata.",
                None,
            )
            return 1
        traceback.print_exc()
        events.error("training_failed", f"Training failed: {type(exc).__name__}: {exc}", None)
        return 1
    return 0


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(exc).lower()


if __name__ == "__main__":
    sys.exit(main())
