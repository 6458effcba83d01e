"""The VAE scorer module: scores, counters, empty events, model lookup, errors naming the module."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hltrun.framework.context import ModuleContext, ProductInfo
from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.modules.products import JetBatch, JetScores
from tests.tiny_models import jets

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


# ---------------------------------------------------------------------- the scorer module
class FakeEvent:
    def __init__(self, batch: JetBatch) -> None:
        self.batch, self.product = batch, None

    def get(self, tag: str) -> JetBatch:
        return self.batch

    def put(self, product, instance: str = "") -> None:
        self.product = product


def fake_job(accelerators=("*",)) -> ModuleContext:
    """The scorer's context outside a Process (no batching: it asks for no loop state)."""
    return ModuleContext("vae", accelerators=tuple(accelerators))


def make_scorer(**params):
    from hltrun.modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters

    return VAEAnomalyScorer("vae", VAEAnomalyScorerParameters(**params))


def batch_of(x: np.ndarray) -> JetBatch:
    return JetBatch(x, x[..., 2] > 0, np.ones(len(x), np.float32), True)


def test_scorer_scores_counts_and_reports(tiny):
    scorer = make_scorer(model=str(tiny.onnx), backend="auto", outputs=["score"])
    job = fake_job()
    scorer.begin_job(job)
    assert job.channels.facts()["accelerators"]["vae"]["backend"] in ("onnxruntime", "tensorrt")
    x = jets(3)
    x[2, 0, 0] = np.nan
    for data in (x, np.zeros((0, 100, 3), np.float32)):
        ev = FakeEvent(batch_of(data))
        scorer.produce(ev)
        assert isinstance(ev.product, JetScores) and len(ev.product) == len(data) and ev.product.kl is None
    summary = scorer.summary()
    assert (summary["events"], summary["empty_events"], summary["jets"], summary["nonfinite_jets"]) == (2, 1, 3, 1)
    assert summary["backend"]["model"] == str(tiny.onnx)


def test_scorer_counts_the_models_own_nonfinite_scores_once_warned(tiny, monkeypatch, caplog):
    """A NaN or inf score for a jet with finite inputs is the model's doing: counted apart from the
    jets whose inputs were non-finite (NaN by design), in the data quality, with one warning per job."""
    scorer = make_scorer(model=str(tiny.onnx), backend="onnxruntime")
    scorer.begin_job(fake_job())
    run = scorer.backend._run

    def nan_first(x):
        out = run(x)
        return {k: np.where(np.arange(len(v)) == 0, np.float32(np.inf if k == "kl" else np.nan), v) for k, v in out.items()}

    monkeypatch.setattr(scorer.backend, "_run", nan_first)
    x = jets(3)
    x[2, 0, 0] = np.nan  # a non-finite input: NaN score by design, not counted as the model's
    logger = logging.getLogger("hltrun.vae")  # an in-process hltrun run earlier stops "hltrun" propagating
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="hltrun.vae"):
            for _ in range(2):
                scorer.produce(FakeEvent(batch_of(x.copy())))
    finally:
        logger.removeHandler(caplog.handler)
    assert scorer.data_quality() == {"events_without_jets": 0, "nonfinite_jets": 2, "nonfinite_scores": 2}
    warned = list({id(r): r for r in caplog.records if "non-finite scores" in r.getMessage()}.values())  # once per record
    assert len(warned) == 1 and "(nan)" in warned[0].getMessage()
    monkeypatch.setattr(scorer.backend, "_run", run)
    scorer.produce(FakeEvent(batch_of(jets(2))))
    assert scorer.data_quality()["nonfinite_scores"] == 2


