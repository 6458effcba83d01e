"""Where relative file names in a configuration are looked up.

Like cmsRun, a relative path is relative to the working directory. When nothing is there, it is
looked up once more in the hltrun checkout, where the shipped ``data/`` samples and models live, so
``hltrun /path/to/hltrun/configs/path.yaml`` works from any directory. One rule, used by the source,
the scorer and the filter alike.
"""

from __future__ import annotations

import glob
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def find_file(path: str | Path) -> Path:
    """``path`` if it exists (or is absolute), else the same relative path in the checkout if that
    exists, else ``path`` unchanged (so the caller's "not found" error names what the user wrote)."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    shipped = PROJECT_ROOT / given
    return shipped if shipped.exists() else given


def glob_files(pattern: str) -> list[str]:
    """Sorted matches of a glob pattern (or the plain name), with the same fallback as ``find_file``."""
    if not glob.has_magic(pattern):
        return [str(find_file(pattern))]
    matches = sorted(glob.glob(pattern))
    if not matches and not Path(pattern).is_absolute():
        matches = sorted(glob.glob(str(PROJECT_ROOT / pattern)))
    return matches
