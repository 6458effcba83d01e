"""Several-input networks on IREE: a ParticleNet-like EdgeConv exported by torch (points, features, mask;
tests/particlenet.py) compiled once per batch bucket, every input's batch axis fixed to the bucket, gives ONNX
Runtime's scores within the agreement criterion in every bucket, a padded one and a batch over the largest among
them, each input padded with zero jets (a mask's padding 0). Until 2026-12-07 IREE refused such a model at load
(``has 3 inputs [...]; the iree backend feeds models with one input``) and ``auto`` called it unusable for IREE.

The network's kNN distance is the sum of squared differences: IREE 3.13 miscompiles ParticleNet's own form
(|x|² - 2 x·y + |y|²) for batches of 2 and 4 (tests/particlenet.py), which the job now refuses at begin_job (the
last test). Compiling costs seconds per bucket: the model is compiled once per module, for buckets 1,
2 and 4, into one cache that the command-line test reads too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
pytest.importorskip("iree.runtime", reason="iree (extra 'iree') not installed")
pytest.importorskip("iree.compiler", reason="iree (extra 'iree') not installed")
pytest.importorskip("torch", reason="torch is not installed (exports the test model)")

from hltrun.modules.inference import BackendOptions, create_backend  # noqa: E402
from hltrun.modules.inference import iree_backend as ib  # noqa: E402
from hltrun.modules.inference.autoselect import beyond_rounding, choose, sample_inputs  # noqa: E402
from hltrun.modules.inference.base import AGREEMENT_RTOL  # noqa: E402
from tests.agreement import (assert_padded_with_zero_jets, assert_path_decides_as_on_onnxruntime,  # noqa: E402
                              assert_several_inputs_agree)
from tests.particlenet import particlenet_onnx  # noqa: E402

pytestmark = pytest.mark.slow  # every test compiles (seconds per bucket)
REPO = Path(__file__).resolve().parents[1]
BUCKETS = {"max_batch": 4}  # buckets 1, 2, 4 (up to the typical 9, never beyond max_batch); larger: slices of 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("iree-pn-cache")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return particlenet_onnx(tmp_path_factory.mktemp("pn") / "pn.onnx", distance="broadcast")


@pytest.fixture(scope="module")
def reference(model):
    backend = create_backend("onnxruntime", model).load()
    backend.warm_up()
    return backend


@pytest.fixture(scope="module")
def iree(model, cache):
    backend = create_backend("iree", model, BackendOptions(engine_cache=str(cache), **BUCKETS)).load()
    backend.warm_up()
    return backend


def test_the_inputs_are_the_models_in_its_order(iree):
    assert iree.buckets == [1, 2, 4]
    assert [i.name for i in iree.contract.inputs] == ["points", "features", "mask"]
    assert iree.contract.origin == "model metadata"
    assert list(iree._jet_shapes) == [(2, 16), (2, 16), (1, 16)]


def test_scores_are_onnxruntimes_in_every_bucket(iree, model, reference):
    """Batches of 1, 2, 3 (padded to 4), 4 and 9 (two slices of 4 and a padded one): ONNX Runtime's scores within
    the criterion ``auto`` and the verdict apply. ``points`` and ``features`` have the same shape and, swapped, give
    other scores on ONNX Runtime, so an engine feeding the inputs in another order fails here."""
    assert assert_several_inputs_agree(iree, model, "iree several inputs") <= AGREEMENT_RTOL
    for n in (3, 9):
        xs = sample_inputs(reference, n, seed=10 + n)
        assert 0.0 < float(xs[2].mean()) < 1.0  # real and padded constituents: the mask matters
        want = reference.run(xs)["score"]
        assert beyond_rounding({"score": iree.run(xs)["score"]}, {"score": want}) <= AGREEMENT_RTOL, n
        swapped = reference.run((xs[1], xs[0], xs[2]))["score"]
        assert beyond_rounding({"score": swapped}, {"score": want}) > AGREEMENT_RTOL, n


def test_padding_is_zero_jets_in_every_input(iree, reference, monkeypatch):
    """What the bucket of 4's entry point is handed for 3 jets after 4: the 3 jets in every input, in the model's
    input order, then a zero jet in every input (its mask 0, never 1; no row of the earlier batch left behind)."""
    seen: list[tuple[np.ndarray, ...]] = []
    entry = iree._functions[4]

    def spy(*args):
        seen.append(tuple(np.array(a, copy=True) for a in args))
        return entry(*args)

    monkeypatch.setitem(iree._functions, 4, spy)
    iree.run(sample_inputs(reference, 4, seed=40))
    xs = sample_inputs(reference, 3, seed=30)
    iree.run(xs)
    handed = seen[-1]
    assert [a.shape for a in handed] == [(4, 2, 16), (4, 2, 16), (4, 1, 16)]
    assert_padded_with_zero_jets(handed, xs, 4)


def test_auto_no_longer_calls_a_several_input_model_unusable(model, cache):
    """``auto`` said IREE "feeds models with one input" of such a model; now it is a model like any other: not
    compiled yet (run once with backend: iree), then, once compiled, timed."""
    assert ib.never_compiles(model) is None
    fresh = BackendOptions(engine_cache=str(cache / "none"), **BUCKETS)
    assert ib.IreeBackend.not_ready_for_auto(model, fresh) == \
        "not compiled for this model here (run once with backend: iree)"
    assert ib.IreeBackend.not_ready_for_auto(model, BackendOptions(engine_cache=str(cache), **BUCKETS)) is None


def test_the_shipped_path_on_iree_decides_as_on_onnxruntime(iree, model, cache, tmp_path):
    """``hltrun configs/path.yaml modules.vae.model=pn.onnx modules.vae.backend=iree``, the source preparing the
    three inputs the model declares: exit 0, and every event's decision and scores those of ONNX Runtime (it was
    exit 4, ``iree: model pn.onnx has 3 inputs``). The buckets come from the module's cache."""
    assert_path_decides_as_on_onnxruntime(tmp_path, "iree", 20, f"modules.vae.model={model}",
                                          f"modules.vae.engine_cache={cache}", "modules.vae.max_batch=4",
                                          "modules.anomalyFilter.threshold=1")