def test_a_nan_scored_jet_has_no_score_and_cannot_veto_its_event(tiny, monkeypatch):
    """A NaN orders with no cut: through the event's maximum it would reject an event whose other jet passes.
    The jet is marked without a score (valid False, as a jet with non-finite inputs), so the filter decides
    on the other jets; +inf stays a score."""
    from hltrun.framework.event import Event, EventID
    from hltrun.framework.schema import build
    from hltrun.modules.anomaly_filter import AnomalyFilterParameters, AnomalyScoreFilter

    scorer = make_scorer(model=str(tiny.onnx), backend="onnxruntime")
    scorer.begin_job(fake_job())
    run = scorer.backend._run
    first = {"value": np.float32(np.nan)}
    monkeypatch.setattr(scorer.backend, "_run", lambda x: {**(out := run(x)),
                                                          "score": np.where(np.arange(len(x)) == 0, first["value"],
                                                                            out["score"])})
    cut = AnomalyScoreFilter("f", build(AnomalyFilterParameters, {"threshold": -1.0e30}, "modules.f"))
    cut.begin_job(ModuleContext("f"))
    for value, valid in ((np.nan, [False, True]), (np.inf, [True, True])):
        first["value"] = np.float32(value)
        ev = FakeEvent(batch_of(jets(2)))
        scorer.produce(ev)
        assert ev.product.valid.tolist() == valid
        event = Event(EventID(1, 1, 1), 0, 0)
        event.put_as("vae", ev.product)
        assert cut.filter(event) is True  # decided on the finite jet (nan) or passing (+inf)


def test_scorer_empty_event_skips_backend(tiny, monkeypatch):
    scorer = make_scorer(model=str(tiny.onnx), backend="onnxruntime")
    scorer.begin_job(fake_job())
    monkeypatch.setattr(scorer.backend, "run", lambda x: pytest.fail("backend called for an event without jets"))
    ev = FakeEvent(batch_of(np.zeros((0, 100, 3), np.float32)))
    scorer.produce(ev)
    assert len(ev.product.score) == 0 and len(ev.product.valid) == 0


def test_scorer_model_by_name_and_sibling_suffix(tiny):
    scorer = make_scorer(model="tiny", backend="tensorflow", models_dir=str(tiny.dir))
    scorer.begin_job(fake_job())
    assert scorer.backend.model_path == tiny.keras
    scorer = make_scorer(model=str(tiny.keras), backend="onnxruntime")  # .keras given, .onnx beside it
    scorer.begin_job(fake_job())
    assert scorer.backend.model_path == tiny.onnx


def test_a_tflite_file_given_by_its_bare_name_is_that_file_and_its_cut_the_stems(tmp_path, monkeypatch):
    """``model: mine.tflite`` in the working directory (conv_tflite's export of ``mine.onnx``) is that file, as
    ``model: ./sub/mine.tflite`` was, and its cuts are ``mine``'s in the thresholds.json beside it (conv_tflite checks
    it against them). It was a models_dir name: the filter said "model file not found: mine.tflite (no file of that
    name here ...)" beside the file, the scorer looked for ``data/models/mine.tflite.tflite``, and a path with a folder
    looked for the cut under ``mine.tflite``."""
    from hltrun.modules.vae_scorer import (VAEAnomalyScorerParameters, missing_model, model_identity,
                                           model_thresholds, resolve_model)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.tflite").write_bytes(b"TFL3")
    (tmp_path / "thresholds.json").write_text('{"mine": {"bkg_eff_1e-2": 0.25}}')
    params = VAEAnomalyScorerParameters(model="mine.tflite", backend="tflite")
    assert missing_model(params) is None
    assert resolve_model("mine.tflite", "tflite", "fp32", params.models_dir) == Path("mine.tflite")
    assert model_identity(str(tmp_path / "mine.tflite")) == "mine"
    assert model_thresholds(params)[:2] == ("mine", {"bkg_eff_1e-2": 0.25})
    with pytest.raises(ConfigError, match=r"model mine.tflite: the onnxruntime backend reads .onnx files and mine.onnx "
                                          r"does not exist"):
        resolve_model("mine.tflite", "onnxruntime", "fp32", params.models_dir)
    assert missing_model(VAEAnomalyScorerParameters(model="gone.tflite")) == "gone.tflite"


