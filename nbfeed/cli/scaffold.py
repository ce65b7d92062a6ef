"""``nbfeed new-provider``: write a working provider module and its test, ready to edit.

The templates live in ``nbfeed/cli/templates/`` (``provider.py.tmpl``,
``test_provider.py.tmpl``) with ``{{name}}``, ``{{module}}`` and ``{{class_name}}``
placeholders. The generated test passes as written: it exercises the class on its own and in its
own process under a real hub.

Failure behaviour: a bad name or an existing file raises :class:`~nbfeed.errors.BadRequest`
naming it before anything is written, so a refused call leaves the folder untouched.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadRequest
from ..providers.registry import available_providers

TEMPLATES = Path(__file__).resolve().parent / "templates"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True)
class ProviderNames:
    """The names one scaffolded provider goes by."""

    name: str  # source name, e.g. "my_feed"
    module: str  # "my_feed_provider"
    class_name: str  # "MyFeedProvider"


def provider_names(name: object) -> ProviderNames:
    """Check ``name`` and derive the module and class names, or raise BadRequest saying why.

    A name is a lower-case Python identifier (it becomes a module name and a source name) of at
    most 40 characters, and must not be the name of a provider nbfeed already knows.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(f"provider name {name!r} must start with a lower-case letter and "
                         "contain only a-z, 0-9 and '_' (at most 40 characters), e.g. 'my_feed'")
    if keyword.iskeyword(name) or name.endswith("_"):
        raise BadRequest(f"provider name {name!r} is not usable as a Python name; pick another")
    known = available_providers()
    if name in known:
        raise BadRequest(f"provider name {name!r} is already taken by {known[name]}; "
                         "pick another")
    class_name = "".join(part.capitalize() for part in name.split("_") if part) + "Provider"
    return ProviderNames(name, f"{name}_provider", class_name)


def render(template: str, names: ProviderNames) -> str:
    """The text of ``template`` (a file name in ``templates/``) for ``names``."""
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    for key, value in (("name", names.name), ("module", names.module),
                       ("class_name", names.class_name)):
        text = text.replace("{{" + key + "}}", value)
    return text


def create_provider(name: str, directory: str | Path = ".", *, force: bool = False) -> list[Path]:
    """Write ``<name>_provider.py`` and ``test_<name>_provider.py`` into ``directory``.

    Creates the directory if needed. Refuses (BadRequest, nothing written) to overwrite either
    file unless ``force``. Returns the paths written.
    """
    names = provider_names(name)
    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise BadRequest(f"--dir {str(folder)!r} exists and is not a folder")
    _check_not_shadowing(names.module, folder)
    targets = {folder / f"{names.module}.py": "provider.py.tmpl",
               folder / f"test_{names.module}.py": "test_provider.py.tmpl"}
    if not force:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise BadRequest(f"{', '.join(existing)} already exist{'s' * (len(existing) == 1)}; "
                             "use --force to overwrite")
    texts = {path: render(template, names) for path, template in targets.items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot write the provider files in {str(folder)!r}: "
                         f"{exc.strerror or exc}") from None
    return list(texts)


def _check_not_shadowing(module: str, folder: Path) -> None:
    """Refuse a module name that is already importable from somewhere else: one of the two
    would silently hide the other."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin:
        return
    if Path(origin).resolve().parent != folder.resolve():
        raise BadRequest(f"a module named {module!r} is already importable from {origin}; "
                         "pick another provider name")
