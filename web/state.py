"""What the web process opens once and every handler uses."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from millrace import JobClient, Pool
from settings import Settings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    pool: Pool
    jobs: JobClient


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.millrace
    return state
