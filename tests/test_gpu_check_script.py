"""tools/gpu_check.sh against what the lent GPU machines bring back: the device tool returns at most 8
files from $OUT, at most 2 folders down (/work/.library/device: 'files back from $OUT'). The script is run
here with a stand-in ``python3`` that answers every step at once, so only the script's own bookkeeping
is checked: the files it leaves in $OUT, and that every step's log travels in them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_check.sh"
RETURNED_FILES = 8  # the device tool's limit on files brought back from $OUT


# a python3 that logs its arguments and exits 0, writing an empty hltrun.json where a path run is given a
# --report-dir; a 4-stream run writes its report too but exits 143, as hltrun stopped by timeout's SIGTERM
STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
prev=""
for a in "$@"; do
    [ "$prev" = "--report-dir" ] && mkdir -p "$a" && echo '{}' > "$a/hltrun.json"
    prev="$a"
done
case "$*" in *numberOfStreams=4*) exit 143 ;; esac
exit 0
"""


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """A PATH whose python3 is STUB (no nvidia-smi: that step fails, as here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python3"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _run(tmp_path: Path, path: str) -> tuple[Path, list[str]]:
    """The script under the stub: $OUT, and the stub's command lines."""
    out, log = tmp_path / "out", tmp_path / "stub.log"
    env = {**os.environ, "PATH": path, "OUT": str(out), "SITE": str(tmp_path / "site"), "TMPDIR": str(tmp_path),
           "STUB_LOG": str(log)}
    res = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, log.read_text().splitlines()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_out_holds_what_the_device_tool_brings_back(tmp_path, stub_path):
    out, _ = _run(tmp_path, stub_path)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= RETURNED_FILES, sorted(str(p.relative_to(out)) for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert (out / "summary.txt").is_file()
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    for step in ("versions", "pytest-torch", "sweep-torch", "path-ort-1", "path-torch-4", "farm", "hltbench"):
        assert f"{step}.txt" in names, (step, sorted(names))


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_farm_takes_the_gpu_runs_that_wrote_a_report(tmp_path, stub_path):
    """A 4-stream run stopped by its time limit (its hltrun.json of fewer events would make the farm refuse
    every run) leaves the farm the 1- and 2-stream runs, not nothing."""
    _, calls = _run(tmp_path, stub_path)
    farm = [c for c in calls if "gpu-farm" in c]
    assert len(farm) == 1, calls
    assert "path-torch-1" in farm[0] and "path-torch-2" in farm[0] and "path-torch-4" not in farm[0]
