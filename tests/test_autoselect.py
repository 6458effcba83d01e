"""``backend: auto`` by measurement: the fastest engine that agrees wins; one that disagrees or
cannot run is a row of the table, never the choice; the decision is cached per machine."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hltrun.modules.inference import BackendOptions, autoselect
from hltrun.modules.inference.machine import IN_MEMORY
from hltrun.modules.inference.onnxruntime_backend import OnnxRuntimeBackend


class _Slow(OnnxRuntimeBackend):
    name = "slow"

    def _run(self, x):
        time.sleep(0.002)
        return super()._run(x)


class _Wrong(OnnxRuntimeBackend):
    name = "wrong"

    def _run(self, x):
        out = super()._run(x)
        return {k: v * np.float32(1.01) for k, v in out.items()}


class _WrongKl(OnnxRuntimeBackend):
    """The same score, another kl: another network (a .tflite of a retrained model beside the .onnx)."""
    name = "wrong_kl"

    def _run(self, x):
        out = super()._run(x)
        return {k: v * np.float32(1.01) if k == "kl" else v for k, v in out.items()}


class _ClipsHardJets(OnnxRuntimeBackend):
    """The same network below 6 GeV per constituent, another above (a .tflite exported with a clip, a
    saturating layer): only jets at the path's real pT scale can tell it apart."""
    name = "clips"

    def _run(self, x):
        x = x.copy()
        x[..., 2] = np.minimum(x[..., 2], np.float32(6.0))
        return super()._run(x)


class _NoKl(OnnxRuntimeBackend):
    name = "no_kl"

    def __init__(self, model_path):
        super().__init__(model_path, BackendOptions(outputs={"score": "score"}))


class _Broken(OnnxRuntimeBackend):
    name = "broken"

    def _load(self):
        raise RuntimeError("no such engine here")


def _candidates(tiny, **extra):
    table = {"onnxruntime": lambda: OnnxRuntimeBackend(tiny.onnx), "slow": lambda: _Slow(tiny.onnx)}
    table.update({name: (lambda cls=cls: cls(tiny.onnx)) for name, cls in extra.items()})
    return table


def test_the_fastest_agreeing_engine_wins_and_the_table_says_why(tiny):
    choice = autoselect.choose(_candidates(tiny, wrong=_Wrong, broken=_Broken), batch=2, reference="onnxruntime",
                               budget_s=0.4)
    rows = {t.backend: t for t in choice.table}
    assert choice.backend == "onnxruntime"
    assert rows["slow"].agrees and rows["slow"].us_per_jet > rows["onnxruntime"].us_per_jet
    assert not rows["wrong"].agrees and "disagrees" in rows["wrong"].note  # 1 % off: never chosen, however fast
    assert rows["broken"].us_per_jet is None and "no such engine here" in rows["broken"].note
    text = "\n".join(choice.lines())
    assert "auto: chose onnxruntime: fastest of 2 agreeing engine(s) at batch 2" in text


def test_every_output_must_agree_not_the_score_alone(tiny):
    choice = autoselect.choose(_candidates(tiny, wrong_kl=_WrongKl, no_kl=_NoKl), batch=2, reference="onnxruntime",
                               budget_s=0.3)
    rows = {t.backend: t for t in choice.table}
    assert not rows["wrong_kl"].agrees and rows["wrong_kl"].max_rel_diff == pytest.approx(0.01, rel=1e-3)
    assert not rows["no_kl"].agrees and rows["no_kl"].note == "has no kl output"
    assert choice.backend in ("onnxruntime", "slow")


def test_agreement_is_checked_at_the_pt_scale_real_jets_have(tiny):
    choice = autoselect.choose(_candidates(tiny, clips=_ClipsHardJets), batch=2, reference="onnxruntime", budget_s=0.3)
    rows = {t.backend: t for t in choice.table}
    assert not rows["clips"].agrees and "disagrees" in rows["clips"].note
    jets = autoselect.sample_batch(autoselect.CHECK_JETS, seed=1)
    jet_pt = jets[..., 2].sum(axis=1)
    assert jet_pt.max() > 1000 and jet_pt.min() <= 1.0 + 1e-5      # TeV jets and pT shares
    assert (jets[..., 2] > 0).sum(axis=1).min() == 1 and (jets[..., 2] > 0).sum(axis=1).max() == 100
    assert np.abs(jets[..., 0]).max() > 1.0                          # some at an absolute eta


