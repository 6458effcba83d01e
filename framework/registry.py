"""Module and service registry: the framework knows plugins only by their registered type name.

Built-in plugins register with the ``@register_module`` decorator when ``modules`` is imported; a
user's own package adds modules through the ``hltrun.modules`` entry-point group, loaded lazily the
first time a name is not found among those already registered.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Callable, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound=type)

ENTRY_POINT_GROUP = "hltrun.modules"
SERVICE_ENTRY_POINT_GROUP = "hltrun.services"

_modules: dict[str, type] = {}
_services: dict[str, type] = {}
_loaded_plugins = False
_loaded_entry_points = False


def register_module(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: make a Source/Producer/Filter/Analyzer/OutputModule usable by ``type:``."""

    def deco(cls: T) -> T:
        _register(_modules, name or cls.__name__, cls)
        return cls

    return deco


def register_service(name: str | None = None) -> Callable[[T], T]:
    """Class decorator for services (``services:`` block of the configuration)."""

    def deco(cls: T) -> T:
        _register(_services, name or cls.__name__, cls)
        return cls

    return deco


def _register(table: dict[str, type], name: str, cls: type) -> None:
    existing = table.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"plugin name {name!r} registered twice ({existing!r} and {cls!r})")
    table[name] = cls


def _load_plugins(entry_points_too: bool = True) -> None:
    """Import the built-in plugins, and (``entry_points_too``) every entry point of the plugin
    groups, once each. Scanning the installed distributions for entry points costs ~0.1 s of
    start-up, so a lookup does it only for a name the built-ins do not have."""
    global _loaded_plugins, _loaded_entry_points
    if not _loaded_plugins:
        _loaded_plugins = True
        importlib.import_module("framework.services")
        importlib.import_module("modules.plugins")
    if not entry_points_too or _loaded_entry_points:
        return
    _loaded_entry_points = True
    for group in (ENTRY_POINT_GROUP, SERVICE_ENTRY_POINT_GROUP):
        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken user plugin must not hide the others
                raise ConfigError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc


def _lookup(table: dict[str, type], kind: str, name: str, where: str) -> type:
    if name not in table:
        _load_plugins(entry_points_too=False)
    if name not in table:
        _load_plugins()
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(sorted(table))})"
        raise ConfigError(f"{where}: unknown {kind} type {name!r}{hint}")
    return table[name]


def module_class(name: str, where: str = "type") -> type:
    return _lookup(_modules, "module", name, where)


def service_class(name: str, where: str = "services") -> type:
    return _lookup(_services, "service", name, where)


def known_modules() -> dict[str, type]:
    _load_plugins()
    return dict(_modules)
