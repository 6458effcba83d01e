"""``hltbench verdict``: one command from a model file to a verdict (issue 19 item 4).

The models are tiny ONNX graphs built here (tests/fakes/onnx_models.py: ``score`` and ``kl``; below: a
single output named ``output``, and one hltrun cannot feed). What is checked is where the figures come
from, not how fast anything is: the verdict's path figures are the job's own results object (the one
hltrun.json is written from, caught here as the Timing service builds it), an ``hltrun`` run of the same
command agrees on everything that does not depend on the clock, the verdict line's arithmetic holds on
the JSON, the HTML page is self-contained, and bad input is one line with exit 2 or 4.
"""
from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")
pytest.importorskip("onnxruntime", reason="onnxruntime (extra 'cpu') not installed")
from onnx import TensorProto, helper  # noqa: E402

from hltrun.framework.cli import main as hltrun  # noqa: E402
from hltrun.tools.bench.cli import main as hltbench  # noqa: E402
from hltrun.tools.bench.verdict import FIGURES, fmt_ms  # noqa: E402
from tests.fakes.onnx_models import write_vae_like  # noqa: E402

EVENTS = 120
FAST = ["--events", str(EVENTS), "--batches", "1", "4", "--min-time", "0.02"]


def second_engine() -> list[str]:
    """A second engine beside onnxruntime when it is installed: JAX (IREE compiles every batch bucket of
    the path and of the sweep, ~15 s on the shared 2-core machine; JAX ~3 s)."""
    import importlib.util

    return ["jax"] if importlib.util.find_spec("jax") else []


def one_output_model(path: Path, n_constituents: int = 100, output: str = "output") -> Path:
    """(N, n, 3) float32 -> ``output`` (N,) = sum over constituents and features: PyTorch's default name."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], [output], keepdims=0)], "one_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_constituents, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N"])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def verdict(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One verdict on a score + kl model, onnxruntime and (if installed) JAX; every Timing result the
    jobs built is caught as it is built (``timing_results.build_result``), before any file is written."""
    import hltrun.framework.services.timing_results as timing_results

    tmp = tmp_path_factory.mktemp("verdict")
    model = write_vae_like(tmp / "mymodel.onnx")
    built: list[dict] = []
    real_build = timing_results.build_result

    def catching(**kw):
        result, arrays = real_build(**kw)
        built.append(result)
        return result, arrays

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))  # IREE's compiled modules, not the user's cache
        mp.setattr(timing_results, "build_result", catching)
        rc = hltbench(["verdict", str(model), "--engines", "onnxruntime", *second_engine(), *FAST,
                       "--out-dir", str(tmp / "out")])
    doc = json.loads((tmp / "out" / "verdict.json").read_text())
    return {"rc": rc, "tmp": tmp, "model": model, "doc": doc, "built": built}


def test_it_runs_and_names_the_engines(verdict: dict) -> None:
    doc = verdict["doc"]
    assert verdict["rc"] == 0
    assert [r["engine"] for r in doc["engines"]] == ["onnxruntime", *second_engine()]
    assert all(r["events"] == EVENTS and r["scorer_labels"] == ["vae"] for r in doc["engines"])
    assert doc["best"] in {r["engine"] for r in doc["engines"]}


def test_figures_are_the_jobs_own_results_not_recomputed(verdict: dict) -> None:
    """Each engine's figures are values of the Timing result its job built (caught as it was built),
    and of the hltrun.json hltrun's report writer wrote from it: equal to the last bit."""
    doc, built = verdict["doc"], verdict["built"]
    assert len(built) == len(doc["engines"])  # one Timing result per path run, built once (cached)
    for r, result in zip(doc["engines"], built):
        report = json.loads((Path(r["report_dir"]) / "hltrun.json").read_text())
        for name, where in FIGURES.items():
            from_report = report["services"]
            for key in where:
                from_report = from_report[key]
            assert r[name] == from_report, (r["engine"], name)
            if where[0] == "Timing":
                caught = result
                for key in where[1:]:
                    caught = caught[key]
                assert r[name] == caught, (r["engine"], name)
        # the places named here by hand, not through FIGURES: a wrong entry there cannot hide
        assert r["real_per_event_ms"] == result["farm"]["real_per_event_ms"]
        assert r["cores_real"] == result["farm"]["cores_real"]
        assert r["share_of_budget"] == result["budget"]["mean_share_of_budget"]
        assert r["fits"] is result["budget"]["fits"]
        assert r["scorer_real_per_event_ms"] == result["farm"]["highlight"]["real_per_event_ms"]
        assert r["peak_rss_mb"] == report["services"]["Memory"]["peak_rss_mb"] > 0


