"""A job an error ended part-way (a corrupt basket in its second file): every file of its report set says so
when read alone, as a signal-stopped job's do (tests/test_graceful_stop.py).

hltrun.json (``failure``), report.html ("Stopped by") and the job report said the job failed; scores.root,
timing.root and resources.json did not, so their histograms of the events before the error (the rates of
scores.root) read as a whole job's. Real ``hltrun`` subprocesses on the shipped path (ONNX Runtime, Timing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_events, write_counts
from tests.test_bad_basket import BASKET, _multi_basket_file

REPO = Path(__file__).resolve().parents[1]
MARKED = ("scores.root", "timing.root", "resources.json")


def _job(tmp_path: Path, files: list[Path]) -> tuple[subprocess.CompletedProcess, Path]:
    """configs/path.yaml on ``files`` with a report folder; the finished process and the folder."""
    pytest.importorskip("onnxruntime")
    data = yaml.safe_load((REPO / "configs" / "path.yaml").read_text())
    data["source"].update(files=[str(f) for f in files], chunk_size=BASKET)
    data["options"]["accelerators"] = ["cpu"]
    data["modules"]["vae"]["backend"] = "onnxruntime"
    data["modules"]["out"]["file"] = str(tmp_path / "o.root")
    data["services"] = {"Timing": {}}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    rep = tmp_path / "rep"
    done = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(cfg), "-q", "--report-dir", str(rep)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    return done, rep


def _marks(rep: Path, key: str) -> dict[str, str | None]:
    """What scores.root, timing.root and resources.json each hold under ``key`` (None: nothing)."""
    import uproot

    marks: dict[str, str | None] = {}
    for name in ("scores.root", "timing.root"):
        with uproot.open(rep / name) as f:
            marks[name] = str(f[key]) if key in f else None
    marks["resources.json"] = json.loads((rep / "resources.json").read_text()).get(key)
    return marks


def _good(tmp_path: Path) -> Path:
    return write_counts(tmp_path / "good.root", [dict(e, event=e["event"] + 10_000) for e in make_events(60, seed=9)])


@pytest.mark.slow
def test_every_report_file_of_a_job_an_error_ended_names_the_error(tmp_path):
    done, rep = _job(tmp_path, [_good(tmp_path), _multi_basket_file(tmp_path / "mid.root")])
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    job = json.loads((rep / "hltrun.json").read_text())["job"]
    assert "mid.root entries 100-150" in job["failure"] and job["stopped_by_signal"] is None, job["failure"]
    assert job["events_processed"] == 60 + 100  # the good file and the mid file's entries before the bad basket
    assert _marks(rep, "failure") == dict.fromkeys(MARKED, job["failure"])
    assert _marks(rep, "stopped_by_signal") == dict.fromkeys(MARKED)  # an error, not a signal


@pytest.mark.slow
def test_the_report_files_of_a_whole_job_name_no_failure(tmp_path):
    done, rep = _job(tmp_path, [_good(tmp_path)])
    assert done.returncode == 0, done.stderr
    assert json.loads((rep / "hltrun.json").read_text())["job"]["failure"] is None
    assert _marks(rep, "failure") == dict.fromkeys(MARKED)
