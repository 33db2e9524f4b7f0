"""What the web process opens once and every handler uses."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from millrace import JobClient, Pool
from millrace.storage import DownloadLinks, Storage
from settings import Settings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    pool: Pool
    jobs: JobClient
    storage: Storage
    #: None when no DOWNLOAD_LINK_SECRET is set: no link is made or served
    links: DownloadLinks | None


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.millrace
    return state
