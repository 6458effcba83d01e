"""One agreement criterion for every pair of backends (DESIGN.md): scores within AGREEMENT_RTOL
relative per jet, kl close, identical decisions at the model card's thresholds and at score
quantiles (there for jets further than the tolerance from the cut)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hltrun.modules.inference.base import AGREEMENT_RTOL

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
SAMPLES = sorted((MODELS.parent).glob("*.root"))


def shipped_jets(max_events: int = 150) -> np.ndarray:
    """The leading jets of the first events of every shipped sample, as (N, 100, 3)."""
    from hltrun.modules.models.preprocess import load_jets

    return np.concatenate([load_jets(str(f), max_events=max_events)[0] for f in SAMPLES])


def card_thresholds(model: str) -> list[float]:
    card = MODELS / "thresholds.json"
    if not card.exists():
        return []
    return [float(v) for v in json.loads(card.read_text()).get(model, {}).values() if isinstance(v, (int, float))]


def assert_agree(model: str, ref: dict[str, np.ndarray], out: dict[str, np.ndarray], what: str) -> None:
    assert ref["valid"].all() and out["valid"].all()
    rel = np.abs(out["score"] - ref["score"]) / np.abs(ref["score"])
    assert rel.max() <= AGREEMENT_RTOL, f"{what}: max relative score difference {rel.max():.2e} on {len(rel)} jets"
    np.testing.assert_allclose(out["kl"], ref["kl"], rtol=1e-5, atol=1e-6)
    for thr in [float(np.quantile(ref["score"], q)) for q in (0.5, 0.9, 0.99)]:
        far = np.abs(ref["score"] - thr) > AGREEMENT_RTOL * thr
        assert np.array_equal(out["score"][far] > thr, ref["score"][far] > thr), f"{what}: decisions differ at {thr}"
    thresholds = card_thresholds(model)
    assert thresholds or not (MODELS / "thresholds.json").exists()
    for thr in thresholds:
        assert np.array_equal(out["score"] > thr, ref["score"] > thr), f"{what}: decisions differ at {thr}"


def assert_agrees_on_every_shipped_sample(backend, model: str, what: str) -> None:
    """Every jet of every shipped sample (all events, the two leading jets each) through ``backend`` and
    ONNX Runtime CPU: score and kl within AGREEMENT_RTOL relative, and not one decision changed at the
    model card's working points. The largest differences are printed (gpu_check.sh keeps them)."""
    from hltrun.modules.inference import create_backend
    from hltrun.modules.models.preprocess import load_jets

    assert len(SAMPLES) >= 4, SAMPLES
    cuts = card_thresholds(model)
    assert len(cuts) >= 2, f"{model}: the card's working points are missing"
    reference = create_backend("onnxruntime", MODELS / f"{model}.onnx").load()
    for sample in SAMPLES:
        x = load_jets(str(sample))[0]
        got, ref = backend.run(x), reference.run(x)
        assert got["valid"].all() and ref["valid"].all()
        for key in ("score", "kl"):
            rel = np.abs(got[key] - ref[key]) / np.maximum(np.abs(ref[key]), 1e-30)
            print(f"{what} {model} {sample.name} {key}: max relative difference {rel.max():.2e} on {len(x)} jets")
            assert rel.max() <= AGREEMENT_RTOL, f"{what} {model} {sample.name} {key}: {rel.max():.2e}"
        for cut in cuts:
            changed = int(np.count_nonzero((got["score"] > cut) != (ref["score"] > cut)))
            assert changed == 0, f"{what} {model} {sample.name}: {changed} decision(s) changed at {cut}"


