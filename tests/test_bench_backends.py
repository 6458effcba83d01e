"""hltbench (tools/bench/backends.py): tables, JSON/CSV cells, and docs/ left alone unless --docs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")

from hltrun.tools.bench import backends as B  # noqa: E402
from hltrun.tools.bench.cli import main as hltbench  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_cells_written_and_docs_untouched_without_docs_flag(tmp_path) -> None:
    if not (REPO / "data/models/conv_vae.onnx").exists():
        pytest.skip("shipped conv_vae.onnx not present")
    shipped_docs = REPO / "docs/backends.md"
    before = shipped_docs.read_text() if shipped_docs.exists() else None
    docs = tmp_path / "backends.md"
    docs.write_text("# untouched\n")
    out_json, out_csv = tmp_path / "cells.json", tmp_path / "cells.csv"
    rc = hltbench(["backends", "--models", "conv_vae", "--backends", "ort-bare", "--batch-sizes", "1", "2", "--threads", "1", "2",
                 "--min-time", "0.01", "--min-calls", "2", "--json", str(out_json), "--csv", str(out_csv)])
    assert rc == 0
    assert (shipped_docs.read_text() if shipped_docs.exists() else None) == before, "hltbench rewrote docs/"
    data = json.loads(out_json.read_text())
    assert {"cpu", "versions", "command", "python"} <= set(data["machine"])
    cells = data["cells"]
    assert {(c["threads"], c["batch"]) for c in cells} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    for c in cells:
        assert 0 < c["us_per_jet_p10"] <= c["us_per_jet_median"] <= c["us_per_jet_p90"]
        assert c["calls"] >= 2 * 3 and c["rss_peak_MB"] > 0
    with out_csv.open() as fh:
        assert len(list(csv.DictReader(fh))) == len(cells)
    # --docs PATH rewrites only the marked section of that file
    hltbench(["backends", "--models", "conv_vae", "--backends", "ort-bare", "--batch-sizes", "1", "--min-time", "0.01",
            "--docs", str(docs)])
    text = docs.read_text()
    assert text.startswith("# untouched\n") and B.MARK_BEGIN in text and "ort-bare" in text


@pytest.mark.parametrize("bad, fragment", [
    ("empty", "onnxruntime: model file {path} is empty"),
    ("f16", "onnxruntime: model {path} input 'x' is float16, expected float32 (hltrun feeds float32"),
    ("norank", "model {path} input 'x' has no shape (unknown rank"),
])
def test_a_model_hltrun_refuses_is_one_line_before_anything_runs(tmp_path, capfd, bad, fragment) -> None:
    """The model is loaded and checked as the scorer loads it before the MAC count (which ran it on ONNX
    Runtime and ended in its traceback): hltrun's own line, exit 2."""
    from onnx import TensorProto

    from tests.tiny_models import sum_of_squares_onnx

    path = tmp_path / f"{bad}.onnx"
    if bad == "empty":
        path.write_bytes(b"")
    else:
        sum_of_squares_onnx(path, None if bad == "norank" else ["N", 100, 3],
                            TensorProto.FLOAT16 if bad == "f16" else None)
    capfd.readouterr()
    assert hltbench(["backends", "--models-dir", str(tmp_path), "--models", bad, "--backends", "ort-fp32",
                     "--batch-sizes", "2"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("hltbench backends: ") and fragment.format(path=path) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_isolated_children_keep_the_parents_safe_path(tmp_path) -> None:
    """tools/gpu_check.sh runs ``python3 -P`` in the checkout, whose ``hltrun/`` folder would shadow the installed
    package: ``--isolate``'s children start with the parent's -P, so they import what the parent imported
    (without it each child imported the folder and measured nothing: 'isolated run failed')."""
    import subprocess
    import sys

    if not (REPO / "data/models/conv_vae.onnx").exists():
        pytest.skip("shipped conv_vae.onnx not present")
    shadow = tmp_path / "hltrun"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the working directory shadowed the installed hltrun')\n")
    res = subprocess.run([sys.executable, "-P", "-m", "hltrun.tools.bench", "backends", "--models", "conv_vae",
                          "--backends", "ort-bare", "--batch-sizes", "1", "--min-time", "0.01", "--min-calls", "2",
                          "--mem-calls", "2", "--mem-jets", "10", "--isolate", "--json", str(tmp_path / "cells.json")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "isolated run failed" not in res.stdout, res.stdout[-2000:]
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads((tmp_path / "cells.json").read_text())["cells"]
