"""Alembic revisions, one file per revision; Alembic skips this __init__.py."""
