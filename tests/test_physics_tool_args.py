"""The physics tools' command lines (``python -m hltrun.tools.physics.make_large_sample``, ``train_vae``): bad
arguments are one line and an exit code, not a traceback or a silently empty sample; outputs are written
whole (framework/atomic.py) or not at all."""
from __future__ import annotations

from pathlib import Path

import pytest
import uproot

from hltrun.tools.physics.make_large_sample import main

QCD = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"


@pytest.mark.parametrize("events", ["0", "-5"])
def test_a_non_positive_count_is_refused(events, tmp_path, capsys):
    """--events 0 wrote an empty 'sample' and said so with exit 0."""
    with pytest.raises(SystemExit) as stopped:
        main(["--events", events, "--out", str(tmp_path / "s.root")])
    assert stopped.value.code == 2
    assert "argument --events: must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("what", ["missing", "corrupt"])
def test_a_bad_input_is_one_line_exit_3(what, tmp_path, capsys):
    bad = tmp_path / ("nope.root" if what == "missing" else "cut.root")
    if what == "corrupt":
        bad.write_bytes(QCD.read_bytes()[:3000])
    assert main(["--events", "10", "--inputs", str(bad), "--out", str(tmp_path / "s.root")]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "copy:" not in line]  # the bar
    assert len(err) == 1 and err[0].startswith("make_large_sample: ") and str(bad) in err[0]
    assert not (tmp_path / "s.root").exists() and not list(tmp_path.glob("*.tmp"))


def test_an_unwritable_out_is_one_line_exit_4(tmp_path, capsys):
    assert main(["--events", "10", "--out", str(tmp_path)]) == 4
    assert capsys.readouterr().err.strip() == f"make_large_sample --out: {tmp_path} is a folder, not a file name"


def test_a_small_sample(tmp_path):
    out = tmp_path / "s.root"
    assert main(["--events", "30", "--inputs", str(QCD), "--out", str(out)]) == 0
    assert uproot.open(out)["Events"].num_entries == 30


def _renumbered(src: Path, dest: Path, lumi, event) -> Path:
    """The first len(event) events of ``src`` with other lumi and event numbers (run 362000)."""
    import numpy as np

    from hltrun.modules.rootio import branch_groups, regroup, write_nanoaod

    with uproot.open(src) as f:
        tree = f["Events"]
        data = regroup(tree.arrays(entry_stop=len(event)), branch_groups(tree))
    data.update(run=np.full(len(event), 362_000, np.uint32), luminosityBlock=np.asarray(lumi, np.uint32),
                event=np.asarray(event, np.uint64))
    with uproot.recreate(dest) as f:
        write_nanoaod(f, "Events", data)
    return dest


