"""A GPU-style backend's device figures in the text reports, hltrun.json and report.html (issue 20):
H2D / compute / D2H counters -> the TimeReport's "Inference device split" block and ``services.Timing.
device_split``; the allocator's ``device_memory`` -> MemoryReport lines and ``services.Memory.
device_memory``. The expected figures are worked out here from the fake backend's constants, not taken
from the code under test. A job whose modules carry no such counters (ONNX Runtime) prints neither.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from hltrun.framework.executors.worker import _delta
from hltrun.framework.module import Producer
from hltrun.framework.registry import register_module
from hltrun.framework.report import text_report, write_report_files
from hltrun.framework.results import add_stream_summary, merge_counters
from hltrun.framework.report.timereport import _device_split_rows
from hltrun.framework.schema import InputTag
from hltrun.framework.services.timing_results import device_split
from hltrun.framework.summary import JobSummary
from tests.helpers import run_config
from tests.reportparse import html_number, html_tables

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

# the fake backend, per event: 2 device calls (chunks); per chunk 100 us H2D, 400 us compute, 20 us D2H,
# 120,000 bytes in and 512 bytes out; 6 jets and 2 padding jets per event
CHUNKS, H2D_US, COMPUTE_US, D2H_US, IN_B, OUT_B, JETS, PADDED = 2, 100, 400, 20, 120_000, 512, 6, 2
# what each stream's backend reads from the one device's allocator (stream 1 saw the higher peak)
DEVICE_MEMORY = [{"peak_bytes_in_use": 100 * MiB, "bytes_in_use": 50 * MiB, "bytes_limit": 1000 * MiB},
                 {"peak_bytes_in_use": 300 * MiB, "bytes_in_use": 20 * MiB, "bytes_limit": 1000 * MiB}]
# each stream's backend's begin_job warm-up, as JAX's: the first stream compiles every bucket, the next one loads
# what the first compiled (the process's compile cache)
WARM_UP_S = [5.9, 0.1]
INSTANCES: list["DeviceScorer"] = []


@dataclass
class _Params:
    src: InputTag = InputTag("source")
    device_memory: bool = True


@register_module("TestDeviceScorer")
class DeviceScorer(Producer):
    """A scorer whose backend counts its device calls as the jax / TensorRT backends do."""

    Parameters = _Params

    def __init__(self, label: str, params: Any) -> None:
        super().__init__(label, params)
        self.events = 0
        self.index = len(INSTANCES) % 2  # one instance per stream
        INSTANCES.append(self)

    def produce(self, event) -> None:
        self.events += 1
        event.put(event.get(self.params.src))

    def summary(self) -> dict:
        n = self.events
        backend = {"backend": "fake-gpu", "device": "gpu", "warm_up_s": WARM_UP_S[self.index]}
        if self.params.device_memory:
            backend["device_memory"] = dict(DEVICE_MEMORY[self.index])
        return {"backend": backend, "events": n, "jets": JETS * n, "chunks": CHUNKS * n,
                "h2d_us": CHUNKS * H2D_US * n, "compute_us": CHUNKS * COMPUTE_US * n, "d2h_us": CHUNKS * D2H_US * n,
                "h2d_bytes": CHUNKS * IN_B * n, "d2h_bytes": CHUNKS * OUT_B * n, "padded_jets": PADDED * n}


CFG = """
source: {type: TestCountingSource, n: 30}
options: {numberOfThreads: 2, numberOfStreams: 2}
modules:
  scorer: {type: TestDeviceScorer, src: source}
  sq: {type: TestSquare}
paths:
  p: [scorer, sq]
services:
  Timing: {}
  Memory: {}
"""
EVENTS = 30

# expected, by hand: per call (ms) = us per chunk / 1000; per event = chunks per event x that
PER_CALL_MS = {"h2d": 0.1, "compute": 0.4, "d2h": 0.02}
COPIES_PCT = 100 * (100 + 20) / (100 + 400 + 20)  # 23.08 %
PADDED_PCT = 100 * 2 / (6 + 2)  # 25 %
DEVICE_MS_PER_EVENT = 2 * (0.1 + 0.4 + 0.02)  # 1.04 ms


def _job(write_config, device_memory: bool = True, scorer: bool = True):
    INSTANCES.clear()
    text = CFG if scorer else CFG.replace("  scorer: {type: TestDeviceScorer, src: source}\n", "").replace(
        "[scorer, sq]", "[sq]")
    return run_config(write_config(text.replace("src: source}", f"src: source, device_memory: {device_memory}}}")))


def _split_rows(text: str) -> dict[str, list[float]]:
    """The block's rows: label -> its numbers ('-' as None)."""
    block = text.split("Inference device split", 1)[1].split("T---Report end!", 1)[0]
    rows = {}
    for line in block.splitlines()[2:]:
        fields = line.split()
        if len(fields) == 11 and fields[0] == "TimeReport" and fields[1] != "H2D":
            rows[fields[-1]] = [None if f == "-" else float(f) for f in fields[1:-1]]
    return rows


