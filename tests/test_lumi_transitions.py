"""Run and lumi transitions: the event loop fires begin/end run and lumi (signals and module hooks)
once per section of the input, a section begins before its first event and ends after its last,
with one stream or several."""

from __future__ import annotations

import pytest

from hltrun.framework.config import load
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.process import Process

from .conftest import LUMI_LAYOUT as LAYOUT
from .plugins import LUMI_CALLS


def _run(write_config, lumi_file, streams: int, sleep_ms: float = 0.0):
    LUMI_CALLS.clear()
    cfg = write_config(f"""
        process: LUMI
        options: {{numberOfThreads: {streams}, numberOfStreams: {streams}}}
        source: {{type: RootJetSource, files: ["{lumi_file}"]}}
        modules:
          rec: {{type: TestLumiRecorder, sleep_ms: {sleep_ms}}}
        paths: {{p: [rec]}}
        """)
    process = Process(load(cfg, []))
    signals: list[tuple] = []
    sig = process.signals
    for name in ("begin_run", "end_run"):
        getattr(sig, f"pre_{name}").connect(lambda run, n=name: signals.append((n, run)))
    for name in ("begin_lumi", "end_lumi"):
        getattr(sig, f"post_{name}").connect(lambda run, lumi, n=name: signals.append((n, run, lumi)))
    EventProcessor(process).run()
    return signals, process


def _expected() -> list[tuple]:
    want, open_ = [], None
    for key in dict.fromkeys(LAYOUT):
        if open_ is not None:
            want.append(("end_lumi", *open_))
            if open_[0] != key[0]:
                want.append(("end_run", open_[0]))
        if open_ is None or open_[0] != key[0]:
            want.append(("begin_run", key[0]))
        want.append(("begin_lumi", *key))
        open_ = key
    return want + [("end_lumi", *open_), ("end_run", open_[0])]


@pytest.mark.parametrize("streams,sleep_ms", [(1, 0.0), (3, 2.0)])
def test_transitions_once_per_section_around_its_events(write_config, lumi_file, streams, sleep_ms):
    signals, _ = _run(write_config, lumi_file, streams, sleep_ms)
    assert signals == _expected()  # services: each run and lumi once, in input order
    distinct = len(set(LAYOUT))
    for label, calls in LUMI_CALLS.items():  # one list per stream instance's label (shared label)
        hooks = [c for c in calls if c[0] != "event"]
        events = [c for c in calls if c[0] == "event"]
        assert sum(1 for c in hooks if c[0] == "begin_lumi") == distinct * streams  # every instance
        assert sum(1 for c in hooks if c[0] == "begin_run") == 2 * streams
        assert len(events) == len(LAYOUT)
        # every event ran while its own lumi was open on its instance: begun before, not yet ended
        assert all(open_ == (run, lumi) for _, run, lumi, open_ in events)


@pytest.mark.parametrize("streams", [1, 2])
def test_a_failing_hook_stops_the_job_naming_module_and_section(write_config, lumi_file, streams):
    from hltrun.framework.eventloop import JobFailed

    cfg = write_config(f"""
        process: LUMI
        options: {{numberOfThreads: {streams}}}
        source: {{type: RootJetSource, files: ["{lumi_file}"]}}
        modules: {{bad: {{type: TestLumiFail, lumi: 2}}}}
        paths: {{p: [bad]}}
        """)
    with pytest.raises(JobFailed) as err:
        EventProcessor(Process(load(cfg, []))).run()
    summary = err.value.summary
    assert summary.failure == ("module 'bad' (TestLumiFail) failed in begin_lumi(1, 2): "
                               "RuntimeError: conditions not found")
    assert summary.events_processed == LAYOUT.index((1, 2))  # lumi 1's events, none of lumi 2's
