"""The pure model: aggregates, value objects, commands and events. Imports only the stdlib."""
