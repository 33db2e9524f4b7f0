"""Users of the demo service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from millrace import AlreadyExists, Executor, NotFound


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    id: int
    email: str
    name: str
    created_at: datetime


async def insert_user(conn: Executor, *, email: str, name: str) -> User:
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id, email, name, created_at", email, name
        )
    except asyncpg.UniqueViolationError as error:
        raise AlreadyExists("user", error.constraint_name) from None
    assert row is not None
    return User(**dict(row))


async def get_user(conn: Executor, user_id: int) -> User:
    row = await conn.fetchrow("SELECT id, email, name, created_at FROM users WHERE id = $1", user_id)
    if row is None:
        raise NotFound("user", user_id)
    return User(**dict(row))


async def find_user_by_email(conn: Executor, email: str) -> User | None:
    row = await conn.fetchrow("SELECT id, email, name, created_at FROM users WHERE lower(email) = lower($1)", email)
    return None if row is None else User(**dict(row))


async def insert_password_reset(conn: Executor, user_id: int) -> str:
    reset_id: object = await conn.fetchval("INSERT INTO password_resets (user_id) VALUES ($1) RETURNING id", user_id)
    return str(reset_id)


async def insert_api_token(conn: Executor, *, user_id: int, token_hash: bytes) -> None:
    await conn.execute("INSERT INTO api_tokens (token_hash, user_id) VALUES ($1, $2)", token_hash, user_id)


async def find_user_id_by_token(conn: Executor, token_hash: bytes) -> int | None:
    user_id: int | None = await conn.fetchval("SELECT user_id FROM api_tokens WHERE token_hash = $1", token_hash)
    return user_id
