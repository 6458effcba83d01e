"""Tools on the tiny model: MAC counting for the benchmark, INT8 quantisation and its card section."""

from __future__ import annotations

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
