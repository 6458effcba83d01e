"""Saving a matplotlib figure the way every hltrun file is written (framework/atomic.py): whole or not
at all, never over a FIFO or device; shared by the benchmark and the evaluation plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hltrun.framework.atomic import writing


def save_figure(fig: Any, path: Path, what: str, **savefig: Any) -> Path:
    """``fig`` into ``path`` (its suffix names the format: png, pdf, svg)."""
    with writing(path, what) as staged:
        with staged.open() as fh:
            fig.savefig(fh, format=path.suffix.lstrip(".") or "png", **savefig)
    return path