def test_scorer_errors_name_the_model(tiny, tmp_path):
    with pytest.raises(ModuleError, match=rf"modules.vae: .*{tiny.wrong_onnx} takes input .*of shape \(N, 50, 3\)"):
        make_scorer(model=str(tiny.wrong_onnx), backend="onnxruntime").begin_job(fake_job())
    with pytest.raises(ModuleError, match=r"model file not found: .*missing_vae\.onnx"):
        make_scorer(model="missing_vae", backend="onnxruntime", models_dir=str(tmp_path)).begin_job(fake_job())
    with pytest.raises(ConfigError, match="int8 requested but .* not a quantised model"):
        make_scorer(model=str(tiny.onnx), backend="onnxruntime", precision="int8").begin_job(fake_job())
    from hltrun.framework.schema import build
    from hltrun.modules.jet_batcher import JetBatcher, JetBatcherParameters
    from hltrun.modules.vae_scorer import VAEAnomalyScorer

    batcher = ProductInfo("batcher", "JetBatcher", JetBatch, JetBatcher,
                          build(JetBatcherParameters, {"n_constituents": 50}, "modules.batcher"))
    scorer = make_scorer(model=str(tiny.onnx), backend="onnxruntime")
    with pytest.raises(ModuleError, match=r"^modules\.vae: model .* takes input .* of shape \(N, 100, 3\); hltrun feeds "
                                          r"its shipped input, constituents \(N, 50, 3\) \[deta, dphi, pt\]"):
        scorer.begin_job(ModuleContext("vae", inputs={"src": batcher}))
    assert VAEAnomalyScorer.check_config("vae", scorer.params, {"src": batcher}) is None  # the model decides, at begin_job


@pytest.mark.parametrize("backend, precision, engine, runs", [
    ("onnxruntime", "fp16", "onnxruntime", "fp32 or int8"), ("auto", "fp16", "onnxruntime", "fp32 or int8"),
    ("iree", "fp16", "iree", "fp32"), ("jax", "int8", "jax", "fp32"), ("tensorflow", "fp16", "tensorflow", "fp32")])
def test_a_precision_the_engine_does_not_run_is_refused(tiny, backend, precision, engine, runs):
    """One rule (``InferenceBackend.precision_refusal``) for every engine: ONNX Runtime, IREE and auto ran
    fp32 when fp16 was asked, without a word. Refused before any file is read; auto says what it chose."""
    pytest.importorskip({"iree": "iree.runtime", "jax": "jax"}.get(engine, "onnxruntime"))
    from hltrun.modules.inference import BackendOptions, create_backend

    want = rf"^modules\.vae\.precision: {engine}: precision '{precision}' not supported \({runs} only\)"
    with pytest.raises(ConfigError, match=want + (r" \(backend: auto chose onnxruntime: " if backend == "auto" else "$")):
        make_scorer(model=str(tiny.onnx), backend=backend, precision=precision).begin_job(fake_job(("cpu",)))
    if backend != "auto":  # hltbench and other callers of load() get the same rule
        with pytest.raises(ModuleError, match=f"^{engine}: precision '{precision}' not supported"):
            create_backend(engine, tiny.onnx if engine != "tensorflow" else tiny.keras,
                           BackendOptions(precision=precision)).load()


def _no_effect_lines(caplog, run) -> list[str]:
    """The scorer's warnings of settings its engine does not read, while ``run()`` runs."""
    logger = logging.getLogger("hltrun.vae")  # the CLI's "hltrun" logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    caplog.clear()
    try:
        with caplog.at_level("WARNING", logger="hltrun.vae"):
            run()
    finally:
        logger.removeHandler(caplog.handler)
    return [m for m in {id(r): r.getMessage() for r in caplog.records}.values() if "the job runs as without" in m]


