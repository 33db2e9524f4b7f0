"""Putting jobs into arq's Redis structures: many jobs, one round trip.

arq's own `enqueue_job` takes three round trips per job (WATCH, EXISTS, MULTI/EXEC). This script does
the same check-and-set for a whole batch atomically, with the same keys and the same rule: a job whose
id is queued or still has a result is not enqueued again. That rule is what makes the outbox relay
deliver exactly once even when it crashes between Redis and its commit.

A job's score, the moment it falls due, is on Redis's clock: the scripts add the job's delay to Redis's
`TIME`, so no process's wall clock decides when a job runs (millrace.clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, result_key_prefix

from millrace import payload, tracing, wakeup
from millrace.clock import CLOCK
from millrace.queues import redis_queue_key
from millrace.records import OutboxEntry

# The time of day by Redis's clock, in ms, as the scores are.
_NOW_LUA = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# Every job created pushes a token to its queue's wake list, which an idle worker waits on (wakeup.py);
# the list is trimmed, so that tokens nobody waited for do not pile up.
_WAKE_LUA = f"""
local function wake(wake_key)
  redis.call('LPUSH', wake_key, '1')
  redis.call('LTRIM', wake_key, 0, {wakeup.MAX_TOKENS - 1})
end
"""

_ENQUEUE_LUA = (
    _WAKE_LUA
    + _NOW_LUA
    + """
