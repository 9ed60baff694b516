"""isofast: exact, fast isotropy analysis of model embeddings."""

from isofast._core import __version__

__all__ = ["__version__"]
