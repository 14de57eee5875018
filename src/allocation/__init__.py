"""allocation: allocates customer order lines to batches of stock."""

from importlib import metadata

__version__ = "0.1.0"


def package_version() -> str:
    """The installed package's version (0.0.0 when run from a source tree)."""
    try:
        return metadata.version("allocation")
    except metadata.PackageNotFoundError:
        return "0.0.0"
