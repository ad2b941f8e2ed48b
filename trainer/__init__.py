"""opentune trainer: one process per job, `python -m trainer SPEC.json`.

Reads a job spec, trains a QLoRA adapter with TRL, writes JSON-line events to stdout and the adapter
to the spec's output folder. Runnable by hand with the same spec, so it is debuggable without the gateway.
"""
