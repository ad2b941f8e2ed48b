"""running -> succeeded | failed | queued again: how one attempt at an export ended, applied.

Blocking (database, storage): the runner calls these in a worker thread. Each change is conditional
on the export still being this gateway's running one (service/exports/claims.py), so an attempt that
ends after its model was deleted, or after another gateway took the export over, changes nothing
but removing what it wrote.
"""

from __future__ import annotations

import logging
import re

from service.exports.claims import ExportClaims, error
from service.exports.launcher import ExportEnd
from service.exports.sources import ExportSources
from service.files import FileStore, new_row
from service.store import ModelExportRow
from trainer import storage
from trainer.export_events import partial_zip

logger = logging.getLogger(__name__)


def model_deleted(model: str) -> dict[str, str]:
    return error("model_deleted", f"The model {model} was deleted before its export finished.")


def export_filename(model: str) -> str:
    """`ft:base:org:suffix:id` -> `ft-base-org-suffix-id-merged.zip` (a name any file system takes)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") + "-merged.zip"


class ExportOutcomes:
    def __init__(
        self, claims: ExportClaims, sources: ExportSources, files: FileStore, max_attempts: int
    ) -> None:
        self.claims = claims
        self.sources = sources
        self.files = files
        self.max_attempts = max_attempts

    def record(self, row: ModelExportRow, file_id: str, ended: ExportEnd) -> None:
        """`row` as it was claimed; `file_id`: the file its attempt wrote."""
        org_id, model = row.organization_id, row.model
        if ended.exported is not None:
            if self.sources.locate(org_id, model) is None:  # deleted as the zip was completed
                self.claims.fail(row.id, model_deleted(model), ("running",))
            else:
                size = ended.exported.bytes
                file = new_row(file_id, org_id, export_filename(model), "fine-tune-results", size, None)
                if self.claims.succeed(row.id, file):
                    logger.info("Export %s: %d bytes in %.1f s", row.id, size, ended.exported.seconds)
                    return
            self.discard_output(file_id)
            return
        self.discard_output(file_id)
        if ended.error is not None:
            self.claims.fail(row.id, error(ended.error.code, ended.error.message), ("running",))
            return
        self._crashed(row.id, ended.returncode)

    def _crashed(self, export_id: str, returncode: int | None) -> None:
        """The process died without a word (killed, out of memory): from scratch, or failed."""
        row = self.claims.get(export_id)
        if row is None or row.status != "running" or row.owner != self.claims.owner:
            return  # failed meanwhile (its model deleted) or no longer this gateway's
        if row.attempts < self.max_attempts:
            logger.warning("Export %s: its process exited with %s; running it again", export_id, returncode)
            self.claims.retry(export_id)
            return
        failure = error(
            "export_failed",
            f"The export process stopped unexpectedly {row.attempts} times (last exit status "
            f"{returncode}); the server's log has the details.",
        )
        self.claims.fail(export_id, failure, ("running",))

    def discard_output(self, file_id: str | None) -> None:
        """What an attempt wrote towards its file: the zip, or a local zip half written."""
        if file_id is None:
            return
        location = self.files.location_of(file_id)
        storage.remove(location)
        if not storage.is_remote(location):
            partial_zip(location).unlink(missing_ok=True)