def test_an_hltrun_run_of_the_same_command_agrees(verdict: dict, tmp_path: Path) -> None:
    """The command the verdict prints, run by ``hltrun`` itself: the same events, decisions, budget, rate
    and scorer; its times differ (another run), so the farm's own relations are checked in both."""
    r = verdict["doc"]["engines"][0]
    argv = shlex.split(r["hltrun_command"])[1:]
    argv[argv.index("--report-dir") + 1] = str(tmp_path / "report")
    argv = [a if not a.startswith("modules.out.file=") else f"modules.out.file={tmp_path / 'out.root'}" for a in argv]
    assert hltrun([*argv, "-q"]) == 0
    job = json.loads((tmp_path / "report" / "hltrun.json").read_text())
    timing = job["services"]["Timing"]
    assert job["job"]["events_processed"] == r["events"] == EVENTS
    assert job["job"]["events_passed"] == r["passed"]
    assert timing["budget"]["budget_ms"] == r["budget_ms"] == 100.0  # configs/path.yaml's options.budgetMs
    assert timing["farm"]["input_rate_hz"] == r["input_rate_hz"] == 100_000.0
    assert timing["farm"]["highlight"]["labels"] == r["scorer_labels"]
    for fig in (r, {"real_per_event_ms": timing["farm"]["real_per_event_ms"], "cores_real": timing["farm"]["cores_real"],
                    "input_rate_hz": timing["farm"]["input_rate_hz"]}):
        assert fig["cores_real"] == pytest.approx(fig["input_rate_hz"] * fig["real_per_event_ms"] * 1e-3, rel=1e-12)


def test_verdict_line_arithmetic(verdict: dict) -> None:
    doc = verdict["doc"]
    best = min(doc["engines"], key=lambda r: r["scorer_real_per_event_ms"])  # the engine is what differs
    assert doc["best"] == best["engine"] == doc["verdict"]["engine"]
    budget, t = doc["budget_ms"], best["real_per_event_ms"]
    assert best["share_of_budget"] == pytest.approx(t / budget, rel=1e-9)
    assert best["scorer_share_of_budget"] == pytest.approx(best["scorer_real_per_event_ms"] / budget, rel=1e-9)
    assert doc["verdict"]["fits"] is (t <= budget) is best["fits"]
    line = doc["verdict"]["line"]
    assert line.startswith("verdict: fits — mymodel on " + best["engine"])
    assert f"costs {fmt_ms(t)} ms/event" in line
    assert f"{fmt_ms(100 * t / budget)} % of the {budget:g} ms budget" in line
    assert f"{fmt_ms(budget - t)} ms to spare" in line
    assert f"{best['cores_real']:,.1f} cores at {best['input_rate_hz']:,.0f} Hz" in line


def test_no_cut_in_a_card_runs_permissive_and_says_so(verdict: dict) -> None:
    doc = verdict["doc"]
    assert "modules.anomalyFilter.threshold=-1.0e+30" in doc["overrides"]
    assert any("no cut for mymodel" in n and "does not change the scorer's cost" in n for n in doc["notes"])
    # the filter's own label in the advice, a command the user can copy (it said modules.<filter>.threshold)
    assert any(n.endswith("--set modules.anomalyFilter.threshold=X") for n in doc["notes"]), doc["notes"]
    assert all(r["passed"] > 0 for r in doc["engines"])


