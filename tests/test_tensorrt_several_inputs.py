"""Several-input networks on TensorRT, against the strict fake TensorRT 10 of tests/fakes (no GPU here): a
ParticleNet-like EdgeConv exported by torch (points, features, mask; tests/particlenet.py) is built with one
optimisation profile giving every input its min/opt/max, each input bound by its tensor name with its own pinned
host and device buffers, and gives ONNX Runtime's scores. Until 2026-12-07 the backend refused such a model
(``has 3 inputs [...]; the tensorrt backend feeds models with one input``).

The fake enforces what TensorRT 10 documents for several inputs (its docstring cites where): a dynamic input
missing from the profile fails the build, an input without a shape fails ``execute_async_v3`` and is named by
``infer_shapes``, a wrong tensor name makes ``set_input_shape`` / ``set_tensor_address`` return False."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("torch", reason="torch is not installed (exports the test model)")

from hltrun.framework.errors import ModuleError  # noqa: E402
from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference.autoselect import beyond_rounding, sample_inputs  # noqa: E402
from hltrun.modules.inference.base import AGREEMENT_RTOL  # noqa: E402
from tests.particlenet import DECLARED, particlenet_onnx  # noqa: E402
from tests.test_tensorrt_fake import _install, _live_after_close  # noqa: E402

MAX_BATCH = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return particlenet_onnx(tmp_path_factory.mktemp("pn") / "pn.onnx")


@pytest.fixture(scope="module")
def reference(model):
    return create_backend("onnxruntime", model).load()


@pytest.fixture(params=["cuda-python", "pycuda"])
def fake(monkeypatch, request):
    return _install(monkeypatch, request.param)


def _trt(model: Path, cache: Path, **opts):
    backend = create_backend("tensorrt", model, BackendOptions(engine_cache=str(cache), max_batch=MAX_BATCH,
                                                               **opts)).load()
    backend.warm_up()
    return backend


def test_one_profile_gives_every_input_its_shapes(model, tmp_path, fake):
    backend = _trt(model, tmp_path)
    (build,) = fake.ctl.builds
    assert build["profiles"] == [{"points": [[1, 2, 16], [4, 2, 16], [4, 2, 16]],
                                  "features": [[1, 2, 16], [4, 2, 16], [4, 2, 16]],
                                  "mask": [[1, 1, 16], [4, 1, 16], [4, 1, 16]]}]
    assert backend.input_names == ["points", "features", "mask"]
    assert [i.name for i in backend.contract.inputs] == ["points", "features", "mask"]
    backend.close()


def test_scores_are_onnxruntimes_with_each_input_bound_by_name(model, reference, tmp_path, fake):
    """Batches of 1, 3, 4 and 9 (two profile-sized chunks and one of 1): ONNX Runtime's scores within the agreement
    criterion; ``points`` and ``features`` have the same shape and, swapped, give other scores, so a backend
    binding them to each other's tensor fails here. One H2D copy per input, each of its own bytes."""
    backend = _trt(model, tmp_path)
    for n in (1, 3, 4, 9):
        xs = sample_inputs(reference, n, seed=n)
        assert 0.0 < float(xs[2].mean()) < 1.0  # real and padded constituents: the mask matters
        want = reference.run(xs)["score"]
        got = backend.run(xs)["score"]
        assert beyond_rounding({"score": got}, {"score": want}) <= AGREEMENT_RTOL, (n, got, want)
        swapped = reference.run((xs[1], xs[0], xs[2]))["score"]
        assert beyond_rounding({"score": swapped}, {"score": want}) > AGREEMENT_RTOL, n
    c = backend.counters
    jets = 1 + 3 + 4 + 9
    assert c["chunks"] == 1 + 1 + 1 + 3
    assert c["h2d_bytes"] == jets * (2 * 16 + 2 * 16 + 16) * 4 and c["d2h_bytes"] == jets * 4
    backend.close()
    assert _live_after_close(fake)["device"] == 0


def test_a_declaration_the_engine_does_not_take_is_one_line(model, tmp_path, fake):
    """Each input's static dimensions are checked against the declaration: a model declared with 20 constituents
    per input whose engine takes 16 is one line naming the input and both shapes."""
    import onnx
    from hltrun.modules.contract import METADATA_KEY

    other = onnx.load(str(model))
    declared = [dict(d, n_constituents=20) for d in DECLARED]
    onnx.helper.set_model_props(other, {METADATA_KEY: json.dumps(declared)})
    path = tmp_path / "pn20.onnx"
    onnx.save(other, str(path))
    with pytest.raises(ModuleError, match=r"takes input 'points' of shape \(N, 2, 16\)") as info:
        _trt(path, tmp_path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- the fake keeps TensorRT 10's contracts
def _built(trt, model: Path, inputs: tuple[str, ...]):
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(model))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    jets = {"points": (2, 16), "features": (2, 16), "mask": (1, 16)}
    for name in inputs:
        profile.set_shape(name, (1, *jets[name]), (2, *jets[name]), (4, *jets[name]))
    config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config)


def test_the_fake_fails_a_build_whose_profile_misses_an_input(model, fake):
    import tensorrt as trt

    assert _built(trt, model, ("points", "features")) is None
    assert fake.ctl.errors[-1] == "mask: dynamic input is missing dimensions in profile 0."
    with pytest.raises(RuntimeError, match="inconsistent with other shapes"):
        trt.Builder(trt.Logger()).create_optimization_profile().set_shape("mask", (4, 1, 16), (2, 1, 16), (1, 1, 16))


def test_the_fake_runs_nothing_until_every_input_has_its_shape_and_address(model, fake):
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(_built(trt, model, ("points", "features", "mask")))
    ctx = engine.create_execution_context()
    assert ctx.set_input_shape("points", (2, 2, 16)) and ctx.set_input_shape("features", (2, 2, 16))
    assert not ctx.set_input_shape("nope", (2, 1, 16))  # not an input: False, as TensorRT 10 returns
    assert not ctx.set_input_shape("mask", (2, 2, 16))  # a static dimension other than the network's
    assert not ctx.set_input_shape("mask", (5, 1, 16))  # beyond the profile
    assert ctx.infer_shapes() == ["mask"]
    assert ctx.get_tensor_shape("score") == (-1,)
    with pytest.raises(AssertionError, match="use infer_shapes"):
        _ = ctx.all_binding_shapes_specified
    for name in engine.names:
        assert ctx.set_tensor_address(name, fake.gpu.malloc(4096))
    assert not ctx.set_tensor_address("nope", fake.gpu.malloc(16))
    assert not ctx.execute_async_v3(fake.gpu.new_stream())  # enqueueV3 returns false, its error logged
    assert "inputs without a shape ['mask']" in fake.ctl.errors[-1]
    assert ctx.set_input_shape("mask", (2, 1, 16))
    assert ctx.infer_shapes() == [] and ctx.get_tensor_shape("score") == (2,)