def test_timereport_block_has_the_figures_worked_out_by_hand(write_config):
    summary, process = _job(write_config)
    text = text_report(summary, process.services)
    head = next(line for line in text.splitlines() if "Inference device split" in line)
    assert head.startswith("TimeReport ---------- Inference device split") and "per device call" in head
    block_at, end_at = text.index("Inference device split"), text.index("T---Report end!")
    assert text.index("Module Summary ---[Real sec]") < block_at < end_at  # inside the TimeReport, at its end
    h2d, compute, d2h, copies, kb_in, kb_out, padded, calls_per_event, ms_per_event = _split_rows(text)["scorer"]
    assert (h2d, compute, d2h) == (pytest.approx(0.1), pytest.approx(0.4), pytest.approx(0.02))
    assert copies == pytest.approx(COPIES_PCT, abs=0.005)
    assert (kb_in, kb_out) == (pytest.approx(120.0), pytest.approx(0.51))
    assert padded == pytest.approx(PADDED_PCT)
    assert calls_per_event == pytest.approx(2.0)
    assert ms_per_event == pytest.approx(DEVICE_MS_PER_EVENT)
    assert "sq" not in _split_rows(text)  # a module without device counters has no row


def test_warm_up_is_the_slowest_streams_not_the_last_ones(write_config, tmp_path):
    """``hltrun configs/path.yaml modules.vae.backend=jax options.numberOfStreams=4`` (the GPU script's
    path-jax-4) printed "warm-up at begin_job ...: vae 0.10 s" while its first stream had compiled every bucket
    for 5.90 s: the backend's describe() merged over streams as a setting, the latest stream's, and only the
    first stream compiles (the others load its compiled buckets). The line and hltrun.json give the largest."""
    summary, process = _job(write_config)
    assert len(INSTANCES) == 2
    text = text_report(summary, process.services)
    (line,) = [line for line in text.splitlines() if "warm-up at begin_job" in line]
    assert line.endswith("charged to no event): scorer 5.90 s") and "the slowest stream's backend" in line
    write_report_files(tmp_path, summary, process.services)
    doc = json.loads((tmp_path / "hltrun.json").read_text())
    assert doc["services"]["Timing"]["device_split"]["scorer"]["warm_up_s"] == 5.9
    assert doc["job"]["module_summaries"]["scorer"]["backend"]["warm_up_s"] == 5.9


def test_memoryreport_shows_the_largest_peak_any_stream_read(write_config):
    summary, process = _job(write_config)
    assert len(INSTANCES) == 2  # two streams, two backends reading the one device
    text = text_report(summary, process.services)
    lines = [line for line in text.splitlines() if "device memory" in line]
    # max over the streams, never the sum (600 MiB peak, 2000 MiB limit would be wrong); no reserved figure
    assert lines == ["MemoryReport  device memory scorer: peak allocated 300.0 MiB, in use 50.0 MiB, limit 1000.0 MiB"]


