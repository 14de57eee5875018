"""Adapters: the real implementations of the ports (SQLAlchemy, Redis, SMTP)."""
