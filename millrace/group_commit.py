"""Group commit: concurrent callers' items go out together, one write for a batch, not one for each.

While a write is in flight, new items wait in memory; when it returns, they go out together in the next.
The batch grows with the load by itself, and a lone caller's item goes out at once, with no wait added
(no timer, unlike the record writer's linger: a producer's caller is waiting on it).

The write answers every item of its batch, or raises; then every caller of that batch gets the error.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: enough to turn a web process's bursts into a handful of statements, small enough to bound one statement
MAX_BATCH = 500


class GroupCommit(Generic[T, R]):
    """`await submit(item)` returns the write's answer for `item`; `write` takes a batch, answers in order."""

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0
        self.items_written = 0

    async def submit(self, item: T) -> R:
        """A caller cancelled before its batch is taken leaves nothing behind; once the batch is being
        written, its item may go out all the same, as it might have had it been written alone."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            self._move_to(loop)
        done: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, done))
        if self._task is None or self._task.done():
            # started on the loop's next turn: the callers of this turn share the first batch. In a context
            # of its own: not the first caller's trace span and log fields, which later batches outlive
            self._task = loop.create_task(self._run(), name="millrace-group-commit", context=contextvars.Context())
        return await done

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve a new event loop (a client outliving its loop: asyncio.run called again). What callers of
        the old loop left waiting is dropped unwritten, as if they had been cancelled: their loop is gone or
        elsewhere, and no answer can reach them from this one."""
        self._pending = [(item, done) for item, done in self._pending if done.get_loop() is loop]
        self._task = None

    async def drain(self) -> None:
        """Return once everything submitted has been written (or failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        # a writer left behind by a move to another loop writes no more: the pending items are the new one's
        while self._pending and self._task is asyncio.current_task():
            taken = [(item, done) for item, done in self._pending[: self._max_batch] if not done.done()]
            del self._pending[: self._max_batch]
            if not taken:
                continue  # every caller of this batch gave up before it went out
            try:
                answers = await self._write([item for item, _ in taken])
                if len(answers) != len(taken):
                    raise AssertionError(f"a batch of {len(taken)} got {len(answers)} answers")
            except Exception as error:
                for _, done in taken:
                    if not done.done():
                        done.set_exception(error)
                continue
            except BaseException:
                # cancelled with the loop: every caller still waiting is told so
                for _, done in taken:
                    done.cancel()
                if self._task is asyncio.current_task():
                    for _, done in self._pending:
                        done.cancel()
                    self._pending.clear()
                raise
            for (_, done), answer in zip(taken, answers, strict=True):
                if not done.done():
                    done.set_result(answer)
            self.batches_written += 1
            self.items_written += len(taken)