def test_csv_and_html(verdict: dict) -> None:
    out = verdict["tmp"] / "out"
    rows = list(csv.DictReader((out / "verdict.csv").open()))
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["engine"] for r in ok] == [r["engine"] for r in verdict["doc"]["engines"]]
    assert float(ok[0]["real_per_event_ms"]) == verdict["doc"]["engines"][0]["real_per_event_ms"]
    assert ok[0]["us_per_jet_b4"] and float(ok[0]["us_per_jet_b4"]) > 0
    page = (out / "verdict.html").read_text()
    assert verdict["doc"]["verdict"]["line"].split(" — ")[1][:30] in page
    # self-contained: no external source, stylesheet, script or link; every image inline
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", page, re.I)
    assert not re.findall(r"<(?:script|link|iframe|object|embed)\b", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) >= 1
    assert not list(out.glob("*.tmp"))  # written atomically: no temporaries left


def test_a_single_output_named_output_without_kl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyTorch's default output name and no kl: the outputs' default rule; a budget it cannot meet."""
    model = one_output_model(tmp_path / "torchish.onnx")
    rc = hltbench(["verdict", str(model), "--engines", "onnxruntime", *FAST, "--budget-ms", "0.001",
                   "--input-rate-hz", "1000", "--out-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "verdict.json").read_text())
    r = doc["engines"][0]
    assert r["budget_ms"] == 0.001 and r["input_rate_hz"] == 1000.0 and r["fits"] is False
    assert r["share_of_budget"] == pytest.approx(r["real_per_event_ms"] / 0.001, rel=1e-9)
    assert out.rstrip().splitlines()[-1] == doc["verdict"]["line"]  # the verdict is the last line
    assert doc["verdict"]["line"].startswith("verdict: does not fit — torchish on onnxruntime")
    assert f"exceeds the 0.001 ms budget by {fmt_ms(r['real_per_event_ms'] - 0.001)} ms" in doc["verdict"]["line"]


def test_outputs_mapped_by_set_reach_the_path_and_the_sweep(tmp_path: Path) -> None:
    """Two outputs, none named ``score``: one ``--set`` mapping serves the path run and the engine-alone
    sweep alike (without it the sweep could not find the score and would say so in a note)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["recon_err"], keepdims=0),
         helper.make_node("Neg", ["recon_err"], ["kl_div"])], "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"]) for n in ("recon_err", "kl_div")],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    rc = hltbench(["verdict", str(tmp_path / "two.onnx"), "--engines", "onnxruntime", "--events", "50",
                   "--batches", "2", "--min-time", "0.01", "--set", "modules.vae.outputs={score: recon_err, kl: kl_div}",
                   "--out-dir", str(tmp_path / "out")])
    doc = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert rc == 0 and doc["engines"][0]["us_per_jet"]["2"] > 0
    assert not any("not measured" in n for n in doc["notes"])
    assert "modules.vae.outputs={score: recon_err, kl: kl_div}" in doc["engines"][0]["hltrun_command"]


def test_a_card_cut_is_used_with_no_note(tmp_path: Path) -> None:
    model = one_output_model(tmp_path / "carded.onnx")
    (tmp_path / "thresholds.json").write_text(json.dumps({"carded": {"bkg_eff_1e-2": 1e9}}))  # passes nothing
    rc = hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "50", "--batches", "2",
                   "--min-time", "0.01", "--out-dir", str(tmp_path / "out")])
    doc = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert rc == 0 and doc["engines"][0]["passed"] == 0
    assert not any("threshold" in o for o in doc["overrides"]) and not any("no cut" in n for n in doc["notes"])


# ---------------------------------------------------------------------- bad input: one line, 2 or 4
def _one_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("hltbench verdict: "), err
    assert "Traceback" not in "\n".join(err)
    for w in words:
        assert w in last, (w, last)
    return last


def test_missing_model_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hltbench(["verdict", str(tmp_path / "nope.onnx"), "--out-dir", str(tmp_path / "o")]) == 2
    _one_line(capsys, "nope.onnx", "not found")
    assert not (tmp_path / "o").exists()


def test_not_a_model_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.txt").write_text("weights")
    assert hltbench(["verdict", str(tmp_path / "model.txt")]) == 2
    _one_line(capsys, "model.txt", ".onnx")


