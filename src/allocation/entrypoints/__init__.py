"""Entrypoints: the edges through which requests, messages and commands come in.

One package per edge: ``api`` (HTTP requests), ``workers`` (Redis messages and the
outbox) and ``cli`` (the `allocation` command, which starts the other two). Each
parses what comes in and calls the service layer. Imports point one way, kept so by
import-linter: cli -> api -> workers -> validation (the rules every edge applies to
its input). The API imports the workers only to serve their AsyncAPI description.
"""
