"""allocation: allocates customer order lines to batches of stock."""

__version__ = "0.1.0"
