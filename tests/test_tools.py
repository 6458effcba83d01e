"""Tools on the tiny model: MAC counting for the benchmark, INT8 quantisation and its card section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny_models import jets, loaded

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_bench_counts_macs_from_the_onnx_graph(tiny):
    from hltrun.tools.bench.flops import count_macs

    # Dense 300->8, 8->4 twice, 4->300; the tiny score has no matrix product of data
    assert count_macs(tiny.onnx) == {"weights": 300 * 8 + 2 * 8 * 4 + 4 * 300, "data": 0}


def test_bench_counts_macs_of_a_model_with_another_input(tmp_path):
    """A user's (N, 50, 4) model (declared inputs): the MACs are counted on one jet of its own input's
    shape. ``count_macs`` fed every model (1, 100, 3), so ``hltbench backends`` refused such a model with
    ONNX Runtime's "Got invalid dimensions" before timing it, though its timing feeds declared inputs."""
    from onnx import TensorProto, helper, numpy_helper, save

    from hltrun.tools.bench.flops import count_macs

    w = numpy_helper.from_array(np.full((4, 8), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("ReduceSum", ["h"], ["score"], keepdims=0,
                                                                          axes=[1, 2])],
        "other_input", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 50, 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 8
    save(model, tmp_path / "m.onnx")
    assert count_macs(tmp_path / "m.onnx") == {"weights": 50 * 4 * 8, "data": 0}


def test_flops_and_profile_read_the_declared_shape_of_an_open_constituent_axis(tmp_path, capsys):
    """A torch export with ``dynamic_axes={0: "N", 1: "C"}``, (N, C, 5), declared as 40 constituents: the
    MACs are counted on one jet of the declared (1, 40, 5) and ``hltbench profile`` times (b, 40, 5). The
    count fed the shipped (1, 100, 3) (ONNX Runtime's "Got invalid dimensions": ``hltbench backends``
    refused the model), and profile gave the open axis the batch size (batch 64 timed 64 constituents per
    jet, batch 1 one)."""
    from onnx import TensorProto, helper, numpy_helper, save

    from hltrun.tools.bench.cli import main as hltbench
    from hltrun.tools.bench.flops import count_macs
    from hltrun.tools.declare_inputs import main as hltinputs

    w = numpy_helper.from_array(np.full((5, 8), 0.1, np.float32), "w")
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("ReduceSum", ["h", "axes"], ["score"],
                                                                          keepdims=0)],
        "open_axis", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", 5])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], initializer=[w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "open.onnx"
    save(model, path)
    assert hltinputs([str(path), "--write", "[{features: [log_pt_rel, deta, dphi, log_e_rel, dr], "
                                            "n_constituents: 40}]"]) == 0
    macs = 40 * 5 * 8
    assert count_macs(path) == {"weights": macs, "data": 0}
    capsys.readouterr()
    out = tmp_path / "profile.json"
    assert hltbench(["profile", str(path), "--batch-sizes", "1", "4", "--profile-batch", "4", "--profile-calls", "2",
                     "--min-time", "0.02", "--repeat", "1", "--sample", str(tmp_path / "none.root"),
                     "--json", str(out)]) == 0
    got = json.loads(out.read_text())["models"][str(path)]
    assert got["mflop_per_jet"] == pytest.approx(2 * macs / 1e6)
    assert got["flop_per_call"] == pytest.approx(4 * 2 * macs)  # what ORT ran at batch 4: 40 constituents a jet
    # undeclared, (N, C, 3): hltrun feeds it the shipped (N, 100, 3), and so does profile (it fed (4, 4, 3))
    graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", 3]))
    graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((3, 8), 0.1, np.float32), "w"))
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    assert hltbench(["profile", str(path), "--batch-sizes", "1", "4", "--profile-batch", "4", "--profile-calls", "2",
                     "--min-time", "0.02", "--repeat", "1", "--sample", str(tmp_path / "none.root"),
                     "--json", str(out)]) == 0
    got = json.loads(out.read_text())["models"][str(path)]
    assert got["flop_per_call"] == pytest.approx(4 * 2 * 100 * 3 * 8)


def test_quantize_tool_selects_weight_nodes_and_keeps_the_card(tiny, tmp_path):
    from hltrun.tools.physics.quantize_models import SECTION, quantize, weight_nodes, write_card

    nodes = weight_nodes(tiny.onnx)
    assert len(nodes) == 4 and len(weight_nodes(tiny.onnx, exclude=nodes[0])) == 3
    out = quantize(tiny.onnx, tmp_path / "tiny_int8.onnx", "dynamic", False, None)
    assert out["quantised_nodes"] == 4
    backend = loaded("onnxruntime", tmp_path / "tiny_int8.onnx")
    assert backend.describe()["precision"] == "int8"
    np.testing.assert_allclose(backend.run(jets(9))["score"], loaded("onnxruntime", tiny.onnx).run(jets(9))["score"],
                               rtol=0.1)
    card = tmp_path / "README.md"
    card.write_text("# Card\n\n## Performance\n\nAUC 0.9\n\n## Reproducing\n\nrun it\n")
    write_card(card, f"{SECTION}\n\nfirst\n")
    write_card(card, f"{SECTION}\n\nsecond\n")
    text = card.read_text()
    assert text.count(SECTION) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Card\n\n## Performance\n\nAUC 0.9\n\n## Reproducing\n\nrun it\n")
