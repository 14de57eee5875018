"""What a hostile or broken client sends, over a raw socket to the real server.

Bodies are read whole or refused, writes take JSON only, every error is JSON
where the application answers, and nothing sent can add or break a log line.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.conftest import Service, unique
from tests.e2e.test_api import add_batch
from tests.waiting import wait_until

LIMIT = 64 * 1024  # MAX_REQUEST_BYTES's default, which the session's API runs with


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        message: dict[str, object] = json.loads(self.body)
        return message


def exchange(api: Service, raw: bytes, half_close: bool = False) -> Answer:
    """Sends raw bytes as one HTTP/1.1 request and reads the answer (bounded by timeouts)."""
    address = urlsplit(api.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(lines[0].split()[1]), headers, body[:length])


def post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode() + body


def chunked(body: bytes, size: int = 8192) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def an_order(api: Service) -> tuple[str, bytes]:
    """A fresh order for a SKU with stock, as a JSON body."""
    sku = unique("sku")
    add_batch(api, unique("batch"), sku, 10)
    orderid = unique("order")
    return orderid, json.dumps({"orderid": orderid, "sku": sku, "qty": 1}).encode()


def nothing_written(api: Service, orderid: str) -> bool:
    return requests.get(f"{api.url}/allocations/{orderid}", timeout=10).status_code == 404


def test_a_chunked_body_over_the_limit_is_refused_and_nothing_written(api: Service) -> None:
    orderid, body = an_order(api)
    # Valid JSON padded to the limit, then junk past it: cut at the limit it would parse.
    padded = body[:-1] + b', "pad": "' + b"x" * (LIMIT - len(body) - 12) + b'"}'
    assert len(padded) <= LIMIT
    raw = post("/allocate", "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    answer = exchange(api, raw + chunked(padded + b" " * 16384))
    assert answer.status == 413
    assert "larger than" in str(answer.json()["message"])
    assert nothing_written(api, orderid)


def test_a_declared_length_over_the_limit_is_refused(api: Service) -> None:
    headers = f"Content-Type: application/json\r\nContent-Length: {LIMIT + 1}\r\n"
    answer = exchange(api, post("/allocate", headers, b"{" * (LIMIT + 1)))
    assert (answer.status, answer.headers["content-type"]) == (413, "application/json")


def test_a_body_that_ends_early_is_a_400(api: Service) -> None:
    orderid, body = an_order(api)
    headers = f"Content-Type: application/json\r\nContent-Length: {len(body) + 50}\r\n"
    answer = exchange(api, post("/allocate", headers, body), half_close=True)
    assert answer.status == 400
    assert "ended after" in str(answer.json()["message"])
    assert nothing_written(api, orderid)


def test_a_small_chunked_body_is_read_whole(api: Service) -> None:
    orderid, body = an_order(api)
    raw = post("/allocate", "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n")
    assert exchange(api, raw + chunked(body, size=7)).status == 202
    assert not nothing_written(api, orderid)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_write_must_be_json(api: Service, content_type: str | None) -> None:
    orderid, body = an_order(api)
    declared = f"Content-Type: {content_type}\r\n" if content_type else ""
    answer = exchange(api, post("/allocate", f"{declared}Content-Length: {len(body)}\r\n", body))
    assert answer.status == 415
    assert "application/json" in str(answer.json()["message"])
    assert nothing_written(api, orderid)


def test_errors_before_the_application_carry_no_internals(api: Service) -> None:
    garbage = exchange(api, b"HELLO THERE\r\n\r\n")
    assert garbage.status == 400
    assert garbage.body == b""
    long_line = exchange(api, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: test\r\n\r\n")
    assert (long_line.status, long_line.headers["content-type"]) == (404, "application/json")


RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def test_nothing_sent_can_add_or_break_a_log_line(api: Service) -> None:
    before = len(api.output())
    forged = "x%0d%0a2026-01-01%2000:00:00,000%20CRITICAL%20allocation.forged%20owned%00%1b[31mred"
    request_id = unique("id") + "\x1b[2J\x00"  # an ANSI escape and a NUL in a header
    raw = f"GET /allocations/{forged} HTTP/1.1\r\nHost: test\r\nX-Request-ID: ".encode()
    answer = exchange(api, raw + request_id.encode() + b"\r\n\r\n")
    assert answer.status in (400, 404)
    exchange(api, f"GET /allocations/{forged} HTTP/1.1\r\nHost: test\r\n\r\n".encode())

    # The workers hand access lines to the log in batches, within a tenth of a second.
    escaped = "\\r\\n2026-01-01 00:00:00,000 CRITICAL allocation.forged owned\\x00\\x1b[31mred"
    written = wait_until(
        "the forged path logged",
        lambda: w if escaped in (w := api.output()[before:]) else None,
        timeout=3,
    )
    for line in written.splitlines():
        assert RECORD.match(line) or line.startswith("  "), f"a line that is no record: {line!r}"
        assert not set(line) & {"\x00", "\x1b", "\r"}, f"a raw control character: {line!r}"
    assert (
        "\\r\\n2026-01-01 00:00:00,000 CRITICAL allocation.forged owned\\x00\\x1b[31mred" in written
    )
