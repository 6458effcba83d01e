"""Jets with more constituents than the model input holds are counted (``jets_truncated``), never
cut silently: the count is checked against the events as written, jet by jet."""

from __future__ import annotations

import numpy as np
import pytest

from hltrun.modules.jet_batcher import JetBatcher, JetBatcherParameters
from hltrun.modules.jets import InputSpec
from hltrun.modules.products import JetCollection
from tests.helpers import run_config

CONFIG = """
process: TRUNC
options: {{numberOfThreads: {streams}}}
source: {{type: RootJetSource, files: [{file}], chunk_size: 7, max_constituents: {source_max}}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2, n_constituents: {width}}}
paths:
  p: [batcher]
"""


def _expected(events: list[dict], limit: int) -> int:
    """Independently: the two leading jets (by pT) of each event among those with constituents."""
    n = 0
    for e in events:
        jets = sorted((j for j in e["jets"] if len(j["c_pt"])), key=lambda j: -j["pt"])[:2]
        n += sum(len(j["c_pt"]) > limit for j in jets)
    return n


@pytest.mark.parametrize("width, source_max, streams", [(100, 100, 1), (30, 100, 2), (40, 40, 1)])
def test_truncated_jets_are_counted(write_config, counts_file, sample_events, width, source_max, streams):
    summary, _ = run_config(write_config(CONFIG.format(file=counts_file, width=width, source_max=source_max,
                                                       streams=streams)))
    expected = _expected(sample_events, min(width, source_max))
    assert expected > 0  # the sample has jets of 1-150 constituents: the check is not vacuous
    assert summary.data_quality["batcher"]["jets_truncated"] == expected


def test_an_input_wider_than_the_source_keeps_is_refused_not_truncated(write_config, counts_file):
    """100 rows per jet from a source that keeps 40: rows 41-100 would be padding, counted only as
    'truncated'; the job stops before the first event instead."""
    from hltrun.framework.errors import ConfigError

    with pytest.raises(ConfigError, match=r"source\.max_constituents: 40, .* set source\.max_constituents=100"):
        run_config(write_config(CONFIG.format(file=counts_file, width=100, source_max=40, streams=1)))


def test_hand_made_collection_counts_its_truncated_jets():
    n_constituents = np.array([150, 20, 120])
    constituents = np.zeros((3, 150, 3), np.float32)
    for jet, n in enumerate(n_constituents):
        constituents[jet, :n] = [0.1, 0.1, 1.0]
    jets = JetCollection(np.array([500., 400., 300.], np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32),
                         np.zeros(3, np.float32), n_constituents, constituents)
    assert jets.batch(InputSpec(2, 100, False)).truncated == 1  # the leading two: 150 > 100, 20
    assert jets.batch(InputSpec(0, 100, False)).truncated == 2
    batcher = JetBatcher("b", JetBatcherParameters(max_jets=0))
    assert batcher.data_quality() == {"jets_truncated": 0}
