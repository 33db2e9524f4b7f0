"""What the dashboard asks Redis: its memory and persistence, and which jobs it holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from redis.exceptions import RedisError

from millrace import payload
from millrace.queues import redis_queue_key


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisMemory:
    used_bytes: int
    peak_bytes: int
    #: 0 when Redis has no limit
    max_bytes: int
    policy: str
    persistence: str
    warnings: list[str]


async def redis_memory(redis: ArqRedis) -> RedisMemory:
    memory = await redis.info("memory")
    persistence = await redis.info("persistence")
    policy = str(memory.get("maxmemory_policy", "unknown"))
    aof = bool(persistence.get("aof_enabled"))
    rdb = await _snapshots_on(redis)
    warnings: list[str] = []
    if policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy}: Redis may evict queued jobs (the reconciler puts them back from "
            "PostgreSQL, late); set it to noeviction"
        )
    if not aof and not rdb:
        warnings.append("persistence is off: a Redis restart loses every queued job until the reconciler restores them")
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    if limit and used > 0.8 * limit:
        warnings.append(f"Redis uses {used / limit:.0%} of its maxmemory: producers will fall back to the outbox")
    return RedisMemory(
        used_bytes=used,
        peak_bytes=int(memory.get("used_memory_peak", 0)),
        max_bytes=limit,
        policy=policy,
        persistence=", ".join(p for p, on in (("AOF", aof), ("RDB", rdb)) if on) or "off",
        warnings=warnings,
    )


async def _snapshots_on(redis: ArqRedis) -> bool:
    """Whether Redis has `save` points; a managed Redis that forbids CONFIG says so in INFO instead."""
    try:
        config = await redis.config_get("save")
    except RedisError:
        return False
    return bool(str(config.get("save", "")).strip())


async def missing_from_redis(redis: ArqRedis, jobs: Sequence[tuple[str, int]]) -> list[str]:
    """The record ids among `jobs` (record id, attempt base) whose payload Redis does not hold."""
    if not jobs:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for record_id, base in jobs:
            pipe.exists(job_key_prefix + payload.redis_job_id(record_id, base))
        found = await pipe.execute()
    return [record_id for (record_id, _), exists in zip(jobs, found, strict=True) if not exists]


async def queued_record_ids(redis: ArqRedis, queue: str, *, limit: int) -> list[str]:
    """Record ids of the first `limit` jobs in a queue's Redis sorted set (cron runs left out)."""
    ids = await redis.zrange(redis_queue_key(queue), 0, limit - 1)
    names = [i.decode("utf-8", "backslashreplace") if isinstance(i, bytes) else str(i) for i in ids]
    return [payload.record_id_of(n) for n in names if not n.startswith(payload.CRON_ID_PREFIX)]


async def queue_length(redis: ArqRedis, queue: str) -> int:
    return int(await redis.zcard(redis_queue_key(queue)))


REDIS_ERRORS = (RedisError, OSError)
