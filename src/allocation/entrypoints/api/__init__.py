"""The HTTP API: requests come in through Flask and granian, and are answered in JSON."""
