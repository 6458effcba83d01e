"""hltbench overhead runs on the shipped samples, with ONNX Runtime and with its stand-in, and
checks that hltrun and the bare loop decide alike (it exits non-zero if they do not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--stand-in"]])
def test_bench_overhead_runs_and_reports_the_difference(extra):
    proc = subprocess.run([sys.executable, "-m", "hltrun.tools.bench", "overhead", "--repeat", "1", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "events: 4000" in proc.stdout and "over the bare loop" in proc.stdout
    assert ("stand-in" in proc.stdout) is bool(extra)
