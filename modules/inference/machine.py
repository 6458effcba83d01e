"""What compiled code and timing decisions depend on besides the model: this machine's CPU."""

from __future__ import annotations

import hashlib
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
