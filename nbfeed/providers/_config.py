"""Reading a provider's options: base URLs, numbers and switches, each refused by name when bad.

The built-in providers take their options from configuration (``c.NBFeed.provider_options``, the
CLI's ``--option``, ``register_provider(..., **options)``), so a value may be of any type. These
readers turn one option into the value the provider uses, or raise
:class:`~nbfeed.errors.BadRequest` naming the provider, the option and what it accepts. They are
called from ``__init__``/``init``, so a bad option marks the provider ``failed`` with that message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest


def resolve_url(options: Mapping[str, Any], key: str, env: str, default: str) -> str:
    """A base URL: the option ``key``, else the environment variable ``env``, else ``default``.

    Trailing slashes are dropped so callers can append paths.
    """
    value = options.get(key) or os.environ.get(env) or default
    if not isinstance(value, str):
        raise BadRequest(f"option {key!r} must be a URL string, got {value!r:.80}")
    return value.rstrip("/")


def positive_number(options: Mapping[str, Any], source: str, name: str, default: float) -> float:
    """The option ``name`` as a finite number above zero (``default`` when unset)."""
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{source} option {name}: expected a positive number, got {value!r:.80}")
    return float(value)


def positive_int(options: Mapping[str, Any], source: str, name: str, default: int) -> int:
    """The option ``name`` as a whole number above zero (``default`` when unset)."""
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest(f"{source} option {name}: expected a positive whole number, "
                         f"got {value!r:.80}")
    return value


def switch(options: Mapping[str, Any], source: str, name: str, default: bool) -> bool:
    """The option ``name`` as ``True`` or ``False`` (``default`` when unset).

    Only booleans are accepted: ``bool("false")`` is true, so a string is refused, not guessed.
    """
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{source} option {name}: expected true or false, got {value!r:.80}")
    return value
