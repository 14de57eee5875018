"""The SMTP notifications adapter against a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from allocation.adapters.notifications import EmailNotifications
from devtools.servers import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_sends_the_out_of_stock_email(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    EmailNotifications("127.0.0.1", port, "allocation@shop", "stock@shop").send(
        "Out of stock for LAMP", "No batch has enough stock."
    )
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["stock@shop"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Out of stock for LAMP"
    assert message["From"] == "allocation@shop"
    assert "No batch has enough stock." in message.get_payload()
