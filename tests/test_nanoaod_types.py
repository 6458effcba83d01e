"""The output speaks NanoAOD's types: run/luminosityBlock UInt_t, event ULong64_t, floats Float_t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import uproot

from hltrun.framework.module import Producer
from hltrun.framework.registry import register_module
from hltrun.framework.schema import InputTag
from hltrun.modules.products import JetScores
from tests.helpers import run_config


@dataclass
class _Params:
    src: InputTag = InputTag("source")


@register_module("TestJetScores")
class _JetScores(Producer):
    """Event n gets n - 1 jets with float64 scores 0.5, 1.0, ... (the writer must store Float_t)."""

    Parameters = _Params

    def produce(self, event) -> None:
        n = event.get(self.params.src)
        event.put(JetScores(np.arange(1, n, dtype=np.float64) / 2))


def test_output_branch_types_are_nanoaod_types(write_config, tmp_path):
    pytest_out = tmp_path / "o.root"
    cfg = write_config(f"""
source: {{type: TestCountingSource, n: 12}}
modules:
  sq: {{type: TestSquare}}
  jets: {{type: TestJetScores}}
  out: {{type: RootOutputModule, file: {pytest_out}, keep: [sq, jets], basket_events: 5}}
paths:
  p: [sq, jets]
endpaths:
  e: [out]
""")
    run_config(cfg)
    tree = uproot.open(pytest_out)["Events"]
    types = {name: tree[name].typename for name in tree.keys()}
    assert types["run"] == "uint32_t" and types["luminosityBlock"] == "uint32_t" and types["event"] == "uint64_t"
    assert types["jets_score"] == "float[]" and types["HLT_p"] == "bool"
    a = tree.arrays(library="ak")
    assert a["jets_score"].tolist()[:3] == [[], [0.5], [0.5, 1.0]]  # event n has n-1 jets, scores k/2
    assert a["event"].tolist() == list(range(1, 13))