def test_the_key_holds_the_bytes_of_every_other_file_a_candidate_reads(tiny, tmp_path):
    other = tmp_path / "model.tflite"
    other.write_bytes(b"one network")
    key = lambda *others: autoselect.decision_key(tiny.onnx, 2, {"onnxruntime": "1"}, "cpu0", others)  # noqa: E731
    first = key(other)
    assert first != key() and first == key(other)
    other.write_bytes(b"another network")
    assert key(other) != first


def test_a_faster_engine_is_chosen_over_the_reference(tiny):
    choice = autoselect.choose({"slow": lambda: _Slow(tiny.onnx), "onnxruntime": lambda: OnnxRuntimeBackend(tiny.onnx)},
                               batch=3, reference="slow", budget_s=0.3)
    assert choice.backend == "onnxruntime" and "x faster than slow" in choice.reason  # a speed-up, not "1.9x slow"


def test_the_decision_is_cached_per_machine(tiny, tmp_path, monkeypatch):
    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "1"}, cpu="cpu0", budget_s=0.2, folder=tmp_path)
    first = autoselect.choose_cached(**args)
    assert not first.cached
    monkeypatch.setattr(autoselect, "choose", lambda *a, **k: pytest.fail("timed again despite the cache"))
    again = autoselect.choose_cached(**args)
    assert again.cached and again.backend == first.backend and len(again.table) == len(first.table)
    monkeypatch.undo()
    other = autoselect.choose_cached(**{**args, "cpu": "cpu1"})  # another machine: timed again
    assert not other.cached


class _NanFirst(OnnxRuntimeBackend):
    """A model that gives NaN for the first jet and exactly 0 for the others (an untrained ReLU head)."""

    name = "nan_first"

    def _run(self, x):
        out = {k: np.zeros_like(v) for k, v in super()._run(x).items()}
        for v in out.values():
            v[0] = np.nan
        return out


def test_relative_difference_never_makes_the_reference_disagree_with_itself():
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    ref = np.array([1.0, 0.0, nan, inf, 2.0], np.float32)
    assert autoselect.max_relative_difference(ref, ref) == 0.0
    assert autoselect.max_relative_difference(ref * np.float32(1 + 1e-6), ref) == pytest.approx(1e-6, rel=0.1)
    for i, value in ((0, nan), (1, 1e-9), (2, 1.0), (3, 1.0)):  # NaN vs a number, non-zero vs 0, ...: inf
        other = ref.copy()
        other[i] = value
        assert autoselect.max_relative_difference(other, ref) == np.inf, (i, value)
    assert autoselect.max_relative_difference(np.zeros(0), np.zeros(0)) == 0.0


def test_a_model_giving_nan_and_zero_scores_is_still_timed_and_chosen(tiny):
    class _SlowNanFirst(_NanFirst):
        name = "slow_nan_first"

        def _run(self, x):
            time.sleep(0.002)
            return super()._run(x)

    choice = autoselect.choose({"nan_first": lambda: _NanFirst(tiny.onnx), "slow": lambda: _SlowNanFirst(tiny.onnx),
                                "numbers": lambda: OnnxRuntimeBackend(tiny.onnx)},
                               batch=2, reference="nan_first", budget_s=0.3)
    rows = {t.backend: t for t in choice.table}
    assert choice.backend == "nan_first" and rows["nan_first"].agrees and rows["slow"].agrees
    assert not rows["numbers"].agrees  # real numbers where the reference gives NaN and 0


def test_a_reference_that_cannot_run_stops_auto_with_its_reason(tiny):
    """Nothing to check the others against: a working engine is not chosen unchecked."""
    from hltrun.framework.errors import ModuleError

    with pytest.raises(ModuleError, match=r"^auto: broken cannot run the model: .*no such engine here"):
        autoselect.choose({"broken": lambda: _Broken(tiny.onnx), "onnxruntime": lambda: OnnxRuntimeBackend(tiny.onnx)},
                          batch=2, reference="broken", budget_s=0.2)


