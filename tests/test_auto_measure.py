"""``backend: auto`` on the CPU, in a job: engines timed at the path's batch, the fastest that agrees
chosen, the table logged and in hltrun.json, the decision reused by the next job on this machine,
and an engine not compiled for the model left out (begin_job never compiles for a guess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_models import loaded

pytestmark = pytest.mark.slow


def _job(tmp_path: Path, tiny, cache: Path, xdg: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    rep = tmp_path / f"rep{len(list(tmp_path.glob('rep*')))}"
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", "configs/path.yaml", "-n", "40",
                          "--report-dir", str(rep), f"modules.out.file={tmp_path / 'o.root'}",
                          f"modules.vae.model={tiny.onnx}", "modules.anomalyFilter.threshold=1.0",
                          f"modules.vae.engine_cache={cache}", "options.wantSummary=false", *extra],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "XDG_CACHE_HOME": str(xdg)})
    assert res.returncode == 0, res.stderr
    facts = json.loads((rep / "hltrun.json").read_text())["job"]["facts"]["accelerators"]["vae"]
    return res, facts


def test_auto_times_the_ready_engines_and_takes_the_fastest_that_agrees(tmp_path, tiny):
    cache, xdg = tmp_path / "engines", tmp_path / "xdg"
    res, facts = _job(tmp_path, tiny, cache, xdg)
    assert facts["backend"] == "onnxruntime" and "iree not compiled for this model here" in facts["reason"]
    assert "timings" not in facts  # one engine ready: nothing to time

    loaded("iree", tiny.onnx, engine_cache=str(cache))  # compile every bucket once, as `backend: iree` would
    res, facts = _job(tmp_path, tiny, cache, xdg, "options.numberOfThreads=2")
    rows = {row["backend"]: row for row in facts["timings"]}
    assert set(rows) == {"onnxruntime", "iree"} and all(r["agrees"] for r in rows.values())
    fastest = min(rows.values(), key=lambda r: r["us_per_jet"])["backend"]
    assert facts["backend"] == fastest and "at batch 2" in facts["reason"]  # the batcher's max_jets
    assert "auto: engines timed on a batch of 2 jet(s)" in res.stderr and f"auto: chose {fastest}" in res.stderr
    assert res.stderr.count("auto: engines timed") == 1  # once per job, not once per stream

    res, again = _job(tmp_path, tiny, cache, xdg, "options.numberOfThreads=2")  # the same machine: the decision is reused
    assert again["backend"] == fastest and "(cached decision)" in res.stderr
    assert res.stderr.count("auto: engines timed") == 1


def test_an_explicit_backend_is_never_timed(tmp_path, tiny):
    res, facts = _job(tmp_path, tiny, tmp_path / "engines", tmp_path / "xdg", "modules.vae.backend=onnxruntime")
    assert facts["backend"] == "onnxruntime" and "timings" not in facts and "engines timed" not in res.stderr
