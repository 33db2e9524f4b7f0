"""Producers for contact imports from uploaded CSV and Excel files (the bulk queue)."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import BULK


class ImportArgs(JobArgs):
    import_id: RowId


class ImportChunkArgs(JobArgs):
    import_id: RowId
    chunk: int
    rows: int


#: reads the upload, checks its header and splits it into chunks, one child job each
SPLIT_IMPORT = JobRef("split_import", BULK, ImportArgs)
IMPORT_CHUNK = JobRef("import_chunk", BULK, ImportChunkArgs)
#: the fan-in: runs once when every chunk has ended, and writes the summary
FINISH_IMPORT = JobRef("finish_import", BULK, ImportArgs)


async def enqueue_import(client: JobClient, *, import_id: int, conn: Connection) -> EnqueuedJob:
    """Start an import recorded in `conn`'s transaction: it runs only if that transaction commits."""
    return await client.enqueue(SPLIT_IMPORT, ImportArgs(import_id=import_id), conn=conn)
