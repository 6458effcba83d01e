"""The event loop fires its per-event signals (pre/post source, pre/post event) once per event, in
order, to one listener or several (the loop calls ``Signal.fire`` directly, as the workers do)."""

from __future__ import annotations

import pytest

from hltrun.framework.config import load
from hltrun.framework.eventloop import EventProcessor
from hltrun.framework.process import Process


@pytest.mark.parametrize("listeners", [1, 2])
def test_per_event_signals_reach_every_listener_in_order(counts_file, write_config, listeners):
    cfg = write_config(f"""
        process: SIGNALS
        options: {{maxEvents: 5}}
        source: {{type: RootJetSource, files: ["{counts_file}"]}}
        modules:
          batcher: {{type: JetBatcher, src: source}}
        paths: {{p: [batcher]}}
        """)
    process = Process(load(cfg, []))
    seen: list[tuple] = []
    sig = process.signals
    for k in range(listeners):
        sig.pre_source.connect(lambda stream, k=k: seen.append(("pre_source", k, stream)))
        sig.post_source.connect(lambda stream, eid, k=k: seen.append(("post_source", k, None if eid is None else eid.event)))
        sig.pre_event.connect(lambda ev, k=k: seen.append(("pre_event", k, ev.id.event, ev.has("batcher"))))
        sig.post_event.connect(lambda ev, status, k=k: seen.append(("post_event", k, ev.id.event, status, ev.has("batcher"))))
    EventProcessor(process).run()
    ids = [1000 + i for i in range(5)]
    want = []
    for e in ids:
        want += [("pre_source", k, 0) for k in range(listeners)]
        want += [("post_source", k, e) for k in range(listeners)]
        want += [("pre_event", k, e, False) for k in range(listeners)]  # before any module ran
        want += [("post_event", k, e, "accept", True) for k in range(listeners)]
    want += [("pre_source", k, 0) for k in range(listeners)] + [("post_source", k, None) for k in range(listeners)]
    assert seen == want
