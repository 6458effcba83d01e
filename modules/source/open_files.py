"""A Dask worker's input files kept open between its work units: a few, the most recently read, closed at end_job.

Apart from the reads: a worker runs unit after unit of the same file (a file of 20 units of 2000 events is read
by two workers in turn), and opened it again for each one (the file, its directory and the tree's metadata: 4-15
ms on a local disk, tens of ms on EOS), and once more to check it when it first reached it. A tree is taken out
while one reader uses it and given back after a good read, so two readers never share one; a read that failed
closes its file (the next unit opens it again, and says what changed since). A file changed on disk since it was
given back (another inode, size or modification time: rewritten between two jobs of a cluster, whose workers keep
the job's Process) is closed and opened again, not read from the old handle.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from .tree import FileState, file_state

KEPT = 2  # files kept open per worker (per Process): consecutive units of one file, and the next file's first


class OpenFiles:
    """At most ``size`` open trees, by the file's real path; the least recently given back is closed first."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._trees: OrderedDict[str, tuple[Any, FileState | None]] = OrderedDict()  # the tree, its file's state
        self._lock = threading.Lock()  # the loop's thread and a read-ahead thread take and give

    def take(self, real: str) -> Any | None:
        """The open tree of ``real``, now the caller's alone (None: none kept, or its file changed since: open it)."""
        with self._lock:
            tree, state = self._trees.pop(real, (None, None))
        if tree is not None and file_state(real) != state:
            tree.file.close()
            return None
        return tree

    def give(self, real: str, tree: Any) -> None:
        """Keep ``tree`` (of ``real``) open for the next unit; close what that pushes out (or ``tree``, kept none)."""
        state = file_state(real)
        with self._lock:
            out = [self._trees.pop(real)[0]] if real in self._trees else []
            self._trees[real] = (tree, state)
            while len(self._trees) > self.size:
                out.append(self._trees.popitem(last=False)[1][0])
        for old in out:
            old.file.close()

    def close(self) -> None:
        """Close every file kept (end_job)."""
        with self._lock:
            trees, self._trees = [tree for tree, _ in self._trees.values()], OrderedDict()
        for tree in trees:
            tree.file.close()