@pytest.mark.parametrize("text", ["1", "null", '"onnxruntime"', "[]", '{"backend": ["onnxruntime"], "batch": 2, '
                                  '"reason": "", "table": []}', '{"backend": "onnxruntime", "table": [1]}', '{"back'])
def test_a_cached_decision_that_is_not_one_is_timed_again(tiny, tmp_path, text):
    """Any JSON (or a cut-short file) in the decision cache: timed again and replaced, never an internal error."""
    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "1"}, cpu="cpu0", budget_s=0.2, folder=tmp_path)
    key = autoselect.decision_key(tiny.onnx, 2, {"onnxruntime": "1"}, "cpu0")
    (tmp_path / f"{key}.json").write_text(text)
    first = autoselect.choose_cached(**args)
    assert not first.cached and first.backend == "onnxruntime"
    assert autoselect.choose_cached(**args).cached  # the stored file is a decision again


@pytest.mark.parametrize("kind", ["a link to a device", "a FIFO"])
def test_a_cached_decision_that_is_no_regular_file_is_timed_again_and_replaced(tiny, tmp_path, kind):
    """A FIFO in the decision cache blocked the job for ever (reading it, then writing into it in place), a link
    to /dev/zero was read until memory ran out (MemoryError at begin_job): replaced as a damaged entry is.
    /dev/null stands for the devices here: the same check, no memory at stake."""
    import os

    from tests.helpers import beside_a_fifo

    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "1"}, cpu="cpu0", budget_s=0.2, folder=tmp_path)
    entry = tmp_path / f"{autoselect.decision_key(tiny.onnx, 2, {'onnxruntime': '1'}, 'cpu0')}.json"
    if kind == "a FIFO":
        os.mkfifo(entry)
    else:
        entry.symlink_to(os.devnull)
    chosen = beside_a_fifo(entry, lambda: autoselect.choose_cached(**args))
    assert not chosen.cached and chosen.backend == "onnxruntime"
    assert entry.is_file() and not entry.is_symlink() and os.path.exists(os.devnull)
    assert autoselect.choose_cached(**args).cached


def _counting_choose(monkeypatch) -> list[int]:
    """Each call of the timing (``autoselect.choose``), counted."""
    calls: list[int] = []
    real = autoselect.choose

    def choose(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(autoselect, "choose", choose)
    return calls


def test_without_a_home_folder_the_decision_is_taken_and_kept_for_this_process(tiny, monkeypatch):
    """No HOME and no passwd entry (``docker run --user 12345``): ``Path.home()`` raises RuntimeError,
    which used to fail begin_job of the shipped path (``backend: auto``). Nowhere to keep the decision on
    disk: the next stream of this process reuses it from memory instead of timing again (~2 s a stream)."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr("pathlib.Path.home", classmethod(lambda cls: (_ for _ in ()).throw(
        RuntimeError("Could not determine home directory."))))
    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "no-home"}, cpu="cpu0", budget_s=0.2)
    calls = _counting_choose(monkeypatch)
    assert not autoselect.choose_cached(**args).cached
    assert autoselect.choose_cached(**args).cached and len(calls) == 1  # never an error, never timed twice


@pytest.mark.parametrize("where", ["a_file", "under_a_file", "read_only"])
def test_an_unwritable_cache_keeps_the_decision_for_this_process(tiny, tmp_path, monkeypatch, where):
    """A cache folder that cannot be written (a file, a file in its path, a read-only folder): the second
    stream (instance) of this process reuses the first one's decision, and the disk stays as it was."""
    a_file = tmp_path / "file"
    a_file.write_text("not a folder\n")
    folder = {"a_file": a_file, "under_a_file": a_file / "auto", "read_only": tmp_path / "ro"}[where]
    if where == "read_only":
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):  # root writes anywhere
            monkeypatch.setattr(autoselect, "write_text", lambda *a: (_ for _ in ()).throw(PermissionError(13, "ro")))
    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "1"}, cpu="cpu0", budget_s=0.2, folder=folder)
    calls = _counting_choose(monkeypatch)
    first, again = autoselect.choose_cached(**args), autoselect.choose_cached(**args)
    assert len(calls) == 1 and not first.cached and again.cached and again.backend == first.backend
    assert again.table == first.table
    assert a_file.read_text() == "not a folder\n" and not [p for p in tmp_path.rglob("*") if p.is_file() and p != a_file]


