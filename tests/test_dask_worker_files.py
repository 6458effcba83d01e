"""Which input files a Dask worker opens: those of the units it is given, no other.

Each worker's begin_job opened and checked every input of the job (the client had checked them all to plan
the units): O(workers x files) opens before the first event, the dominant start-up cost on a shared file
system with hundreds of files. The units run here in this process through the worker's own task
(``run_unit``), with the real ``uproot.open`` wrapped by a counting function.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hltrun.framework.config import load
from hltrun.framework.executors import worker
from hltrun.framework.executors.worker import JobSpec, run_unit
from hltrun.framework.units import WorkUnit
from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod

ROOT = Path(__file__).parents[1]
QCD = ROOT / "data" / "qcd_dijet.root"
PER_FILE = 25
CHARGE = "FatJetPFCand_charge"


@pytest.fixture(autouse=True)
def fresh_workers(monkeypatch):
    """No Process built by another test: each test's first unit builds its own (begin_job included)."""
    monkeypatch.setattr(worker, "_CACHE", {})


def split(folder: Path, files: int, charge: bool = False, src: Path = QCD) -> list[Path]:
    """The first ``files`` x 25 events of a shipped sample (QCD), 25 to a file; ``charge``: with a
    per-constituent charge branch (a model's declared input)."""
    tree = uproot.open(src)["Events"]
    layout = branch_groups(tree)
    out = []
    for i, arrays in enumerate(tree.iterate(step_size=PER_FILE, entry_stop=PER_FILE * files, library="ak")):
        out.append(folder / f"{'charge' if charge else 'part'}{i:02d}.root")
        data = regroup(arrays, layout)
        if charge:
            n = ak.to_numpy(arrays["nFatJetPFCand"])
            data["FatJetPFCand"] = ak.with_field(data["FatJetPFCand"], ak.unflatten(
                np.resize(np.array([-1.0, 0.0, 1.0], np.float32), int(n.sum())), n), "charge")
        with uproot.recreate(out[-1]) as f:
            write_nanoaod(f, "Events", data)
    return out


