"""Entrypoints: the thin edges (HTTP, Redis, command line) that parse input and call the bus."""
