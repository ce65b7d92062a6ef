"""Finding provider classes: built-ins and entry points, dotted paths, and notebook classes.

Three ways in, none of which edits nbfeed:

* the ``nbfeed.providers`` entry-point group (``simulated``, ``csv``, ``binance``, ``polygon``
  are registered this way by nbfeed itself; a third-party package adds its own);
* a dotted path ``"package.module:Class"`` (or ``package.module.Class``) in configuration;
* a class object, e.g. one defined in a notebook cell. Such a class has no importable module, so
  it is shipped to the provider process by value with cloudpickle. Limits: everything the class
  refers to at module level (globals, helper functions) is pickled with it, so it must be
  picklable; modules it imports must be importable in a fresh Python process; state mutated in
  the notebook after registration is not seen by the provider process.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from ..errors import BadRequest, UnknownSource

ENTRY_POINT_GROUP = "nbfeed.providers"
_BUILTINS = {
    "simulated": "nbfeed.providers.simulated:SimulatedProvider",
    "csv": "nbfeed.providers.csv:CSVProvider",
    "binance": "nbfeed.providers.binance:BinanceProvider",
    "polygon": "nbfeed.providers.polygon:PolygonProvider",
    "replay": "nbfeed.providers.replay:ReplayProvider",
}
_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def check_source_name(name: Any) -> str:
    """A source name: lower-case letters, digits, ``_-.``, 1-64 characters."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not set(name) <= _NAME_OK:
        raise BadRequest(f"provider name {name!r} must be 1-64 characters of a-z, 0-9, '_', '-'"
                         " or '.'")
    return name


def available_providers() -> dict[str, str]:
    """Provider names -> dotted paths: nbfeed's built-ins plus the entry-point group."""
    found = dict(_BUILTINS)
    try:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            found[ep.name] = ep.value
    except Exception:  # a broken third-party distribution must not hide the built-ins
        pass
    return found


def describe_unloaded(path: str, options: dict[str, Any] | None = None) -> dict[str, str]:
    """Whether a provider that is not running could be turned on here, and what it is.

    Imports its class (in the caller's process; nothing is started) and asks
    :meth:`Provider.setup_problem`. Returns ``status`` (``"not loaded"``: ready to turn on;
    ``"not usable"``: not here, ``detail`` says why and what to do) and ``description``. A
    class that cannot be imported is reported, never raised.
    """
    try:
        cls = load_class(path)
    except BadRequest as exc:
        return {"status": "not usable", "detail": str(exc), "description": ""}
    try:
        problem = cls.setup_problem(dict(options or {}))
    except Exception as exc:  # an author's check that breaks must not break the listing
        problem = f"its setup check failed: {type(exc).__name__}: {exc}"
    return {"status": "not usable" if problem else "not loaded", "detail": problem or "",
            "description": cls.describe()}


def load_class(path: str) -> type:
    """Import ``"pkg.mod:Class"`` or ``"pkg.mod.Class"``; errors name the path."""
    from .base import Provider

    if not isinstance(path, str) or not path.strip():
        raise BadRequest(f"provider class path must be a string like 'pkg.module:Class', "
                         f"got {path!r}")
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise BadRequest(f"provider class path {path!r} must look like 'pkg.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BadRequest(f"cannot import provider module {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise BadRequest(f"provider class {attr!r} not found in {module_name!r}")
    if not isinstance(obj, type) or not issubclass(obj, Provider):
        raise BadRequest(f"{path!r} is not a subclass of nbfeed.Provider")
    return obj


def _importable(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    if cls.__module__ in ("__main__", "__mp_main__") or module is None:
        return False
    if getattr(module, "__file__", None) is None:
        return False
    return "<locals>" not in cls.__qualname__


@dataclass
class ProviderSpec:
    """How to build one provider in its process: a name, a class (or path) and its options."""

    name: str
    factory: str | type | None
    options: dict[str, Any] = field(default_factory=dict)
    #: A class already pickled by value elsewhere (a remote notebook); shipped as is, never
    #: unpickled in the hub's process.
    pickled: bytes | None = None

    def __post_init__(self) -> None:
        check_source_name(self.name)
        if self.pickled is not None:
            if not isinstance(self.pickled, bytes):
                raise BadRequest(f"provider {self.name!r}: pickled class must be bytes")
        elif isinstance(self.factory, str):
            pass
        elif isinstance(self.factory, type):
            from .base import Provider

            if not issubclass(self.factory, Provider):
                raise BadRequest(f"{self.factory!r} is not a subclass of nbfeed.Provider")
        else:
            raise BadRequest(f"provider {self.name!r}: expected a class or a dotted path, got "
                             f"{type(self.factory).__name__}")
        if not isinstance(self.options, dict):
            raise BadRequest(f"provider {self.name!r}: options must be a dict")

    def payload(self) -> tuple[str, Any]:
        """What the child process needs to build the class: ``("path", str)`` or
        ``("pickled", bytes)`` for classes without an importable module (notebook cells)."""
        if self.pickled is not None:
            return ("pickled", self.pickled)
        if isinstance(self.factory, str):
            return ("path", self.factory)
        if _importable(self.factory):
            return ("path", f"{self.factory.__module__}:{self.factory.__qualname__}")
        import cloudpickle

        try:
            return ("pickled", cloudpickle.dumps(self.factory))
        except Exception as exc:
            raise BadRequest(
                f"provider {self.name!r}: class {self.factory.__qualname__} cannot be shipped "
                f"to its own process ({exc}); everything it uses at module level must be "
                "picklable") from exc


def class_from_payload(payload: tuple[str, Any]) -> type:
    """The inverse of :meth:`ProviderSpec.payload`, run in the provider process."""
    kind, value = payload
    if kind == "path":
        return load_class(value)
    import cloudpickle

    return cloudpickle.loads(value)


def resolve_spec(name: str, factory: str | type | None = None, **options: Any) -> ProviderSpec:
    """A spec for ``name``: the given factory, else the built-in / entry point of that name."""
    if factory is None:
        known = available_providers()
        if name not in known:
            raise UnknownSource(f"unknown provider {name!r}; available: {', '.join(sorted(known))}")
        factory = known[name]
    return ProviderSpec(name=name, factory=factory, options=options)
