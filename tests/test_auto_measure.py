"""``backend: auto`` on the CPU, in a job: engines timed at the path's batch, the fastest that agrees
chosen, the table logged and in hltrun.json, the decision reused by the next job on this machine,
and an engine not compiled for the model left out (begin_job never compiles for a guess)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agreement import MODELS
from tests.tiny_models import loaded

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"


def _job(tmp_path: Path, tiny, cache: Path | None, xdg: Path, *extra: str, model: Path | None = None,
         cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """The shipped path on ``model`` (the tiny one by default), its report's accelerator facts for the scorer."""
    rep = tmp_path / f"rep{len(list(tmp_path.glob('rep*')))}"
    settings = [f"modules.vae.model={model or tiny.onnx}", *([] if model else ["modules.anomalyFilter.threshold=1.0"]),
                *([f"modules.vae.engine_cache={cache}"] if cache else [])]
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(CONFIG), "-n", "40",
                          "--report-dir", str(rep), f"modules.out.file={tmp_path / 'o.root'}", *settings,
                          "options.wantSummary=false", *extra],
                         cwd=cwd or tmp_path, capture_output=True, text=True, timeout=900,
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


def _shipped_copy(folder: Path) -> Path:
    """The shipped Conv-VAE (.onnx, .tflite) and its card in a folder of their own: its .tflite can be replaced."""
    folder.mkdir()
    for name in ("conv_vae.onnx", "conv_vae.tflite", "thresholds.json"):
        shutil.copy(MODELS / name, folder / name)
    return folder / "conv_vae.onnx"


needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="ai-edge-litert (extra 'cpu' or 'tflite') not installed")


@needs_litert
def test_auto_times_the_tflite_file_beside_the_model_and_checks_it_again_when_it_changes(tmp_path):
    """The .tflite beside the path's .onnx is timed against ONNX Runtime and must agree before it can win; the
    cached decision is keyed by its bytes too, so a replaced file (here the GCN-VAE's: another network with the
    same input and outputs) is checked again and, disagreeing, never chosen."""
    model, xdg = _shipped_copy(tmp_path / "models"), tmp_path / "xdg"
    res, facts = _job(tmp_path, None, None, xdg, model=model)
    rows = {row["backend"]: row for row in facts["timings"]}
    assert {"onnxruntime", "tflite"} <= set(rows) and rows["tflite"]["agrees"], rows
    assert rows["tflite"]["max_rel_diff"] < 1e-5  # the same network, float32 rounding apart
    fastest = min((r for r in rows.values() if r["agrees"]), key=lambda r: r["us_per_jet"])["backend"]
    assert facts["backend"] == fastest

    res, again = _job(tmp_path, None, None, xdg, model=model)
    assert "(cached decision)" in res.stderr and again["backend"] == fastest

    shutil.copy(MODELS / "gcn_vae.tflite", model.with_suffix(".tflite"))
    res, other = _job(tmp_path, None, None, xdg, model=model)
    rows = {row["backend"]: row for row in other["timings"]}
    assert "(cached decision)" not in res.stderr and not rows["tflite"]["agrees"]
    assert other["backend"] != "tflite" and "disagrees" in rows["tflite"]["note"]


@needs_litert
def test_auto_runs_the_very_file_it_timed(tmp_path):
    """A model given by name: a ``data/models/conv_vae.tflite`` of another network in the working folder must
    not replace, after the timing, the shipped one that was timed and checked beside the shipped .onnx."""
    work = tmp_path / "work"
    (work / "data" / "models").mkdir(parents=True)
    shutil.copy(MODELS / "gcn_vae.tflite", work / "data" / "models" / "conv_vae.tflite")
    shutil.copy(MODELS / "thresholds.json", work / "data" / "models" / "thresholds.json")
    res, facts = _job(tmp_path, None, None, tmp_path / "xdg", "modules.vae.backend=auto", model="conv_vae",
                      cwd=work)
    assert (work / facts["model"]).resolve() == (MODELS / "conv_vae.tflite").resolve(), facts  # relative: the job's cwd
