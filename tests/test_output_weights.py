"""A weighted sample's genWeight in the output (keep: [source:weight]), and the clear refusals where the
job's inputs cannot give it."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.errors import ConfigError
from hltrun.framework.module import Producer
from hltrun.framework.registry import register_module
from hltrun.modules.rootio import write_nanoaod
from tests.helpers import run_config

REPO = Path(__file__).resolve().parents[1]
QCD = REPO / "data" / "qcd_dijet.root"


@register_module("TestNotReached")
class _NotReached(Producer):
    """Stands for a module that loads a model: its begin_job must not run when the source refuses the job."""

    def begin_job(self, ctx) -> None:
        raise RuntimeError("begin_job reached: the refusal came after the modules were set up")

    def produce(self, event) -> None:
        pass


def _weighted(tmp_path: Path, n: int = 60) -> tuple[Path, np.ndarray]:
    """The first ``n`` events of the shipped QCD sample with a NanoAOD genWeight (Float_t) added."""
    with uproot.open(QCD) as f:
        a = f["Events"].arrays(entry_stop=n)
    weights = np.random.default_rng(7).uniform(0.1, 5.0, n).astype(np.float32)
    path = tmp_path / "weighted.root"
    with uproot.recreate(path) as f:
        write_nanoaod(f, "Events", {
            **{k: ak.to_numpy(a[k]) for k in ("run", "luminosityBlock", "event")}, "genWeight": weights,
            "FatJet": ak.zip({k: a[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")}),
            "FatJetPFCand": ak.zip({k: a[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})})
    return path, weights


def _config(write_config, files: list[Path], out: Path, first: str = "batcher", **source: str) -> Path:
    extra = "".join(f"\n  {k}: {v}" for k, v in source.items())
    return write_config(f"""
source:
  type: RootJetSource
  files: [{', '.join(str(f) for f in files)}]{extra}
modules:
  {first}: {{type: {'JetBatcher, src: source, max_jets: 2' if first == 'batcher' else 'TestNotReached'}}}
  out: {{type: RootOutputModule, file: {out}, keep: [source, "source:weight"]}}
paths:
  p: [{first}]
endpaths:
  e: [out]
""")


def test_a_weighted_samples_output_keeps_its_genweight(write_config, tmp_path):
    """keep: [source:weight] was refused ('source' produces no instance 'weight'): an analyst could not
    carry a weighted sample's weights into the output. Now it is the branch genWeight (NanoAOD's name and
    Float_t), event by event the input's, beside the source's jets (collection 'source', no clash)."""
    sample, weights = _weighted(tmp_path)
    out = tmp_path / "o.root"
    run_config(_config(write_config, [sample], out))
    with uproot.open(out) as f:
        tree = f["Events"]
        assert tree["genWeight"].typename == "float" and tree["genWeight"].count_branch is None
        a = tree.arrays(["event", "genWeight", "source_pt"], library="ak")
    assert a["event"].tolist() == list(range(1, 61))
    np.testing.assert_array_equal(ak.to_numpy(a["genWeight"]), weights)
    assert len(a["source_pt"][0]) > 0


def test_keeping_the_weight_of_a_file_without_one_is_refused_before_any_module_is_set_up(write_config, tmp_path):
    """A file without the weight branch (the shipped samples) beside a weighted one: one line naming it,
    at the source's begin_job (before any module's, so before any model loads), not a ProductNotFound in
    the middle of the job; skipBadFiles does not skip it (the file is fine, the job asks what it lacks)."""
    sample, _ = _weighted(tmp_path)
    out = tmp_path / "o.root"
    cfg = _config(write_config, [sample, QCD], out, first="slow", skipBadFiles="true")
    with pytest.raises(ConfigError, match=rf"source: {QCD} has no 'genWeight' branch \(source\.branches\.weight\), "
                                          r"but a module consumes 'source:weight'"):
        run_config(cfg)
    assert not out.exists()


def test_keeping_the_weight_with_no_weight_branch_configured_is_refused(write_config, tmp_path):
    sample, _ = _weighted(tmp_path)
    cfg = _config(write_config, [sample], tmp_path / "o.root", first="slow", branches="{weight: null}")
    with pytest.raises(ConfigError, match=r"source\.branches\.weight: null, but a module consumes 'source:weight'"):
        run_config(cfg)


@pytest.mark.parametrize("branches", [None, "{weight: null}"])
def test_under_dask_the_missing_weight_is_refused_by_the_planner_before_any_cluster(write_config, tmp_path,
                                                                                     monkeypatch, branches):
    """As a local run refuses it at the source's begin_job: the client's plan, in the same words and the same
    exit code (2), not a worker's unit failing after the cluster started (~7 s later)."""
    from hltrun.framework.cli import main
    from hltrun.framework.config import load
    from hltrun.framework.executors import dask_executor

    sample, _ = _weighted(tmp_path)
    out = tmp_path / "o.root"
    source = {"branches": branches} if branches else {}
    cfg = _config(write_config, [sample, QCD], out, **source)
    monkeypatch.setattr(dask_executor, "_connect", lambda cfg: pytest.fail("a cluster was started"))
    with pytest.raises(ConfigError) as local:
        run_config(cfg)
    assert main([str(cfg), "-q", "options.executor.type=dask"]) == 2
    with pytest.raises(ConfigError) as planned:
        dask_executor.plan(load(cfg, ["options.executor.type=dask"]))
    assert str(planned.value) == str(local.value)
    assert not out.exists()


@pytest.mark.parametrize("weighted_first", [True, False])
def test_a_mix_of_weighted_and_unweighted_files_names_the_files_whose_events_count_1(write_config, tmp_path, caplog,
                                                                                     weighted_first):
    """A fresh generator sample (genWeight, all 1) read after a shipped one (no genWeight) was warned as 'fresh.root
    has a 'genWeight' branch ...: its events count 1 each beside weighted ones', the weighted file's events said
    to count 1. The warning now says which files' events count 1, whichever comes first."""
    import logging

    sample, _ = _weighted(tmp_path)
    files = [sample, QCD] if weighted_first else [QCD, sample]
    cfg = write_config(f"""
source: {{type: RootJetSource, files: [{', '.join(str(f) for f in files)}], duplicateCheckMode: noDuplicateCheck}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
paths:
  p: [batcher]
""")
    with caplog.at_level(logging.WARNING):  # a few events of each file
        summary, _ = run_config(cfg, "options.maxEvents=100" if weighted_first else "options.skipEvents=2450")
    assert summary.failure is None
    (said,) = [r.getMessage() for r in caplog.records if "branch and an earlier file" in r.getMessage()]
    second = files[1]
    if weighted_first:  # the unweighted file is the one named: its events count 1
        assert said.startswith(f"source: {second} lacks a 'genWeight' branch and an earlier file has one: its events "
                               "count 1 each beside the weighted ones"), said
    else:  # the weighted file is the one named: the others' events count 1, not its own
        assert said.startswith(f"source: {second} has a 'genWeight' branch and an earlier file has none: the events "
                               "of the files without it count 1 each beside this file's weighted ones"), said
