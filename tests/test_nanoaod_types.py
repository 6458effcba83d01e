"""The output speaks NanoAOD's types: run/luminosityBlock UInt_t, event ULong64_t, floats Float_t."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import uproot

from hltrun.framework.config import load
from hltrun.framework.errors import ConfigError
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


@dataclass(frozen=True)
class _Mixed:
    """A product with per-jet and per-event values, as the batcher's JetBatch (jet_pt; truncated)."""

    jet_pt: np.ndarray
    truncated: int
    relative: bool = True


@register_module("TestMixedProduct")
class _MixedProducer(Producer):
    """Event n gets n - 1 jets of pT 10, 20, ... and n % 3 truncated jets."""

    Parameters = _Params

    def produce(self, event) -> None:
        n = event.get(self.params.src)
        event.put(_Mixed(np.arange(1, n, dtype=np.float64) * 10, n % 3))


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


_TWO_KEPT = """
source: {{type: TestCountingSource, n: 12}}
modules:
  sq: {{type: TestSquare}}
  {first}: {{type: TestJetScores}}
  {second}: {{type: TestJetScores, src: sq}}
  out: {{type: RootOutputModule, file: {out}, keep: [{first}, {second}]}}
paths:
  p: [sq, {first}, {second}]
endpaths:
  e: [out]
"""


@pytest.mark.parametrize("first, second, culprit", [
    ("ad_conv", "ad_gcn", "'ad_conv' and 'ad_gcn' would share the NanoAOD collection 'ad'"),
    ("jets", "jets_more", "'jets' and 'jets_more' would share the NanoAOD collection 'jets'"),
    ("jets", "njets", "'njets' would share 'njets', the counter of 'jets'"),
    ("jets", "event", "'event' would write over the output's own 'event' branch"),
    ("jets", "HLT_extra", "'HLT_extra' would write over the output's own 'HLT' branch"),
    ("jets", "jetsEvent", "'jetsEvent' would share 'jetsEvent', where the per-event values of 'jets' go"),
])
def test_kept_products_that_would_share_branches_are_a_configuration_error(write_config, tmp_path, first, second,
                                                                           culprit):
    """Branches are <collection>_<field>, the collection being what comes before the first '_' (as coffea's
    NanoAODSchema reads them): two kept labels with one collection were zipped into one counter and the job
    failed at its end (ValueError: cannot broadcast nested list, exit 4, no output) when their jet counts
    differed; a label named like an id or a counter overwrote it. Now one line before the first event."""
    cfg = write_config(_TWO_KEPT.format(first=first, second=second, out=tmp_path / "o.root"))
    with pytest.raises(ConfigError, match=re.escape(culprit)) as info:
        run_config(cfg)
    assert "modules.out: keep: " in str(info.value)
    assert not (tmp_path / "o.root").exists()


def test_a_product_kept_twice_is_a_configuration_error(write_config, tmp_path):
    cfg = write_config(_TWO_KEPT.format(first="jets", second="more", out=tmp_path / "o.root")
                       .replace("keep: [jets, more]", "keep: [jets, more, jets]"))
    with pytest.raises(ConfigError, match=r"modules\.out: keep: 'jets' is listed twice"):
        run_config(cfg)


def test_kept_labels_with_an_underscore_of_their_own_collection_are_fine(write_config, tmp_path):
    """One label with '_' (named after its model, say) is its own collection: coffea reads ad_conv_score as
    ad.conv_score, counted by nad."""
    out = tmp_path / "o.root"
    run_config(write_config(_TWO_KEPT.format(first="ad_conv", second="other", out=out)))
    tree = uproot.open(out)["Events"]
    assert {"nad", "ad_conv_score", "nother", "other_score"} <= set(tree.keys())


@pytest.mark.parametrize("name, codec", [("lzma", "LZMA"), ("zstd", "ZSTD"), ("lz4", "LZ4"), ("zlib", "ZLIB")])
def test_output_compression(write_config, tmp_path, name, codec):
    """Every codec uproot writes, LZMA (NanoAOD's) included; the file says which it was written with."""
    out = tmp_path / "o.root"
    cfg = write_config(_TWO_KEPT.format(first="jets", second="more", out=out)
                       .replace("keep: [jets, more]", f"keep: [jets, more], compression: {name}"))
    run_config(cfg)
    with uproot.open(out) as f:
        assert type(f.file.compression).__name__ == codec
        assert f["Events"]["jets_score"].array(library="ak").tolist()[:3] == [[], [0.5], [0.5, 1.0]]


@pytest.mark.parametrize("tree", ["Runs", "LuminosityBlocks", "Process", "Provenance", "''"])
def test_an_events_tree_named_like_the_other_keys_is_a_configuration_error(write_config, tmp_path, tree):
    """tree: Runs failed at the job's end (the Runs tree's columns extended the Events tree: exit 4, no output);
    tree: Process wrote a TTree and the process TObjString under one name; an empty name made a nameless tree."""
    cfg = write_config(_TWO_KEPT.format(first="jets", second="more", out=tmp_path / "o.root")
                       .replace("keep: [jets, more]", f"keep: [jets, more], tree: {tree}"))
    with pytest.raises(ConfigError, match=r"modules\.out: tree: expected a tree name other than LuminosityBlocks, "
                                          r"Runs, Process and Provenance \(the output's own keys\), got"):
        run_config(cfg)
    assert not (tmp_path / "o.root").exists()


