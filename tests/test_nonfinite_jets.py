"""A jet whose pT is NaN cannot be ranked: it is left out of the leading-jet selection, as a jet
without constituents is, and counted; a NaN angle gives a non-finite input the scorer counts.
Neither may leak a numpy warning to the user."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import plugins
from tests.conftest import make_events, write_counts
from tests.helpers import run_config

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
process: NANPT
source: {{type: RootJetSource, files: [{file}], chunk_size: 9}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
  rec: {{type: TestRecorder, src: [batcher]}}
paths:
  p: [batcher, rec]
"""


def _events_with_nan_pt() -> tuple[list[dict], int]:
    events = make_events(60, seed=11)
    n_nan = 0
    for i, e in enumerate(events):
        if e["jets"] and i % 3 == 0:
            e["jets"][i % len(e["jets"])]["pt"] = math.nan
            n_nan += 1
    return events, n_nan


def test_nan_pt_jet_is_left_out_and_counted(write_config, tmp_path):
    events, n_nan = _events_with_nan_pt()
    path = write_counts(tmp_path / "nan.root", events)
    plugins.RECORDED.pop("rec", None)
    summary, _ = run_config(write_config(CONFIG.format(file=path)))
    assert summary.data_quality["source"]["jets_with_nonfinite_pt"] == n_nan > 0
    recorded = {number: batch for number, (batch,) in plugins.RECORDED["rec"]}
    for e in events:  # independently: the two leading finite-pT jets that have constituents
        ranked = sorted((j["pt"] for j in e["jets"] if math.isfinite(j["pt"]) and len(j["c_pt"])), reverse=True)
        np.testing.assert_array_equal(recorded[e["event"]].jet_pt, np.float32(ranked[:2]))


def test_no_numpy_warning_reaches_the_user(tmp_path):
    events, _ = _events_with_nan_pt()
    for e in events[1::4]:
        if e["jets"]:
            e["jets"][0]["phi"] = math.nan  # relative phi of its constituents: NaN, counted by the scorer
    path = write_counts(tmp_path / "nan.root", events)
    res = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "hltrun.framework.cli",
                          str(REPO / "configs" / "path.yaml"), f"source.files=[{path}]", "-q",
                          f"modules.out.file={tmp_path / 'o.root'}", "--report-dir", str(tmp_path / "rep"),
                          "modules.anomalyFilter.working_point=vs_leading_jet_pt"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr, res.stderr
    assert "jets with nonfinite pt" in res.stdout and "nonfinite jets 0" not in res.stdout
