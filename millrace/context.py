"""The typed context a job receives, bridged once from arq's untyped dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from millrace.errors import LeaseLost
from millrace.store import attempts
from millrace.store.pool import Connection

if TYPE_CHECKING:
    from millrace.client import JobClient
    from millrace.progress import ProgressWriter

S = TypeVar("S")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext(Generic[S]):
    job_id: str
    function: str
    queue: str
    #: 1-based number of this attempt over the job's whole life (dead-letter retries continue it)
    attempt: int
    #: 1-based number of this attempt within the current budget, the one the retry policy counts
    run_attempt: int
    max_attempts: int
    enqueued_at: datetime
    #: for a cron function, the tick this run belongs to; None for ordinary jobs
    tick_at: datetime | None
    worker: str
    #: the fencing token of this attempt: it holds the job while the record carries it
    lease: int
    #: the worker's own client, for follow-up jobs (enqueue them in the job's transaction with `conn=`)
    jobs: JobClient
    #: the application's resources (pools, clients, templates), built once per worker process
    services: S
    progress_writer: ProgressWriter = field(repr=False)

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report how far the job has come, shown with its record (`JobRecord.progress`).

        Cheap enough to call for every row: it is kept in memory and written about once a second, the
        latest value only. A later attempt's reports replace this one's.
        """
        self.progress_writer.note(self.job_id, self.lease, done, total, message)

    async def hold_lease(self, conn: Connection) -> None:
        """Call inside the transaction that makes a guarded side effect, before making it.

        Raises LeaseLost if this attempt no longer holds the job (its worker was cut off or frozen and
        the job went to another worker); otherwise the job stays with this attempt until the
        transaction ends. Together with the effect's own idempotency check in the same transaction,
        the effect happens once, whichever copy of the job gets there.
        """
        if not await attempts.hold_lease(conn, self.job_id, self.lease):
            raise LeaseLost(self.job_id, self.lease)

    async def first_time(self, conn: Connection, step: str = "effect") -> bool:
        """Call inside the transaction that makes a guarded side effect: True if this attempt must make
        it now, False if an earlier attempt of this job made it already (its transaction committed, then
        its worker died before the attempt's end was on record).

        It holds the lease (see `hold_lease`) and records `step` as done in the same transaction, so the
        effect and its record commit together or not at all. A job with several effects names each step.
        """
        await self.hold_lease(conn)
        return await attempts.mark_step_done(conn, self.job_id, step, lease=self.lease, attempt=self.attempt)
