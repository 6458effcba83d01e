"""The Event: its id and the products modules put into it, keyed by module label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModuleError, ProductNotFound

_NO_TYPES: dict[str, type] = {}
_NO_PATHS: frozenset[str] = frozenset()
DECLARES = ":*"  # types key ``label:*``: the module declares its products (any other put is refused)
MAX32, MAX64 = (1 << 32) - 1, (1 << 64) - 1
ID_MAX = {"run": MAX32, "luminosityBlock": MAX32, "event": MAX64}  # the largest id CMSSW stores per field


@dataclass(frozen=True, order=True)
class EventID:
    """CMSSW's (run, luminosityBlock, event) triple: run and lumi 32-bit, the event number 64-bit, unsigned
    (``ID_MAX``, the one table of those limits)."""

    run: int
    luminosityBlock: int
    event: int

    def __str__(self) -> str:
        return f"run {self.run}, lumi {self.luminosityBlock}, event {self.event}"


class Event:
    """One event in flight on one stream.

    ``put`` stores a product under the label of the module that is running (the schedule sets it);
    ``get`` fetches by ``label`` or ``label:instance``. A product that is missing triggers the
    producer on demand (CMSSW's unscheduled execution) before ``ProductNotFound`` is raised.
    """

    __slots__ = ("id", "index", "stream", "_products", "current_module", "_on_demand", "trigger_results",
                 "prescaled_paths", "_types")

    def __init__(self, event_id: EventID, index: int, stream: int,
                 on_demand: Callable[["Event", str], bool] | None = None,
                 types: dict[str, type] = _NO_TYPES) -> None:
        """``types``: product key -> the type its producer declared (``Process.product_types``)."""
        self.id = event_id
        self.index = index  # position in the job's input sequence; orders outputs for any streams
        self.stream = stream
        self._products: dict[str, Any] = {}
        self.current_module = ""
        self._on_demand = on_demand
        self.trigger_results: dict[str, bool] = {}
        # paths an HLTPrescaler stopped (CMSSW: the path's state points at an HLTPrescaler): hltdiff's -p
        self.prescaled_paths: frozenset[str] = _NO_PATHS
        self._types = types

    def put(self, product: Any, instance: str = "") -> None:
        key = f"{self.current_module}:{instance}" if instance else self.current_module
        declared = self._types.get(key)
        if declared is None:
            if self.current_module + DECLARES in self._types:  # declares its products, but not this one
                raise ModuleError(f"module '{self.current_module}' put '{key}', which it does not declare in produces")
        elif not isinstance(product, declared):
            raise ModuleError(f"module '{self.current_module}' put a {type(product).__name__} as '{key}', "
                              f"but declares it produces a {declared.__name__}")
        self._products[key] = product

    def put_as(self, label: str, product: Any, instance: str = "") -> None:
        """Put under an explicit label (used by the framework for source products)."""
        self._products[f"{label}:{instance}" if instance else label] = product

    def get(self, tag: str) -> Any:
        try:
            return self._products[tag]
        except KeyError:
            pass
        label = tag.split(":", 1)[0]
        if self._on_demand is not None and self._on_demand(self, label) and tag in self._products:
            return self._products[tag]
        available = ", ".join(sorted(self._products)) or "none"
        raise ProductNotFound(
            f"module '{self.current_module}' asked for product '{tag}', which no module put into "
            f"the event ({self.id}; available: {available})"
        )

    def has(self, tag: str) -> bool:
        return tag in self._products

    def products(self) -> dict[str, Any]:
        return dict(self._products)