def test_json_and_html_carry_the_same_figures(write_config, tmp_path):
    summary, process = _job(write_config)
    write_report_files(tmp_path, summary, process.services)  # raises if hltrun.json fails its schema
    doc = json.loads((tmp_path / "hltrun.json").read_text())
    counters = doc["job"]["module_summaries"]["scorer"]
    assert counters["chunks"] == CHUNKS * EVENTS and counters["h2d_us"] == CHUNKS * H2D_US * EVENTS  # streams added
    d = doc["services"]["Timing"]["device_split"]["scorer"]
    assert d["device_calls"] == 60 and d["events"] == EVENTS
    assert d["per_call_ms"] == pytest.approx(PER_CALL_MS)
    assert d["per_event_ms"] == pytest.approx({k: 2 * v for k, v in PER_CALL_MS.items()})
    assert d["total_ms"] == pytest.approx({k: 60 * v for k, v in PER_CALL_MS.items()})
    assert 100 * d["copies_share"] == pytest.approx(COPIES_PCT)
    assert 100 * d["padded_jets_share"] == pytest.approx(PADDED_PCT)
    assert (d["h2d_bytes_per_call"], d["d2h_bytes_per_call"]) == (IN_B, OUT_B)
    assert d["device_per_event_ms"] == pytest.approx(DEVICE_MS_PER_EVENT)
    assert doc["services"]["Memory"]["device_memory"] == {
        "scorer": {"peak_bytes_in_use": 300 * MiB, "bytes_in_use": 50 * MiB, "bytes_limit": 1000 * MiB}}
    page = (tmp_path / "report.html").read_text()
    split = next(t for t in html_tables(page) if "H2D ms" in t["header"])
    row = dict(zip(split["header"], split["rows"][0]))
    assert row["module"] == "scorer" and html_number(row["compute ms"]) == pytest.approx(0.4)
    assert html_number(row["device ms/event"]) == pytest.approx(DEVICE_MS_PER_EVENT)
    memory = next(t for t in html_tables(page) if "peak allocated MiB" in t["header"])
    assert dict(zip(memory["header"], memory["rows"][0]))["peak allocated MiB"] == "300.000"


def test_no_counters_no_block(write_config, tmp_path):
    """A job whose modules time no device calls (ONNX Runtime, TensorFlow) prints cmsRun's TimeReport only."""
    summary, process = _job(write_config, scorer=False)
    text = text_report(summary, process.services)
    assert "Inference device split" not in text and "device memory" not in text
    assert re.search(r"TimeReport  per event     per exec    per visit  Name\n\nT---Report end!", text)
    write_report_files(tmp_path, summary, process.services)
    doc = json.loads((tmp_path / "hltrun.json").read_text())
    assert "device_split" not in doc["services"]["Timing"] and "device_memory" not in doc["services"]["Memory"]


def test_counters_without_device_memory_print_no_memory_line(write_config):
    """The jax backend on the CPU: counters, but no allocator statistics."""
    summary, process = _job(write_config, device_memory=False)
    text = text_report(summary, process.services)
    assert "Inference device split" in text and "device memory" not in text


def test_tensorrt_counters_and_no_padding_count():
    """The TensorRT backend's counters (the shared names, plus its ``d2h_copies``) and no padding count
    (it runs each batch at its own size): the same split, padding shown as '-'."""
    summary = JobSummary("T", 1, module_summaries={"vae": {
        "jets": 40, "chunks": 4, "h2d_us": 400, "compute_us": 2000, "d2h_us": 100, "d2h_copies": 8}})
    split = device_split(summary, {"vae": {"calls": 2}})
    assert split["vae"]["per_call_ms"] == pytest.approx({"h2d": 0.1, "compute": 0.5, "d2h": 0.025})
    assert split["vae"]["per_event_ms"] == pytest.approx({"h2d": 0.2, "compute": 1.0, "d2h": 0.05})
    assert split["vae"]["padded_jets_share"] is None
    row = next(line for line in _device_split_rows(split) if line.endswith("  vae"))
    assert row.split()[7] == "-"


def test_an_engine_on_the_host_buffer_shows_no_copy_figures(tmp_path):
    """TFLite on the CPU (``auto``'s pick on the shipped path) runs on the host buffer: it times its compute
    and counts no copy. Its H2D, D2H, copies % and kB columns are '-' (not measured), not 0.0000 and 0.00 kB,
    which read as an empty batch sent to a device; compute and the per-event figures stay."""
    summary = JobSummary("T", 1, module_summaries={"vae": {
        "jets": 8, "chunks": 4, "h2d_us": 0, "compute_us": 800, "d2h_us": 0, "h2d_bytes": 0, "d2h_bytes": 0,
        "padded_jets": 0}})
    split = device_split(summary, {"vae": {"calls": 4}})
    row = next(line for line in _device_split_rows(split) if line.endswith("  vae")).split()
    assert row[1] == row[3] == row[4] == row[5] == row[6] == "-"  # H2D, D2H, copies %, kB in, kB out
    assert float(row[2]) == pytest.approx(0.2) and float(row[7]) == 0.0 and float(row[9]) == pytest.approx(0.2)
    from hltrun.framework.report.html import _device_split_html
    page = _device_split_html(split)
    (t,) = html_tables(page)
    cells = dict(zip(t["header"], t["rows"][0]))
    assert [cells[k] for k in ("H2D ms", "D2H ms", "copies %", "kB in/call", "kB out/call")] == ["–"] * 5
    assert html_number(cells["compute ms"]) == pytest.approx(0.2)


