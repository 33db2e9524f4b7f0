"""Keeping the planner's statistics of the runtime's tables current from the worker: at start, before the
first claim, and every few seconds as history grows (why: store.statistics)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog

from millrace import store
from millrace.outages import OUTAGES
from millrace.store.pool import Pool

log = structlog.get_logger(__name__)

#: the check is one read of pg_class; a drain of 1,000 jobs a second doubles a small table in a few seconds,
#: and until the ANALYZE each claim may read all of it
ANALYSE_INTERVAL_S = 5.0


class TableAnalyser:
    """Analyses the runtime's tables that have no statistics yet or have grown; one worker at a time."""

    def __init__(self, pool: Pool, *, interval_s: float = ANALYSE_INTERVAL_S) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.analysed: list[str] = []

    async def start(self) -> None:
        """A pass now, so that a worker started on a history nobody analysed claims with real statistics
        from its first job; then one every `interval_s`."""
        await self._pass()
        self._task = asyncio.create_task(self._run(), name="millrace-table-analyser")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> list[str]:
        """Analyse what needs it; the names of the tables analysed."""
        async with self._pool.acquire() as conn:
            analysed = await store.statistics.analyse_grown_tables(conn)
        if analysed:
            log.info("tables_analysed", tables=analysed)
            self.analysed += analysed
        return analysed

    async def _pass(self) -> None:
        try:
            await self.run_once()
        except OUTAGES as error:  # PostgreSQL away: the next pass tries again
            log.warning("tables_not_analysed", error=repr(error))

    async def _run(self) -> None:
        while True:
            # jittered, so that the workers do not all check at once
            await asyncio.sleep(self._interval_s * random.uniform(0.8, 1.2))
            await self._pass()