def counted_opens(monkeypatch) -> list[str]:
    """The names of the files ``uproot.open`` opens from now on (the real open, counted)."""
    opened: list[str] = []
    real = uproot.open

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        opened.append(Path(str(path)).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(uproot, "open", counting)
    return opened


def spec(tmp_path: Path, files: list[Path], *overrides: str) -> JobSpec:
    cfg = load(ROOT / "configs" / "path.yaml", [
        f"source.files=[{', '.join(map(str, files))}]", "modules.vae.backend=onnxruntime",
        "options.accelerators=[cpu]", f"modules.out.file={tmp_path / 'out.root'}", "options.executor.type=dask",
        *overrides])
    return JobSpec.from_config(cfg)


def unit(index: int, path: Path) -> WorkUnit:
    return WorkUnit(index, str(path), 0, PER_FILE, index * PER_FILE)


def test_a_worker_opens_only_the_files_of_its_units(tmp_path, monkeypatch):
    """Was: the worker's first unit opened all 13 inputs (its begin_job's file check), and 14 opens for
    two units of one file; now the unit's file only, checked when first reached."""
    parts = split(tmp_path, 13)
    job = spec(tmp_path, parts)
    opened = counted_opens(monkeypatch)
    status, result = run_unit(job, unit(3, parts[3]))
    assert status == "ok", result
    assert set(opened) == {parts[3].name}  # was every part
    assert result.summary.events_processed == PER_FILE
    status, result = run_unit(job, unit(7, parts[7]))
    assert status == "ok" and result.summary.events_processed == PER_FILE
    assert set(opened) == {parts[3].name, parts[7].name}


DECLARED = [f"modules.vae.inputs=[{{features: [log_pt, deta, dphi, {CHARGE}], n_constituents: 50}}]",
            "modules.anomalyFilter.threshold=-1.0e+30"]


@pytest.fixture
def declared(tmp_path) -> list[str]:
    """A model reading the constituents' charge (a declared input): its overrides."""
    pytest.importorskip("onnx")
    from tests.test_input_contract import W4, linear_model

    model = linear_model(tmp_path / "m.onnx", [("x", [50, 4], W4.reshape(1, 1, 4))])
    return [f"modules.vae.model={model}", *DECLARED]


def test_a_file_without_a_declared_branch_fails_its_own_unit_naming_it(tmp_path, declared):
    """One input lacks a declared input's branch: the unit of that file fails (exit 3) naming it; a unit of
    a good file runs. Was: every unit failed with the bad file's line, whatever its own file (each worker's
    begin_job checked every input)."""
    files = split(tmp_path, 4, charge=True)
    (tmp_path / "plain").mkdir()
    files[2] = split(tmp_path / "plain", 3)[2]
    job = spec(tmp_path, files, *declared)
    status, result = run_unit(job, unit(0, files[0]))
    assert status == "ok", result  # was "failed": unit 0 (charge00.root ...): ... in part02.root
    status, (message, code, _, _) = run_unit(job, unit(2, files[2]))
    assert (status, code) == ("failed", 3)
    assert f"feature '{CHARGE}'" in message and f"in {files[2]}" in message and "\n" not in message


def test_a_skipped_file_without_a_declared_branch_is_named_once_and_not_read(tmp_path, declared):
    """skipBadFiles: the file lacking the declared branch is skipped whole, named once, as locally; its
    units read none of it. Was: skipped whole at begin_job and then read by its unit all the same, which
    failed on the missing branch and named it a second time ("entries 0-25 skipped ... KeyInFileError")."""
    files = split(tmp_path, 3, charge=True)
    (tmp_path / "plain").mkdir()
    files[1] = split(tmp_path / "plain", 2)[1]
    job = spec(tmp_path, files, *declared, "source.skipBadFiles=true")
    lines = []
    for index in (1, 0, 1):  # the bad file's unit, a good one, the bad file's again (a second unit of it)
        status, result = run_unit(job, unit(index, files[index]))
        assert status == "ok", result
        assert result.summary.events_processed == (PER_FILE if index == 0 else 0)
        lines += [line for line in result.summary.bad_files if line not in lines]
    assert len(lines) == 1 and lines[0].startswith(f"{files[1]}: whole file skipped (") and CHARGE in lines[0]


@pytest.mark.parametrize("skip_bad", ["false", "true"])
def test_a_declared_branch_no_file_has_is_still_a_configuration_error(tmp_path, declared, skip_bad):
    """No input has the declared branch (a misspelt feature): exit 2, "no input file has it", as locally and
    as before, though the worker now checks its units' files only."""
    files = split(tmp_path, 3)
    job = spec(tmp_path, files, *declared, f"source.skipBadFiles={skip_bad}")
    status, (message, code, _, _) = run_unit(job, unit(1, files[1]))
    assert (status, code) == ("failed", 2)
    assert f"feature '{CHARGE}'" in message and "no input file has it: fix the feature name" in message


def test_consecutive_units_of_a_file_open_it_once_and_end_job_closes_it(tmp_path, monkeypatch):
    """A worker reopened a unit's file for every unit (and once more to check it): 3 opens for 2 units of
    one file, each open re-reading the file's directory and the tree's metadata. Now the file stays open
    between them, and end_job closes it."""
    parts = split(tmp_path, 1)
    job = spec(tmp_path, parts)
    opened = counted_opens(monkeypatch)
    for index, (a, b) in enumerate(((0, 12), (12, PER_FILE))):
        status, result = run_unit(job, WorkUnit(index, str(parts[0]), a, b, a))
        assert status == "ok" and result.summary.events_processed == b - a
    assert opened == [parts[0].name]  # was 3 (the file check's, then one per unit)
    built = next(iter(worker._CACHE.values()))
    trees = [tree for tree, _ in built.process.source._open_files._trees.values()]
    assert len(trees) == 1 and not trees[0].file.closed
    built.process.end_job()
    assert trees[0].file.closed


def test_the_files_kept_open_are_bounded_and_the_oldest_closed_first(tmp_path):
    from hltrun.modules.source.open_files import OpenFiles

    parts = split(tmp_path, 3)
    kept = OpenFiles(size=2)
    trees = [uproot.open(p)["Events"] for p in parts]
    for path, tree in zip(parts, trees):
        kept.give(str(path), tree)
    assert [t.file.closed for t in trees] == [True, False, False]
    assert kept.take(str(parts[0])) is None and kept.take(str(parts[1])) is trees[1]  # taken: the caller's alone
    kept.give(str(parts[1]), trees[1])
    kept.close()
    assert all(t.file.closed for t in trees)


def test_a_file_rewritten_since_it_was_kept_open_is_opened_again(tmp_path, monkeypatch):
    """A worker keeps its Process, and so its open files, from one job to the next of a cluster: a file
    rewritten in between must be read anew, not from the old handle (the old file's events)."""
    (path,) = split(tmp_path, 1)
    job = spec(tmp_path, [path])
    status, result = run_unit(job, unit(0, path))
    assert status == "ok" and list(result.summary.source["lumis_per_file"][str(path)]) == ["1:1"]
    (tmp_path / "rsg").mkdir()
    split(tmp_path / "rsg", 1, src=ROOT / "data" / "rsg_ww_3p5TeV.root")[0].replace(path)  # run 3, 25 entries too
    opened = counted_opens(monkeypatch)
    status, result = run_unit(job, unit(0, path))
    assert status == "ok" and opened == [path.name]  # was none: the old handle read on
    assert list(result.summary.source["lumis_per_file"][str(path)]) == ["3:1"]  # the new file's events


def test_a_file_a_worker_skips_whole_is_not_counted_in_the_jobs_entries_as_locally(tmp_path, declared):
    """skipBadFiles, one input lacking a declared input's branch (which no plan can see: the workers skip it whole
    when they reach it): the job's files and entries are those a local run counts, the skipped file's left out, so
    that the entries in files are the events read and those given up. Was: the client's plan counted it (4 files,
    100 entries, 75 read, 0 bad entries: 25 entries neither read nor given up), where a local run counts 3 and 75."""
    import time

    from hltrun.framework.executors import execute

    pytest.importorskip("distributed", reason='Dask tests need the dist extra: pip install -e ".[dist]"')
    files = split(tmp_path, 4, charge=True)
    (tmp_path / "plain").mkdir()
    files[2] = split(tmp_path / "plain", 3)[2]
    counts = {}
    for mode in ("local", "dask"):
        cfg = load(ROOT / "configs" / "path.yaml", [
            f"source.files=[{', '.join(map(str, files))}]", "modules.vae.backend=onnxruntime", *declared,
            "options.accelerators=[cpu]", f"modules.out.file={tmp_path / f'{mode}.root'}", "source.skipBadFiles=true",
            f"options.executor.type={mode}", "options.executor.workers=2", "options.executor.eventsPerTask=10"])
        outcome = execute(cfg, None, time.perf_counter(), progress=False)
        s = outcome.result.summary
        assert s.failure is None or s.failure == "", s.failure
        counts[mode] = ({k: s.source.get(k) for k in ("files", "entries_in_files", "read", "bad_files", "bad_entries",
                                                      "bad_entries_per_file")}, len(s.bad_files))
    assert counts["local"][0]["entries_in_files"] == 3 * PER_FILE  # the local run's figures, as the test reads them
    assert counts["dask"] == counts["local"]


def test_a_bad_file_mended_between_two_jobs_of_a_cluster_is_read_in_the_second(tmp_path, declared):
    """A worker keeps its Process from one job to the next of a cluster (the same configuration run again): a file
    it skipped whole in the first job (skipBadFiles; a declared input's branch missing), rewritten with the branch
    before the second, is checked again and read, and the second job names no bad file, not even in a unit of
    another file run before it. Was: the first job's verdict stood, the mended file's 25 events were not read, and
    every unit of the second job named it with the first job's reason."""
    files = split(tmp_path, 2, charge=True)
    mended = tmp_path / "mended.root"
    files[1].replace(mended)
    (tmp_path / "plain").mkdir()
    split(tmp_path / "plain", 2)[1].replace(files[1])  # the second input lacks the charge branch
    first = spec(tmp_path, files, *declared, "source.skipBadFiles=true")
    status, result = run_unit(first, unit(1, files[1]))
    assert status == "ok" and result.summary.events_processed == 0
    assert [line.split(": ")[0] for line in result.summary.bad_files] == [str(files[1])]
    mended.replace(files[1])
    second = spec(tmp_path, files, *declared, "source.skipBadFiles=true")  # the same configuration, run again
    assert second.key == first.key  # the worker's Process of the first job runs it
    for index in (0, 1):
        status, result = run_unit(second, unit(index, files[index]))
        assert status == "ok", result
        assert result.summary.events_processed == PER_FILE  # was 0 for the mended file: the first job's check
        assert result.summary.bad_files == []  # was the first job's line, in both units
    assert len(worker._CACHE) == 1
