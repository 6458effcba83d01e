"""A corrupt basket in the middle of a multi-basket file: the failing chunk is named, and with
``skipBadFiles`` the reports say which entries of the file were used and which were skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import awkward as ak
import pytest
import uproot

from hltrun.modules.rootio import write_nanoaod
from tests.conftest import make_events, write_counts

REPO = Path(__file__).resolve().parents[1]
BASKET = 50  # entries per basket, and the source's chunk size
BAD_BASKET = 2  # entries 100-150


def _multi_basket_file(path: Path, n_events: int = 250) -> Path:
    """A counts-layout file written BASKET entries at a time (one basket per extend), then one
    basket of the constituents' eta overwritten with garbage."""
    events = make_events(n_events, seed=5)
    single = write_counts(path.with_name("whole.root"), events)
    with uproot.open(single) as f:
        arrays = f["Events"].arrays(library="ak")
    with uproot.recreate(path) as f:
        for start in range(0, n_events, BASKET):
            part = arrays[start:start + BASKET]
            branches = {name: part[name] for name in ("run", "luminosityBlock", "event")}
            branches["FatJet"] = ak.zip({k: part[f"FatJet_{k}"] for k in ("pt", "eta", "phi", "mass", "nConstituents")})
            branches["FatJetPFCand"] = ak.zip({k: part[f"FatJetPFCand_{k}"] for k in ("pt", "eta", "phi")})
            write_nanoaod(f, "Events", branches)
    branch = uproot.open(path)["Events"]["FatJetPFCand_eta"]
    assert branch.num_baskets == n_events // BASKET
    seek = int(branch.member("fBasketSeek")[BAD_BASKET])
    data = bytearray(path.read_bytes())
    at = data.index(b"ZL", seek)
    data[at + 30:at + 80] = b"\xff" * 50
    path.write_bytes(bytes(data))
    return path


CONFIG = """
process: BASKET
source: {{type: RootJetSource, files: [{good}, {bad}], chunk_size: %d{extra}}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
paths:
  p: [batcher]
""" % BASKET


def _run(tmp_path: Path, *args: str, extra: str = "") -> tuple[subprocess.CompletedProcess, Path, Path]:
    good = write_counts(tmp_path / "good.root", [dict(e, event=e["event"] + 10_000) for e in make_events(40, seed=9)])
    bad = _multi_basket_file(tmp_path / "mid.root")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(textwrap.dedent(CONFIG.format(good=good, bad=bad, extra=extra)))
    fjr, rep = tmp_path / "fjr.xml", tmp_path / "rep"
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(cfg), "-j", str(fjr), "--report-dir", str(rep),
                          *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    return res, fjr, rep


@pytest.mark.parametrize("extra", ["", ", read_ahead: 2"], ids=["serial", "read-ahead"])
def test_mid_file_corruption_names_the_bad_chunk(tmp_path, extra):
    res, _, _ = _run(tmp_path, extra=extra)
    assert res.returncode == 3, res.stderr
    error = next(x for x in res.stderr.splitlines() if x.startswith("hltrun: error:"))
    assert "mid.root entries 100-150:" in error, error  # the chunk of the bad basket, not the file's range


@pytest.mark.parametrize("extra", ["", ", read_ahead: 2"], ids=["serial", "read-ahead"])
def test_skip_bad_files_says_what_was_used_and_what_was_skipped(tmp_path, extra):
    res, fjr, rep = _run(tmp_path, "source.skipBadFiles=true", extra=extra)
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("JobReport  bad file (skipBadFiles)"))
    assert "mid.root: entries 100-250 skipped, 100 event(s) of it read before them" in line, line
    doc = json.loads((rep / "hltrun.json").read_text())
    job = doc["job"]
    assert job["events_processed"] == 40 + 100
    assert any("mid.root: entries 100-250 skipped, 100 event(s)" in b for b in job["bad_files"])
    source = job["source"]
    assert source["bad_entries"] == 150 and source["read"] == 140
    assert source["files_read"][str(tmp_path / "mid.root")] == 100
    root = ET.parse(fjr).getroot()
    read = {el.findtext("PFN"): int(el.findtext("EventsRead")) for el in root.iter("InputFile")}
    assert read == {str(tmp_path / "good.root"): 40, str(tmp_path / "mid.root"): 100}
    assert [el.get("Pfn") for el in root.iter("SkippedFile")] == [str(tmp_path / "mid.root")]
