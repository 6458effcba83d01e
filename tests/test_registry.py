"""Plugins from a user's package are found through the ``hltrun.modules`` entry-point group."""

from __future__ import annotations

import sys
import types

import pytest

from framework import registry
from framework.errors import ConfigError


class _EntryPoint:
    def __init__(self, name: str, value: str, target) -> None:
        self.name, self.value, self._target = name, value, target

    def load(self):
        return self._target()


def test_entry_point_module_is_found(monkeypatch):
    def load_user_plugin():
        mod = types.ModuleType("user_plugin")
        from framework.module import Producer

        @registry.register_module("UserEntryPointProducer")
        class UserProducer(Producer):
            def produce(self, event):
                event.put(0)

        mod.UserProducer = UserProducer
        sys.modules["user_plugin"] = mod
        return UserProducer

    def fake_entry_points(group):
        return [_EntryPoint("user", "user_plugin:UserProducer", load_user_plugin)] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_loaded_plugins", False)
    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    assert registry.module_class("UserEntryPointProducer").__name__ == "UserProducer"


def test_broken_entry_point_is_one_clear_error(monkeypatch):
    def broken():
        raise ImportError("No module named 'missing_dep'")

    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [_EntryPoint("bad", "bad_pkg:Mod", broken)] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_loaded_plugins", False)
    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    with pytest.raises(ConfigError, match=r"plugin entry point 'bad' \(bad_pkg:Mod\) failed to load: No module named 'missing_dep'"):
        registry.module_class("NotRegisteredAnywhere")
