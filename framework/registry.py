"""Module, service and backend registry: the framework knows plugins only by their registered name.

Every plugin, hltrun's own included, is found through an entry-point group of the installed
distributions (setup.cfg ``[options.entry_points]``):

* ``hltrun.modules``  — sources, producers, filters, analyzers, output modules (``type:`` in YAML)
* ``hltrun.services`` — services (the ``services:`` block)
* ``hltrun.backends`` — inference backends (``backend:`` of a scorer)

An entry point names the class (``RootJetSource = hltrun.modules.root_source:RootJetSource``) and
is loaded the first time its name is asked for, so a job imports only the plugins it configures.
The framework never names a plugin package. ``@register_module`` / ``@register_service`` remain for
code that defines a plugin without installing it (a test, a notebook): a decorated class is found
by name before the entry points are consulted.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, TypeVar

from .errors import ConfigError
from .interrupt import reraise_interrupt

T = TypeVar("T", bound=type)

ENTRY_POINT_GROUP = "hltrun.modules"
SERVICE_ENTRY_POINT_GROUP = "hltrun.services"
BACKEND_ENTRY_POINT_GROUP = "hltrun.backends"

_tables: dict[str, dict[str, type]] = {ENTRY_POINT_GROUP: {}, SERVICE_ENTRY_POINT_GROUP: {},
                                       BACKEND_ENTRY_POINT_GROUP: {}}
_KIND = {ENTRY_POINT_GROUP: "module", SERVICE_ENTRY_POINT_GROUP: "service", BACKEND_ENTRY_POINT_GROUP: "backend"}


def register_module(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: make a Source/Producer/Filter/Analyzer/OutputModule usable by ``type:``
    without installing it (installed plugins use the ``hltrun.modules`` entry-point group)."""

    def deco(cls: T) -> T:
        _register(_tables[ENTRY_POINT_GROUP], name or cls.__name__, cls)
        return cls

    return deco


def register_service(name: str | None = None) -> Callable[[T], T]:
    """Class decorator for services (``services:`` block of the configuration)."""

    def deco(cls: T) -> T:
        _register(_tables[SERVICE_ENTRY_POINT_GROUP], name or cls.__name__, cls)
        return cls

    return deco


def _register(table: dict[str, type], name: str, cls: type) -> None:
    existing = table.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"plugin name {name!r} registered twice ({existing!r} and {cls!r})")
    table[name] = cls


@lru_cache(maxsize=None)
def _group(group: str) -> dict[str, EntryPoint]:
    """The entry points of one group by name (scanning the installed distributions costs ~20 ms,
    so once per process)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def _load(group: str, ep: EntryPoint) -> type:
    try:
        obj = ep.load()
    except Exception as exc:  # a broken user plugin must say which one, in one line
        reraise_interrupt(exc)  # not a signal that cut its import
        raise ConfigError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    if not isinstance(obj, type):
        raise ConfigError(f"plugin entry point {ep.name!r} ({ep.value}) is not a class")
    _register(_tables[group], ep.name, obj)
    return obj


def known_names(group: str) -> list[str]:
    """Every name a lookup in ``group`` can find, without importing any plugin."""
    return sorted(set(_tables[group]) | set(_group(group)))


def plugin_class(group: str, name: str, where: str) -> type:
    """The class registered as ``name`` in ``group`` (imports its module now)."""
    table = _tables[group]
    if name in table:
        return table[name]
    ep = _group(group).get(name)
    if ep is not None:
        return _load(group, ep)
    known = known_names(group)
    if not _group(group):
        hint = (f" (no {group!r} entry points are installed: install hltrun with `pip install -e .` "
                "so its own plugins are registered)")
    else:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(known)})"
    raise ConfigError(f"{where}: unknown {_KIND[group]} type {name!r}{hint}")


def module_class(name: str, where: str = "type") -> type:
    return plugin_class(ENTRY_POINT_GROUP, name, where)


def service_class(name: str, where: str = "services") -> type:
    return plugin_class(SERVICE_ENTRY_POINT_GROUP, name, where)


def known_modules() -> dict[str, type]:
    """Every module class, loading all entry points of the group (for listings and checks)."""
    return {name: module_class(name) for name in known_names(ENTRY_POINT_GROUP)}


def known_services() -> dict[str, type]:
    """Every service class, loading all entry points of the group."""
    return {name: service_class(name) for name in known_names(SERVICE_ENTRY_POINT_GROUP)}