@pytest.mark.parametrize("name, content, words", [
    ("empty.onnx", b"", ["model file", "empty.onnx is empty"]),
    ("garbage.onnx", b"this is not onnx" * 10, ["model", "garbage.onnx is not an ONNX model (DecodeError"]),
    ("empty.keras", b"", ["model file", "empty.keras is empty"]),
    ("garbage.keras", b"not a zip archive", ["model", "garbage.keras is not a Keras model", "zip archive"]),
])
def test_a_file_that_is_no_model_is_refused_before_any_engine_runs(name: str, content: bytes, words: list[str],
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An empty or garbage .onnx went through every engine's path run (onnxruntime, iree, jax, torch: seconds,
    one 'failed' line each) before 'no engine could run', exit 4. It is not a model: one line, exit 2."""
    import hltrun.tools.bench.verdict as V

    monkeypatch.setattr(V, "path_run", lambda *a, **k: pytest.fail("an engine ran on a file that is no model"))
    (tmp_path / name).write_bytes(content)
    assert hltbench(["verdict", str(tmp_path / name), "--events", "10", "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hltbench verdict: {words[0]} {tmp_path}/"), err
    assert all(w in err[0] for w in words), err
    assert not (tmp_path / "o").exists()


def test_missing_sample_and_unknown_engine_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = one_output_model(tmp_path / "m.onnx")
    assert hltbench(["verdict", str(model), "--sample", str(tmp_path / "none.root")]) == 2
    _one_line(capsys, "--sample", "none.root")
    assert hltbench(["verdict", str(model), "--engines", "warp-drive"]) == 2
    _one_line(capsys, "--engines", "warp-drive", "onnxruntime")
    # a list with commas, as other tools take it: said how to give it; the engines listed were called
    # "installed" (tensorrt among them on a machine without it)
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime,tflite"]) == 2
    line = _one_line(capsys, "--engines", "give them apart: --engines onnxruntime tflite", "hltrun's engines: ")
    assert "installed:" not in line, line


def test_a_shipped_sample_by_its_relative_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``--sample data/qcd_dijet.root`` from a folder of the user's own is the shipped file, as hltrun finds the
    path's own ``data/...`` inputs from any folder (it was "--sample: sample file not found", exit 2)."""
    import hltrun.tools.bench.verdict as V
    from hltrun.framework.errors import ModuleError

    seen: list[list[Path]] = []

    def no_run(plan, engine):  # noqa: ANN001 - the plan is what is checked; no path needs to run
        seen.append(list(plan.samples))
        raise ModuleError("not run here")

    monkeypatch.setattr(V, "path_run", no_run)
    model = one_output_model(tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "data").exists()
    assert hltbench(["verdict", "m.onnx", "--sample", "data/qcd_dijet.root", "--engines", "onnxruntime",
                     "--events", "10", "--out-dir", "o"]) == 4
    _one_line(capsys, "no engine could run", "not run here")
    assert seen == [[(Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root").resolve()]]


def test_a_bad_override_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = one_output_model(tmp_path / "m.onnx")
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--set", "options.budgetMs=-3",
                     "--out-dir", str(tmp_path / "o")]) == 2
    _one_line(capsys, "budgetMs")


def test_a_model_hltrun_cannot_feed_is_exit_4_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = one_output_model(tmp_path / "narrow.onnx", n_constituents=50)
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "10",
                     "--out-dir", str(tmp_path / "o")]) == 4
    _one_line(capsys, "no engine could run", "narrow.onnx", "(N, 50, 3)")
    assert not (tmp_path / "o" / "verdict.json").exists()


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = one_output_model(tmp_path / "narrow.onnx", n_constituents=50)
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "10", "--debug",
                     "--out-dir", str(tmp_path / "o")]) == 4
    assert "Traceback" in capsys.readouterr().err


