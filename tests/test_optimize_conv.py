"""tools/physics/optimize_conv.py (issue 21 item 3): the Conv-VAE rewritten from the shipped ONNX file agrees
with it, is deterministic, and has the structure and arithmetic the rewrite claims."""
from __future__ import annotations

import re

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")

from hltrun.tools.bench.flops import count_macs  # noqa: E402
from hltrun.modules.inference.tflite_backend import io_indices  # noqa: E402
from hltrun.tools.physics import conv_tflite  # noqa: E402
from hltrun.tools.physics.conv_agreement import scorer  # noqa: E402
from hltrun.tools.physics import optimize_conv as O  # noqa: E402

from .agreement import card_thresholds  # noqa: E402


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    if not O.SHIPPED.exists():
        pytest.skip("no shipped Conv-VAE")
    if any(p.key == "hltrun.rewrite" for p in onnx.load(str(O.SHIPPED)).metadata_props):
        pytest.skip("the shipped Conv-VAE is already the rewritten graph")
    path = tmp_path_factory.mktemp("conv") / "conv_vae_rewritten.onnx"
    onnx.save(O.rewrite(O.SHIPPED), str(path))
    return path


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_rewrite_agrees_on_a_sample_of_every_shipped_file(kept) -> None:
    from hltrun.modules.models.preprocess import load_jets

    ref, new = _session(O.SHIPPED), _session(kept)
    cuts = card_thresholds("conv_vae")
    for f in sorted(O.DATA.glob("*.root")):
        jets, event = load_jets(str(f), max_events=100)
        a = dict(zip(["score", "kl"], ref.run(["score", "kl"], {"jets": jets})))
        b = dict(zip(["score", "kl"], new.run(["score", "kl"], {"jets": jets})))
        for q in ("score", "kl"):
            rel = np.abs(b[q] - a[q]) / np.abs(a[q])
            assert rel.max() <= 1e-5, f"{f.name}: {q} max relative difference {rel.max():.2e}"
        n = event.max() + 1
        for cut in cuts:
            ea, eb = np.full(n, -np.inf), np.full(n, -np.inf)
            np.maximum.at(ea, event, a["score"])
            np.maximum.at(eb, event, b["score"])
            assert np.array_equal(ea > cut, eb > cut), f"{f.name}: event decisions differ at {cut}"


