"""hltrun.json is checked against hltrun-report.schema.json when it is written (not only in tests):
a report that fails is still written, and the job says where it fails in one line and exits non-zero."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hltrun.framework import cli
from hltrun.framework.report import write_report_files
from hltrun.framework.report.validate import ReportSchemaError, schema_problem
from tests.helpers import run_config

CFG = """
source: {type: TestCountingSource, n: 30}
modules:
  sq: {type: TestSquare}
  even: {type: TestModuloFilter, src: sq, divisor: 2}
paths:
  p: [sq, even]
services:
  Timing: {}
  Memory: {}
"""


def _broken(process, change):
    """The Timing service with its JSON part changed by ``change`` (a bug planted on purpose)."""
    timing = next(s for s in process.services if s.name == "Timing")
    honest = timing.json_report

    def json_report(summary):
        part = copy.deepcopy(honest(summary))  # the text and HTML reports keep the honest one
        change(part)
        return part

    timing.json_report = json_report
    return timing


@pytest.fixture
def job(write_config):
    return run_config(write_config(CFG))


def test_a_correct_report_passes(job, tmp_path):
    summary, process = job
    written = write_report_files(tmp_path, summary, process.services)
    assert written[0] == tmp_path / "hltrun.json"
    assert schema_problem(json.loads(written[0].read_text())) is None


@pytest.mark.parametrize("change, where", [
    (lambda p: p["event"]["real"].__setitem__("p99", "fast"), "services/Timing/event/real/p99: 'fast' is not of type"),
    (lambda p: p["per_event"]["real_ms"].__setitem__(7, "slow"), "services/Timing/per_event/real_ms/7: 'slow'"),
    (lambda p: p["per_event"]["index"].__setitem__(3, -1), "services/Timing/per_event/index/3: -1 is less than"),
    (lambda p: p["per_event"]["modules_real_ms"]["sq"].__setitem__(0, None), "modules_real_ms/sq/0: None is not"),
    (lambda p: p.pop("events"), "services/Timing: 'events' is a required property"),
])
def test_a_field_broken_on_purpose_is_caught_when_written(job, tmp_path, change, where):
    summary, process = job
    _broken(process, change)
    with pytest.raises(ReportSchemaError) as err:
        write_report_files(tmp_path, summary, process.services)
    message = str(err.value)
    assert where in message and "hltrun-report.schema.json" in message and "\n" not in message
    assert "written anyway" in message and (tmp_path / "hltrun.json").exists()  # the numbers are kept


def test_the_cli_says_it_in_one_line_and_exits_non_zero(job, tmp_path, capsys):
    summary, process = job
    _broken(process, lambda p: p["event"]["real"].__setitem__("mean", [1]))
    assert cli._write_reports(tmp_path, summary, process.services) == ReportSchemaError.exit_code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hltrun: error: ") and "services/Timing/event/real/mean" in err[0]


def test_the_fast_pass_over_number_arrays_agrees_with_jsonschema(job, tmp_path):
    # kills: the one-pass check of long number arrays letting through what jsonschema itself refuses
    jsonschema = pytest.importorskip("jsonschema")
    summary, process = job
    write_report_files(tmp_path, summary, process.services)
    doc = json.loads((tmp_path / "hltrun.json").read_text())
    schema = json.loads((Path(cli.__file__).parent / "report" / "hltrun-report.schema.json").read_text())
    plain = jsonschema.Draft202012Validator(schema)
    for bad in ("x", None, True, -1, 1.5, [1], float("nan"), 2**70):
        for column in ("index", "real_ms"):
            broken = copy.deepcopy(doc)
            broken["services"]["Timing"]["per_event"][column][2] = bad
            assert (schema_problem(broken) is None) == plain.is_valid(broken), (column, bad)
