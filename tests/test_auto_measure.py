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


def _shipped_copy(folder: Path) -> Path:
    """The shipped Conv-VAE (.onnx, .tflite) and its card in a folder of their own: its .tflite can be replaced."""
    import shutil

    from tests.agreement import MODELS

    folder.mkdir()
    for name in ("conv_vae.onnx", "conv_vae.tflite", "thresholds.json"):
        shutil.copy(MODELS / name, folder / name)
    return folder / "conv_vae.onnx"


def _shipped_job(tmp_path: Path, model: Path, xdg: Path) -> tuple[subprocess.CompletedProcess, dict]:
    rep = tmp_path / f"rep{len(list(tmp_path.glob('rep*')))}"
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", "configs/path.yaml", "-n", "40",
                          "--report-dir", str(rep), f"modules.out.file={tmp_path / 'o.root'}",
                          f"modules.vae.model={model}", "options.wantSummary=false"],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "XDG_CACHE_HOME": str(xdg)})
    assert res.returncode == 0, res.stderr
    return res, json.loads((rep / "hltrun.json").read_text())["job"]["facts"]["accelerators"]["vae"]


def test_auto_times_the_tflite_file_beside_the_model_and_checks_it_again_when_it_changes(tmp_path):
    """The .tflite beside the path's .onnx is timed against ONNX Runtime and must agree before it can win; the
    cached decision is keyed by its bytes too, so a replaced file (here a different network) is checked again
    and, disagreeing, never chosen."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (extra 'cpu' or 'tflite') not installed")
    tf = pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    model, xdg = _shipped_copy(tmp_path / "models"), tmp_path / "xdg"
    res, facts = _shipped_job(tmp_path, model, xdg)
    rows = {row["backend"]: row for row in facts["timings"]}
    assert {"onnxruntime", "tflite"} <= set(rows) and rows["tflite"]["agrees"], rows
    assert rows["tflite"]["max_rel_diff"] < 1e-5  # the same network, float32 rounding apart
    fastest = min((r for r in rows.values() if r["agrees"]), key=lambda r: r["us_per_jet"])["backend"]
    assert facts["backend"] == fastest

    res, again = _shipped_job(tmp_path, model, xdg)
    assert "(cached decision)" in res.stderr and again["backend"] == fastest

    holder = tf.Module()  # another network with the same outputs: replaces the .tflite beside the model
    holder.fn = tf.function(lambda x: {"score": tf.reduce_sum(x * x, axis=[1, 2]), "kl": tf.reduce_max(x, axis=[1, 2])},
                            autograph=False, input_signature=[tf.TensorSpec((None, 100, 3), tf.float32, name="jets")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([holder.fn.get_concrete_function()], holder)
    model.with_suffix(".tflite").write_bytes(converter.convert())
    res, other = _shipped_job(tmp_path, model, xdg)
    rows = {row["backend"]: row for row in other["timings"]}
    assert "(cached decision)" not in res.stderr and not rows["tflite"]["agrees"]
    assert other["backend"] != "tflite" and "disagrees" in rows["tflite"]["note"]