def assert_agrees_in_every_bucket(backend, model: Path, what: str,
                                  also: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """Batches landing in every bucket of ``backend`` and one over its largest (run in chunks), after every bucket
    was prepared (captured, compiled): ONNX Runtime CPU's scores on ``model`` within AGREEMENT_RTOL relative, jet by
    jet; ``also``: each batch a second time as it makes it (jets that take an If's other branch: one captured graph
    per bucket must hold both). Returns the largest relative difference, also printed (gpu_check.sh keeps it)."""
    from hltrun.modules.inference import create_backend
    from tests.tiny_models import jets

    reference = create_backend("onnxruntime", model).load()
    worst = 0.0
    for n in sorted({1, 2, 3, *(b + 1 for b in backend.buckets[:-1]), backend.buckets[-1] + 5}):
        x = jets(n, seed=n)
        for batch, how in ((x, ""), (also(x), f", as {also.__name__} makes them")) if also else ((x, ""),):
            got, ref = backend.run(batch), reference.run(batch)
            assert got["valid"].all() and ref["valid"].all(), f"{what}: {n} jets{how}"
            rel = float((np.abs(got["score"] - ref["score"]) / np.maximum(np.abs(ref["score"]), 1e-30)).max())
            assert rel <= AGREEMENT_RTOL, \
                f"{what} {model.name}: max relative score difference {rel:.2e} on {n} jets{how}"
            worst = max(worst, rel)
    print(f"{what} {model.name}: max relative score difference {worst:.2e}, buckets {backend.buckets}")
    return worst


def assert_several_inputs_agree(backend, model: Path, what: str) -> float:
    """A several-input ``backend`` (all buckets prepared) against ONNX Runtime CPU on ``model``: batches landing in
    every bucket and one over its largest, the jets padded and masked as the source does (``sample_inputs``),
    within the agreement criterion beyond float32 rounding. Each engine is handed the inputs in its own order, by
    name (a TFLite file orders them otherwise than the ONNX export). Returns the largest difference, also printed."""
    from hltrun.modules.contract import arranged
    from hltrun.modules.inference import create_backend
    from hltrun.modules.inference.autoselect import beyond_rounding, sample_inputs

    reference = create_backend("onnxruntime", model).load()
    worst = 0.0
    for n in sorted({1, 2, 3, *(k + 1 for k in backend.buckets[:-1]), backend.buckets[-1] + 5}):
        xs = sample_inputs(reference, n, seed=n)
        got = backend.run(arranged(xs, reference.contract, backend.contract))
        rel = beyond_rounding({"score": got["score"]}, {"score": reference.run(xs)["score"]})
        assert rel <= AGREEMENT_RTOL, f"{what}: {n} jets: {rel:.2e} beyond float32 rounding"
        worst = max(worst, rel)
    print(f"{what} {model.name}: {worst:.2e} beyond rounding, buckets {backend.buckets}")
    return worst


def assert_padded_with_zero_jets(handed, xs, bucket: int) -> None:
    """What an engine was handed for ``xs`` (one array per input) in ``bucket``: the real jets first in every
    input, then zero jets in every input (a padded jet's mask is 0, never 1; no row of an earlier batch left)."""
    n = len(xs[0])
    assert [len(buf) for buf in handed] == [bucket] * len(xs)
    for buf, x in zip(handed, xs):
        np.testing.assert_array_equal(buf[:n], x)
        assert not buf[n:].any()


def run_concurrently(backends, x: np.ndarray, calls: int) -> list[list[np.ndarray]]:
    """Each backend (one per hltrun stream) scores ``x`` ``calls`` times in its own thread, all at once."""
    import threading

    results: list[list[np.ndarray]] = [[] for _ in backends]

    def work(i: int) -> None:
        for _ in range(calls):
            results[i].append(backends[i].run(x)["score"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(backends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [len(r) for r in results] == [calls] * len(backends)
    return results


def assert_path_decides_as_on_onnxruntime(tmp_path: Path, backend: str, events: int, *settings: str) -> None:
    """The shipped path on ``backend`` and on ONNX Runtime, every event written: the same decision and scores
    for every event (hltdiff's comparison at the agreement tolerance)."""
    import subprocess
    import sys

    from hltrun.tools.hltdiff import compare, read_side

    outs = {}
    for name in ("onnxruntime", backend):
        outs[name] = tmp_path / f"{name}.root"
        res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", "configs/path.yaml", "-n", str(events),
                              "options.wantSummary=false", f"modules.out.file={outs[name]}",
                              "modules.out.select_events=[]", f"modules.vae.backend={name}", *settings],
                             cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr
    old, new = (read_side([outs[name]], "Events") for name in ("onnxruntime", backend))
    diff = compare(old, new)
    assert diff.common == events and diff.identical, diff
