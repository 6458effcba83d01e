"""A module sees what a CMSSW EDProducer sees (issue 18): its parameters, its typed consumes and
produces, the services it asked for. Wiring is checked at validation, one line naming both labels;
``event.put`` checks the declared type; the scheduler's state is not reachable; the Dask planner asks
the source's planning interface, not a source begun with a fabricated job."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from hltrun.framework.config import load, validate
from hltrun.framework.context import ModuleContext, SourceContext, StreamActivity
from hltrun.framework.errors import ConfigError, ModuleError
from hltrun.framework.event import Event, EventID
from hltrun.framework.module import Producer
from hltrun.framework.process import Process, product_types
from hltrun.framework.registry import register_module
from hltrun.modules.products import JetBatch, JetScores

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "configs" / "path.yaml"


def _path(**modules) -> dict:
    """The shipped path's modules (no output), with ``modules`` changed or added."""
    base = {"batcher": {"type": "JetBatcher", "src": "source"},
            "vae": {"type": "VAEAnomalyScorer", "src": "batcher", "backend": "onnxruntime"},
            "flt": {"type": "AnomalyScoreFilter", "src": "vae"}}
    return {"source": {"type": "RootJetSource", "files": [str(ROOT / "data" / "qcd_dijet.root")]},
            "modules": {**base, **modules}, "paths": {"p": list({**base, **modules})}}


def test_correct_wiring_is_typed_end_to_end():
    cfg = validate(_path())
    assert cfg.modules["vae"].inputs["src"].type is JetBatch
    assert cfg.modules["flt"].inputs["src"].type is JetScores
    assert cfg.modules["flt"].inputs["src"].metadata["model"] == "conv_vae"  # what the scorer publishes
    types = product_types(cfg)
    assert types["batcher"] is JetBatch and types["vae"] is JetScores
    assert "flt" not in types and types["flt:*"] is object  # the filter declares it puts nothing


def test_a_consumer_of_the_wrong_type_is_one_line_naming_both_labels():
    with pytest.raises(ConfigError) as err:
        validate(_path(flt={"type": "AnomalyScoreFilter", "src": "batcher"}))
    msg = str(err.value)
    assert msg == ("<config>: modules.flt.src: 'flt' consumes a JetScores from 'batcher', but 'batcher' "
                   "(JetBatcher) produces a JetBatch")


def test_a_consumer_of_a_product_nobody_produces_is_one_line_naming_both_labels():
    with pytest.raises(ConfigError) as err:
        validate(_path(vae={"type": "VAEAnomalyScorer", "src": "batcher:leading", "backend": "onnxruntime"}))
    assert str(err.value) == ("<config>: modules.vae.src: consumes 'batcher:leading', but 'batcher' (JetBatcher) "
                              "produces no instance 'leading' (it produces: '')")


def test_a_consumer_of_a_module_that_puts_nothing_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        validate(_path(vae2={"type": "VAEAnomalyScorer", "src": "flt", "backend": "onnxruntime"}))
    assert str(err.value) == ("<config>: modules.vae2.src: consumes 'flt', but 'flt' (AnomalyScoreFilter) produces "
                              "no main product (it produces: nothing)")


def test_cross_module_checks_happen_at_validation():
    """Filter vs scorer model: before anything is built or loaded. The batcher's constituents against
    the model are the model's to say (its declared inputs, read at begin_job: tests/test_scorer.py)."""
    with pytest.raises(ConfigError, match=r"^<config>: modules\.flt\.model: 'gcn_vae' but 'vae' runs model 'conv_vae'"):
        validate(_path(flt={"type": "AnomalyScoreFilter", "src": "vae", "model": "gcn_vae"}))
    validate(_path(batcher={"type": "JetBatcher", "src": "source", "n_constituents": 50}))  # a (N, 50, 3) model may read it


@register_module("TestWrongPut")
class _WrongPut(Producer):
    """Declares a JetScores, puts a string."""

    produces = {"": JetScores}

    def produce(self, event: Event) -> None:
        event.put("not scores")


