"""The programs job families run (LibreOffice, pdftotext), each named by a setting: a missing one is a
configuration error that ends its job at once, and a worker names those its queue's jobs lack when it starts."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import structlog

from millrace import ConfigurationError, JobRef, Queue
from settings import Settings

log = structlog.get_logger(__name__)

#: the settings that hold a program's command line; its first word is the program
CommandSetting = Literal["soffice_command", "pdftotext_command"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    """A program jobs run; a setting holds its command line, so a deployment may put it anywhere."""

    #: what a person installs, as reasons and the start-up warning name it
    name: str
    setting: CommandSetting

    def command(self, settings: Settings) -> list[str]:
        command: list[str] = getattr(settings, self.setting)
        return command

    def installed(self, settings: Settings) -> bool:
        """Whether the command's first word names a program this process can run (on PATH, or a path)."""
        return shutil.which(self.command(settings)[0]) is not None


class ProgramMissing(ConfigurationError):
    """A program a job runs is not where its setting says: no retry can install it."""

    def __init__(self, program: Program, command: str) -> None:
        self.program = program
        self.command = command
        super().__init__(
            f"{program.name} is not installed: {command!r} cannot be run "
            f"(it is settings.{program.setting}, {program.setting.upper()} in the environment)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramsNeeded:
    """Declared at the top level of a job family's module: the programs one of its jobs runs."""

    job: JobRef[Any]
    programs: tuple[Program, ...]


def needed_on(queue: Queue, modules: Iterable[ModuleType]) -> list[ProgramsNeeded]:
    """What the jobs of `queue`, declared in `modules`, need."""
    found = (value for module in modules for value in vars(module).values())
    return [value for value in found if isinstance(value, ProgramsNeeded) and value.job.queue == queue]


def warn_if_missing(settings: Settings, queue: Queue, needed: Sequence[ProgramsNeeded]) -> None:
    """One warning line naming each program the queue's jobs run that is not installed where its setting says.

    A warning, not a refusal to start: the queue's other jobs still run, and each job that needs the
    program ends dead with the same reason (ProgramMissing) until a person installs it or fixes the setting.
    """
    jobs_of: dict[Program, list[str]] = {}
    for need in needed:
        for program in need.programs:
            if not program.installed(settings):
                jobs_of.setdefault(program, []).append(need.job.name)
    if jobs_of:
        log.warning(
            "tools_missing",
            queue=queue.name,
            programs=[program.name for program in jobs_of],
            commands={program.setting: program.command(settings)[0] for program in jobs_of},
            jobs=sorted({name for names in jobs_of.values() for name in names}),
        )
