"""Per-event failures: the first few are logged, the rest only counted, all summed per module and kind.

With ``options.TryToContinue`` categories a broken input can fail thousands of events; a line per event would
bury the one line that matters. The counts are plain data in the JobSummary
(``errors[module][kind]``), so they add up over streams and workers like every other counter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("hltrun")
LOGGED_ERRORS = 5  # per job: per-event failures logged one by one before only counting them


def module_and_kind(exc: BaseException) -> tuple[str, str]:
    """The module that raised ``exc`` (set by the schedule) and the error's kind (exception type)."""
    return (getattr(exc, "hltrun_module", None) or "framework",
            getattr(exc, "hltrun_kind", None) or type(exc).__name__)


class ErrorTally:
    """Thread-safe counts of per-event failures by module and kind, with rate-limited logging."""

    def __init__(self, limit: int = LOGGED_ERRORS) -> None:
        self.limit = limit
        self.counts: dict[str, dict[str, int]] = {}
        self.logged = 0
        self._lock = threading.Lock()

    def record(self, exc: BaseException, event_id: Any, message: str, skipped: bool) -> None:
        module, kind = module_and_kind(exc)
        with self._lock:
            per_module = self.counts.setdefault(module, {})
            per_module[kind] = per_module.get(kind, 0) + 1
            if not skipped:
                return
            self.logged += 1
            n = self.logged
        if n <= self.limit:
            log.warning("skipping event (%s): %s", event_id, message)
            if n == self.limit:
                log.warning("further failing events are skipped without a message; their count per module "
                            "and error kind is in the job report")

    @property
    def total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.counts.values())


def context(message: str, exc: BaseException, event_id: Any) -> str:
    """Make a stop message name the module and the event (run, lumi, event) if it does not already."""
    module, _ = module_and_kind(exc)
    missing = []
    if module != "framework" and f"'{module}'" not in message:
        missing.append(f"module '{module}'")
    if event_id is not None and str(event_id) not in message:
        missing.append(str(event_id))
    return f"{message} (in {', '.join(missing)})" if missing else message
