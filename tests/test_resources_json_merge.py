"""resources.json as CMSSW's own tool merges it: HLTrigger/Timer/scripts/mergeResourcesJson.py's rules,
re-written here (not copied), on the files of two real jobs.

The script's rules: the metrics are the keys of the ``resources`` list; files that describe other metrics
are an error; the ``total`` entries are summed (``events`` and every metric), and so is every entry of
``modules`` with the same ``type|label`` key (a key seen first in a later file is appended). FastTimerService
writes ``total`` as the sum of its modules, ``other``, ``eventsetup`` and ``idle`` (writeSummaryJSON), so a
merged file must keep that sum; an entry whose ``type|label`` repeated inside one file would be merged into
another silently.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import CLI_WITH_TEST_PLUGINS

REPO = Path(__file__).resolve().parents[1]
RUN = CLI_WITH_TEST_PLUGINS

JOB = """
process: MERGE
source: {{type: TestCountingSource, n: {n}}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  sq: {{type: TestSquare}}
  out: {{type: RootOutputModule, file: {out}, keep: [sq], select_events: [p]}}
paths:
  p: [even, sq]
endpaths:
  e: [out]
services:
  Timing: {{calibrate: false}}
"""


def merge(first: dict, *others: dict) -> dict:
    """mergeResourcesJson.py's merge, in memory."""
    out = copy.deepcopy(first)
    metrics = [key for resource in out["resources"] for key in resource]
    entries = {m["type"] + "|" + m["label"]: m for m in out["modules"]}

    def add(data: dict, into: dict) -> None:
        into["events"] += data["events"]
        for metric in metrics:
            into[metric] += data[metric]

    for doc in others:
        if doc["resources"] != out["resources"]:
            raise ValueError("input files describe different metrics")
        add(doc["total"], out["total"])
        for module in doc["modules"]:
            key = module["type"] + "|" + module["label"]
            if key in entries:
                add(module, entries[key])
            else:
                entries[key] = copy.deepcopy(module)
                out["modules"].append(entries[key])
    return out


def _job(tmp: Path, name: str, n: int) -> dict:
    folder = tmp / name
    folder.mkdir()
    cfg = folder / "job.yaml"
    cfg.write_text(textwrap.dedent(JOB.format(n=n, out=folder / "o.root")))
    res = subprocess.run([sys.executable, "-c", RUN, str(cfg), "-q", "--report-dir", str(folder / "rep")], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads((folder / "rep" / "resources.json").read_text())


def test_two_jobs_resources_merge_as_cmssws_script_merges_them(tmp_path):
    a, b = _job(tmp_path, "a", 30), _job(tmp_path, "b", 50)
    for doc in (a, b):
        keys = [m["type"] + "|" + m["label"] for m in doc["modules"]]
        assert len(keys) == len(set(keys)), keys  # no entry the script would fold into another
        assert {"other|other", "eventsetup|eventsetup", "idle|idle"} <= set(keys)
        assert doc["total"]["type"] == "Job" and doc["total"]["label"] == "MERGE"
        for metric in ("time_real", "time_thread", "mem_alloc", "mem_free"):  # FTS: total is the entries' sum
            assert doc["total"][metric] == pytest.approx(sum(m[metric] for m in doc["modules"]), rel=1e-9, abs=1e-9)
        assert all(isinstance(m["mem_alloc"], int) and isinstance(m["events"], int) for m in doc["modules"])
    merged = merge(a, b)
    assert merged["total"]["events"] == 80
    by_key = {m["type"] + "|" + m["label"]: m for m in merged["modules"]}
    assert by_key["TestModuloFilter|even"]["events"] == 80  # every event ran the filter
    assert by_key["TestSquare|sq"]["events"] == 15 + 25  # the even events
    for metric in ("time_real", "time_thread"):
        assert merged["total"][metric] == pytest.approx(sum(m[metric] for m in merged["modules"]), rel=1e-9)
    with pytest.raises(ValueError):
        merge(a, {**b, "resources": b["resources"][:2]})
