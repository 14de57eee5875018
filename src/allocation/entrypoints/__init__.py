"""Entrypoints: the thin edges (HTTP, Redis consumer, command line) that parse input and call the bus."""
