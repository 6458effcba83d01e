"""Base class for services: observers of the event loop that contribute to the end-of-job report."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .module import NoParameters

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .context import JobContext
    from .signals import ActivityRegistry
    from .summary import JobSummary


class Service:
    """Subscribe to signals in ``connect``; report in ``text_report`` / ``json_report`` / ``write_files``."""

    Parameters: ClassVar[type] = NoParameters

    def __init__(self, name: str, params: Any) -> None:
        self.name = name
        self.params = params

    @classmethod
    def check_config(cls, name: str, params: Any, paths: "Mapping[str, list[str]]",
                     module_types: "Mapping[str, type]") -> None:
        """Configuration validation of the service against the job's paths (path name -> module labels)
        and module classes; raise ConfigError naming ``services.<name>``."""

    def connect(self, signals: "ActivityRegistry", job: "JobContext") -> None:
        """Subscribe to the signals this service needs."""

    def job_scope(self, job: "JobContext") -> AbstractContextManager:
        """A context the event processor holds open around the whole job, begin_job to end_job (e.g. a
        memray Tracker, which must be entered in a frame that encloses the job to keep its stacks)."""
        return nullcontext()

    def snapshot(self) -> Any:
        """What this service measured so far, as data with an associative ``merge`` (None: nothing).

        Work units on Dask workers send it to the client; reports are rendered from ``load``-ed data."""
        return None

    def reset(self) -> None:
        """Forget the measurements (a worker starts the next work unit)."""

    def load(self, data: Any) -> None:
        """Render reports from ``data`` (merged snapshots) instead of this instance's own measurements."""

    def text_report(self, summary: "JobSummary") -> str:
        """Section(s) of the end-of-job text report (CMSSW-style tables)."""
        return ""

    def json_report(self, summary: "JobSummary") -> dict[str, Any] | None:
        """This service's part of hltrun's own JSON report."""
        return None

    def report_files(self) -> tuple[str, ...]:
        """The names ``write_files`` will use in ``--report-dir``: checked before the first event (a FIFO or a
        device there would fail the set after a whole job)."""
        return ()

    def write_files(self, report_dir: Path, summary: "JobSummary") -> list[Path]:
        """Extra files for ``--report-dir`` (e.g. a FastTimerService resources.json). Written with
        ``hltrun.framework.report.files.atomic_write_text`` (or ``hltrun.framework.atomic.writing``), a file joins the
        folder's set: renamed into place with the others, or not at all."""
        return []
