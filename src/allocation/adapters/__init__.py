"""Adapters: the real implementations of the ports, one package per kind of work.

``sql`` is the database's machinery (engines, tables, prepared statements,
migrations); ``persistence`` the write side on it (products, the Unit of Work,
the outbox and the inbox); ``read_models`` the views and the queries that read
them. Redis, SMTP, Prometheus and the readiness probe are modules of their own.
"""
