"""The workers: Redis messages come in to the consumer, committed events to the relay."""