def test_a_writable_cache_is_the_only_one(tiny, tmp_path, monkeypatch):
    """With a writable folder nothing is kept in memory: the file is the cache (removing it times again)."""
    args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                versions={"onnxruntime": "1"}, cpu="cpu0", budget_s=0.2, folder=tmp_path)
    calls = _counting_choose(monkeypatch)
    assert not autoselect.choose_cached(**args).cached and autoselect.choose_cached(**args).cached
    (stored,) = tmp_path.glob("*.json")
    assert IN_MEMORY.get(tmp_path, stored.name) is None
    stored.unlink()
    assert not autoselect.choose_cached(**args).cached and len(calls) == 2


def test_streams_beginning_together_time_once(tiny, tmp_path, monkeypatch):
    """Streams (a Dask worker's threads) taking the same decision at once: one times, the other waits
    for its decision, with or without a writable cache."""
    a_file = tmp_path / "file"
    a_file.write_text("")
    calls = _counting_choose(monkeypatch)
    for folder in (a_file, tmp_path / "cache"):
        args = dict(model=tiny.onnx, candidates=_candidates(tiny), batch=2, reference="onnxruntime",
                    versions={"onnxruntime": "threads"}, cpu="cpu0", budget_s=0.3, folder=folder)
        with ThreadPoolExecutor(2) as pool:
            choices = list(pool.map(lambda _: autoselect.choose_cached(**args), range(2)))
        assert sorted(c.cached for c in choices) == [False, True]
    assert len(calls) == 2  # once per folder


def test_a_relative_xdg_cache_home_is_ignored_as_the_spec_says(tmp_path, monkeypatch):
    """``XDG_CACHE_HOME=cache`` used to put the caches in whatever the working directory was."""
    from hltrun.modules.inference.machine import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")
    assert cache_root("auto") == tmp_path / ".cache" / "hltrun" / "auto"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root("auto") == tmp_path / "x" / "hltrun" / "auto"


def test_tflite_is_timed_only_on_a_readable_file_beside_the_model_and_on_litert(tmp_path, monkeypatch):
    """Needs neither TensorFlow nor LiteRT: what ``auto`` skips, and the one line it says for it."""
    import importlib.util
    import sys

    from hltrun.modules.inference.tflite_backend import TfliteBackend
    from tests.agreement import MODELS

    ready = lambda path: TfliteBackend.not_ready_for_auto(path, BackendOptions())  # noqa: E731
    assert ready(tmp_path / "mine.tflite") == "has no mine.tflite beside the model"
    (tmp_path / "folder.tflite").mkdir()
    assert ready(tmp_path / "folder.tflite").startswith(f"skipped: model file {tmp_path / 'folder.tflite'} ")
    (tmp_path / "empty.tflite").write_bytes(b"")
    assert ready(tmp_path / "empty.tflite") == f"skipped: model file {tmp_path / 'empty.tflite'} is empty"
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # TensorFlow's interpreter: seconds of import
    assert ready(MODELS / "conv_vae.tflite").startswith("needs ai-edge-litert")
    monkeypatch.delitem(sys.modules, "ai_edge_litert")
    if importlib.util.find_spec("ai_edge_litert") is not None:
        assert ready(MODELS / "conv_vae.tflite") is None