def test_an_engine_setting_the_engine_does_not_read_is_named(tiny, caplog, tmp_path):
    """``mode: xla`` (TensorFlow's) on ONNX Runtime, ``io_binding`` (ONNX Runtime's) elsewhere: the job ran
    exactly as without them and said nothing, so a user comparing two settings measured the same engine
    twice. One warning names each unread setting and the engine; a setting the engine reads is not named."""
    pytest.importorskip("onnxruntime")
    from hltrun.modules.inference import BackendOptions
    from hltrun.modules.inference.dynamic_batching import BatchingParameters
    from hltrun.modules.vae_scorer import VAEAnomalyScorer, VAEAnomalyScorerParameters

    def begin(**params):
        return lambda: make_scorer(model=str(tiny.onnx), outputs=["score"], **params).begin_job(fake_job(("cpu",)))

    (line,) = _no_effect_lines(caplog, begin(backend="onnxruntime", mode="xla", cuda_graphs=False))
    assert line.startswith("modules.vae: mode: xla, cuda_graphs: false: not read by onnxruntime, the engine this job "
                           "runs; the job runs as without them")
    assert _no_effect_lines(caplog, begin(backend="onnxruntime", threads=2, graph_optimization="basic",
                                          io_binding=True, providers=["cpu"])) == []
    # auto weighs IREE by its engine_cache (is the model compiled there?): not named; mode still is
    (line,) = _no_effect_lines(caplog, begin(backend="auto", mode="xla", engine_cache=str(tmp_path / "engines")))
    assert line.startswith("modules.vae: mode: xla: not read by onnxruntime, the engine this job runs (nor by the "
                           "others auto weighed)")
    # max_batch is ONNX Runtime's no more than mode, but with batching it bounds batching.max_batch
    (line,) = _no_effect_lines(caplog, begin(backend="onnxruntime", max_batch=64))
    assert line.startswith("modules.vae: max_batch: 64: not read by onnxruntime")
    decide = VAEAnomalyScorer._name_unread_settings  # a batching job needs a Process: the decision alone
    for batching, named in ((BatchingParameters(32, 1.0), False), (None, True)):
        params = VAEAnomalyScorerParameters(backend="onnxruntime", max_batch=64, batching=batching)
        opts = BackendOptions(max_batch=64)
        lines = _no_effect_lines(caplog, lambda: decide("modules.vae", "onnxruntime", opts, params))
        assert bool(lines) == named


def test_every_engine_setting_is_read_by_some_engine():
    """``reads`` covers the scorer's engine settings: a setting no engine lists would be warned about on
    every engine (and one listed by none is a setting with nothing behind it)."""
    import dataclasses

    from hltrun.modules.inference import backend_class, backend_names
    from hltrun.modules.inference.base import ENGINE_SETTINGS
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters

    read = set().union(*(backend_class(name).reads for name in backend_names() if name != "auto"))
    assert read == set(ENGINE_SETTINGS)
    assert set(ENGINE_SETTINGS) <= {f.name for f in dataclasses.fields(VAEAnomalyScorerParameters)}


def test_scorer_parameters_are_validated():
    from hltrun.framework.schema import build
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters

    with pytest.raises(ConfigError, match="modules.vae.backend: expected one of"):
        build(VAEAnomalyScorerParameters, {"backend": "pytorch"}, "modules.vae")
    with pytest.raises(ConfigError, match="outputs must include 'score'"):
        build(VAEAnomalyScorerParameters, {"outputs": ["kl"]}, "modules.vae")