def test_rewrite_handles_any_batch_and_empty_jets(kept) -> None:
    ref, new = _session(O.SHIPPED), _session(kept)
    rng = np.random.default_rng(3)
    for n in (1, 2, 5):
        x = np.zeros((n, 100, 3), np.float32)
        for i in range(n):
            k = int(rng.integers(0, 101)) if i else 0        # the first jet has no constituent at all
            x[i, :k, :2] = rng.normal(0, 0.3, (k, 2))
            x[i, :k, 2] = np.sort(rng.exponential(30.0, k))[::-1] + 1.0
        a, b = ref.run(["score", "kl"], {"jets": x}), new.run(["score", "kl"], {"jets": x})
        assert b[0].shape == b[1].shape == (n,)
        np.testing.assert_allclose(b[0], a[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b[1], a[1], rtol=1e-5)


def test_rewrite_structure_and_arithmetic(kept, tmp_path) -> None:
    model = onnx.load(str(kept))
    ops = [n.op_type for n in model.graph.node]
    shipped = onnx.load(str(O.SHIPPED))
    # channels-first throughout: one Transpose in (the input), one out of the polyphase decoder, one for
    # the score's augmented vectors (ORT folds it into the MatMul); no ConvTranspose, pooling op, Tile,
    # Shape or Unsqueeze left; ORT's one-kernel Elu only on the four small dense layers (<= 136 values)
    assert ops.count("Transpose") == 3
    for op in ("ConvTranspose", "AveragePool", "Tile", "Shape", "ConstantOfShape", "Unsqueeze"):
        assert op not in ops, op
    assert ops.count("Conv") == 6 and ops.count("Elu") == 4 and ops.count("Exp") == 6 + 1   # + the KL's
    assert len(ops) < 0.65 * len(shipped.graph.node)
    # no float64 tensor (TensorRT has none): the KL keeps the shipped float32 series
    assert not [n for n in model.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.DOUBLE]
    assert {t.data_type for t in model.graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    assert {(o.name, o.type.tensor_type.shape.dim[0].dim_param) for o in model.graph.output} == {("kl", "N"),
                                                                                                  ("score", "N")}
    # the arithmetic: the same weights, a few more multiply-adds where the polyphase kernels hold zeros
    # (the floor of issue 21 stays the shipped model's FLOP)
    new, old = count_macs(kept), count_macs(O.SHIPPED)
    assert new["data"] == old["data"]                   # the Chamfer matrix product is unchanged
    assert old["weights"] < new["weights"] < 1.25 * old["weights"]
    # the declared inputs and the model's name travel with the graph
    meta = {p.key: p.value for p in model.metadata_props}
    assert {p.key: p.value for p in shipped.metadata_props}.items() <= meta.items() and "hltrun.rewrite" in meta
    # deterministic: the same file twice
    again = tmp_path / "again.onnx"
    assert O.main(["--out", str(again)]) == 0
    assert again.read_bytes() == kept.read_bytes()


def test_polyphase_kernel_is_the_stride_one_transposed_convolution() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(5, 4, 3))                      # (Cin, Cout, K) ConvTranspose weight
    x = rng.normal(size=(5, 12))                        # (Cin, L), L even
    ref = np.zeros((4, 14))
    for k in range(3):
        ref[:, k:k + 12] += t[:, :, k].T @ x
    xp = x.reshape(5, 6, 2).transpose(2, 0, 1).reshape(10, 6)     # phase r * Cin + c, pair m
    xp = np.pad(xp, ((0, 0), (1, 1)))
    wc = O.polyphase_conv(t)                            # (2 Cout, 2 Cin, 2)
    out = np.stack([wc[:, :, 0] @ xp[:, a] + wc[:, :, 1] @ xp[:, a + 1] for a in range(7)], axis=1)
    np.testing.assert_allclose(out.reshape(2, 4, 7).transpose(1, 2, 0).reshape(4, 14), ref, atol=1e-12)


def test_tflite_attempt_is_the_same_network(tmp_path) -> None:
    """``--tflite`` (the TFLite/XNNPACK attempt of docs/inference.md) converts the shipped Keras model;
    its scores must be the ONNX file's, or the attempt's timing compares different work."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    keras_path = O.SHIPPED.with_suffix(".keras")
    if not keras_path.exists():
        pytest.skip("no shipped Conv-VAE .keras")
    from hltrun.modules.models.preprocess import load_jets

    out = tmp_path / "conv.onnx"
    conv_tflite.convert_keras(keras_path, out, [2])
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "conv-b2.tflite"), num_threads=1)
    interp.allocate_tensors()
    jets = np.ascontiguousarray(load_jets(str(O.DATA / "qcd_dijet.root"), max_events=20)[0][:2], dtype=np.float32)
    interp.set_tensor(interp.get_input_details()[0]["index"], jets)
    interp.invoke()
    _, outputs = io_indices(interp)
    got = [interp.get_tensor(outputs[name]) for name in ("kl", "score")]   # named by the serving signature
    ref = _session(O.SHIPPED).run(["kl", "score"], {"jets": jets})
    assert [g.shape for g in got] == [(2,), (2,)]
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4)


@pytest.mark.parametrize("options", [{}, {"four_d": False, "std": "concat", "mask_by": "compare", "fuse_heads": False,
                                          "pool": "op", "kl": "direct", "score_group": 0}])
def test_tflite_rewrite_is_the_same_network(tmp_path, options) -> None:
    """``--tflite-rewrite``: the shipped ONNX file's weights written in TF ops (the kept TFLite formulation, and
    every choice undone) must score the shipped samples as ONNX Runtime does, on real jets (padded rows, a
    batch of 11 that the Chamfer groups of 8 split unevenly), or its timing compares different work."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    from hltrun.modules.models.preprocess import load_jets

    out = tmp_path / "rw.onnx"
    conv_tflite.convert_rewrite(O.SHIPPED, out, [11], **options)
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "rw-b11.tflite"), num_threads=1)
    interp.allocate_tensors()
    jets = load_jets(str(O.DATA / "rsg_ww_3p5TeV.root"), max_events=40)[0]
    jets = np.ascontiguousarray(jets[[0, 1, 2, 5, 8, 13, 21, 34, 55, 60, 70]], dtype=np.float32)
    assert (jets[:, :, 2] == 0).any(axis=1).all(), "every jet should have padded rows"
    interp.set_tensor(interp.get_input_details()[0]["index"], jets)
    interp.invoke()
    _, outputs = io_indices(interp)
    got = [interp.get_tensor(outputs[name]) for name in ("kl", "score")]
    ref = _session(O.SHIPPED).run(["kl", "score"], {"jets": jets})
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4)   # kl
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4)   # score
    # --check's scorer: 23 jets through the batch-11 file, the last call padded with zero jets
    many = np.ascontiguousarray(load_jets(str(O.DATA / "qcd_dijet.root"), max_events=40)[0][:23], dtype=np.float32)
    score, kl = scorer(f"tflite:{tmp_path / 'rw-b11'}")(many)
    ref_score, ref_kl = scorer(O.SHIPPED)(many)
    np.testing.assert_allclose(score, ref_score, rtol=1e-4)
    np.testing.assert_allclose(kl, ref_kl, rtol=1e-4)


