"""The built-in ``replay`` source: nbfeed recordings played back (see :mod:`.provider`)."""

from .provider import ReplayProvider

__all__ = ["ReplayProvider"]
