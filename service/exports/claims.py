"""Export rows as the gateways that run them see them: claimed, kept under a lease, finished.

An export runs in a process of the gateway that claimed it (one conditional UPDATE from `queued`,
so two gateways never both run it). That gateway renews the lease of its running exports; when it
dies its processes die with it (service/processes.py), so a `running` row whose lease expired, or
one of this gateway's own found at its start, has nothing left to attach to: it is queued again to
run from scratch, or failed once it has started `max_attempts` times. Every change here is
conditional on the state it expects, so a late writer (a gateway that lost its lease, a model
deleted meanwhile) changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update

from service.store import Database, FileRow, ModelExportRow

_QUEUED, _RUNNING = "queued", "running"


def error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


class ExportClaims:
    def __init__(self, db: Database, owner: str, lease_s: float) -> None:
        self.db = db
        self.owner = owner
        self.lease_s = lease_s

    def queued(self) -> list[ModelExportRow]:
        """First created, first run."""
        with self.db.session() as session:
            query = select(ModelExportRow).where(ModelExportRow.status == _QUEUED)
            return list(session.scalars(query.order_by(ModelExportRow.created_at, ModelExportRow.id)))

    def get(self, export_id: str) -> ModelExportRow | None:
        with self.db.session() as session:
            return session.get(ModelExportRow, export_id)

    def claim(self, export_id: str, file_id: str) -> bool:
        """queued -> running here, as a new attempt writing the file `file_id`; False when another
        gateway was first (or the export ended meanwhile)."""
        values = {"owner": self.owner, "lease_expires_at": time.time() + self.lease_s, "file_id": file_id}
        attempts = ModelExportRow.attempts + 1
        return self._update(export_id, (_QUEUED,), status=_RUNNING, attempts=attempts, **values)

    def renew(self, supervised: list[str]) -> list[str]:
        """Extend the leases of this gateway's running exports; the supervised ones it no longer
        runs (failed meanwhile, or adopted by another gateway after this one was cut off)."""
        with self.db.session() as session:
            session.execute(
                update(ModelExportRow)
                .where(ModelExportRow.owner == self.owner, ModelExportRow.status == _RUNNING)
                .values(lease_expires_at=time.time() + self.lease_s)
            )
            if not supervised:
                return []
            query = select(ModelExportRow.id, ModelExportRow.owner, ModelExportRow.status)
            rows = session.execute(query.where(ModelExportRow.id.in_(supervised))).all()
        still = {export_id for export_id, owner, status in rows if owner == self.owner and status == _RUNNING}
        return [export_id for export_id in supervised if export_id not in still]

    def _orphaned(self, own_too: bool) -> ColumnElement[bool]:
        expired = or_(
            ModelExportRow.owner.is_(None),
            ModelExportRow.lease_expires_at.is_(None),
            ModelExportRow.lease_expires_at < time.time(),
        )
        return or_(expired, ModelExportRow.owner == self.owner) if own_too else expired

    def orphans(self, own_too: bool) -> list[ModelExportRow]:
        """Running exports nobody runs: their lease expired, and with `own_too` (this gateway just
        started) this gateway's own, whose processes died with its previous run."""
        with self.db.session() as session:
            query = select(ModelExportRow).where(ModelExportRow.status == _RUNNING, self._orphaned(own_too))
            return list(session.scalars(query.order_by(ModelExportRow.created_at)))

    def recover(self, row: ModelExportRow, own_too: bool, max_attempts: int) -> str | None:
        """An orphan queued again to run from scratch, or failed after `max_attempts` starts; its
        new status, or None when another gateway recovered it first."""
        condition = (ModelExportRow.owner.is_not_distinct_from(row.owner), self._orphaned(own_too))
        if row.attempts >= max_attempts:
            failure = error(
                "export_interrupted",
                f"The export was interrupted {row.attempts} times (the server stopped while it ran); "
                "create a new export to try again.",
            )
            done = self._update(row.id, (_RUNNING,), *condition, **_failed(failure))
            return "failed" if done else None
        done = self._update(
            row.id, (_RUNNING,), *condition, status=_QUEUED, owner=None, lease_expires_at=None
        )
        return _QUEUED if done else None

    def succeed(self, export_id: str, file: FileRow) -> bool:
        """running here -> succeeded, with its file's row in the same transaction; False (and no
        file) when the export is no longer this gateway's running one."""
        values = {
            "status": "succeeded",
            "finished_at": int(time.time()),
            "owner": None,
            "lease_expires_at": None,
        }
        with self.db.session() as session:
            result = session.execute(self._mine(export_id).values(**values))
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(file)
        return True

    def fail(self, export_id: str, failure: dict[str, str], only_from: tuple[str, ...]) -> bool:
        """-> failed, from a state in `only_from` (a running export: only while this gateway's)."""
        mine = or_(ModelExportRow.status != _RUNNING, ModelExportRow.owner == self.owner)
        return self._update(export_id, only_from, mine, **_failed(failure))

    def retry(self, export_id: str) -> bool:
        """running here -> queued, to run from scratch (its process died without a word)."""
        with self.db.session() as session:
            result = session.execute(
                self._mine(export_id).values(status=_QUEUED, owner=None, lease_expires_at=None)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def release(self, export_ids: list[str]) -> None:
        """This gateway is shutting down and stopped these exports' processes: queued again at once,
        for any gateway, without counting the attempt (nothing went wrong with the export)."""
        if not export_ids:
            return
        with self.db.session() as session:
            session.execute(
                update(ModelExportRow)
                .where(
                    ModelExportRow.id.in_(export_ids),
                    ModelExportRow.owner == self.owner,
                    ModelExportRow.status == _RUNNING,
                )
                .values(
                    status=_QUEUED, owner=None, lease_expires_at=None, attempts=ModelExportRow.attempts - 1
                )
            )

    def _mine(self, export_id: str) -> Any:
        return update(ModelExportRow).where(
            ModelExportRow.id == export_id,
            ModelExportRow.status == _RUNNING,
            ModelExportRow.owner == self.owner,
        )

    def _update(self, export_id: str, only_from: tuple[str, ...], *where: Any, **values: Any) -> bool:
        with self.db.session() as session:
            query = update(ModelExportRow).where(
                ModelExportRow.id == export_id, ModelExportRow.status.in_(only_from), *where
            )
            return bool(session.execute(query.values(**values)).rowcount)  # type: ignore[attr-defined]


def _failed(failure: dict[str, str]) -> dict[str, Any]:
    return {
        "status": "failed",
        "error": failure,
        "finished_at": int(time.time()),
        "owner": None,
        "lease_expires_at": None,
    }
