"""opentune gateway: the OpenAI-compatible HTTP API, job scheduling and adapter serving."""
