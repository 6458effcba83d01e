"""The job's clock starts at the process's exec, to the millisecond, checked from outside the process.

Each check holds on a busy machine: the bounds come from work the child is known to have done (CPU
burnt before the import) or not done (a shell's sleep before its exec), never from how fast it ran.
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READ = "import hltrun.framework.clock as c, time; print(time.perf_counter() - c.PROCESS_START)"

linux_only = pytest.mark.skipif(not Path("/proc/self/schedstat").exists(),
                                reason="/proc/self/schedstat (Linux) is where the start-up time is read")


def _elapsed_at_import(prefix: str, shell: str | None = None) -> tuple[float, float]:
    """(what the clock says had elapsed at its import, the child's lifetime measured from outside)."""
    code = prefix + READ
    cmd = [sys.executable, "-c", code]
    if shell is not None:
        cmd = ["bash", "-c", shell + ' exec "$0" -c "$1"', sys.executable, code]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out), time.perf_counter() - t0


@linux_only
def test_start_up_work_before_the_import_is_counted():
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    reported, outside = _elapsed_at_import(burn)
    assert 0.4 <= reported <= outside


@linux_only
def test_what_the_shell_did_before_its_exec_is_not_counted():
    """``sleep 3; exec python``: the process exists 3 s before python starts; none of it is hltrun's."""
    reported, outside = _elapsed_at_import("", shell="sleep 3;")
    assert outside >= 3.0
    assert 0.0 < reported < outside - 2.9


@linux_only
def test_job_report_wall_time_is_within_the_process_lifetime(tmp_path):
    """The job report's TotalJobTime against the whole process timed from outside: never more (the
    whole-second rounding of psutil's create_time overstated it by 0.5-0.6 s), and the shell's sleep
    before the exec never in it."""
    fjr = tmp_path / "fjr.xml"
    cli = [sys.executable, "-m", "hltrun.framework.cli", str(REPO / "configs" / "path.yaml"), "-n", "1", "-q",
           "-j", str(fjr), "options.wantSummary=false"]
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", 'sleep 2; exec "$@"', "sh", *cli], cwd=tmp_path, capture_output=True,
                   timeout=300, check=True)
    outside = time.perf_counter() - t0
    # the shipped path's output (output/hltrun_output.root, relative) in tmp_path: run from the repository,
    # it replaced what the README's own `hltrun configs/path.yaml` had written there
    assert (tmp_path / "output" / "hltrun_output.root").is_file()
    metrics = {m.get("Name"): float(m.get("Value")) for m in ET.parse(fjr).iter("Metric")
               if m.get("Name") in ("TotalJobTime", "TotalInitTime")}
    assert 0.0 < metrics["TotalJobTime"] < outside - 1.9
