"""Request bodies: JSON only, and read whole or refused.

A write that carries a body must say it is JSON: a browser form on another
site can post text/plain without asking first, so anything else is refused
(415) before it reaches a route. A body is read to its end, whatever the client
said of its length: one longer than MAX_REQUEST_BYTES is refused (413), never
cut, and one that stops short of its Content-Length is a 400.
"""

from __future__ import annotations

from typing import BinaryIO

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from allocation.entrypoints.validation import InvalidInput

JSON = "application/json"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CHUNK = 64 * 1024


def require_json() -> None:
    """Refuses a write (the caller knows it is one) whose body is not declared as JSON."""
    if _has_body() and request.mimetype != JSON:
        raise not_json(request.mimetype or "none")


def not_json(given: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"Content-Type must be {JSON} (got {given})")


def _has_body() -> bool:
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def read(limit: int) -> bytes:
    """The request's body, whole: at most ``limit`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    try:
        body = _read_up_to(request.environ["wsgi.input"], limit + 1)
    except OSError:  # the client went away in the middle of its body
        body = b""
        declared = declared if declared is not None else 1
    if len(body) > limit:
        raise too_large(limit)
    if declared is not None and len(body) < declared:
        raise InvalidInput(
            f"The body ended after {len(body)} of the {declared} bytes its Content-Length announced"
        )
    return body


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"The body is larger than this server accepts ({limit} bytes)")