def test_a_compilation_wrong_for_some_batch_sizes_is_refused_before_the_first_event(tmp_path, capfd):
    """ParticleNet's own kNN distance (|x|² - 2 x·y + |y|²): iree-base-compiler 3.13 compiles it wrong for batches
    of 2 and 4 (scores up to 40 % off ONNX Runtime's) and right for 1, 8 and 16. The begin_job check ran its 48 sample
    jets in slices of 16 and passed it, so the HLT's events of two jets would have been scored so, without a word.
    Now every compiled size is checked: one line naming the way out, exit 4, no output. Judged on IREE's own scores
    in every bucket, so that an IREE that compiles the model right must run it."""
    from hltrun.framework.cli import main as hltrun

    model = particlenet_onnx(tmp_path / "pn_matmul.onnx", distance="matmul")
    cache = tmp_path / "cache"
    iree = create_backend("iree", model, BackendOptions(engine_cache=str(cache))).load()
    iree.warm_up()
    assert iree.buckets == [1, 2, 4, 8, 16]
    reference = create_backend("onnxruntime", model).load()
    worst = 0.0
    for n in iree.buckets:
        xs = sample_inputs(reference, n, seed=n)
        worst = max(worst, beyond_rounding({"score": iree.run(xs)["score"]}, {"score": reference.run(xs)["score"]}))
    capfd.readouterr()
    rc = hltrun([str(REPO / "configs" / "path.yaml"), f"modules.vae.model={model}", "modules.vae.backend=iree",
                 f"modules.vae.engine_cache={cache}", "modules.anomalyFilter.threshold=1.0",
                 f"modules.out.file={tmp_path / 'out.root'}", "-n", "5", "-q"])
    err = capfd.readouterr().err
    if worst <= AGREEMENT_RTOL:  # an IREE that compiles it right runs it
        assert rc == 0, err
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 4 and "Traceback" not in err, err
    assert lines[-1].startswith(f"hltrun: error: modules.vae: iree: model {model}: the iree compilation of this model "
                                f"is not ONNX Runtime's network: scores differ by up to "), lines[-1]
    assert "on 48 sample jets in one call and in calls of 1, 2, 4, 8, 16 jets" in lines[-1], lines[-1]
    assert lines[-1].endswith("use backend: onnxruntime for this model")
    assert not (tmp_path / "out.root").exists()
    # ``auto`` (its module cache found) checks the same sizes: IREE is not timed, ONNX Runtime runs it
    choice = choose({"onnxruntime": lambda: create_backend("onnxruntime", model),
                     "iree": lambda: create_backend("iree", model, BackendOptions(engine_cache=str(cache)))},
                    2, "onnxruntime", budget_s=0.2)
    row = next(t for t in choice.table if t.backend == "iree")
    assert choice.backend == "onnxruntime" and not row.agrees and "disagrees" in row.note, choice.lines()