def test_engines_are_timed_in_interleaved_rounds_and_all_closed(tiny):
    """The first engine timed in a process runs cold: timed one after another, the reference looked slower
    than it is. Every engine is timed in each of ROUNDS rounds, in turn, and every loaded backend is closed,
    one that failed its check included."""
    order: list[str] = []
    closed: list[str] = []

    def recording(name, fail=False):  # noqa: ANN001, ANN202
        class Recording(OnnxRuntimeBackend):
            def _run(self, x):
                if fail and len(x) == autoselect.CHECK_JETS:
                    raise RuntimeError("no")
                if len(x) == 2:
                    order.append(name)
                return super()._run(x)

            def close(self):
                closed.append(name)
        return lambda: Recording(tiny.onnx)

    choice = autoselect.choose({"onnxruntime": recording("onnxruntime"), "other": recording("other"),
                                "broken": recording("broken", fail=True)}, batch=2, reference="onnxruntime",
                               budget_s=0.3)
    switches = [i for i in range(1, len(order)) if order[i] != order[i - 1]]
    assert len(switches) >= 2 * autoselect.ROUNDS - 1  # onnxruntime, other, onnxruntime, other, ...
    assert sorted(closed) == ["broken", "onnxruntime", "other"]
    assert {t.backend: t.note for t in choice.table}["broken"].startswith("not usable")


class _VerySlow(OnnxRuntimeBackend):
    """A user's big network: 0.15 s a call."""
    name = "very_slow"

    def _run(self, x):
        time.sleep(0.15)
        return super()._run(x)


def test_a_slow_model_gets_fewer_rounds_not_more_seconds(tiny):
    """Rounds go on only while the last one's length fits in the budget, and an engine needs only one call
    a round: a 0.15 s model took 3 calls in the first round and one in each later one (~0.8 s against a
    0.3 s budget; ~7 s of begin_job for a real 180 ms model)."""
    choice = autoselect.choose({"onnxruntime": lambda: OnnxRuntimeBackend(tiny.onnx),
                                "very_slow": lambda: _VerySlow(tiny.onnx)}, batch=2, reference="onnxruntime",
                               budget_s=0.3)
    rows = {t.backend: t for t in choice.table}
    assert choice.rounds == 1 and rows["very_slow"].calls == 1, (choice.rounds, rows["very_slow"])
    assert rows["very_slow"].agrees and choice.backend == "onnxruntime"
    assert "in " in choice.lines()[0] and "1 round(s)" in choice.lines()[0]


def test_an_engine_that_disagrees_is_not_timed(tiny, monkeypatch):
    """Its agreement is known from the check before any timing: its calls would only take budget.
    Every timing takes two calls at least: one call stalled past its share (50 ms here, on a busy machine)
    made an engine look call-bound, and the rounds stopped early for the load, not for the engine."""
    timed: list[str] = []
    real = autoselect.time_engine

    def two_calls_at_least(backend, x, budget_s, min_calls=1):
        timed.append(backend.name)
        return real(backend, x, budget_s, max(min_calls, 2))

    monkeypatch.setattr(autoselect, "time_engine", two_calls_at_least)
    choice = autoselect.choose(_candidates(tiny, wrong=_Wrong), batch=2, reference="onnxruntime", budget_s=0.3)
    rows = {t.backend: t for t in choice.table}
    assert rows["wrong"].calls == 0 and rows["wrong"].us_per_jet is None and "not timed" in rows["wrong"].note
    assert "wrong" not in timed and sorted(timed) == sorted(["onnxruntime", "slow"] * autoselect.ROUNDS), timed
    assert choice.rounds == autoselect.ROUNDS and rows["onnxruntime"].calls >= 2 * autoselect.ROUNDS


def test_the_suite_keeps_its_caches_out_of_the_users_home(tmp_path_factory):
    """The suite ran jobs with ``backend: auto`` (tests/test_clock.py's shipped path) against the user's
    ``~/.cache/hltrun``: it wrote decisions there and read back ones left by earlier runs or the user's own
    jobs, so a run here could time (and test) other engines than CI's clean machine. conftest.py points
    ``XDG_CACHE_HOME`` (inherited by every job a test starts) into the session's temporary folder."""
    from hltrun.modules.inference.machine import cache_root

    assert cache_root("auto").is_relative_to(tmp_path_factory.getbasetemp())
    assert os.environ["XDG_CACHE_HOME"] == str(cache_root("auto").parents[1])  # subprocesses see the same