def test_tflite_rewrite_refuses_an_unknown_option(tmp_path, capsys) -> None:
    """Each a usage error: one line, exit 2 (``catalogue.usage_error``; it was ``SystemExit("msg")``, exit 1), before
    --out is written (it was written, and rewritten, first)."""
    pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    for option, words in (("pool=maxi", "pool='maxi'"), ("fourd", "KEY=VALUE"), ("fourd=0", "no option 'fourd'"),
                          ("four_d=no", "four_d='no' is not a bool")):
        with pytest.raises(SystemExit) as stopped:
            O.main(["--out", str(tmp_path / "x.onnx"), "--tflite-rewrite", option, "--batch-sizes", "2"])
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("optimize_conv: --tflite-rewrite") and words in err[0], err
        assert not list(tmp_path.iterdir())
    assert O.tflite_options(["four_d=false", "score_group=0", "kl=direct"]) == {"four_d": False, "score_group": 0,
                                                                               "kl": "direct"}


def test_the_interleaved_timer_times_every_kind_of_entry(tmp_path) -> None:
    """``--time`` entries of each kind (an ONNX file, a TFLite file per batch, an hltrun backend as the path runs
    it) are timed side by side against the first model; a tiny run, for the plumbing, not for the figures."""
    pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    conv_tflite.convert_rewrite(O.SHIPPED, tmp_path / "rw.onnx", [2])
    res = O.time_interleaved({"shipped": O.SHIPPED, "tfl": f"tflite:{tmp_path / 'rw'}",
                              "path_tflite": f"backend:tflite:{O.SHIPPED.with_suffix('.tflite')}"},
                             [2], rounds=1, slice_s=0.01)
    assert list(res["models"]) == ["shipped", "tfl", "path_tflite"]
    for name, per in res["models"].items():
        cell = per[2]
        assert 0 < cell["fastest"] <= cell["median"] < 1e5, (name, cell)   # µs per jet: a few tens here
    assert res["models"]["shipped"][2]["vs_first"] == 1.0


def test_out_is_written_whole_or_not_at_all(tmp_path, monkeypatch, capsys) -> None:
    """--out went through onnx.save on the final name: a full disk (or Ctrl-C) left half a model there. The
    refusal is the command's one line and exit 4 (stdio.entry_point), nothing left at --out."""
    from tests.test_destinations import FullDisk, _inject

    _inject(monkeypatch, FullDisk(free=1000))
    assert O.main(["--out", str(tmp_path / "x.onnx")]) == 4
    assert re.search(r"^optimize_conv: error: optimize_conv --out: cannot write .*x.onnx .No space left on device",
                     capsys.readouterr().err, re.M)
    assert list(tmp_path.iterdir()) == []
