"""Regression test of the shipped HLT path on the shipped samples and models, from another directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import uproot

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_default_path_runs_from_any_directory(tmp_path):
    cmd = [sys.executable, "-m", "hltrun.framework.cli", str(ROOT / "configs" / "path.yaml"), "-n", "300", "-q",
           "--report-dir", "reports", "modules.vae.backend=onnxruntime"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert "TrigReport Events total = 300" in res.stdout
    assert "anomaly detection (vae)" in res.stdout and "MemoryReport" in res.stdout
    out = uproot.open(tmp_path / "output" / "hltrun_output.root")["Events"].arrays(library="np")
    assert out["HLT_AnomalyDetection"].all()  # select_events keeps only accepted events
    assert 0 < len(out["event"]) < 300 and (out["nvae"] > 0).all()  # scores written for every kept event
    doc = json.loads((tmp_path / "reports" / "hltrun.json").read_text())
    assert doc["job"]["events_processed"] == 300
    assert doc["job"]["facts"]["accelerators"]["vae"]["backend"] == "onnxruntime"
    assert (tmp_path / "reports" / "resources.json").exists()
    page = (tmp_path / "reports" / "report.html").read_text()
    assert "[source bulk I/O, amortised]" in page  # the row whose p99 has no meaning
    assert not re.search(r">\s*-?(nan|inf)\s*<", page, re.IGNORECASE), "a table cell shows nan/inf"
