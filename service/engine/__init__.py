"""The serving engine (vLLM): its process, its HTTP client, and where the base model comes from."""