def test_auto_decides_and_logs_once_per_job(tiny, monkeypatch, caplog):
    """A label's per-stream instances share ``auto``'s decision: the first takes it (times, or reads the
    cache) and logs the table; the others neither time nor read again. With 2 streams the table used to
    be logged twice, the second block from the cache ('(cached decision)'), which the once-per-message
    filter could not merge. Every instance still records the choice and its timings for hltrun.json."""
    from hltrun.modules.inference import autoselect
    from hltrun.modules.inference.iree_backend import IreeBackend

    calls = []

    def choose_cached(model, candidates, batch, *args, **kwargs):
        calls.append(sorted(candidates))
        rows = [autoselect.Timing("onnxruntime", 5.0, 3, 0.0, True), autoselect.Timing("iree", 9.0, 3, 0.0, True)]
        return autoselect.Choice("onnxruntime", batch, "fastest of 2", rows, cached=len(calls) > 1)

    monkeypatch.setattr(autoselect, "choose_cached", choose_cached)
    monkeypatch.setattr(IreeBackend, "compiled", classmethod(lambda cls, path, options: True))
    job = fake_job()
    logger = logging.getLogger("hltrun.vae")  # the CLI's "hltrun" logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="hltrun.vae")
    try:
        scorers = [make_scorer(model=str(tiny.onnx), backend="auto", outputs=["score"]) for _ in range(2)]
        for scorer in scorers:
            scorer.begin_job(job)
    finally:
        logger.removeHandler(caplog.handler)
    assert calls == [["iree", "onnxruntime"]]
    headers = [r.getMessage() for r in {id(r): r for r in caplog.records}.values() if "engines timed" in r.getMessage()]
    assert len(headers) == 1 and "(cached decision)" not in headers[0]
    facts = job.channels.facts()["accelerators"]["vae"]
    assert facts["backend"] == "onnxruntime" and [t["backend"] for t in facts["timings"]] == ["onnxruntime", "iree"]
    assert all(s.reason.startswith("auto: onnxruntime on CPU, fastest of 2") for s in scorers)


def test_auto_takes_its_decision_again_under_other_engine_settings(tiny, monkeypatch, tmp_path):
    """The cached decision's key holds the engine settings: one taken with ``max_batch: 1`` had checked IREE in one
    compiled size only (and timed it in slices of one), and was reused by the next job on the default ``max_batch``,
    whose other compiled sizes no check had run. The same settings still reuse it."""
    from hltrun.modules.inference import autoselect
    from hltrun.modules.inference.iree_backend import IreeBackend

    timed: list[int] = []

    def choose(candidates, batch, reference, budget_s=2.0):
        timed.append(batch)
        rows = [autoselect.Timing("onnxruntime", 5.0, 3, 0.0, True), autoselect.Timing("iree", 9.0, 3, 0.0, True)]
        return autoselect.Choice("onnxruntime", batch, "fastest of 2", rows)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(autoselect, "choose", choose)
    monkeypatch.setattr(IreeBackend, "compiled", classmethod(lambda cls, path, options: True))

    def job(**settings) -> str:
        scorer = make_scorer(model=str(tiny.onnx), backend="auto", outputs=["score"], **settings)
        scorer.begin_job(fake_job())
        return scorer.reason

    job(max_batch=1)
    assert len(timed) == 1
    job(max_batch=1)
    assert len(timed) == 1  # the same settings: the decision is reused
    job()
    assert len(timed) == 2  # the default max_batch: taken again
    job(threads=2)
    assert len(timed) == 3


@pytest.mark.parametrize("backend, reads_threads", [("onnxruntime", True), ("jax", False)])
def test_the_scorers_summary_gives_threads_only_for_an_engine_that_took_them(tiny, backend, reads_threads):
    """JAX (and TensorRT) read no ``threads``: the summary said ``threads: 2`` all the same, a thread count the
    engine never took, beside the warning that it was not read."""
    pytest.importorskip(backend)
    scorer = make_scorer(model=str(tiny.onnx), backend=backend, outputs=["score"], threads=2)
    scorer.begin_job(fake_job(("cpu",)))
    assert scorer.summary()["backend"]["threads"] == (2 if reads_threads else None)
