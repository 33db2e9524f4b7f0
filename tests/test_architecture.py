"""The shape the design promises: the runtime stands alone, and every queue has its worker everywhere."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import millrace
import queues
from jobs import worker
from tests.platform import WORKER_CLASSES

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = {"jobs", "producers", "db", "web", "settings", "queues", "cli", "scripts", "tests", "bench"}


def imported_modules(folder: Path) -> list[tuple[str, str]]:
    """(file, top-level module) for every import in the folder's Python files."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path.name, node.module))
    return found


def test_the_runtime_imports_nothing_of_the_application() -> None:
    leaks = [(f, m) for f, m in imported_modules(ROOT / "millrace") if m.split(".")[0] in APPLICATION]
    assert leaks == []


def test_the_runtime_never_names_the_demo_application() -> None:
    words = re.compile(
        r"\b(jobs\.worker|producers/|web\.app|settings\.py|queues\.py|signup|welcome|stripe|demo)\b", re.I
    )
    named = [
        (path.name, n + 1, line.strip())
        for path in sorted((ROOT / "millrace").rglob("*"))
        if path.suffix in (".py", ".sql", ".html")
        for n, line in enumerate(path.read_text().splitlines())
        if words.search(line)
    ]
    assert named == []


def test_the_sample_application_uses_only_the_public_api() -> None:
    imports = imported_modules(ROOT / "tests" / "sample")
    runtime = {m for _, m in imports if m.split(".")[0] == "millrace"}
    assert runtime == {"millrace"}, "only `from millrace import ...`, never a runtime module"
    application = [(f, m) for f, m in imports if m.split(".")[0] in APPLICATION - {"tests"}]
    assert application == []
    own = {m for _, m in imports if m.startswith("tests")}
    assert own <= {"tests.sample", "tests.sample.app"}


def test_the_sample_application_names_only_what_the_api_exports() -> None:
    source = (ROOT / "tests" / "sample" / "app.py").read_text() + (ROOT / "tests" / "sample" / "worker.py").read_text()
    names = {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module == "millrace"
        for alias in node.names
    }
    assert names <= set(millrace.__all__)


def test_every_queue_has_a_worker_class_a_procfile_line_and_a_test_process() -> None:
    declared = {q.worker_class_name for q in queues.ALL}
    classes = {name for name, value in vars(worker).items() if isinstance(value, type) and name.endswith("Worker")}
    procfile = set(re.findall(r"^\w+: arq jobs\.worker\.(\w+)$", (ROOT / "Procfile").read_text(), re.M))
    assert classes == declared
    assert procfile == declared
    assert set(WORKER_CLASSES) <= declared
    for queue in queues.ALL:
        assert getattr(worker, queue.worker_class_name).queue_name == queue.redis_key