def test_no_engine_available_is_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .onnx model and only tensorflow asked (it reads .keras, none beside the model)."""
    model = one_output_model(tmp_path / "m.onnx")
    assert hltbench(["verdict", str(model), "--engines", "tensorflow"]) == 4
    _one_line(capsys, "no engine can run", "m.onnx", "tensorflow", ".keras")


def test_criterion_and_number_format() -> None:
    """The criterion is the BudgetReport's own (budget.fits against options.budgetMs); figures in the line
    have three significant digits and no exponent."""
    from hltrun.tools.bench.verdict import CRITERION

    assert "budget.fits" in CRITERION and "options.budgetMs" in CRITERION
    assert (fmt_ms(0.04873), fmt_ms(0.983), fmt_ms(12.34), fmt_ms(1234.4), fmt_ms(0)) == \
        ("0.0487", "0.983", "12.3", "1,234", "0")


def test_an_engine_reading_another_network_beside_the_model_is_never_ranked(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A ``.tflite`` beside the ``.onnx`` that is another network (here: the same sum, clipped at 6 GeV per
    constituent value) costs nothing like the model; the verdict checks every engine against ONNX Runtime on
    the same jets and shows it with ``!``, never as the best."""
    tf = pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    from tests.test_tflite_backend import convert

    model = one_output_model(tmp_path / "summed.onnx")
    spec = tf.TensorSpec([None, 100, 3], tf.float32)
    clipped = convert(tmp_path, lambda x: {"output": tf.reduce_sum(tf.minimum(x, 6.0), axis=[1, 2])}, spec)
    clipped.rename(tmp_path / "summed.tflite")
    rc = hltbench(["verdict", str(model), "--engines", "onnxruntime", "tflite", *FAST, "--out-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "verdict.json").read_text())
    rows = {r["engine"]: r["agreement"] for r in doc["engines"]}
    assert rc == 0 and doc["best"] == "onnxruntime"
    assert rows["onnxruntime"]["agrees"] and rows["onnxruntime"]["max_rel_diff"] == 0.0
    assert rows["tflite"]["agrees"] is False and rows["tflite"]["max_rel_diff"] > 0.1
    assert re.search(r"^tflite !", out, re.M) and "not ranked: tflite: disagrees with onnxruntime" in out


def test_agreement_rows_say_what_was_not_checked() -> None:
    import numpy as np

    from hltrun.tools.bench.verdict import agreement

    ref = {"score": np.array([1.0, 2.0], np.float32), "kl": np.array([0.5, 0.5], np.float32)}
    rows = agreement({"a": ref, "b": {"score": ref["score"]}, "c": {**ref, "score": ref["score"] * 1.001}}, ref)
    assert rows["a"]["agrees"] and not rows["b"]["agrees"] and rows["b"]["note"] == "has no kl output"
    assert not rows["c"]["agrees"] and rows["c"]["max_rel_diff"] == pytest.approx(1e-3, rel=1e-3)
    unchecked = agreement({"a": ref}, None, "ONNX Runtime cannot run m.onnx: x")
    assert unchecked["a"]["agrees"] is None and unchecked["a"]["note"].startswith("not checked: ONNX Runtime cannot")


def test_an_engine_failing_on_the_check_jets_is_unchecked_not_the_end() -> None:
    import numpy as np

    from hltrun.tools.bench.verdict import agreement

    ref = {"score": np.array([1.0], np.float32)}
    rows = agreement({"onnxruntime": ref, "tflite": "the check's jets failed: boom"}, ref)
    assert rows["onnxruntime"]["agrees"] and rows["tflite"]["agrees"] is None
    assert rows["tflite"]["note"] == "not checked: the check's jets failed: boom"


@pytest.mark.parametrize("where", ["a file", "verdict.json a folder"])
def test_an_unusable_out_dir_is_exit_4_before_any_engine_runs(where: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import hltrun.tools.bench.verdict as V

    monkeypatch.setattr(V, "path_run", lambda *a, **k: pytest.fail("an engine ran before --out-dir was checked"))
    model = one_output_model(tmp_path / "m.onnx")
    if where == "a file":
        out = tmp_path / "plain"
        out.write_text("x")
        words = ["--out-dir", str(out), "is a file, not a folder"]
    else:
        out = tmp_path / "o"
        (out / "verdict.json").mkdir(parents=True)
        words = ["--out-dir", str(out / "verdict.json"), "is a folder"]
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "10",
                     "--out-dir", str(out)]) == 4
    _one_line(capsys, *words)


def test_a_path_that_ran_no_event_has_no_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A selection that keeps no event of the sample: its job has no time per event (budget.fits null), so
    no 'does not fit' with the begin_job read charged to one event as its cost (it said 548 ms/event and
    54,835 cores); one line naming the sample and the selection, exit 2, no verdict files."""
    model = one_output_model(tmp_path / "m.onnx")
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--batches", "1", "--min-time", "0",
                     "--set", 'source.lumisToProcess=["999:1"]', "--out-dir", str(tmp_path / "o")]) == 2
    line = _one_line(capsys, "ran no event", "qcd_dijet.root", "lumisToProcess", "selected none")
    assert "does not fit" not in line and "cores" not in line
    assert not (tmp_path / "o" / "verdict.json").exists()


def test_a_near_zero_score_within_float32_rounding_is_the_same_network() -> None:
    """A logit model's near-zero score one float32 step of the largest away from ONNX Runtime's: 0.25 relative
    there, and the verdict said "disagrees with onnxruntime (max rel diff 2.5e-01 > 0.0001): another network"
    of a faithful engine (2026-12-07). It agrees; ``diff_of_largest`` says how far apart the scores are."""
    import numpy as np

    from hltrun.tools.bench.verdict import agreement

    ref = {"score": np.array([2.4488726, -1.3, 9.536743e-07], np.float32)}
    own = {"score": ref["score"] + np.array([0, 2.4e-7, 2.4e-7], np.float32)}
    rows = agreement({"torch": own, "off": {"score": ref["score"] * np.float32(1.41)}}, ref)
    assert rows["torch"]["agrees"] and rows["torch"]["note"] == "" and rows["torch"]["max_rel_diff"] == 0.0
    assert rows["torch"]["diff_of_largest"] == pytest.approx(2.4e-7 / 2.4488726, rel=1e-3)
    assert not rows["off"]["agrees"] and "4.1e-01 relative beyond float32 rounding" in rows["off"]["note"]


def test_an_engine_whose_own_check_refuses_the_model_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A model saved after ONNX Runtime's optimisation (its own com.microsoft.FusedGemm), which IREE cannot read:
    the verdict started IREE's path run (the source opened, the modules' begin_job) to list it as failed. The
    engine's own cheap check (``cannot_run``, the one ``auto`` asks) now lists it as not run, with its reason,
    before any path runs; an engine the check passes still runs."""
    pytest.importorskip("iree.compiler", reason="iree-base-compiler not installed")
    import hltrun.tools.bench.verdict as V
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import backend_class
    from tests.test_exported_forms import ort_optimised, relu_gemm_onnx

    model = ort_optimised(relu_gemm_onnx(tmp_path / "net.onnx"), tmp_path / "net_ort.onnx")
    started: list[str] = []

    def no_run(plan, engine):  # noqa: ANN001 - which engines are started is what is checked
        started.append(engine)
        raise ModuleError("not run here")

    monkeypatch.setattr(V, "path_run", no_run)
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "iree", "--events", "10",
                     "--out-dir", str(tmp_path / "o")]) == 4
    assert started == ["onnxruntime"]
    why = backend_class("iree").cannot_run(model)
    assert why and "FusedGemm" in why, why  # what IREE's own check says, not a text of this test
    err = capsys.readouterr().err
    assert f"hltbench verdict: iree: not run here ({why})" in err, err
    run, skipped = V.candidate_engines(model, ["onnxruntime", "iree"])
    assert run == ["onnxruntime"] and skipped == [{"engine": "iree", "reason": why}]


def test_a_branch_the_shipped_sample_lacks_asks_for_a_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model reading a branch of the user's own files (a per-event rho) and no ``--sample``: the verdict ran the
    shipped sample and said only "fix the feature name"; the name was right, the sample is what to change. With
    ``--sample`` given, the source's line stands alone."""
    model = one_output_model(tmp_path / "m.onnx")
    declared = "modules.vae.inputs=[{name: x, features: [deta, dphi, Rho_fixedGridRhoFastjetAll]}]"
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "10", "--set", declared,
                     "--out-dir", str(tmp_path / "o")]) == 2
    _one_line(capsys, "Rho_fixedGridRhoFastjetAll", "no input file has it", "--sample FILE", "qcd_dijet.root")
    assert hltbench(["verdict", str(model), "--engines", "onnxruntime", "--events", "10", "--set", declared,
                     "--sample", "data/qcd_dijet.root", "--out-dir", str(tmp_path / "o")]) == 2
    line = _one_line(capsys, "no input file has it")
    assert "--sample FILE" not in line
