"""Signal dispatch: ``fire`` is None without listeners, the listener itself with one, and calls
every listener in connection order with several (the hot path calls ``fire`` directly)."""

from __future__ import annotations

from hltrun.framework.signals import ActivityRegistry, Signal


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


def test_innermost_slots_bracket_the_activity_whatever_the_connection_order():
    """A measuring service connected first still runs last before and first after the activity, so
    the hooks of services connected later stay outside its window; plain slots keep their order."""
    order: list[str] = []
    pre, post = Signal("pre_module"), Signal("post_module")
    pre.connect(lambda: order.append("timing-pre"), innermost=True)
    post.connect(lambda: order.append("timing-post"), innermost=True)
    for name in ("memory", "other"):
        pre.connect(lambda name=name: order.append(f"{name}-pre"))
        post.connect(lambda name=name: order.append(f"{name}-post"))
    pre.fire()
    order.append("module")
    post.fire()
    assert order == ["memory-pre", "other-pre", "timing-pre", "module", "timing-post", "memory-post",
                     "other-post"]


def test_a_single_innermost_slot_is_called_directly():
    sig = Signal("post_event")

    def slot() -> None:
        pass

    sig.connect(slot, innermost=True)
    assert sig.fire is slot
