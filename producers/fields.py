"""Field types the job arguments share."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

BIGINT_MAX = 2**63 - 1

#: a row's id: positive and within PostgreSQL's bigint, so looking it up can fail only by finding nothing
#: (an id past bigint is refused at enqueue, and by the worker as invalid arguments, never retried)
RowId = Annotated[int, Field(gt=0, le=BIGINT_MAX)]