def test_a_call_is_started_only_while_one_as_long_as_the_last_fits(tiny):
    """Each call of a 0.15 s model takes at least 0.15 s: after two, a third cannot end within 0.35 s, so
    it is not started (the loop used to start calls until the time was up, overrunning by a call)."""
    backend = _VerySlow(tiny.onnx)
    backend.load()
    backend.warm_up([2])
    try:
        _, calls = autoselect.time_engine(backend, autoselect.sample_batch(2), 0.35)
    finally:
        backend.close()
    assert 1 <= calls <= 2


@pytest.mark.slow
def test_a_logit_model_within_float32_rounding_agrees_though_a_score_is_near_zero(tmp_path):
    """A logit-scored MLP (scores cross 0) whose bias puts one sample jet's score at 1e-6, where PyTorch rounds
    one float32 step of the largest score (~3) away from ONNX Runtime: 0.5 relative there. ``auto`` printed
    "max rel diff 5.0e-01 disagrees" and left PyTorch out (2026-12-07); it agrees now, and the table's figure
    is the difference over the largest score, said so."""
    pytest.importorskip("torch", reason="torch (extra 'torch') not installed")
    from hltrun.modules.inference import create_backend
    from tests.tiny_models import loaded, logit_mlp_onnx

    x = autoselect.sample_batch(autoselect.CHECK_JETS, seed=1)
    first = logit_mlp_onnx(tmp_path / "first.onnx")
    ref = loaded("onnxruntime", first).run(x)["score"]
    k = int(np.argmax(np.abs(loaded("torch", first).run(x)["score"] - ref)))  # the jet PyTorch rounds otherwise
    model = logit_mlp_onnx(tmp_path / "logit.onnx", bias=1e-6 - float(ref[k]))
    ref, own = loaded("onnxruntime", model).run(x)["score"], loaded("torch", model).run(x)["score"]
    steps = np.abs(own - ref).max() / (np.finfo(np.float32).eps * np.abs(ref).max())
    if autoselect.max_relative_difference(own, ref) <= autoselect.AGREEMENT_RTOL or steps > 4:
        pytest.skip("this PyTorch rounds the model as ONNX Runtime does, or not within rounding: nothing to show")
    candidates = {n: (lambda n=n: create_backend(n, model, BackendOptions())) for n in ("onnxruntime", "torch")}
    choice = autoselect.choose(candidates, batch=4, reference="onnxruntime", budget_s=0.2)
    rows = {t.backend: t for t in choice.table}
    assert rows["torch"].agrees and rows["torch"].us_per_jet is not None, rows["torch"]
    assert rows["torch"].of_largest == pytest.approx(np.abs(own - ref).max() / np.abs(ref).max(), rel=1e-3)
    line = next(line for line in choice.lines() if " torch " in line)
    assert "of largest" in line and "disagrees" not in line, line


def test_agreement_is_judged_beyond_float32_rounding_of_the_largest_score():
    """``output_difference``, the criterion of ``auto``, the verdict and IREE's begin_job check: a near-zero
    score one float32 step of the largest away agrees; 1 % off, NaN against a number, a number against an
    all-0 output do not. ``difference_of_largest`` is the figure shown."""
    ref = {"score": np.array([2.4488726, -1.3, 9.536743e-07], np.float32), "kl": np.ones(3, np.float32)}
    step = np.float32(2.4e-7)
    rounded = {**ref, "score": ref["score"] + np.array([0, step, step], np.float32)}
    assert autoselect.output_difference(rounded, ref) == (0.0, "")
    assert autoselect.difference_of_largest(rounded, ref) == pytest.approx(2.4e-7 / 2.4488726, rel=1e-3)
    off = autoselect.output_difference({**ref, "kl": ref["kl"] * np.float32(1.01)}, ref)[0]
    assert off == pytest.approx(0.01, rel=1e-3)
    nan = {**ref, "score": np.array([2.4488726, -1.3, np.nan], np.float32)}
    assert autoselect.output_difference(nan, ref)[0] == np.inf and autoselect.difference_of_largest(nan, ref) == np.inf
    zeros = {"score": np.zeros(3, np.float32)}
    assert autoselect.output_difference({"score": np.full(3, 1e-9, np.float32)}, zeros)[0] == np.inf
    assert autoselect.difference_of_largest({"score": np.full(3, 1e-9, np.float32)}, zeros) == np.inf
    assert autoselect.output_difference({"score": ref["score"]}, ref) == (np.inf, "has no kl output")
    assert autoselect.difference_of_largest({"score": ref["score"]}, ref) is None


