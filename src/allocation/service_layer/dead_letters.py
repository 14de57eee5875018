"""Inbound messages that could not be applied: kept, listed, and re-driven on demand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from allocation.service_layer.ports import DeadLetter
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


def record(
    uow: AbstractUnitOfWork, source: str, payload: str, error: str, message_id: str | None
) -> None:
    with uow:
        uow.dead_letters.add(
            DeadLetter(None, source, payload, error, message_id, datetime.now(UTC))
        )
        uow.commit()


def listing(uow: AbstractUnitOfWork, include_redriven: bool = False) -> Sequence[DeadLetter]:
    with uow:
        return uow.dead_letters.list(include_redriven)


def get(uow: AbstractUnitOfWork, letter_id: int) -> DeadLetter | None:
    with uow:
        return uow.dead_letters.get(letter_id)


def mark_redriven(uow: AbstractUnitOfWork, letter_id: int) -> None:
    with uow:
        uow.dead_letters.mark_redriven(letter_id, datetime.now(UTC))
        uow.commit()
