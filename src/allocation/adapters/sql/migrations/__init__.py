"""Alembic migration environment: owns the database schema (see adapters.database)."""
