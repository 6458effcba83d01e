"""framework/provenance.py: the lines hltdiff prints for what differs between two jobs' records, and the
record an output keeps (written by a job, read back, compared by hltdiff end to end)."""

from __future__ import annotations

import json

import uproot

from hltrun.framework.provenance import differences, record
from tests.helpers import run_config

VAE = {"backend": "onnxruntime", "device": "cpu", "model": "m/conv_vae.onnx", "model_id": "conv_vae",
       "model_sha256": "a" * 64}


def _record(**changes) -> dict:
    accelerators = {"vae": {**VAE, **changes.pop("vae", {})}}
    cuts = {"anomalyFilter": {"model": "conv_vae", "reduce": "max", "working_point": "inclusive", "threshold": 1.6,
                              **changes.pop("cut", {})}}
    return record(changes.pop("version", "0.1.0"), {"process": "X"}, {"accelerators": accelerators, "cuts": cuts})


def test_identical_records_have_no_difference():
    assert differences(_record(), _record()) == []


def test_another_network_is_named_with_its_engine():
    lines = differences(_record(), _record(vae={"model_id": "gcn_vae", "model_sha256": "b" * 64}))
    assert lines == ["scorer 'vae': network conv_vae (sha256 aaaaaaaaaaaa) on onnxruntime (cpu) (old) and "
                     "gcn_vae (sha256 bbbbbbbbbbbb) on onnxruntime (cpu) (new)"]


def test_a_retrained_file_of_one_name_on_one_engine_is_told_by_its_digest():
    lines = differences(_record(), _record(vae={"model_sha256": "c" * 64}))
    assert len(lines) == 1 and "another file (a retrained or re-exported network)" in lines[0]
    assert "aaaaaaaaaaaa" in lines[0] and "cccccccccccc" in lines[0]


def test_another_engine_is_not_called_another_network():
    """Each engine runs its own file of the network (.onnx, .tflite): their digests differ by nature."""
    lines = differences(_record(), _record(vae={"backend": "tflite", "model_sha256": "d" * 64}))
    assert lines == ["scorer 'vae': network conv_vae on onnxruntime (cpu) (old) and tflite (cpu) (new): the "
                     "engines' scores agree only within their tolerance"]


def _imported(onnx_digest: str, torch_version: str = "2.13.0") -> dict:
    """A scorer's choice for net.pt imported into ONNX: the cached ONNX file's digest is ``onnx_digest``."""
    return {"model": "/cache/hltrun/imported/net-0123.onnx", "model_id": "net.pt", "model_sha256": onnx_digest,
            "imported_from": {"file": "net.pt", "sha256": "e" * 64, "format": "TorchScript", "max_rel_diff": 1e-7,
                              "converter": f"torch.onnx.export (TorchScript exporter, dynamo=False), "
                                           f"torch {torch_version}"}}


def test_one_network_imported_twice_is_one_network():
    """An imported network runs a cached ONNX file holding the converter's version: after a torch upgrade the
    same net.pt ran as a file of another sha256 and hltdiff said "another file (a retrained or re-exported
    network)". The original's digest says which network; a converter change is said as such."""
    lines = differences(_record(vae=_imported("a" * 64)), _record(vae=_imported("b" * 64, "2.14.0")))
    assert len(lines) == 1 and "another file" not in lines[0], lines
    assert "the same network" in lines[0] and "torch 2.13.0 (old) and torch 2.14.0 (new)" in lines[0], lines
    assert "eeeeeeeeeeee" in lines[0] and "aaaaaaaaaaaa" not in lines[0], lines
    # the same converter, a file of other bytes (another machine's cache): nothing to say
    assert differences(_record(vae=_imported("a" * 64)), _record(vae=_imported("b" * 64))) == []
    # another original is another network, whatever the ONNX files
    other = {**_imported("a" * 64), "imported_from": {**_imported("a" * 64)["imported_from"], "sha256": "f" * 64}}
    lines = differences(_record(vae=_imported("a" * 64)), _record(vae=other))
    assert len(lines) == 1 and "another file" in lines[0] and "ffffffffffff" in lines[0], lines