def test_two_paths_written_as_one_trigger_bit_are_a_configuration_error(write_config, tmp_path):
    """A path's bit is HLT_<path> (HLT_X kept as is): paths 'even' and 'HLT_even' were both HLT_even, and one
    path's decisions were silently lost (the branch held the other's). Refused with the configuration, before
    any module's begin_job (it was said at the output's begin_job, after the models had loaded: seconds)."""
    cfg = write_config(f"""
source: {{type: TestCountingSource, n: 6}}
modules:
  two: {{type: TestModuloFilter, divisor: 2}}
  three: {{type: TestModuloFilter, divisor: 3}}
  out: {{type: RootOutputModule, file: {tmp_path / 'o.root'}}}
paths:
  even: [two]
  HLT_even: [three]
endpaths:
  e: [out]
""")
    with pytest.raises(ConfigError, match=r"modules\.out: paths 'even' and 'HLT_even' would both be written as "
                                          r"the branch HLT_even"):
        load(cfg)  # the configuration check, which builds no module
    assert not (tmp_path / "o.root").exists()


_SELECTING = """
source: {{type: TestCountingSource, n: 12}}
modules:
  sq: {{type: TestSquare}}
  jets: {{type: TestJetScores}}
  pick: {{type: TestModuloFilter, divisor: {divisor}}}
  out: {{type: RootOutputModule, file: {out}, select_events: [p], keep: [sq, jets], basket_events: 5}}
paths:
  p: [sq, jets, pick]
endpaths:
  e: [out]
"""


def _branch_types(path) -> dict[str, str]:
    with uproot.open(path) as f:
        tree = f["Events"]
        return {name: tree[name].typename for name in tree.keys()}


@pytest.mark.parametrize("streams", [1, 3])
def test_an_output_with_no_selected_event_has_the_branches_of_a_full_one(write_config, tmp_path, streams):
    """An output that selected no event lacked the kept products' branches (only ids and HLT_* bits), so a
    coffea processor reading ``events.jets.score`` failed on it, and a merge with a full output lost the
    columns. Now its branches and types are a full output's, the kept ones learnt from a rejected event
    whose products were made (never made on demand for that)."""
    full, empty = tmp_path / "full.root", tmp_path / "empty.root"
    run_config(write_config(_SELECTING.format(divisor=3, out=full)), f"options.numberOfThreads={streams}")
    _, process = run_config(write_config(_SELECTING.format(divisor=1000, out=empty), "empty.yaml"),
                            f"options.numberOfThreads={streams}")
    assert uproot.open(full)["Events"].num_entries == 4 and uproot.open(empty)["Events"].num_entries == 0
    types = _branch_types(full)
    assert {"sq", "njets", "jets_score"} <= set(types)
    assert _branch_types(empty) == types
    merged = uproot.concatenate([f"{full}:Events", f"{empty}:Events"], library="ak")
    assert merged["jets_score"].tolist() == [[k / 2 for k in range(1, n)] for n in (3, 6, 9, 12)]


def test_an_empty_output_whose_products_were_never_made_says_so(write_config, tmp_path, caplog):
    """No event had the kept product (its path stopped before it on every event): the empty output has
    the ids and bits only, and a warning says which branches it lacks."""
    out = tmp_path / "o.root"
    cfg = write_config(_SELECTING.format(divisor=1000, out=out).replace("p: [sq, jets, pick]", "p: [sq, pick, jets]"))
    with caplog.at_level("WARNING", logger="hltrun"):
        run_config(cfg)
    assert set(_branch_types(out)) == {"run", "luminosityBlock", "event", "HLT_p"}
    assert "no event had 'sq', 'jets': the empty output lacks their branches" in caplog.text


def test_a_product_with_per_jet_and_per_event_values_reads_as_nanoaod(write_config, tmp_path):
    """keep: [batcher] wrote batcher_truncated and batcher_relative (one per event) beside batcher_jet_pt
    (counted by nbatcher): coffea's NanoAODSchema zips every <c>_* branch under n<c> and failed with
    KeyError 'content'. The per-event values are now the singleton collection <c>Event; every branch of
    a counted collection is per jet, as NanoAOD has them."""
    out = tmp_path / "o.root"
    run_config(write_config(f"""
source: {{type: TestCountingSource, n: 9}}
modules:
  mixed: {{type: TestMixedProduct}}
  ad_conv: {{type: TestMixedProduct}}
  out: {{type: RootOutputModule, file: {out}, keep: [mixed, ad_conv]}}
paths:
  p: [mixed, ad_conv]
endpaths:
  e: [out]
"""))
    with uproot.open(out) as f:
        tree = f["Events"]
        names = set(tree.keys())
        counted = {n: tree[n].count_branch.name for n in names if tree[n].count_branch is not None}
        assert set(counted.values()) == {"nmixed", "nad"}
        for counter in set(counted.values()):  # coffea zips every <c>_* under n<c>: each must be per jet
            members = [n for n in names if n.startswith(counter[1:] + "_")]
            assert all(counted.get(n) == counter for n in members), (counter, members)
        a = tree.arrays(library="np")
    assert {"mixed_jet_pt", "mixedEvent_truncated", "mixedEvent_relative", "ad_conv_jet_pt",
            "adEvent_conv_truncated"} <= names
    assert a["mixedEvent_truncated"].tolist() == [n % 3 for n in range(1, 10)]
    coffea = pytest.importorskip("coffea.nanoevents")  # where coffea is installed: its stock schema reads it
    with warnings.catch_warnings():  # coffea warns of its own matters (missing cross-references, ...)
        warnings.simplefilter("ignore")
        events = coffea.NanoEventsFactory.from_root({str(out): "Events"}, schemaclass=coffea.NanoAODSchema,
                                                    mode="eager").events()
    assert events.mixedEvent.truncated.tolist() == [n % 3 for n in range(1, 10)]
    assert events.mixed.jet_pt[2].tolist() == [10.0, 20.0]
