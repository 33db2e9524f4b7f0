"""Field types shared by the demo service's request bodies: what PostgreSQL can store, and sane bounds."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Path, Request, params
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, Field, StringConstraints

from millrace import unstorable_text

BIGINT_MAX = 2**63 - 1


def _storable(text: str) -> str:
    problem = unstorable_text(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def _one_line(text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("control characters (line breaks, tabs ...) are not allowed here")
    return text


def _web_url(text: str) -> str:
    try:
        url = httpx.URL(text)
        host = url.host  # an IDNA host ("xn--") is decoded here, and can fail here, not when parsed
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors, hence ValueErrors
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValueError("only an http(s) URL with a host is allowed")
    return text


#: any text a person typed: stored as given, minus surrounding spaces; never NUL or a lone surrogate
Text = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_storable)]
#: a name or a title: one line, not blank
Line = Annotated[Text, StringConstraints(min_length=1, max_length=200), AfterValidator(_one_line)]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$",
    ),
    AfterValidator(_storable),
]
#: an http(s) URL a user gives us to call (whether its host is public is checked apart: it takes DNS)
WebUrl = Annotated[Text, StringConstraints(max_length=500), AfterValidator(_web_url)]
#: an id in a JSON body: a whole number PostgreSQL's bigint holds, never `true` or "7"
BodyId = Annotated[int, Field(strict=True, ge=1, le=BIGINT_MAX)]
#: an id in a path
PathId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def only_query(*names: str) -> params.Depends:
    """A route dependency: query parameters other than `names` are a 422, like any invalid field, rather
    than silently ignored (a misspelt filter must not widen a query)."""
    allowed = frozenset(names)

    async def refuse_unknown(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise RequestValidationError(
                [
                    {"type": "extra_forbidden", "loc": ("query", name[:100]), "msg": "Extra inputs are not permitted"}
                    for name in unknown[:10]
                ]
            )

    dependency: params.Depends = Depends(refuse_unknown)
    return dependency