local created = {}
local over_results = ARGV[#ARGV] == '1'
for i = 0, (#KEYS / 4) - 1 do
  local job_key, result_key, queue_key = KEYS[i * 4 + 1], KEYS[i * 4 + 2], KEYS[i * 4 + 3]
  if over_results and redis.call('EXISTS', job_key) == 0 then
    redis.call('DEL', result_key)
  end
  if redis.call('EXISTS', job_key, result_key) == 0 then
    redis.call('PSETEX', job_key, ARGV[i * 4 + 4], ARGV[i * 4 + 2])
    redis.call('ZADD', queue_key, now_ms + tonumber(ARGV[i * 4 + 3]), ARGV[i * 4 + 1])
    wake(KEYS[i * 4 + 4])
    created[#created + 1] = 1
  else
    created[#created + 1] = 0
  end
end
return created
"""
)
# Bounded so that one script call never blocks Redis for long.
_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    redis_job_id: str
    queue: str
    payload: bytes
    #: how long from now (by Redis's clock) until the job is due; below 0 for a head start (priority)
    delay_ms: int
    #: when Redis may forget a job that never started (arq's rule: its delay plus one day)
    expires_ms: int


def build(
    *,
    redis_job_id: str,
    queue: str,
    function: str,
    arq_args: list[Any],
    enqueued_at: datetime,
    run_at: datetime | None,
    priority: int = 0,
) -> Dispatch:
    """The one way to make a job for Redis: arq's record, due at `run_at` (or now), expiring by arq's rule.

    arq starts a queue's due jobs in the order of their scores, the times they fell due. A job due now
    with a `priority` of N is scored N seconds earlier: it goes ahead of every normal job that has waited
    less than N seconds, and behind those that waited longer, so no job waits forever (aging). A job
    deferred to a later time keeps that time: an earlier score would start it early.
    """
    # a `run_at` is a time of day, read against this process's measure of Redis's clock
    delay_ms = _ms(run_at) - CLOCK.ms() if run_at is not None else 0
    if delay_ms <= 0:
        delay_ms -= priority * 1000
    return Dispatch(
        redis_job_id=redis_job_id,
        queue=queue,
        payload=payload.serialize_job(function, arq_args, _ms(enqueued_at)),
        delay_ms=delay_ms,
        expires_ms=max(delay_ms, 0) + expires_extra_ms,
    )


def for_entry(entry: OutboxEntry) -> Dispatch:
    """A recorded job: its arguments in Millrace's envelope, under the arq id of its current budget."""
    return build(
        redis_job_id=payload.redis_job_id(entry.job_id, entry.attempt_base),
        queue=entry.queue,
        function=entry.function,
        # checked again on its way out: a context edited by hand in PostgreSQL must not spoil the payload
        arq_args=[
            payload.make_envelope(entry.job_id, entry.args, entry.attempt_base, tracing.received(entry.trace_context))
        ],
        enqueued_at=entry.enqueued_at,
        run_at=entry.run_at,
        priority=entry.priority,
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def push(redis: ArqRedis, jobs: Sequence[Dispatch], *, over_results: bool = False) -> list[bool]:
    """Enqueue `jobs`; for each, whether it was new (False: that id was already queued or finished).

    `over_results`: for jobs whose record PostgreSQL holds pending, a result arq kept under the id is
    stale (arq gave up on the job itself: its own timeout, a lost payload) and is replaced.
    """
    created: list[bool] = []
    for start in range(0, len(jobs), _BATCH):
        chunk = jobs[start : start + _BATCH]
        keys: list[str] = []
        argv: list[str | bytes | int] = []
        for job in chunk:
            queue_key = redis_queue_key(job.queue)
            keys += [
                job_key_prefix + job.redis_job_id,
                result_key_prefix + job.redis_job_id,
                queue_key,
                wakeup.wake_key(queue_key),
            ]
            argv += [job.redis_job_id, job.payload, job.delay_ms, job.expires_ms]
        argv.append("1" if over_results else "0")
        # register_script sends EVALSHA and falls back to EVAL once when Redis has not seen the script
        script = redis.register_script(_ENQUEUE_LUA)
        result = await script(keys=keys, args=argv)
        created += [bool(flag) for flag in result]
    return created


_REMOVE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


async def remove_unstarted(redis: ArqRedis, redis_job_id: str, queue: str) -> bool:
    """Take a job out of its queue unless a worker has started it; False if one has."""
    script = redis.register_script(_REMOVE_LUA)
    keys = [in_progress_key_prefix + redis_job_id, job_key_prefix + redis_job_id, redis_queue_key(queue)]
    return bool(await script(keys=keys, args=[redis_job_id]))


# A job whose worker died: free it from that worker's in-progress mark so that any worker takes it now,
# and put it back if Redis lost it meanwhile. Its record is pending: a result arq kept is stale (arq gave
# up on the job itself) and is replaced.
_HAND_ON_LUA = (
    _WAKE_LUA
    + _NOW_LUA
    + """
local handed = 0
for i = 0, (#KEYS / 5) - 1 do
  local in_progress_key, job_key, result_key, queue_key = KEYS[i * 5 + 1], KEYS[i * 5 + 2], KEYS[i * 5 + 3],
    KEYS[i * 5 + 4]
  redis.call('DEL', in_progress_key)
  local score = now_ms + tonumber(ARGV[i * 4 + 3])
  if redis.call('EXISTS', job_key) == 1 then
    redis.call('ZADD', queue_key, 'NX', score, ARGV[i * 4 + 1])
    wake(KEYS[i * 5 + 5])
    handed = handed + 1
  elseif ARGV[i * 4 + 2] ~= '' then
    redis.call('DEL', result_key)
    redis.call('PSETEX', job_key, ARGV[i * 4 + 4], ARGV[i * 4 + 2])
    redis.call('ZADD', queue_key, score, ARGV[i * 4 + 1])
    wake(KEYS[i * 5 + 5])
    handed = handed + 1
  end
end
return handed
"""
)


async def hand_on(redis: ArqRedis, entries: Sequence[OutboxEntry]) -> int:
    """Make reaped jobs runnable by any worker at once; returns how many are waiting in Redis now.

    A cron run is only freed, never rebuilt: arq's scheduler wrote its payload, and its tick comes round.
    """
    handed = 0
    for start in range(0, len(entries), _BATCH):
        keys: list[str] = []
        argv: list[str | bytes | int] = []
        for entry in entries[start : start + _BATCH]:
            job = for_entry(entry)
            queue_key = redis_queue_key(job.queue)
            keys += [
                in_progress_key_prefix + job.redis_job_id,
                job_key_prefix + job.redis_job_id,
                result_key_prefix + job.redis_job_id,
                queue_key,
                wakeup.wake_key(queue_key),
            ]
            rebuilt = b"" if entry.job_id.startswith(payload.CRON_ID_PREFIX) else job.payload
            argv += [job.redis_job_id, rebuilt, job.delay_ms, job.expires_ms]
        script = redis.register_script(_HAND_ON_LUA)
        handed += int(await script(keys=keys, args=argv))
    return handed


# A job arq started on a worker that died before the job's claim reached PostgreSQL: its record is
# still pending, so the reaper does not know it, and arq would leave it for its whole in-progress
# timeout. Freed only if the mark is older than a start and a claim take (its time left tells).
_FREE_STRANDED_LUA = (
    _NOW_LUA
    + """
local freed = 0
for i = 0, (#KEYS / 3) - 1 do
  local in_progress_key, job_key, queue_key = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  local left = redis.call('PTTL', in_progress_key)
  if left > 0 and left <= tonumber(ARGV[1]) then
    redis.call('DEL', in_progress_key)
    if redis.call('EXISTS', job_key) == 1 then
      redis.call('ZADD', queue_key, 'NX', now_ms, ARGV[i + 2])
    end
    freed = freed + 1
  end
end
return freed
"""
)


async def in_progress_ids(redis: ArqRedis) -> list[str]:
    """The arq ids that some worker marked as started, of every queue."""
    prefix = in_progress_key_prefix.encode()
    found: list[str] = []
    async for key in redis.scan_iter(match=in_progress_key_prefix + "*", count=1000):
        found.append(bytes(key).removeprefix(prefix).decode(errors="replace"))
    return found


async def free_stranded(redis: ArqRedis, entries: Sequence[OutboxEntry], *, older_than_left_ms: int) -> int:
    """Free pending jobs from an in-progress mark with at most `older_than_left_ms` left to live."""
    freed = 0
    for start in range(0, len(entries), _BATCH):
        keys: list[str] = []
        ids: list[str] = []
        for entry in entries[start : start + _BATCH]:
            redis_id = payload.redis_job_id(entry.job_id, entry.attempt_base)
            keys += [in_progress_key_prefix + redis_id, job_key_prefix + redis_id, redis_queue_key(entry.queue)]
            ids.append(redis_id)
        script = redis.register_script(_FREE_STRANDED_LUA)
        freed += int(await script(keys=keys, args=[older_than_left_ms, *ids]))
    return freed
