"""``backend: auto`` by measurement: the fastest engine that agrees wins; one that disagrees or
cannot run is a row of the table, never the choice; the decision is cached per machine."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hltrun.modules.inference import autoselect
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


def test_a_faster_engine_is_chosen_over_the_reference(tiny):
    choice = autoselect.choose({"slow": lambda: _Slow(tiny.onnx), "onnxruntime": lambda: OnnxRuntimeBackend(tiny.onnx)},
                               batch=3, reference="slow", budget_s=0.3)
    assert choice.backend == "onnxruntime" and "x slow" in choice.reason


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
