"""Notifications: e-mail through SMTP where configured, a log line otherwise."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from allocation.service_layer.ports import AbstractNotifications

logger = logging.getLogger(__name__)


class EmailNotifications(AbstractNotifications):
    def __init__(self, host: str, port: int, sender: str, recipient: str) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._recipient = recipient

    def send(self, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = self._recipient
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self._host, self._port, timeout=10) as server:
            server.send_message(message)


class LoggingNotifications(AbstractNotifications):
    def send(self, subject: str, body: str) -> None:
        logger.warning("notification: %s: %s", subject, body)