def test_put_checks_the_declared_type():
    cfg = validate({"source": {"type": "RootJetSource", "files": [str(ROOT / "data" / "qcd_dijet.root")]},
                    "modules": {"w": {"type": "TestWrongPut"}}, "paths": {"p": ["w"]}})
    event = Event(EventID(1, 1, 1), 0, 0, types=product_types(cfg))
    event.current_module = "w"
    with pytest.raises(ModuleError, match=r"^module 'w' put a str as 'w', but declares it produces a JetScores$"):
        _WrongPut("w", None).produce(event)
    event.put(JetScores.__new__(JetScores))  # the declared type passes
    with pytest.raises(ModuleError, match=r"^module 'w' put 'w:extra', which it does not declare in produces$"):
        event.put(JetScores.__new__(JetScores), "extra")
    event.current_module = "undeclared"
    event.put("anything")  # a module that declares nothing is not checked


def test_a_module_context_holds_no_scheduler_state_nor_other_modules():
    process = Process(load(PATH, ["modules.vae.backend=onnxruntime"]))
    ctx = process.module_context("anomalyFilter")
    names = {f.name for f in dataclasses.fields(ModuleContext)}
    assert not names & {"config", "in_flight", "draining", "failed", "facts", "shared", "signals"}
    assert ctx.services == {}  # the filter asked for none
    assert [c.tag.label for c in ctx.consumes] == ["vae"] and set(ctx.inputs) == {"src"}
    with pytest.raises(ConfigError, match="uses service 'StreamActivity' without asking for it"):
        ctx.service(StreamActivity.name)
    with pytest.raises(ConfigError, match="requests inputs of 'source', which it does not consume"):
        ctx.request("source", "anything")
    scorer = process.module_context("vae")
    activity = scorer.service(StreamActivity.name)  # asked for (cross-event batching): read-only
    assert not hasattr(activity, "__dict__") and not any(n.startswith("set") for n in dir(activity))


def test_a_module_asking_for_a_service_the_framework_lacks_is_a_config_error():
    @register_module("TestAsksForNothingKnown")
    class _Asks(Producer):
        services = ("Bogus",)

    with pytest.raises(ConfigError, match=r"modules\.a\.type: TestAsksForNothingKnown asks for service 'Bogus', "
                                          r"which the framework does not offer \(offered: StreamActivity, Prescales\)"):
        validate({"source": {"type": "RootJetSource", "files": ["x.root"]},
                  "modules": {"a": {"type": "TestAsksForNothingKnown"}}})


def test_the_planner_asks_the_source_for_its_inputs_without_a_job(monkeypatch):
    from hltrun.framework.executors.dask_executor import plan
    from hltrun.modules.root_source import RootJetSource

    cfg = load(PATH, ["source.chunk_size=500", "options.executor.eventsPerTask=100000"])
    with monkeypatch.context() as m:
        m.setattr(RootJetSource, "begin_job", lambda *a: pytest.fail("the planner began a source"))
        units, accounting, inputs, *_ = plan(cfg)
    # units carry the path the client checked, absolute: a worker started in another folder reads that file
    assert [(u.file, u.start, u.stop) for u in units] == [(os.path.abspath(f), 0, n) for f, n in
                                                          RootJetSource.plan_inputs(cfg.source.params, None)]
    planned = RootJetSource.plan_inputs(cfg.source.params, None)
    begun = RootJetSource("source", cfg.source.params)
    begun.begin_job(SourceContext.standalone())
    try:
        assert planned == begun.inputs() and len(planned) == 2
    finally:
        begun.end_job()
    first = planned[0][1]
    assert inputs == [f for f, _ in planned]  # as configured: what an output is checked against
    # past maxEvents: listed, not opened (a local job leaves them so)
    assert RootJetSource.plan_inputs(cfg.source.params, 10) == [planned[0], (planned[1][0], None)]
    assert first > 10