# ---------------------------------------------------------------------- merge rules
def test_device_memory_merges_by_max_over_streams_units_and_workers():
    a = {"chunks": 3, "backend": {"name": "jax", "device_memory": {"peak_bytes_in_use": 5, "bytes_limit": 9}}}
    b = {"chunks": 4, "backend": {"name": "jax", "device_memory": {"peak_bytes_in_use": 7, "bytes_limit": 9,
                                                                    "bytes_reserved": 8}}}
    merged = merge_counters(a, b)  # Dask units and workers
    assert merged["chunks"] == 7
    assert merged["backend"]["device_memory"] == {"peak_bytes_in_use": 7, "bytes_limit": 9, "bytes_reserved": 8}
    streams: dict = {}
    add_stream_summary(streams, b)  # per-stream instances in one process
    add_stream_summary(streams, a)
    assert streams["chunks"] == 7
    assert streams["backend"]["device_memory"] == {"peak_bytes_in_use": 7, "bytes_limit": 9, "bytes_reserved": 8}
    seen: dict = {}
    _delta(a, seen)  # a worker's first unit
    later = _delta(b, seen)  # its next unit: counters since the first, the device's figures as read
    assert later["chunks"] == 1 and later["backend"]["device_memory"]["peak_bytes_in_use"] == 7


def test_warm_up_merges_by_max_over_streams_units_and_workers():
    """A backend's ``warm_up_s`` is a setting's number that differs by stream (the first one compiles): the
    largest stays whichever order the streams, units or workers merge in; a unit without one keeps the other's."""
    def scorer(warm):
        return {"chunks": 1, "backend": {"backend": "jax", "threads": 1, "warm_up_s": warm}}

    for order in ((5.9, 0.13, 0.1), (0.1, 5.9, 0.13), (0.13, 0.1, 5.9)):
        streams: dict = {}
        for warm in order:
            add_stream_summary(streams, scorer(warm))
        assert streams["backend"] == {"backend": "jax", "threads": 1, "warm_up_s": 5.9}
        assert reduce(merge_counters, [scorer(w) for w in order])["backend"]["warm_up_s"] == 5.9
    assert merge_counters(scorer(None), scorer(0.2))["backend"]["warm_up_s"] == 0.2
    assert merge_counters(scorer(0.2), scorer(None))["backend"]["warm_up_s"] == 0.2


# ---------------------------------------------------------------------- end to end, jax on the CPU
@pytest.mark.slow
def test_shipped_path_on_jax_cpu_prints_the_split_that_the_json_counts(tmp_path):
    """``hltrun configs/path.yaml -n 20 modules.vae.backend=jax``: the TimeReport block's H2D + compute +
    D2H per call and per event are the scorer's counters in hltrun.json, divided by hand here."""
    n = 20
    cmd = [sys.executable, "-m", "hltrun", str(REPO / "configs" / "path.yaml"), "-n", str(n),
           "modules.vae.backend=jax", "modules.vae.max_batch=8", f"modules.out.file={tmp_path / 'out.root'}",
           "modules.out.select_events=[]", "--report-dir", str(tmp_path / "rep")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["job"]["module_summaries"]["vae"]
    assert c["chunks"] >= n and c["compute_us"] > 0
    h2d, compute, d2h, *_, ms_per_event = _split_rows(proc.stdout)["vae"]
    device_ms = (c["h2d_us"] + c["compute_us"] + c["d2h_us"]) / 1000
    assert h2d + compute + d2h == pytest.approx(device_ms / c["chunks"], abs=2e-4)  # three 4-decimal roundings
    assert ms_per_event == pytest.approx(device_ms / c["events"], abs=1e-4)
    assert "device memory" not in proc.stdout  # JAX's CPU device has no allocator statistics
    warm = c["backend"]["warm_up_s"]  # begin_job's compilation, on its own line, charged to no event
    assert f"warm-up at begin_job (compiling or capturing every batch bucket, the slowest stream's " \
           f"backend; charged to no event): vae {warm:.2f} s" in proc.stdout
    split = json.loads((tmp_path / "rep" / "hltrun.json").read_text())["services"]["Timing"]["device_split"]["vae"]
    assert split["warm_up_s"] == pytest.approx(warm)
