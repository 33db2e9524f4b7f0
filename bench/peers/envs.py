"""Each peer's own environment, made on first use and again when its pinned list changes.

arq, SAQ and BullMQ's Python port each get a virtualenv under bench/.venv-peers/: BullMQ's port needs
redis-py 6 or later and arq 0.28 refuses it, so one environment cannot hold them all. BullMQ for Node.js
is installed into bench/peers/node/node_modules when `node` and `npm` are on the PATH.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENVS = ROOT / "bench" / ".venv-peers"
NODE_DIR = HERE / "node"
STAMP = ".bench-installed"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _current(stamp: Path, digest: str) -> bool:
    return stamp.exists() and stamp.read_text() == digest


def python_env(system: str) -> Path:
    """The interpreter of `system`'s environment (arq, saq or bullmq), installed from its pinned list."""
    requirements = HERE / "requirements" / f"{system}.txt"
    venv = VENVS / system
    stamp = venv / STAMP
    digest = _digest(requirements)
    if not _current(stamp, digest):
        print(f"installing {system}'s environment into {venv.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        stamp.write_text(digest)
    return venv / "bin" / "python"


def node_env() -> str | None:
    """The `node` binary once BullMQ is installed beside bench.mjs; None where Node.js or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    stamp = NODE_DIR / "node_modules" / STAMP
    digest = _digest(NODE_DIR / "package.json")
    if not _current(stamp, digest):
        print("installing BullMQ for Node.js into bench/peers/node/node_modules", flush=True)
        # no lock file: package.json pins the two packages exactly, and is all that is committed
        install = [npm, "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"]
        if subprocess.run(install, cwd=NODE_DIR).returncode != 0:
            print("npm install failed: BullMQ on Node.js is left out of this run", flush=True)
            return None
        stamp.write_text(digest)
    return node
