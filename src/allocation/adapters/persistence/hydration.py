"""Mapped instances made from a statement's rows through the classical mapping.

The ORM's own loading (``select(Product).from_statement(...)`` with contains_eager)
builds its row processors anew for every query: about a quarter of what loading a
product cost a request. Here each statement's layout (which columns feed which
mapped attribute) is worked out once, and an instance is made as the ORM makes
one: the mapper's new instance, its column attributes set as loaded (no history),
its identity key set, its collections set as committed. A collection a load did
not fill in stays unloaded and raises when touched (``lazy="raise"``), as before.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, event
from sqlalchemy.orm import Mapper, class_mapper
from sqlalchemy.orm.attributes import instance_state


@dataclass(frozen=True)
class Entity:
    """Where one mapped class's columns sit in a row."""

    mapper: Mapper[Any]
    fields: tuple[tuple[int, str], ...]  # (position in the row, attribute)
    identity: tuple[int, ...]  # the positions of its primary key

    def key(self, row: Sequence[Any]) -> tuple[Any, ...] | None:
        """Its primary key in ``row``; None where an outer join found none."""
        key = tuple(row[i] for i in self.identity)
        return None if key[0] is None else key

    def make(self, row: Sequence[Any]) -> Any:
        instance = self.mapper.class_manager.new_instance()
        loaded = instance.__dict__
        for position, attribute in self.fields:
            loaded[attribute] = row[position]
        state = instance_state(instance)
        state.key = self.mapper.identity_key_from_primary_key(tuple(row[i] for i in self.identity))
        return instance


def entity(cls: type, columns: Sequence[ColumnElement[Any]]) -> Entity | None:
    """The class's place among ``columns`` (a statement's selected columns, in
    order), or None when they hold none of its columns."""
    mapper: Mapper[Any] = class_mapper(cls)
    table = mapper.local_table
    positions = {col: i for i, col in enumerate(columns) if getattr(col, "table", None) is table}
    if not positions:
        return None
    fields = tuple((i, mapper.get_property_by_column(col).key) for col, i in positions.items())
    identity = tuple(positions[col] for col in mapper.primary_key)
    return Entity(mapper, fields, identity)


@functools.cache
def layout(columns: tuple[ColumnElement[Any], ...], *classes: type) -> tuple[Entity | None, ...]:
    """Each class's Entity among ``columns``, worked out once per statement."""
    return tuple(entity(cls, columns) for cls in classes)


# Mapped anew (tests map and unmap per test): layouts name the mappers of the
# mapping they were worked out for.
event.listen(Mapper, "after_configured", layout.cache_clear)
