"""Several-input networks on the engines that run the ONNX translator (JAX, PyTorch; issue 20): a ParticleNet-like
EdgeConv exported by torch (points, features, mask; tests/particlenet.py) gives ONNX Runtime's scores within the
agreement criterion in every bucket, a padded one and a batch over ``max_batch`` among them, with each input padded
along the batch axis by zero jets (a mask's padding 0). Until 2026-12-07 both engines refused such a model at
begin_job (``has 3 inputs [...]; the jax backend feeds models with one input``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")

from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference.autoselect import beyond_rounding, sample_inputs  # noqa: E402
from hltrun.modules.inference.base import AGREEMENT_RTOL  # noqa: E402
from hltrun.modules.inference.bucketed import bucket_for  # noqa: E402
from tests.agreement import assert_padded_with_zero_jets  # noqa: E402
from tests.particlenet import particlenet_onnx  # noqa: E402

ENGINES = ("jax", "torch")
MAX_BATCH = 8  # buckets 1, 2, 4, 8
BATCHES = (1, 2, 3, 5, 8, 11, 3, 1)  # 3, 5: padded; 11: a chunk of 8 and a padded one of 3; smaller after larger


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return particlenet_onnx(tmp_path_factory.mktemp("pn") / "pn.onnx")


@pytest.fixture(scope="module")
def reference(model):
    backend = create_backend("onnxruntime", model).load()
    backend.warm_up()
    return backend


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, model):
    pytest.importorskip(request.param)
    backend = create_backend(request.param, model, BackendOptions(max_batch=MAX_BATCH, device="cpu")).load()
    backend.warm_up()
    yield backend
    backend.close()


def _inputs(reference, n: int, seed: int) -> tuple[np.ndarray, ...]:
    """The declared inputs as the source prepares them: 1 to 16 real constituents per jet, the rest padded with
    0 and masked 0 (``autoselect.sample_inputs``, what ``auto`` and the verdict check agreement on)."""
    xs = sample_inputs(reference, n, seed=seed)
    assert isinstance(xs, tuple) and len(xs) == 3
    return xs


def test_the_declared_inputs_are_the_models_in_its_order(engine):
    desc = engine.describe()
    assert desc["input"] == "points, features, mask" and desc["inputs_from"] == "model metadata"
    assert [shape for shape in engine._jet_shapes] == [(2, 16), (2, 16), (1, 16)]


def test_scores_are_onnxruntimes_in_every_bucket(engine, reference):
    """Every batch size, padded buckets and a batch over max_batch included: ONNX Runtime's scores within the
    criterion ``auto`` and the verdict apply. The same batches with ``points`` and ``features`` swapped give other
    scores on ONNX Runtime (the same shapes), so an engine feeding the inputs in another order fails here."""
    before = dict(engine.counters)
    for n in BATCHES:
        xs = _inputs(reference, n, seed=n)
        assert 0.0 < float(xs[2].mean()) < 1.0  # real and padded constituents: the mask matters
        got, want = engine.run(xs), reference.run(xs)
        assert beyond_rounding({"score": got["score"]}, {"score": want["score"]}) <= AGREEMENT_RTOL, (n, got, want)
        swapped = reference.run((xs[1], xs[0], xs[2]))["score"]
        assert beyond_rounding({"score": swapped}, {"score": want["score"]}) > AGREEMENT_RTOL, n
    chunks = [m for n in BATCHES for m in [MAX_BATCH] * (n // MAX_BATCH) + [n % MAX_BATCH] if m]
    c = engine.counters
    assert c["chunks"] - before["chunks"] == len(chunks) == len(BATCHES) + 1
    assert c["padded_jets"] - before["padded_jets"] == sum(bucket_for(m, engine.buckets) - m for m in chunks) > 0


def test_padding_is_zero_jets_in_every_input(engine, reference, monkeypatch):
    """What the engine is handed for 5 jets after 7 in the bucket of 8: the 5 jets in every input, then zero jets
    in every input (a padded jet's mask is 0, never 1; no row of the earlier batch left behind)."""
    seen: list[tuple[np.ndarray, ...]] = []
    real = engine._execute

    def spy(bucket, bufs):
        seen.append(tuple(buf.copy() for buf in bufs))
        return real(bucket, bufs)

    monkeypatch.setattr(engine, "_execute", spy)
    engine.run(_inputs(reference, 7, seed=70))
    xs = _inputs(reference, 5, seed=50)
    engine.run(xs)
    handed = seen[-1]
    assert [buf.shape for buf in handed] == [(8, 2, 16), (8, 2, 16), (8, 1, 16)]
    assert_padded_with_zero_jets(handed, xs, 8)


def test_a_wrong_input_count_is_one_line(engine, reference):
    from hltrun.framework.errors import ModuleError

    xs = _inputs(reference, 2, seed=2)
    with pytest.raises(ModuleError, match=r"2 input array\(s\) for a model with 3 declared inputs"):
        engine.run(xs[:2])
