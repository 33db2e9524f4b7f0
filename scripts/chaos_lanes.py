"""Run `make chaos` in two lanes at once: the half-hour cron-and-soak test in one, every other scenario in
the other, each a pytest process of its own with its own template database and Redis database index.
The lanes' lines are printed as they come, tagged with the lane; the exit code is the worse of the two.
Every process's log stays in var/chaos/<lane>/ for a failure to be read afterwards.

    python scripts/chaos_lanes.py [pytest options...]
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

LONG_TEST = "tests/chaos/test_8_9_cron_beside_soak.py"


#: each lane's processes' logs stay here after the run (pytest's own temporary folders rotate away)
LOGS = Path(__file__).resolve().parent.parent / "var" / "chaos"


def lanes(pytest_options: list[str]) -> dict[str, list[str]]:
    pytest = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", *pytest_options]
    return {
        "cron+soak": [*pytest, f"--basetemp={LOGS / 'cron-soak'}", LONG_TEST],
        "the rest": [*pytest, f"--basetemp={LOGS / 'the-rest'}", "tests/chaos", "--deselect", LONG_TEST],
    }


def relay(name: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)  # pytest makes a --basetemp folder, not its parents
    running: list[tuple[subprocess.Popen[bytes], threading.Thread]] = []
    for name, command in lanes(sys.argv[1:]).items():
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        reader = threading.Thread(target=relay, args=(name, process.stdout), daemon=True)
        reader.start()
        running.append((process, reader))
    codes = []
    for process, reader in running:
        codes.append(process.wait())
        reader.join()
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
