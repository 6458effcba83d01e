"""The scorer inside a real job (source -> batcher -> vae -> filter) on the tiny model."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_full_path_on_onnxruntime(tiny, counts_file, write_config):
    """The scorer inside a real job: source -> batcher -> vae -> filter, facts and counters reported."""
    from tests.helpers import run_config

    path = write_config(f"""
        options: {{accelerators: [cpu], numberOfThreads: 2}}
        source: {{type: RootJetSource, files: [{counts_file}], layout: counts}}
        modules:
          batcher: {{type: JetBatcher, max_jets: 2}}
          vae: {{type: VAEAnomalyScorer, model: {tiny.onnx}, backend: auto}}
          filt: {{type: AnomalyScoreFilter, src: vae, threshold: 1.0e+9}}
        paths:
          p: [batcher, vae, filt]
    """)
    summary, process = run_config(path)
    facts = summary.module_summaries["vae"]
    assert process.facts["accelerators"]["vae"]["backend"] == "onnxruntime"
    assert facts["events"] == summary.events_processed > 0 and facts["empty_events"] > 0
    assert summary.events_passed == 0
