"""A Dask worker's input files kept open between its work units: a few, the most recently read, closed at end_job.

Apart from the reads: a worker runs unit after unit of the same file (a file of 20 units of 2000 events is read
by two workers in turn), and opened it again for each one (the file, its directory and the tree's metadata: 4-15
ms on a local disk, tens of ms on EOS), and once more to check it when it first reached it. A tree is taken out
while one reader uses it and given back after a good read, so two readers never share one; a read that failed
closes its file (the next unit opens it again, and says what changed since).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

KEPT = 2  # files kept open per worker (per Process): consecutive units of one file, and the next file's first


class OpenFiles:
    """At most ``size`` open trees, by the file's real path; the least recently given back is closed first."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._trees: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()  # the loop's thread and a read-ahead thread take and give

    def take(self, real: str) -> Any | None:
        """The open tree of ``real``, now the caller's alone (None: none kept: open it)."""
        with self._lock:
            return self._trees.pop(real, None)

    def give(self, real: str, tree: Any) -> None:
        """Keep ``tree`` (of ``real``) open for the next unit; close what that pushes out (or ``tree``, kept none)."""
        with self._lock:
            out = [self._trees.pop(real)] if real in self._trees else []
            self._trees[real] = tree
            while len(self._trees) > self.size:
                out.append(self._trees.popitem(last=False)[1])
        for old in out:
            old.file.close()

    def close(self) -> None:
        """Close every file kept (end_job)."""
        with self._lock:
            trees, self._trees = list(self._trees.values()), OrderedDict()
        for tree in trees:
            tree.file.close()