def test_units_that_imported_one_network_are_one_variant():
    """Dask workers each import the .pt into their own cache: one network, one variant of the record."""
    from hltrun.framework.provenance import merged_record

    a, b = _record(vae=_imported("a" * 64)), _record(vae=_imported("b" * 64, "2.14.0"))
    assert "variants" not in merged_record([(0, a), (1, b)])


def test_a_changed_cut_and_version_and_a_missing_filter():
    new = _record(cut={"threshold": 1.7}, version="0.2.0")
    assert differences(_record(), new) == ["made by hltrun 0.1.0 (old) and hltrun 0.2.0 (new)",
                                           "filter 'anomalyFilter': threshold 1.6 (old) and 1.7 (new)"]
    del new["cuts"]["anomalyFilter"]
    assert "filter 'anomalyFilter' only in the old job" in differences(_record(), new)


OUT = """
process: {process}
source: {{type: TestCountingSource, n: 20}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  out: {{type: RootOutputModule, file: {file}, select_events: [p]}}
paths:
  p: [even]
endpaths:
  e: [out]
"""


def test_an_output_keeps_its_jobs_record_and_hltdiff_names_what_changed(write_config, tmp_path, capsys):
    from hltrun.modules.root_output import PROVENANCE_KEY, read_provenance
    from hltrun.tools.hltdiff import main

    a, b = tmp_path / "a.root", tmp_path / "b.root"
    _, process = run_config(write_config(OUT.format(process="ONE", file=a), "a.yaml"))
    run_config(write_config(OUT.format(process="TWO", file=b), "b.yaml"))
    assert uproot.open(a).classname_of(PROVENANCE_KEY) == "TObjString"
    rec = read_provenance(a)
    assert rec["configuration"] == json.loads(json.dumps(process.config.to_dict()))  # every default filled in
    assert rec["configuration"]["process"] == "ONE" and rec["configuration"]["modules"]["even"]["divisor"] == 2
    assert main([str(a), str(b)]) == 0
    assert "note: what made them differs" not in capsys.readouterr().out  # the record names no scorer, no cut


def test_hltdiff_says_nothing_of_a_file_without_a_record(tmp_path, capsys):
    """An older output (no Provenance key) is compared as before."""
    from hltrun.tools.hltdiff import provenance_notes

    old = tmp_path / "old.root"
    with uproot.recreate(old) as f:
        f["Events"] = {"run": [1], "luminosityBlock": [1], "event": [1]}
    assert provenance_notes([old], [old]) == []


