"""A progress bar with events/s on long jobs (only on a terminal; ``-q`` turns it off)."""

from __future__ import annotations

import threading

from .process import Process


def attach_progress(process: Process) -> None:
    from tqdm import tqdm

    limit = process.config.options.maxEvents
    bar = tqdm(total=limit if limit >= 0 else None, unit="evt", desc="hltrun", leave=False,
               dynamic_ncols=True, mininterval=0.5)
    lock = threading.Lock()

    def post_event(event, status) -> None:  # noqa: ANN001 - signal signature
        with lock:
            bar.update(1)

    process.signals.post_event.connect(post_event)
    process.signals.pre_end_job.connect(bar.close)
