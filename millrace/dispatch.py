"""Putting jobs into arq's Redis structures: many jobs, one round trip.

arq's own `enqueue_job` takes three round trips per job (WATCH, EXISTS, MULTI/EXEC). This script does
the same check-and-set for a whole batch atomically, with the same keys and the same rule: a job whose
id is queued or still has a result is not enqueued again. That rule is what makes the outbox relay
deliver exactly once even when it crashes between Redis and its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, result_key_prefix

_ENQUEUE_LUA = """
local created = {}
for i = 0, (#KEYS / 3) - 1 do
  local job_key, result_key, queue_key = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  if redis.call('EXISTS', job_key, result_key) == 0 then
    redis.call('PSETEX', job_key, ARGV[i * 4 + 4], ARGV[i * 4 + 2])
    redis.call('ZADD', queue_key, ARGV[i * 4 + 3], ARGV[i * 4 + 1])
    created[#created + 1] = 1
  else
    created[#created + 1] = 0
  end
end
return created
"""
# Bounded so that one script call never blocks Redis for long.
_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    redis_job_id: str
    queue_key: str
    payload: bytes
    score_ms: int
    #: when Redis may forget a job that never started (arq's rule: its delay plus one day)
    expires_ms: int


def dispatch_for(*, redis_job_id: str, queue_key: str, payload: bytes, score_ms: int, now_ms: int) -> Dispatch:
    return Dispatch(
        redis_job_id=redis_job_id,
        queue_key=queue_key,
        payload=payload,
        score_ms=score_ms,
        expires_ms=max(score_ms - now_ms, 0) + expires_extra_ms,
    )


async def push(redis: ArqRedis, jobs: Sequence[Dispatch]) -> list[bool]:
    """Enqueue `jobs`; for each, whether it was new (False: that id was already queued or finished)."""
    created: list[bool] = []
    for start in range(0, len(jobs), _BATCH):
        chunk = jobs[start : start + _BATCH]
        keys: list[str] = []
        argv: list[str | bytes | int] = []
        for job in chunk:
            keys += [job_key_prefix + job.redis_job_id, result_key_prefix + job.redis_job_id, job.queue_key]
            argv += [job.redis_job_id, job.payload, job.score_ms, job.expires_ms]
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


async def remove_unstarted(redis: ArqRedis, redis_job_id: str, queue_key: str) -> bool:
    """Take a job out of its queue unless a worker has started it; False if one has."""
    script = redis.register_script(_REMOVE_LUA)
    keys = [in_progress_key_prefix + redis_job_id, job_key_prefix + redis_job_id, queue_key]
    return bool(await script(keys=keys, args=[redis_job_id]))
