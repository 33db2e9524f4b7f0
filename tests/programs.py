"""Tests that run a program this machine may lack (LibreOffice, poppler, openssl...) skip with a reason that
names it and its package; `.ci/run` installs them all. PostgreSQL and Redis are services, never skipped."""

from __future__ import annotations

import shutil

import pytest


def needs_programs(*programs: str, package: str) -> pytest.MarkDecorator:
    """Skip unless every one of `programs` is on PATH; the reason names those missing and `package`."""
    missing = [program for program in programs if shutil.which(program) is None]
    reason = f"{', '.join(missing)} not installed (apt-get install {package}; .ci/run installs it)"
    return pytest.mark.skipif(bool(missing), reason=reason)
