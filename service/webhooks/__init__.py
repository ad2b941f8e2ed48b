"""Webhooks: organizations' endpoints (endpoints.py), the outbox of events written with the job's
final transition (outbox.py), and the dispatcher that signs (signing.py) and delivers them to
allowed destinations (destinations.py), retrying with backoff (dispatcher.py)."""
