"""The `millrace` command of this application: the runtime's commands, run against its settings.

The runtime owns migrate, status, jobs, dead and enqueue; this module hands it what only the
application knows: where its database and Redis are, its jobs by name and its migration series.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import db
import millrace
from producers.catalog import all_refs
from settings import Settings


def application(settings: Settings) -> millrace.Application:
    return millrace.Application(
        database_url=settings.database_dsn(),
        redis_url=settings.redis_dsn(),
        jobs=all_refs(),
        migrations=[db.MIGRATIONS],
    )


def main(argv: Sequence[str] | None = None) -> int:
    def configured() -> millrace.Application:
        settings = Settings()
        millrace.configure_logging(settings.log_format, "WARNING")
        return application(settings)

    return millrace.cli.run(argv, configured)


if __name__ == "__main__":
    sys.exit(main())
