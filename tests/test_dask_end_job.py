"""Dask workers never call end_job (a worker's Process serves unit after unit): a module whose end_job writes or
flushes a result, with no end_unit, did nothing on Dask and the job said nothing (exit 0, the file missing).
The client names such modules; the built-in ones whose end_job only releases are not named."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import tests.plugins  # noqa: F401  (TestEndJobWriter)
from hltrun.framework.config import load
from hltrun.framework.executors.dask_executor import end_job_not_run

ROOT = Path(__file__).resolve().parents[1]


def _writer_job(write_config, tmp_path: Path):  # noqa: ANN202
    """A Dask job whose one module writes its result in end_job (TestEndJobWriter)."""
    return load(write_config(f"""
        process: ENDJOB
        options: {{maxEvents: 10, executor: {{type: dask}}}}
        source: {{type: RootJetSource, files: [{ROOT / 'data' / 'qcd_dijet.root'}]}}
        modules:
          hist: {{type: TestEndJobWriter, file: {tmp_path / 'hist.txt'}}}
        endpaths: {{e: [hist]}}
        """), [])


def test_a_module_writing_in_end_job_is_named_on_dask(write_config, tmp_path):
    cfg = _writer_job(write_config, tmp_path)
    assert end_job_not_run(cfg) == ["'hist' (TestEndJobWriter)"]


@pytest.mark.parametrize("config", ["path.yaml", "menu.yaml"])  # scorer, output, batcher, filter; L1 seeds, prescalers
def test_the_shipped_modules_lose_nothing_on_dask(config):
    assert end_job_not_run(load(ROOT / "configs" / config, [])) == []


def test_the_dask_run_says_so_before_any_unit(write_config, tmp_path, caplog, monkeypatch):
    """The line comes from run_dask itself, before it plans or connects (stopped there by a planner that fails)."""
    pytest.importorskip("distributed")
    from hltrun.framework.executors import dask_executor

    cfg = _writer_job(write_config, tmp_path)

    def stop(_cfg):
        raise RuntimeError("planned no further")

    monkeypatch.setattr(dask_executor, "plan", stop)
    logger = logging.getLogger("hltrun")  # the CLI's "hltrun" logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    try:
        with pytest.raises(RuntimeError, match="planned no further"):
            dask_executor.run_dask(cfg, 0.0, progress=False)
    finally:
        logger.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records}.values()  # once, whether or not it propagates too
    lines = [r.getMessage() for r in records if "end_job" in r.getMessage()]
    assert lines == ["Dask: module 'hist' (TestEndJobWriter) has an end_job, which Dask workers never call: what it "
                     "writes or flushes there does not happen on Dask (a local run does it); give it an end_unit, or "
                     "run locally (docs/distributed.md)"]
