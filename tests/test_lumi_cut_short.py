"""A lumi section maxEvents stopped inside is flagged in the per-lumi rates (``cut_short``), in the RateReport and
in report.html: its rate is of its first events only, biased where the events are ordered, and was listed like a
full lumi's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_events, write_counts


@pytest.fixture(scope="module")
def three_lumis(tmp_path_factory) -> Path:
    """250 events: lumi 1 and 2 of 100 events, lumi 3 of 50 (``make_events``: 100 per lumi)."""
    return write_counts(tmp_path_factory.mktemp("cut") / "lumis.root", make_events(250, seed=7))


def _job(tmp_path: Path, data: Path, n: int, capsys, *extra: str) -> tuple[dict, str, dict]:
    from hltrun.framework.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"""
process: CUT
options: {{wantSummary: true}}
source: {{type: RootJetSource, files: [{data}], tree: Events, layout: counts, chunk_size: 64}}
modules:
  hard: {{type: JetPtFilter, min_pt: 800.0}}
paths: {{HLT_Hard: [hard]}}
services:
  TriggerRates: {{}}
""")
    rep = tmp_path / f"rep{n}"
    capsys.readouterr()
    assert main([str(config), "-n", str(n), "--report-dir", str(rep), *extra]) == 0
    report = json.loads((rep / "hltrun.json").read_text())
    per_lumi = {(e["run"], e["lumi"]): e for e in report["services"]["TriggerRates"]["per_lumi"]}
    return per_lumi, capsys.readouterr().out, report["job"]["source"]


@pytest.fixture(scope="module")
def in_baskets(tmp_path_factory) -> Path:
    """The same layout in baskets of 50 entries: the file check does not keep it whole."""
    return write_counts(tmp_path_factory.mktemp("cut") / "baskets.root", make_events(250, seed=7), per_basket=50)


@pytest.mark.parametrize("how", ["next_in_chunk", "kept_whole", "opened_again"])
def test_the_lumi_max_events_stopped_in_is_flagged(tmp_path, three_lumis, in_baskets, capsys, monkeypatch, how):
    """The next entry's lumi from the chunk that holds it (a duplicate check reads past maxEvents), from the file
    the check kept whole, or read from the file opened once more."""
    from hltrun.modules.source import event_ids

    peeks = []
    real = event_ids.lumi_at
    monkeypatch.setattr("hltrun.modules.root_source.lumi_at", lambda *a: peeks.append(a[3]) or real(*a))
    data = in_baskets if how == "opened_again" else three_lumis
    extra = () if how == "next_in_chunk" else ("source.duplicateCheckMode=noDuplicateCheck",)
    per_lumi, text, source = _job(tmp_path, data, 150, capsys, *extra)
    assert peeks == ([150] if how == "opened_again" else [])
    assert [(k, e["events"], e.get("cut_short")) for k, e in per_lumi.items()] == [((1, 1), 100, None),
                                                                                  ((1, 2), 50, True)]
    assert source["lumis_cut_short"] == {"1:2": 1}
    assert "Lumi section 1:2 (50 events) cut short by maxEvents (the file holds more of it)" in text


@pytest.mark.parametrize("n", [200, 250])  # at a lumi's end; at the file's end
def test_a_lumi_read_whole_is_not_flagged(tmp_path, three_lumis, capsys, n):
    per_lumi, text, source = _job(tmp_path, three_lumis, n, capsys)
    assert sum(e["events"] for e in per_lumi.values()) == n
    assert not any("cut_short" in e for e in per_lumi.values()) and "lumis_cut_short" not in source
    assert "cut short" not in text


def test_dask_flags_it_as_a_local_run(tmp_path, three_lumis, capsys):
    """The workers read units, not the local loop: the client looks at the entry after its last unit."""
    pytest.importorskip("distributed")
    per_lumi, text, source = _job(tmp_path, three_lumis, 150, capsys, "--dask", "2", "options.executor.eventsPerTask=40")
    assert [(k, e["events"], e.get("cut_short")) for k, e in per_lumi.items()] == [((1, 1), 100, None),
                                                                                  ((1, 2), 50, True)]
    assert source["lumis_cut_short"] == {"1:2": 1} and "Lumi section 1:2 (50 events) cut short by maxEvents" in text
