"""Users' quantised and float16 networks on every engine (docs/your-model.md, "Quantised and float16 models"):
each runs and agrees with ONNX Runtime on the CPU, or is refused at load in one line naming the op or type and
the way out. Until 2026-12-07 a QDQ model (quantize_static) was refused by JAX and PyTorch, a dynamically
quantised one ran on IREE 14 % off ONNX Runtime's scores (its batches padded with zero jets move the per-call
scale), and a float16 conversion that is not valid ONNX ran on JAX with NaN scores, all without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.errors import ModuleError
from hltrun.modules.inference.autoselect import max_relative_difference
from hltrun.modules.inference.base import AGREEMENT_RTOL
from tests.tiny_models import half_mlp_onnx, jets, loaded, save_graph

TRANSLATED = ["jax", "torch"]


def _calibration(name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: jets(32, seed=s)} for s in range(2)])

        def get_next(self):
            return next(self.batches, None)

    return Reader()


def qdq_mlp(tmp_path: Path, per_channel: bool) -> Path:
    """The small MLP quantised as a user does it: ``quantize_static``, QDQ format, int8 activations and weights."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src = half_mlp_onnx(tmp_path / "mlp.onnx", half=False)
    dst = tmp_path / f"mlp_qdq{'_pc' if per_channel else ''}.onnx"
    quantize_static(str(src), str(dst), _calibration("jets"), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return dst


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("engine", TRANSLATED)
def test_a_qdq_model_runs_on_the_translated_engines_as_on_onnxruntime(engine, per_channel, tmp_path):
    """quantize_static's QDQ format (QuantizeLinear/DequantizeLinear around float ops; per-channel weight scales
    on axis 1 of the MatMul's weights): JAX and PyTorch refused it; they now score as ONNX Runtime does."""
    pytest.importorskip(engine)
    model = qdq_mlp(tmp_path, per_channel)
    x = jets(40, seed=3)
    ours, reference = loaded(engine, model, max_batch=64).run(x)["score"], loaded("onnxruntime", model).run(x)["score"]
    assert np.isfinite(reference).all() and np.ptp(reference) > 0
    assert max_relative_difference(ours, reference) <= AGREEMENT_RTOL


def _qdq_ops_onnx(path: Path, zero_type: int, axis: int) -> Path:
    """x (2, 3, 4) -> QuantizeLinear (one scale and zero point per slice of ``axis``) -> q, and q ->
    DequantizeLinear -> y; a constant quantised the same way (folded, as a QDQ Conv-VAE's), and an int32 bias
    dequantised: every output, to compare with ONNX Runtime's kernels value for value."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    n = (2, 3, 4)[axis]
    scale = numpy_helper.from_array(np.linspace(0.05, 0.3, n).astype(np.float32), "scale")
    zp = numpy_helper.from_array(np.arange(n).astype(tensor_dtype_to_np_dtype(zero_type)) + 3, "zp")
    fixed = numpy_helper.from_array(np.linspace(-2, 2, 24).astype(np.float32).reshape(2, 3, 4), "fixed")
    bias = numpy_helper.from_array(np.array([-2**31 + 7, 12345, 2**31 - 1], np.int32), "bias")  # a QDQ bias: int32
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], axis=axis),
                               helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], axis=axis),
                               helper.make_node("QuantizeLinear", ["fixed", "scale", "zp"], ["qf"], axis=axis),
                               helper.make_node("DequantizeLinear", ["bias", "bias_scale"], ["b"])],
                              "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("q", zero_type, [2, 3, 4]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4]),
                               helper.make_tensor_value_info("qf", zero_type, [2, 3, 4]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])],
                              [scale, zp, fixed, bias, numpy_helper.from_array(np.float32(3.1e-5), "bias_scale")])
    save_graph(graph, path, 13)
    return path


def _translated(engine: str, path: Path, x: np.ndarray) -> list[np.ndarray]:
    if engine == "jax":
        import jax.numpy as jnp

        from hltrun.modules.inference.onnx_jax import translate

        import jax

        return [np.asarray(v) for v in jax.jit(translate(path).fn)(jnp.asarray(x))]  # traced, as the backend runs it
    import torch

    from hltrun.modules.inference.onnx_torch import translate

    return [np.asarray(v) for v in translate(path).fn(torch.from_numpy(x))]


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("zero_type", ["INT8", "UINT8"])
@pytest.mark.parametrize("engine", TRANSLATED)
def test_quantize_and_dequantize_linear_are_bit_exact_with_onnxruntime(engine, zero_type, axis, tmp_path):
    """Exact halves round to even (x / scale = 0.5, 1.5, 2.5, -0.5 ...), values past the type's range saturate,
    one scale and zero point per slice of the axis: the integers and the floats are ONNX Runtime's, bit for bit."""
    pytest.importorskip(engine)
    import onnxruntime as ort
    from onnx import TensorProto

    model = _qdq_ops_onnx(tmp_path / "qdq.onnx", getattr(TensorProto, zero_type), axis)
    scale = np.linspace(0.05, 0.3, (2, 3, 4)[axis]).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = -1
    halves = np.arange(-12, 12, dtype=np.float32).reshape(2, 3, 4) + np.float32(0.5)
    x = (halves * scale.reshape(shape)).astype(np.float32)  # exact halves in units of each slice's scale
    x[0, 0, :2] = [1e4, -1e4]  # saturates at both ends
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the two kernels as written
    want = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = _translated(engine, model, x)
    assert got[0].dtype == want[0].dtype and (got[0] == want[0]).all(), (got[0], want[0])
    assert got[1].dtype == np.float32 and (got[1].view(np.int32) == want[1].view(np.int32)).all()
    assert got[2].dtype == want[2].dtype and (got[2] == want[2]).all()
    assert got[3].dtype == np.float32 and (got[3].view(np.int32) == want[3].view(np.int32)).all()


def dynamic_mlp(tmp_path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = half_mlp_onnx(tmp_path / "mlp.onnx", half=False)
    quantize_dynamic(str(src), str(tmp_path / "mlp_dyn.onnx"), weight_type=QuantType.QInt8)
    return tmp_path / "mlp_dyn.onnx"


@pytest.mark.parametrize("engine", ["jax", "torch", "iree"])
def test_a_dynamically_quantised_model_is_refused_on_the_engines_that_pad_their_batches(engine, tmp_path):
    """quantize_dynamic's DynamicQuantizeLinear takes one scale from every jet of a call; an engine of compiled
    sizes pads a call with zero jets, which move it when a zero jet reaches the quantiser as non-zero values (here
    tanh of the first layer's bias): IREE ran the model 14 % off ONNX Runtime's scores without a word. Refused at
    load, before any compilation, naming the op, the quantiser a zero jet reaches, and the two ways out."""
    pytest.importorskip({"iree": "iree.runtime"}.get(engine, engine))
    model = dynamic_mlp(tmp_path)
    with pytest.raises(ModuleError) as err:
        loaded(engine, model, max_batch=64)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{engine}: model {model} quantises its activations per call")
    assert "DynamicQuantizeLinear" in line and "padded" in line
    assert "a zero jet reaches its DynamicQuantizeLinear" in line
    assert "backend: onnxruntime" in line and "QuantFormat.QDQ" in line


def bias_free_dynamic_mlp(tmp_path: Path) -> Path:
    """A MatMul-only MLP (no bias, ReLU), quantize_dynamic'ed: a zero jet reaches both quantisers as zeros."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, (300, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (32, 8)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([-1, 300], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Reshape", ["jets", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w1"], ["m1"]), helper.make_node("Relu", ["m1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
             helper.make_node("Mul", ["m2", "m2"], ["sq"]), helper.make_node("ReduceSum", ["sq", "axes"], ["score"],
                                                                             keepdims=0)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    save_graph(graph, tmp_path / "mlp_nobias.onnx", 17)
    quantize_dynamic(str(tmp_path / "mlp_nobias.onnx"), str(tmp_path / "mlp_nobias_dyn.onnx"),
                     weight_type=QuantType.QInt8)
    return tmp_path / "mlp_nobias_dyn.onnx"


@pytest.mark.parametrize("engine", ["jax", "torch", "iree"])
def test_a_dynamically_quantised_model_a_zero_jet_leaves_at_zero_scores_as_on_onnxruntime(engine, tmp_path):
    """A zero jet reaches every quantiser as zeros, and DynamicQuantizeLinear's range always holds 0, so the
    padding cannot move the call's scale: the engines run the model (they refused every dynamically quantised
    one) and score each call as ONNX Runtime scores the same jets unpadded, in every bucket (the quantised layers
    bit for bit; the last sum's float rounding aside). The scale is the call's: a jet's score alone differs (the
    figure fidelity's caveat says)."""
    pytest.importorskip({"iree": "iree.runtime"}.get(engine, engine))
    model = bias_free_dynamic_mlp(tmp_path)
    ours, reference = loaded(engine, model, max_batch=16), loaded("onnxruntime", model)
    x = jets(16, seed=3)
    assert ours.buckets[-1] == 16
    for n in range(1, 17):  # every bucket, padded (3 in 4, 5 in 8 ...) and full
        got, want = ours.run(x[:n])["score"], reference.run(x[:n])["score"]
        assert np.isfinite(want).all() and max_relative_difference(got, want) <= AGREEMENT_RTOL, n
    alone = np.concatenate([reference.run(x[i:i + 1])["score"] for i in range(16)])
    assert max_relative_difference(alone, reference.run(x)["score"]) > AGREEMENT_RTOL  # the scale is per call


def test_the_per_call_caveat_is_measured_in_one_call_of_the_largest_compiled_size(tmp_path, monkeypatch):
    """The caveat compares each jet alone with "one call of N sample jets": on an engine whose largest compiled size
    is 16, a call of 48 ran as three calls of 16, each quantised with its own scale, and the line said one call of
    48. It is measured in one engine call now (the job's calls hold no more: ``refuse_sliced_quantiser``)."""
    from hltrun.modules.inference import fidelity

    pytest.importorskip("jax")
    backend = loaded("jax", bias_free_dynamic_mlp(tmp_path), max_batch=16)
    calls: list[int] = []
    real = backend._run_chunk

    def spy(x, *args, **kwargs):
        calls.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(backend, "_run_chunk", spy)
    notes = fidelity.caveats(backend, 16)
    assert len(notes) == 1 and "between one call of 16 sample jets and each jet alone" in notes[0], notes
    assert calls == [16] + [1] * 16  # the call of the sample jets, then each jet alone


def test_the_padding_check_without_onnxruntime_is_one_line_naming_it(tmp_path, monkeypatch):
    """The padding check runs the model on ONNX Runtime, which the [jax], [torch] and [iree] extras do not install:
    without it, the line names the package and how to install it (it was "failed in begin_job:
    ModuleNotFoundError: No module named 'onnxruntime'", nothing said of why it was wanted)."""
    import sys

    from hltrun.modules.inference.dynamic_quant import padding_moves_scale

    model = bias_free_dynamic_mlp(tmp_path)
    assert padding_moves_scale(model, ("DynamicQuantizeLinear",)) is None  # proved, with ONNX Runtime there
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it now fails as if it were not installed
    with pytest.raises(ModuleError) as err:
        padding_moves_scale(model, ("DynamicQuantizeLinear",))
    line = str(err.value)
    assert "\n" not in line and str(model) in line and "needs onnxruntime, which is not installed" in line
    assert "pip install" in line


@pytest.mark.parametrize("engine", ["jax", "iree"])
def test_a_call_over_the_largest_bucket_is_refused_for_a_per_call_quantised_model(engine, tmp_path):
    """A call over the largest compiled size runs in slices, each quantised with its own scale: the bias-free
    MLP, bit for bit ONNX Runtime's in every IREE bucket, was 7.8e-3 off it for a call of 40 jets (slices of 16).
    A job whose calls can hold more jets is refused at begin_job, naming the sizes and the settings."""
    from hltrun.modules.inference import fidelity

    pytest.importorskip({"iree": "iree.runtime"}.get(engine, engine))
    backend = loaded(engine, bias_free_dynamic_mlp(tmp_path), max_batch=16)
    fidelity.refuse_sliced_quantiser(backend, 16)  # one call: fine
    for held in (17, None):
        with pytest.raises(ModuleError) as err:
            fidelity.refuse_sliced_quantiser(backend, held)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{engine}: model ") and "more than 16 jets" in line
        assert "max_jets to 16 or less" in line and "backend: onnxruntime" in line
    fidelity.refuse_unfaithful(backend)  # IREE's compilation, checked in one call of 16 jets: ONNX Runtime's


def _dynamic_ops_onnx(path: Path) -> Path:
    """x (2, 12) -> DynamicQuantizeLinear -> (q, scale, zero point); q as (2, 12) @ int8 weights with one zero
    point per column (MatMulInteger), and q as (2, 2, 6) through an int8 Conv1d padded 2 and 1 (ConvInteger: the
    padding is the zero point): every output, to compare with ONNX Runtime's kernels value for value."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-128, 128, (12, 5)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array([3, -2, 0, 7, 1], np.int8), "wzp"),
             numpy_helper.from_array(rng.integers(-128, 128, (4, 2, 3)).astype(np.int8), "cw"),
             numpy_helper.from_array(np.array(5, np.int8), "cwzp"),
             numpy_helper.from_array(np.array([2, 12], np.int64), "shape"),
             numpy_helper.from_array(np.array([2, 2, 6], np.int64), "cshape")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
             helper.make_node("Reshape", ["q", "shape"], ["q2"]),
             helper.make_node("MatMulInteger", ["q2", "w", "z", "wzp"], ["mm"]),
             helper.make_node("Reshape", ["q", "cshape"], ["q3"]),
             helper.make_node("ConvInteger", ["q3", "cw", "z", "cwzp"], ["cv"], pads=[2, 1])]
    outputs = [helper.make_tensor_value_info(name, t, None) for name, t in
               (("q", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8),
                ("mm", TensorProto.INT32), ("cv", TensorProto.INT32))]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])],
                              outputs, inits)
    save_graph(graph, path, 17)
    return path


def _dynamic_inputs(case: str) -> np.ndarray:
    halves = np.arange(24, dtype=np.float32) + np.float32(0.5)  # exact halves of a scale of 1
    if case == "halves":  # range 0 to 255: scale 1, zero point 0; x / scale = 0.5, 1.5, ... rounds to even
        return np.concatenate([[0.0, 255.0], halves[:22]]).astype(np.float32).reshape(2, 12)
    if case == "zero point":  # range -126.5 to 128.5: scale 1, zero point 126.5, rounded to even: 126
        return np.concatenate([[-126.5, 128.5], halves[:22] - 60]).astype(np.float32).reshape(2, 12)
    rng = np.random.default_rng(int(case))
    x = rng.normal(0, 10 ** rng.uniform(-3, 3), (2, 12)).astype(np.float32)
    return x if int(case) % 3 else -np.abs(x)  # every third all negative: the zero point at 255


@pytest.mark.parametrize("case", ["halves", "zero point", "0", "1", "2", "3", "4", "5"])
@pytest.mark.parametrize("engine", TRANSLATED)
def test_dynamic_quantize_linear_and_integer_products_are_bit_exact_with_onnxruntime(engine, case, tmp_path):
    """quantize_dynamic's ops: the call's scale and zero point, x quantised (halves to even, as the zero point),
    and the int32 products with the zero points taken off: ONNX Runtime's, bit for bit. The halves and the zero
    point of 126.5 are where rounding half away from zero, or a dropped zero point, gives another integer."""
    pytest.importorskip(engine)
    import onnxruntime as ort

    model, x = _dynamic_ops_onnx(tmp_path / "dyn.onnx"), _dynamic_inputs(case)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the kernels as written
    want = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    if case == "halves":
        assert want[1] == 1 and want[2] == 0 and (np.round(x) != np.floor(x + 0.5)).any()
    if case == "zero point":
        assert want[1] == 1 and want[2] == 126
    got = _translated(engine, model, x)
    for name, a, b in zip(("q", "scale", "zero point", "MatMulInteger", "ConvInteger"), got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert (np.atleast_1d(a).view(np.uint8) == np.atleast_1d(b).view(np.uint8)).all(), (name, a, b)


def mixed_types_onnx(path: Path) -> Path:
    """What a float16 converter writes for a value two nodes share: a float16 ``Add`` fed a float32 initializer
    (the shipped GCN-VAE through convert_float_to_float16(keep_io_types=True): a float16 ``Greater`` with the
    float32 0 of another one). Not valid ONNX: ONNX Runtime refuses it at load."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Cast", ["jets"], ["h"], to=TensorProto.FLOAT16),
                               helper.make_node("Add", ["h", "shift"], ["s"], name="the_add"),
                               helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
                               helper.make_node("ReduceSum", ["f", "axes"], ["score"], keepdims=0)], "mixed",
                              [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
                              [numpy_helper.from_array(np.float32(7e4), "shift"),  # past float16's range
                               numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    save_graph(graph, path, 13)
    return path


@pytest.mark.parametrize("engine", ["jax", "torch", "iree"])
def test_a_graph_whose_types_disagree_is_refused_naming_the_node(engine, tmp_path):
    """JAX and PyTorch promoted the float16 and float32 values and ran the graph (the converted GCN-VAE: NaN for
    39 jets of 40); IREE's importer failed in words naming no node. Refused at load as ONNX Runtime refuses it."""
    pytest.importorskip({"iree": "iree.runtime"}.get(engine, engine))
    model = mixed_types_onnx(tmp_path / "mixed.onnx")
    with pytest.raises(ModuleError) as err:
        loaded(engine, model, max_batch=8)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{engine}: model {model} is not valid ONNX, its types disagree")
    assert "the_add" in line and "Add" in line and "float32 model" in line
    with pytest.raises(ModuleError, match="Type Error"):  # the reference refuses it too
        loaded("onnxruntime", model)


@pytest.mark.parametrize("engine", ["onnxruntime", "jax", "torch"])
def test_a_float16_input_is_refused_with_the_conversion_that_keeps_float32_inputs(engine, tmp_path):
    """convert_float_to_float16 without keep_io_types gives the model a float16 input: hltrun feeds float32, and
    the line said to export with a float32 input 'PyTorch: model.float()', not how to convert it."""
    pytest.importorskip(engine)
    from onnx import TensorProto

    from tests.tiny_models import sum_of_squares_onnx

    model = sum_of_squares_onnx(tmp_path / "half_io.onnx", ["N", 100, 3], TensorProto.FLOAT16)
    with pytest.raises(ModuleError) as err:
        loaded(engine, model, max_batch=8)
    line = str(err.value)
    assert "\n" not in line and "input 'x' is float16, expected float32" in line
    assert "keep_io_types=True" in line


@pytest.mark.parametrize("engine", TRANSLATED)
def test_a_qoperator_model_is_refused_naming_the_format_that_runs(engine, tmp_path):
    """quantize_static's QOperator format (QLinearMatMul, com.microsoft QGemm ...): the line blamed ONNX Runtime's
    graph optimiser for the com.microsoft ops; the quantiser wrote them, and its QDQ format runs here."""
    pytest.importorskip(engine)
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src = half_mlp_onnx(tmp_path / "mlp.onnx", half=False)
    model = tmp_path / "mlp_qop.onnx"
    quantize_static(str(src), str(model), _calibration("jets"), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    with pytest.raises(ModuleError) as err:
        loaded(engine, model, max_batch=8)
    line = str(err.value)
    assert "\n" not in line and "QLinearMatMul" in line and "QuantFormat.QDQ" in line
    assert "optimized_model_filepath" not in line


def half_score_onnx(path: Path) -> Path:
    """float32 jets, a float16 score: sum of squares computed after a Cast to float16, the output left in it (a
    conversion that kept the input float32 only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Cast", ["jets"], ["h"], to=TensorProto.FLOAT16),
                               helper.make_node("Mul", ["h", "h"], ["hh"]),
                               helper.make_node("ReduceSum", ["hh", "axes"], ["score"], keepdims=0)], "half_score",
                              [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT16, ["N"])],
                              [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")])
    save_graph(graph, path, 13)
    return path


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_a_float16_score_is_said_at_begin_job_on_every_engine(engine, tmp_path):
    """A float16 score is widened to float32 and cut as one: its values stand on float16's steps. ONNX Runtime, the
    reference, said nothing of it (and the other engines only where their scores differed from its)."""
    pytest.importorskip(engine)
    from tests.helpers import run_config

    repo = Path(__file__).resolve().parents[1]
    model = half_score_onnx(tmp_path / "half_score.onnx")
    summary, _ = run_config(repo / "configs/path.yaml", f"modules.vae.model={model}", f"modules.vae.backend={engine}",
                            "modules.anomalyFilter.threshold=1.0", f"modules.out.file={tmp_path / 'out.root'}",
                            "options.maxEvents=3")
    assert summary.failure is None
    notes = summary.facts["accelerators"]["vae"]["caveats"]
    said = [n for n in notes if "gives its score (output 'score') in float16" in n]
    assert len(said) == 1 and "1e-03 relative" in said[0]


def test_a_quantised_tflite_file_says_how_far_its_scores_are_from_the_onnx_beside_it(tmp_path):
    """TFLite's converter with ``Optimize.DEFAULT`` writes int8 weights (int8 activations too with a representative
    dataset) and keeps a float input and output: beside the float32 ``.onnx`` such a file scored 2.5e-2 (int8
    activations: 12 %) off ONNX Runtime with ``backend: tflite`` named, and nothing said it; ``auto`` leaves it out
    on its agreement check. Said at begin_job with the measured difference, as a float16 ONNX model is."""
    pytest.importorskip("ai_edge_litert")
    tf = pytest.importorskip("tensorflow")
    from hltrun.modules.inference import fidelity
    from hltrun.modules.inference.autoselect import CHECK_JETS, sample_batch
    from tests.tiny_models import _export, _tiny_model

    model = _tiny_model()
    _export(model, tmp_path / "net.onnx")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    (tmp_path / "net.tflite").write_bytes(converter.convert())
    backend = loaded("tflite", tmp_path / "net.tflite", max_batch=64)
    assert backend.computes_in() == "int8"
    notes = fidelity.caveats(backend)
    assert len(notes) == 1 and "net.tflite computes in int8; tflite runs it in int8" in notes[0]
    assert "(on net.onnx)" in notes[0] and "backend: onnxruntime" in notes[0]
    x = sample_batch(CHECK_JETS, seed=1)
    from hltrun.modules.inference.autoselect import output_difference

    by_hand = output_difference(backend.run(x), loaded("onnxruntime", tmp_path / "net.onnx").run(x))[0]  # score and kl
    assert float(notes[0].split("up to ")[1].split(" relative")[0]) == pytest.approx(by_hand, rel=0.06)
    assert by_hand > AGREEMENT_RTOL


def _quantiser_read_raw_onnx(path: Path) -> Path:
    """A quantiser's integers read as floats without their zero point (Cast, then a second quantiser): a zero jet
    is the zero point there, which is 0 in a call of zero jets but the call's own value in a padded one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.random.default_rng(0).integers(-128, 128, (300, 4)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array([-1, 300], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Reshape", ["jets", "shape"], ["flat"]),
             helper.make_node("DynamicQuantizeLinear", ["flat"], ["q", "s", "z"]),
             helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
             helper.make_node("DynamicQuantizeLinear", ["qf"], ["q2", "s2", "z2"]),
             helper.make_node("MatMulInteger", ["q2", "w", "z2"], ["m"]),
             helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["mf", "s2"], ["y"]),
             helper.make_node("ReduceSum", ["y", "axes"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "raw", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    save_graph(graph, path, 17)
    return path


def test_a_quantiser_whose_integers_are_read_otherwise_is_refused(tmp_path):
    """Every quantiser's input is 0 in a call of zero jets, but not in a padded call (a zero jet is the call's
    zero point after the Cast): the graph check, not the zero call, refuses it, naming the node."""
    model = _quantiser_read_raw_onnx(tmp_path / "raw.onnx")
    with pytest.raises(ModuleError) as err:
        loaded("jax", model, max_batch=16)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"jax: model {model} quantises its activations per call")
    assert "feeds Cast" in line and "not a MatMulInteger / ConvInteger with its zero point" in line


def test_the_per_call_caveat_says_an_absolute_difference_where_a_jet_scores_zero(tmp_path):
    """A ReLU network's jet can score 0 alone and not in the call (or the other way): the caveat said "up to inf
    relative", no figure at all. It says the largest absolute difference then, with the scores' median beside it."""
    from hltrun.modules.inference.fidelity import caveats

    backend = loaded("onnxruntime", bias_free_dynamic_mlp(tmp_path))
    (line,) = [c for c in caveats(backend) if "quantises its activations per call" in c]
    assert "inf" not in line
    figure = float(line.split("up to ", 1)[1].split(" absolute (relative is undefined: a jet scores 0 in one of the "
                                                     "two; the sample jets' median score is ")[0])
    assert np.isfinite(figure) and figure > 0