_PROCESS = r"""
import sys, time, pathlib
from hltrun.modules.inference import autoselect
model, folder, marks, me = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]

def until(what, limit_s):
    deadline = time.monotonic() + limit_s
    while not what() and time.monotonic() < deadline:
        time.sleep(0.01)

def choose(candidates, batch, reference, budget_s=2.0):  # the timing: says so, and stays in it while the
    (marks / f"timing-{me}").touch()                       # other process may come in (at most 5 s)
    until(lambda: len(list(marks.glob("timing-*"))) == 2, 5.0)
    return autoselect.Choice("onnxruntime", batch, f"timed by {me}")

autoselect.choose = choose
(marks / f"ready-{me}").touch()
until(lambda: len(list(marks.glob("ready-*"))) == 2, 60.0)  # both processes begin together, as workers do
c = autoselect.choose_cached(model, {"onnxruntime": None}, 2, "onnxruntime", {"onnxruntime": "1"}, "cpu0",
                             folder=folder)
print(c.cached, c.reason)
"""


def test_processes_beginning_together_time_once(tmp_path):
    """The worker processes of a LocalCluster (``--dask 2``) begin their jobs together: one times the engines,
    the other waits for its decision and takes it. Each timed beside the other (on the same cores, each
    measuring the other's load) and the second replaced the first's cached table."""
    import subprocess
    import sys

    model, folder, marks = tmp_path / "m.onnx", tmp_path / "cache", tmp_path / "marks"
    model.write_bytes(b"a model's bytes")
    marks.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(model), str(folder), str(marks), me],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for me in "ab"]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(list(marks.glob("timing-*"))) == 1  # timed once
    answers = sorted(out.split(" ", 1) for out, _ in outs)
    assert [cached for cached, _ in answers] == ["False", "True"]
    assert answers[0][1] == answers[1][1]  # the same decision, the first one's table
    assert [p.suffix for p in folder.iterdir()] == [".json"]  # the decision; no lock file left


def test_a_process_claim_is_not_waited_for_past_its_bound(tmp_path):
    """A process that holds a claim and hangs (a compile that never ends) must not stop another for good:
    past the bound the work goes on unlocked."""
    from hltrun.modules.inference.machine import process_claim

    with process_claim(tmp_path, "k.json"):
        # flock is per open file: a second open in the same process stands for another process
        t0 = time.monotonic()
        with process_claim(tmp_path, "k.json", wait_s=0.2):
            waited = time.monotonic() - t0
    assert waited >= 0.2  # it did wait for the holder (no upper bound asserted: the machine may be busy)


def test_a_claim_without_a_usable_folder_goes_on(tmp_path):
    """No folder, or a path that is a file: no lock, no error (the decision is then kept in memory)."""
    from hltrun.modules.inference.machine import process_claim

    a_file = tmp_path / "file"
    a_file.write_text("")
    for folder in (None, a_file):
        with process_claim(folder, "k.json"):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_one_heavy_tailed_score_does_not_make_a_real_difference_rounding():
    """The shipped gcn_vae's scores on auto's sample jets span 0.015 to 193 (median 3.2): 32 float32 steps of the
    largest (7e-4) let a 4.7 % difference at the lowest score pass as rounding; of the median (1.2e-5), 1 % there
    is a disagreement, and one float32 step at the largest still agrees."""
    ref = {"score": np.array([193.0, 36.9, 3.18, 3.0, 0.0154], np.float32)}
    one_percent_low = {"score": ref["score"] * np.array([1, 1, 1, 1, 1.01], np.float32)}
    assert autoselect.output_difference(one_percent_low, ref)[0] == pytest.approx(0.01, rel=1e-3)
    one_step_high = {"score": ref["score"] + np.array([193.0 * 1.2e-7, 0, 0, 0, 0], np.float32)}
    assert autoselect.output_difference(one_step_high, ref)[0] < autoselect.AGREEMENT_RTOL