def _strict(text: str) -> dict:
    """JSON as strict readers (jq, JavaScript, Go, ROOT's TBufferJSON) take it: no NaN, Infinity."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_non_finite_timing_is_written_as_strict_json(write_config, tmp_path, monkeypatch):
    """auto's table gives ``max_rel_diff: inf`` for an engine that disagrees (a value against NaN, an output
    it lacks); ``json.dumps`` wrote it as ``Infinity``, which strict JSON readers refuse: the whole record
    became unreadable outside Python. A non-finite number is null (its row's ``agrees: false`` says why)."""
    from hltrun.framework.context import AcceleratorChoice
    from hltrun.modules.root_output import PROVENANCE_KEY
    from tests.plugins import Square

    rows = ({"backend": "onnxruntime", "us_per_jet": 2.0, "max_rel_diff": 0.0, "agrees": True},
            {"backend": "tflite", "us_per_jet": float("nan"), "max_rel_diff": float("inf"), "agrees": False})
    monkeypatch.setattr(Square, "begin_job", lambda self, ctx: ctx.record_accelerator(
        AcceleratorChoice("onnxruntime", "cpu", "auto", "m.onnx", "m", rows)), raising=False)
    out = tmp_path / "o.root"
    summary, _ = run_config(write_config(f"""
        process: T
        source: {{type: TestCountingSource, n: 4}}
        modules:
          sq: {{type: TestSquare}}
          out: {{type: RootOutputModule, file: {out}}}
        paths: {{p: [sq]}}
        endpaths: {{e: [out]}}
        """))
    timings = _strict(str(uproot.open(out)[PROVENANCE_KEY]))["accelerators"]["sq"]["timings"]
    assert timings[1] == {"backend": "tflite", "us_per_jet": None, "max_rel_diff": None, "agrees": False}
    assert timings[0]["us_per_jet"] == 2.0  # a finite number stays a number
    # hltrun.json's facts are the same record's: strict too (they wrote Infinity as well)
    assert _strict(json.dumps(summary.facts))["accelerators"]["sq"]["timings"] == timings


def test_a_fixed_threshold_on_scores_of_no_named_model_is_recorded(write_config, tmp_path):
    """A filter with its own ``threshold`` on a scorer that names no model (a user's plugin): the cut was
    recorded only once a model was known (begin_job from the scorer, or its first scores' model), so the
    provenance and facts.cuts lacked the filter that made the bits."""
    import tests.test_nanoaod_types  # noqa: F401 - registers TestJetScores (scores of no named model)
    from hltrun.modules.root_output import read_provenance

    out = tmp_path / "o.root"
    _, process = run_config(write_config(f"""
        process: T
        source: {{type: TestCountingSource, n: 6}}
        modules:
          jets: {{type: TestJetScores}}
          cut: {{type: AnomalyScoreFilter, src: jets, threshold: 1.0}}
          out: {{type: RootOutputModule, file: {out}}}
        paths: {{p: [jets, cut]}}
        endpaths: {{e: [out]}}
        """))
    assert read_provenance(out)["cuts"] == {"cut": {"model": None, "reduce": "max", "working_point": "inclusive",
                                                    "threshold": 1.0}}


def test_hltdiff_names_the_network_that_differs_between_two_outputs(write_config, tmp_path, monkeypatch, capsys):
    """End to end, the note's positive side: two jobs whose scorer ran another file of one network (a
    retrained model under the same name) write records hltdiff tells apart, as one note line per cause."""
    from hltrun.framework.context import AcceleratorChoice
    from hltrun.tools.hltdiff import main
    from tests.plugins import Square

    outputs = {}
    for digest in ("a", "b"):
        monkeypatch.setattr(Square, "begin_job", lambda self, ctx, d=digest: ctx.record_accelerator(
            AcceleratorChoice("onnxruntime", "cpu", "asked", "m.onnx", "m", (), d * 64)), raising=False)
        outputs[digest] = tmp_path / f"{digest}.root"
        run_config(write_config(f"""
            process: T
            source: {{type: TestCountingSource, n: 4}}
            modules:
              sq: {{type: TestSquare}}
              out: {{type: RootOutputModule, file: {outputs[digest]}}}
            paths: {{p: [sq]}}
            endpaths: {{e: [out]}}
            """, f"{digest}.yaml"))
    assert main([str(outputs["a"]), str(outputs["b"])]) == 0  # the same bits: the note explains nothing here
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: what made them")]
    assert notes == ["note: what made them differs: scorer 'sq': network m (sha256 aaaaaaaaaaaa) (old) and m "
                     "(sha256 bbbbbbbbbbbb) (new) on onnxruntime (cpu): another file (a retrained or re-exported "
                     "network)"]


def test_a_record_of_another_form_is_not_read_and_hltdiff_compares_as_before(tmp_path, capsys):
    """A Provenance of valid JSON in a form this version does not write (a later hltrun's, another tool's
    key): ``read_provenance`` promises None for it, but checked only that it was an object, and hltdiff
    stopped on a TypeError traceback comparing a cut that was a number, not a mapping."""
    from hltrun.modules.root_output import read_provenance
    from hltrun.tools.hltdiff import main

    files = []
    for name, text in (("old", '{"cuts": {"f": 1.6}}'), ("new", '{"cuts": {"f": 1.7}, "accelerators": []}')):
        files.append(tmp_path / f"{name}.root")
        with uproot.recreate(files[-1]) as f:
            f["Events"] = {"run": [1], "luminosityBlock": [1], "event": [1], "HLT_A": [True]}
            f["Provenance"] = text
    assert [read_provenance(path) for path in files] == [None, None]
    assert main([str(path) for path in files]) == 0
    assert "outputs agree" in capsys.readouterr().out


def test_a_setting_that_decides_is_named_and_where_or_how_fast_is_not():
    """Two outputs that differ because a module's setting changed named no cause ("outputs DIFFER" alone);
    file names, threads, options and services differ between any two jobs and are not causes."""
    def configured(max_jets: int, files: str, threads: int, out: str) -> dict:
        return record("0.1.0", {"process": "X", "options": {"numberOfThreads": threads},
                                "source": {"type": "RootJetSource", "files": [files], "chunk_size": 10},
                                "modules": {"batcher": {"type": "JetBatcher", "max_jets": max_jets},
                                            "out": {"type": "RootOutputModule", "file": out}},
                                "paths": {"p": ["batcher"]}, "services": {"Timing": {}}}, {})

    old = configured(2, "a.root", 1, "o1.root")
    assert differences(old, configured(2, "b.root", 4, "o2.root")) == []
    assert differences(old, configured(1, "a.root", 1, "o1.root")) == [
        "configuration: modules.batcher.max_jets 2 (old) and 1 (new)"]
    new = configured(2, "a.root", 1, "o1.root")
    new["configuration"]["paths"]["p"] = ["batcher", "out"]
    new["configuration"]["modules"].update({f"extra{i}": {"type": "T"} for i in range(7)})
    lines = differences(old, new)
    assert lines[0] == "configuration: modules.extra0.type - (old) and T (new)"
    assert len(lines) == 7 and lines[-1] == "configuration: and 2 more setting(s) that differ"


def test_units_variants_group_by_what_decides_whatever_order_they_finish_in():
    """A distributed job's units: those that ran the same engine, network and cut are one variant (auto's
    timings and reason differ between two workers timing the same choice and do not split them); the
    result does not depend on the order the units finished in; one variant writes no ``variants``."""
    from itertools import permutations

    from hltrun.framework.provenance import merge_variants, merged_record, readable, variant, variants_line, with_variants

    a, b = _record(), \
        _record(vae={"backend": "tflite", "model": "m/conv_vae.tflite", "model_sha256": "c" * 64})
    # the same file, timed again, found by a worker in another folder: one variant
    a_timed_again = _record(vae={"reason": "timed again", "timings": [{"us_per_jet": 2.0}], "model": "/abs/m/conv_vae.onnx"})
    units = [(0, a, "w1"), (1, b, "w2"), (2, a_timed_again, "w1"), (3, b, "w2")]
    results = set()
    for order in permutations(units):
        merged: list = []
        for unit, rec, worker in order:
            merged = merge_variants(merged, [variant(rec, [unit], [worker])])
        results.add(json.dumps(merged, sort_keys=True))
        assert [v["units"] for v in merged] == [[0, 2], [1, 3]] and merged[0]["accelerators"] == a["accelerators"]
    assert len(results) == 1  # the first unit's reason and timings kept, in any order
    assert "variants" not in with_variants([variant(a, [0, 1])])
    line = variants_line(merged)
    assert line == "scorer 'vae' onnxruntime (cpu) in 2 unit(s) on w1, tflite (cpu) in 2 unit(s) on w2"
    record = merged_record([(0, a), (1, b), (2, a)])
    assert readable(record) and [v["units"] for v in record["variants"]] == [[0, 2], [1]]
    assert record["accelerators"] == a["accelerators"] and record["configuration"] == a["configuration"]
    assert differences(a, record) == [f"the new job's units were not all made the same way: "
                                      f"scorer 'vae' onnxruntime (cpu) in 2 unit(s), tflite (cpu) in 1 unit(s)"]
    assert merged_record([(0, a), (1, a_timed_again)]) == a  # one way: the record a local run writes
    assert not readable({**record, "variants": [{"accelerators": [], "units": [0]}]})
    assert not readable({**record, "variants": "two"})
    no_digest = [_record(vae={"model_sha256": "", "model": name}) for name in ("m/a.onnx", "m/b.onnx")]
    assert len(merged_record(list(enumerate(no_digest)))["variants"]) == 2  # without a digest, the path tells
