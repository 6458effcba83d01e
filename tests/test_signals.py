"""Signal dispatch: ``fire`` is None without listeners, the listener itself with one, and calls
every listener in connection order with several (the hot path calls ``fire`` directly)."""

from __future__ import annotations

from framework.signals import ActivityRegistry, Signal


def test_fire_with_zero_one_and_two_listeners():
    sig = Signal("pre_module")
    assert sig.fire is None and not sig
    seen: list[tuple[str, int]] = []

    def first(x: int) -> None:
        seen.append(("first", x))

    sig.connect(first)
    assert sig.fire is first and sig
    sig.connect(lambda x: seen.append(("second", x)))
    sig.fire(1)
    sig(2)
    assert seen == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]


def test_registry_signals_start_without_listeners():
    reg = ActivityRegistry()
    assert all(getattr(reg, name).fire is None for name in ActivityRegistry.NAMES)
    assert "source_bulk" in ActivityRegistry.NAMES
