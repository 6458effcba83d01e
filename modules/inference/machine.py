"""What compiled code and timing decisions depend on besides the model: this machine's CPU, the engine
versions, and where per-machine caches live."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_key() -> str:
    """A short hash of the CPU model and its feature flags (a cache written on another CPU is not used)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return hashlib.sha256("\n".join([platform.machine(), *lines]).encode()).hexdigest()[:16]


def cache_root(kind: str) -> Path:
    """``$XDG_CACHE_HOME/hltrun/<kind>`` (``~/.cache`` by default): compiled engines and ``auto``'s
    decisions, one folder per kind."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hltrun" / kind


def dist_version(name: str) -> str:
    """An installed distribution's version ("unknown" if absent): a cache key part."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
