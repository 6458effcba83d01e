"""A job a batch system stops (SIGTERM, SIGUSR2) before its SIGKILL: the report set is written as one, and drawing
report.html's figures took 4 s on an idle 2-core machine, 40-60 s on a loaded one (2026-12-07), so a SIGKILL in
that grace lost hltrun.json too. Such a page is written without its figures, saying why; a Ctrl-C (SIGINT) or a
whole job keeps them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.helpers import run_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A short job with Timing (its figures), the shipped scorer and filter: its summary and services."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("job")
    cfg = folder / "job.yaml"
    cfg.write_text(f"""
process: T
options: {{maxEvents: 60, accelerators: [cpu]}}
source: {{type: RootJetSource, files: [{REPO / "data/qcd_dijet.root"}]}}
services: {{Timing: {{}}}}
modules:
  batcher: {{type: JetBatcher, src: source, max_jets: 2}}
  vae: {{type: VAEAnomalyScorer, src: batcher, model: {REPO / "data/models/conv_vae.onnx"}, backend: onnxruntime}}
  anomalyFilter: {{type: AnomalyScoreFilter, src: vae, threshold: 0.0}}
paths: {{p: [batcher, vae, anomalyFilter]}}
""")
    summary, process = run_config(cfg)
    return summary, list(process.services)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR2"])
def test_a_batch_systems_signal_writes_the_page_without_figures(finished, tmp_path, monkeypatch, sig):
    from hltrun.framework.report import html

    summary, services = finished
    drawn: list[str] = []
    monkeypatch.setattr(html, "_render_png", lambda fig: drawn.append("png") or b"")
    page = html.write_html(tmp_path, dataclasses.replace(summary, stopped_by_signal=sig), services).read_text()
    assert not drawn and "data:image/png" not in page
    assert f"Figure not drawn (mean time per event of each module): the job was stopped by {sig}" in page


@pytest.mark.parametrize("sig", [None, "SIGINT"])
def test_a_whole_job_or_a_ctrl_c_keeps_the_figures(finished, tmp_path, sig):
    from hltrun.framework.report import html

    summary, services = finished
    page = html.write_html(tmp_path, dataclasses.replace(summary, stopped_by_signal=sig), services).read_text()
    assert "data:image/png" in page and "Figure not drawn" not in page
