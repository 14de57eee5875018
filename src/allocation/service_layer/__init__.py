"""Use cases: handlers, the message bus, the Unit of Work and the ports they need."""