def _ids(path: Path) -> list[tuple[int, int, int]]:
    a = uproot.open(path)["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
    return list(zip(a["run"].tolist(), a["luminosityBlock"].tolist(), a["event"].tolist()))


def test_copies_of_a_sample_numbered_like_data_keep_every_id_unique(tmp_path):
    """Lumis past 1000 and events past 10^7 (real data's numbering, or another generator's): a copy added a
    fixed 1000 / 10^7, so copy 1 of (1, 1) was (1001, 10^7 + 1), an original's id, and the job skipped a
    quarter of this sample as duplicates."""
    import numpy as np

    k = np.arange(200)
    lumi, event = 1 + 1000 * (k % 2), 1 + k // 2 + 10_000_000 * (k % 2)
    src = _renumbered(QCD, tmp_path / "data_like.root", lumi, event)
    out = tmp_path / "s.root"
    assert main(["--events", "600", "--inputs", str(src), "--out", str(out)]) == 0
    ids = _ids(out)
    assert len(ids) == 600 and len(set(ids)) == 600
    assert ids[:200] == _ids(src)  # the first copy is the input itself


def test_copies_of_the_shipped_sample_keep_their_numbers(tmp_path):
    """On the shipped files a copy still adds 1000 to the lumi and 10^7 to the event (docstring)."""
    out = tmp_path / "s.root"
    assert main(["--events", "2600", "--inputs", str(QCD), "--out", str(out)]) == 0
    ids, first = _ids(out), _ids(QCD)
    assert ids[:2500] == first
    assert ids[2500:] == [(r, lumi + 1000, e + 10_000_000) for r, lumi, e in first[:100]]


def test_ids_without_room_for_a_copy_are_one_line_exit_3(tmp_path, capsys):
    src = _renumbered(QCD, tmp_path / "full.root", [2**32 - 5] * 10, range(1, 11))
    assert main(["--events", "20", "--inputs", str(src), "--out", str(tmp_path / "s.root")]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "copy:" not in line]
    assert len(err) == 1 and err[0].startswith(f"make_large_sample: {src}: its ids leave no room"), err
    assert not (tmp_path / "s.root").exists() and not list(tmp_path.glob("*.tmp"))


def test_train_vae_refuses_zero_epochs_and_a_missing_file_before_training(tmp_path):
    """--epochs 0 trained nothing and ended in a KeyError traceback ('val_loss'); a missing --train-file was
    uproot's FileNotFoundError traceback after TensorFlow had started."""
    from hltrun.tools.physics.train_vae import check_args, parse_args

    with pytest.raises(SystemExit) as stopped:
        parse_args(["--model", "conv", "--epochs", "0"])
    assert stopped.value.code == 2
    with pytest.raises(SystemExit) as stopped:
        check_args(parse_args(["--model", "conv", "--train-file", str(tmp_path / "nope.root")]))
    assert stopped.value.code == 2  # the line itself: test_an_argument_error_is_one_line_prog_message_exit_2


@pytest.mark.parametrize("tool, argv, line", [
    ("optimize_conv", ["--model", "{t}/nope.onnx", "--out", "{t}/o.onnx"], "optimize_conv: --model not found: {t}/nope.onnx"),
    ("conv_tflite", ["--model", "{t}/nope.onnx", "--out", "{t}/c.tflite"], "conv_tflite: --model not found: {t}/nope.onnx"),
    ("conv_tflite", ["--keras", "{t}", "--out", "{t}/c.tflite"], "conv_tflite: --keras {t} is a folder, not a file"),
    ("export_onnx", ["--models-dir", "{t}/none"], "export_onnx: --models-dir not found: {t}/none/conv_vae.keras"),
    ("export_onnx", ["--check-file", "{t}/nope.root"], "export_onnx: --check-file not found: {t}/nope.root"),
])
def test_a_missing_input_file_is_one_line_exit_2(tool, argv, line, tmp_path, capsys):
    """The model/sample a tool reads, named in one line before TensorFlow or ONNX loads it (they were
    FileNotFoundError / keras ValueError tracebacks)."""
    import importlib

    module = importlib.import_module(f"hltrun.tools.physics.{tool}")
    with pytest.raises(SystemExit) as stopped:
        module.main([a.format(t=tmp_path) for a in argv])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == line.format(t=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("tool, argv, line", [
    ("generate_events", ["--process", "nope"],
     "generate_events: --process: unknown process 'nope' in "),
    ("generate_events", ["--process", "qcd", "--events", "0"], "generate_events: --events must be at least 1, got 0"),
    ("generate_events", ["--process", "qcd", "--config", "{t}/nope.yaml"],
     "generate_events: --config not found: {t}/nope.yaml"),
    # a seed outside Pythia's range was build_tasks' ValueError traceback (exit 1); the range depends on the
    # process's seed offset and the chunk count, so 900000000 is fine for qcd's one chunk but not for two
    ("generate_events", ["--process", "qcd", "--seed", "-1", "--events", "5", "--out", "{t}/g.root"],
     "generate_events: --seed -1: qcd (1 chunks, seed offset 0) needs a seed from 1 to 900000000"),
    ("generate_events", ["--process", "qcd", "--seed", "900000000", "--events", "300", "--out", "{t}/g.root"],
     "generate_events: --seed 900000000: qcd (2 chunks, seed offset 0) needs a seed from 1 to 899999999"),
    ("generate_events", ["--process", "rsg_ww_3p5TeV", "--seed", "899000000", "--events", "5", "--out", "{t}/g.root"],
     "generate_events: --seed 899000000: rsg_ww_3p5TeV (1 chunks, seed offset 2000000) needs a seed from 1 to 898000000"),
    # --workers 0 or -2 ran serially without a word
    ("generate_events", ["--process", "qcd", "--workers", "0", "--events", "1", "--out", "{t}/g.root"],
     "generate_events: --workers must be at least 1, got 0"),
    ("quantize_models", ["--models", "nope", "--models-dir", "{t}"], "quantize_models: --models-dir not found: {t}/nope.onnx"),
    ("quantize_models", ["--background", "{t}/nope.root"], "quantize_models: --background not found: {t}/nope.root"),
    ("quantize_models", ["--signals", "{t}/nope.root"], "quantize_models: --signals not found: {t}/nope.root"),
    ("quantize_models", ["--max-events", "0"], "quantize_models: --max-events must be at least 1, got 0"),
    ("train_vae", ["--model", "conv", "--beta", "0"], "train_vae.py: --beta must be > 0, got 0.0"),
    ("train_vae", ["--model", "conv", "--train-file", "{t}/nope.root"], "train_vae.py: --train-file not found: {t}/nope.root"),
    ("conv_tflite", ["--out", "{t}/c.onnx"],
     "conv_tflite: --out {t}/c.onnx must end in .tflite (the tflite backend reads .tflite files)"),
    ("conv_tflite", ["--out", "{t}/c.tflite", "--check", "--card", "nope"],
     "conv_tflite: --check: thresholds.json has no model 'nope' (it has conv_vae, gcn_vae): give --card"),
])
def test_an_argument_error_is_one_line_prog_message_exit_2(tool, argv, line, tmp_path, capsys):
    """Argument errors of the older physics tools were ``raise SystemExit("msg")`` or ``return 1`` (exit 1,
    the code of a failed run, often without the tool's name), or a KeyError / FileNotFoundError traceback
    (generate_events' unknown --process or --config); now ``catalogue.usage_error``'s one line, exit 2, before
    any input is read. (generate_events' checks only: pythia8mc is not imported.)"""
    import importlib

    module = importlib.import_module(f"hltrun.tools.physics.{tool}")
    with pytest.raises(SystemExit) as stopped:
        module.main([a.format(t=tmp_path) for a in argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line.format(t=tmp_path)), err
    assert not list(tmp_path.iterdir())


def test_generate_events_without_pythia_says_so_in_one_line_before_generating(tmp_path, capsys):
    """Without pythia8mc (extra 'generate') it started the progress bar, then died in a
    ModuleNotFoundError traceback (exit 1) inside the first chunk. Looked up, never imported."""
    import importlib.util

    from hltrun.tools.physics.generate_events import main as generate_events

    if importlib.util.find_spec("pythia8mc") is not None:
        pytest.skip("pythia8mc is installed here")
    assert generate_events(["--process", "qcd", "--events", "1", "--out", str(tmp_path / "g.root")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['generate_events needs pythia8mc, which is not installed: pip install -e ".[generate]"  '
                   '(or: pip install "pythia8mc")']
    assert not list(tmp_path.iterdir())


def test_generate_events_refuses_an_unwritable_out_before_generating(tmp_path, capsys):
    from hltrun.tools.physics.generate_events import main as generate_events

    assert generate_events(["--process", "qcd", "--events", "1", "--out", str(tmp_path)]) == 4
    assert capsys.readouterr().err.strip() == f"generate_events --out: {tmp_path} is a folder, not a file name"


def test_generate_events_samples_of_other_seeds_share_no_event_id(tmp_path, monkeypatch):
    """Two independent samples of one process (--seed 80000000 and 81000000, as the README's commands make)
    were numbered run 1 + process, lumi chunk + 1, event 1 ... N alike: a job reading both skipped the whole
    second one as duplicates. The config's own seed keeps the shipped files' numbers (1 ... N). A fake chunk
    stands in for Pythia: only the numbering is under test."""
    from hltrun.tools.physics import generate_events as gen

    def fake_chunk(task):  # each event: two one-constituent jets
        n = task.n_events
        return gen.ChunkResult(
            task.chunk_index, n, 0.0, weight=[1.0] * n, pthat=[700.0] * n, mjj=[1500.0] * n, n_jets=[2] * n,
            jet_pt=[700.0, 650.0] * n, jet_eta=[0.1, -0.2] * n, jet_phi=[0.5, -2.6] * n, jet_mass=[80.0, 90.0] * n,
            jet_ncon=[1, 1] * n, n_cands=[2] * n, cand_pt=[700.0, 650.0] * n, cand_eta=[0.1, -0.2] * n,
            cand_phi=[0.5, -2.6] * n)

    monkeypatch.setattr(gen, "run_chunk", fake_chunk)
    monkeypatch.setattr(gen, "missing_generator", lambda: None)
    shipped = gen.DEFAULT_CONFIG.read_text()
    assert "\nseed: 20221129 " in shipped and '"PhaseSpace:pTHatMin = 600."' in shipped
    # a copy of the config with another seed (no --seed) is another independent sample, numbered 1 ... N
    # like the shipped files until judged on its events; so is the shipped seed with other settings
    (tmp_path / "other_seed.yaml").write_text(shipped.replace("\nseed: 20221129 ", "\nseed: 31415926 "))
    (tmp_path / "other_cut.yaml").write_text(shipped.replace('"PhaseSpace:pTHatMin = 600."', '"PhaseSpace:pTHatMin = 650."', 1))
    (tmp_path / "same.yaml").write_text(shipped)
    ids = {}
    for name, extra in (("default", []), ("a", ["--seed", "80000000"]), ("b", ["--seed", "81000000"]),
                        ("again", ["--seed", "20221129"]), ("copy", ["--config", str(tmp_path / "same.yaml")]),
                        ("other_seed", ["--config", str(tmp_path / "other_seed.yaml")]),
                        ("other_cut", ["--config", str(tmp_path / "other_cut.yaml")])):
        out = tmp_path / f"{name}.root"
        argv = ["--process", "qcd", "--events", "3", "--workers", "1", "--no-progress", "--out", str(out)]
        assert gen.main(argv + extra) == 0
        with uproot.open(out) as f:
            cols = f["Events"].arrays(["run", "luminosityBlock", "event"], library="np")
        ids[name] = set(zip(*(cols[k].tolist() for k in ("run", "luminosityBlock", "event"))))
        assert len(ids[name]) == 3
    assert sorted(e for _, _, e in ids["default"]) == [1, 2, 3]  # the shipped files' numbering
    assert ids["again"] == ids["copy"] == ids["default"]  # the shipped events again: the shipped ids
    others = [ids[k] for k in ("default", "a", "b", "other_seed", "other_cut")]
    assert all(not x & y for i, x in enumerate(others) for y in others[i + 1:]), others


def test_generate_events_ctrl_c_is_one_line_exit_130_and_no_file(tmp_path, monkeypatch, capsys):
    """Ctrl-C during generation (minutes to hours) was a KeyboardInterrupt traceback from inside the chunk loop;
    now one line and exit 130, as make_large_sample's, and no file. A chunk that raises stands in for Pythia."""
    from hltrun.tools.physics import generate_events as gen

    def interrupted(task):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "run_chunk", interrupted)
    monkeypatch.setattr(gen, "missing_generator", lambda: None)
    out = tmp_path / "g.root"
    try:
        code = gen.main(["--process", "qcd", "--events", "3", "--workers", "1", "--no-progress", "--out", str(out)])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped generate_events as a traceback")
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "generate_events: interrupted by the user (Ctrl-C); nothing written"]
    assert not list(tmp_path.iterdir())
