"""hltbench verdict: one command from a model file to a verdict — does the model fit the HLT per-event
budget, and what does it cost per event, on every engine of this machine.

    hltbench verdict mymodel.onnx                      # the shipped path on data/qcd_dijet.root

For each engine that can run the model here (its package installed, its device present, a model file it
reads: .onnx for onnxruntime, iree, jax, torch and tensorrt; a sibling .tflite for tflite; a sibling .keras for tensorflow;
not refused by the engine's own cheap check, ``cannot_run``, which ``auto`` asks too: listed as not run, with its reason):

1. the real path, in this process, through hltrun's own code: ``framework.config.load`` of the path
   configuration with the overrides printed as ``hltrun_command`` (the model, ``backend=<engine>``, the
   sample), ``framework.executors.execute`` and ``report_services``, as the ``hltrun`` command runs it.
   hltrun's report writer puts that job's report folder (hltrun.json, report.html, ...) into
   OUT/path-<engine>/. Every path figure of the verdict is read from that job's results object
   (services.Timing: ``budget`` and ``farm`` blocks; services.Memory: peak RSS), the object hltrun.json
   is written from; nothing is recomputed. Warm-up and compilation (IREE, JAX) happen at begin_job and
   are in no per-event time.
2. µs per jet against batch size: the engine alone on real jets of the sample, timed by ``hltbench
   backends``' own code (``measure_config``: lowest of 3 medians per batch size, its engine options).

Budget: the path configuration's ``options.budgetMs`` (configs/path.yaml: 100 ms; ``--budget-ms`` sets
it), the number the BudgetReport and the FarmReport already use; cores at ``options.inputRateHz``
(``--input-rate-hz``) are the FarmReport's (``farm.cores_real``: input rate x mean real time per event).

Agreement: every engine's outputs (score, kl, extra roles) are compared with ONNX Runtime's on the same jets
(the sample's real jets and ``autoselect``'s jets at every pT scale) at ``AGREEMENT_RTOL``; an engine that
disagrees (a ``.tflite`` or ``.keras`` beside the model that is another network) is shown with ``!`` and never
ranked: its cost is not this model's.

Verdict criterion: the best engine is the agreeing one whose scorer costs least per event on the path (the
FarmReport's anomaly-detection line, ``farm.highlight``: the engine is all that differs between the runs,
while the source's time varies from run to run); the model **fits** when that job's own BudgetReport says it fits (hltrun.json ``budget.fits``): the path's
mean real time per event, the source's amortised bulk I/O included, is at most the budget. The line
gives that time, its share of the budget (``budget.mean_share_of_budget``), the scorer's own share
(``farm.highlight``), the headroom or the excess, and the cores at the input rate.

Threshold: a model with no cut in a thresholds.json beside it runs with a permissive cut
(``modules.<filter>.threshold=-1.0e+30``: every event with a scored jet passes) and the output says so;
the cut does not change the scorer's cost, but the output module then writes every event (an upper
bound on its time). ``--set modules.anomalyFilter.threshold=X`` gives a real cut.

Output: a table per engine on stdout, ending with one ``verdict:`` line; verdict.json, verdict.csv and
a self-contained verdict.html (plots inline) in --out-dir, written atomically as one set. Bad input
(missing model or sample, a model hltrun cannot feed, no engine able to run it) is one line naming the
culprit and exit 2 (configuration, files) or 4 (the model, on every engine); --debug adds the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import json
import logging
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hltrun.framework.resources import local_output_path
from hltrun.framework.errors import ConfigError, HltError
from hltrun.framework.resources import find_file, unreadable_reason, user_path
from hltrun.tools.bench import runner
from hltrun.tools.catalogue import sample_path

PERMISSIVE_THRESHOLD = "-1.0e+30"  # (YAML 1.1 reads a float only with the dot and the sign); every event with a scored jet passes: the scorer's cost does not depend on the cut
BATCHES = (1, 2, 4, 8, 16, 32, 64)
CHECK_REAL_JETS = 64  # the sample's jets in the agreement check, with autoselect's jets at every pT scale
ORDER = ("onnxruntime", "iree", "jax", "torch", "tensorrt", "tflite", "tensorflow")  # lighter libraries first (shared RSS; tflite may import TensorFlow)
# engine -> the hltbench backends configuration that times it alone (its SPECS key)
SWEEP_SPEC = {"onnxruntime": "ort-fp32", "iree": "iree", "tflite": "tflite", "jax": "jax-cpu", "torch": "torch-cpu",
              "tensorrt": "trt-fp32", "tensorflow": "tf-function"}
# the verdict's path figures -> where they are in the job's results (hltrun.json: services.<name>.<keys>)
FIGURES: dict[str, tuple[str, ...]] = {
    "events": ("Timing", "events"),
    "budget_ms": ("Timing", "budget", "budget_ms"),
    "input_rate_hz": ("Timing", "farm", "input_rate_hz"),
    "real_per_event_ms": ("Timing", "farm", "real_per_event_ms"),
    "cpu_per_event_ms": ("Timing", "farm", "cpu_per_event_ms"),
    "share_of_budget": ("Timing", "budget", "mean_share_of_budget"),
    "fits": ("Timing", "budget", "fits"),
    "event_p99_ms": ("Timing", "event", "real", "p99"),
    "over_budget_events": ("Timing", "budget", "over_budget_events"),
    "cores_real": ("Timing", "farm", "cores_real"),
    "cores_cpu": ("Timing", "farm", "cores_cpu"),
    "cores_throughput": ("Timing", "farm", "throughput", "cores"),
    "scorer_labels": ("Timing", "farm", "highlight", "labels"),
    "scorer_real_per_event_ms": ("Timing", "farm", "highlight", "real_per_event_ms"),
    "scorer_share_of_budget": ("Timing", "farm", "highlight", "share_of_budget"),
    "scorer_share_of_event": ("Timing", "farm", "highlight", "share_of_event"),
    "scorer_cores": ("Timing", "farm", "highlight", "cores"),
    "peak_rss_mb": ("Memory", "peak_rss_mb"),
}
log = logging.getLogger("hltrun")


class VerdictError(Exception):
    """A user error the verdict stops on: one line, ``code`` 2 (configuration, files) or 4 (the model)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``hltbench verdict`` options."""
    p.add_argument("model", help="the model file (.onnx; .keras for tensorflow), or a shipped model name (conv_vae)")
    p.add_argument("--sample", nargs="+", type=Path, default=None,
                   help="ROOT files the path reads (default: the shipped data/qcd_dijet.root)")
    p.add_argument("--config", default=None, help="the path configuration (default: the shipped configs/path.yaml)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="sets",
                   help="hltrun overrides for every engine's run, e.g. modules.anomalyFilter.threshold=900 "
                        "or 'modules.vae.outputs={score: recon_err}'")
    p.add_argument("--engines", nargs="+", default=None,
                   help=f"engines to judge (default: every one that can run this model here, of {', '.join(ORDER)})")
    p.add_argument("--events", type=int, default=None, help="events of the sample (default: all)")
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES), help="batch sizes of the µs-per-jet sweep")
    p.add_argument("--min-time", type=runner.seconds, default=0.2,
                   help="seconds timed per (engine, batch) cell of the sweep (0: its 3 calls per round only)")
    p.add_argument("--input-rate-hz", type=float, default=None,
                   help="input rate for the cores (default: the configuration's options.inputRateHz)")
    p.add_argument("--budget-ms", type=float, default=None,
                   help="per-event budget (default: the configuration's options.budgetMs, 100 ms in configs/path.yaml)")
    p.add_argument("--out-dir", type=local_output_path, default=None,
                   help="where verdict.json/.csv/.html and each engine's hltrun report go (default: ./verdict-<model stem>)")
    p.add_argument("--debug", action="store_true", help="tracebacks and hltrun's debug messages")


def progress(line: str) -> None:
    print(f"hltbench verdict: {line}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- what runs
@dataclass
class Plan:
    """What the verdict runs: the model, the sample, the configuration, its overrides, the engines."""

    model: Path
    samples: list[Path]
    config: Path
    scorer: str
    overrides: list[str]
    engines: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_events: int | None = None
    out_dir: Path = Path(".")
    output_files: dict[str, str] = field(default_factory=dict)  # output-module label -> file name

    def engine_overrides(self, engine: str) -> list[str]:
        """The overrides of one engine's path run: the common ones, its output file(s) in its own folder
        (not the working directory), and the engine last."""
        files = [f"modules.{label}.file={self.out_dir / f'path-{engine}' / name}"
                 for label, name in self.output_files.items()]
        return [*self.overrides, *files, f"modules.{self.scorer}.backend={engine}"]

    def hltrun_args(self, engine: str) -> list[str]:
        """The ``hltrun`` command line of one engine's path run (without its report folder)."""
        return [str(self.config), *self.engine_overrides(engine),
                *(["-n", str(self.max_events)] if self.max_events is not None else [])]


def resolve_model(name: str) -> Path:
    from hltrun.tools.bench.profile_onnx import model_file

    model = model_file(name)
    native = native_way(model)
    if native is not None:
        raise VerdictError(native)
    why = unreadable_reason(model, "model file")
    if why is not None:
        raise VerdictError(why)
    if model.suffix not in (".onnx", ".keras"):
        raise VerdictError(f"model {model}: hltrun reads .onnx (onnxruntime, iree, jax, torch, tensorrt) or .keras "
                           f"(tensorflow) files, not {model.suffix or 'a file without a suffix'}")
    refuse_no_model(model)
    return model.resolve()


def native_way(model: Path) -> str | None:
    """The one line for a network saved the way CMSSW's ML interfaces load it (TorchScript, ExportedProgram,
    SavedModel; ``model_import``): the job imports it, the verdict times ONNX files, so the line gives the
    command that converts it once; a format the job refuses too gets the job's line. None for other files."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference.model_import import is_native, native_format

    if not is_native(model) or not model.exists():
        return None
    try:
        importer = native_format(model)
    except ModuleError as exc:  # .h5, .pb: the command is in the line
        return str(exc)
    if importer is None:
        return None
    return (f"model {model} is a {importer.format} network: hltrun imports it when a job runs it "
            f"(modules.vae.model={model}), but hltbench verdict times ONNX files: convert it once "
            f"({importer.manual(model, {'jets': (100, 3)})}) and give the verdict the .onnx file")


def refuse_no_model(model: Path) -> None:
    """An empty file, or one that is no ONNX (no Keras) model, is a file error (exit 2) said once here: it
    went through every engine's path run, one 'failed' line each, before 'no engine could run' (exit 4)."""
    import zipfile

    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference.base import check_model_file
    from hltrun.tools.declare_inputs import load_onnx

    try:
        check_model_file(model, (), "")
        if model.suffix == ".onnx":
            load_onnx(model)
    except ModuleError as exc:
        raise VerdictError(str(exc)) from None
    if model.suffix == ".keras" and not zipfile.is_zipfile(model):
        raise VerdictError(f"model {model} is not a Keras model (a .keras file is a zip archive, as Keras 3 saves it)")


def labels_of(config: Path, sets: list[str]) -> tuple[str, list[str], list[str], dict[str, Any]]:
    """(the scorer's label, filter labels, output-module labels, the raw configuration) from the
    configuration as overridden; the type rule is the Timing service's highlight rule (a *Scorer producer)."""
    from hltrun.framework.config import apply_overrides, read_yaml

    data = read_yaml(config)
    if sets:
        data = apply_overrides(data, sets)
    modules = data.get("modules") or {}
    kinds = {label: str((m or {}).get("type", "")) for label, m in modules.items() if isinstance(m, dict)}
    scorers = [label for label, t in kinds.items() if "Scorer" in t]
    if len(scorers) != 1:
        raise VerdictError(f"{config}: the verdict needs one scorer module (a *Scorer type) to put the model in; "
                           f"found {scorers or 'none'}")
    return (scorers[0], [label for label, t in kinds.items() if t == "AnomalyScoreFilter"],
            [label for label, t in kinds.items() if t == "RootOutputModule"], data)


def candidate_engines(model: Path, asked: list[str] | None) -> tuple[list[str], list[dict[str, str]]]:
    """(engines to run, engines skipped with the reason): installed, device present, a model file it reads, and
    not refused by the engine's own cheap check (``cannot_run``, which ``auto`` asks too): a path run started on a
    model the engine only refuses (IREE on ONNX Runtime's own ops) cost its source and modules' begin_job for a
    line that was known before."""
    from hltrun.modules.inference import backend_class, backend_names
    from hltrun.tools.bench.backends import unavailable

    known = [n for n in backend_names() if n != "auto"]
    for name in asked or []:
        if name not in known:  # hltrun's engines, not those installed here ("installed: ... tensorrt" on a CPU box)
            apart = f" (give them apart: --engines {' '.join(filter(None, name.split(',')))})" if "," in name else ""
            raise VerdictError(f"--engines: unknown engine {name!r}{apart}; hltrun's engines: {', '.join(known)} (one "
                               f"not installed here is skipped with the reason)")
    names = asked or [n for n in ORDER if n in known] + [n for n in known if n not in ORDER]
    run, skipped = [], []
    for name in names:
        suffix = backend_class(name).model_suffixes[0]
        reason = None
        if model.suffix != suffix and not model.with_suffix(suffix).is_file():
            reason = f"reads {suffix} files and {model.with_suffix(suffix).name} is not beside the model"
        elif name in SWEEP_SPEC:
            reason = unavailable(sweep_spec(name))
        if not reason:
            reason = backend_class(name).cannot_run(model if model.suffix == suffix else model.with_suffix(suffix))
        if reason:
            skipped.append({"engine": name, "reason": reason})
        else:
            run.append(name)
    return run, skipped


def sweep_spec(engine: str) -> str:
    """The hltbench backends configuration for the engine alone (jax, torch: the GPU one where the engine
    sees a GPU, as the path's device auto does)."""
    if engine in ("jax", "torch"):
        from hltrun.modules.inference import accelerator

        return f"{engine}-gpu" if accelerator.engine_gpu_status(engine).usable else f"{engine}-cpu"
    return SWEEP_SPEC[engine]


VERDICT_FILES = ("verdict.json", "verdict.csv", "verdict.html")  # write_files' set


def check_out_dir(out_dir: Path) -> None:
    """``--out-dir`` by hltrun's destination policy (framework/destinations.py): made if missing, probed
    for a write, and the verdict's own files in it checked as members of the set they are written as; an
    unusable one is one ModuleError line (exit 4)."""
    from hltrun.framework.destinations import check_folder_destination, check_set_member

    folder = check_folder_destination(out_dir, "--out-dir")
    for name in VERDICT_FILES:
        check_set_member(folder / name, "--out-dir")


def make_plan(args: argparse.Namespace) -> Plan:
    """Check every input before anything runs; settle the overrides (and the threshold) once."""
    from hltrun.framework.config import find_config, load

    model = resolve_model(args.model)
    # as hltrun finds an input: the name as given, else the shipped file of that name (data/qcd_dijet.root from
    # any folder, as the path's own inputs; it was "sample file not found" outside the checkout)
    samples = [find_file(s, "--sample") for s in (args.sample or [sample_path("qcd_dijet")])]
    for s in samples:
        why = unreadable_reason(s, "sample file")
        if why is not None:
            raise VerdictError(f"--sample: {why}")
    samples = [s.resolve() for s in samples]
    config = find_config(args.config or runner.path_config())
    if args.events is not None and args.events < 1:
        raise VerdictError(f"--events must be at least 1 (got {args.events})")
    if not args.batches or min(args.batches) < 1:
        raise VerdictError(f"--batches must be positive jet counts (got {args.batches})")
    scorer, filters, outputs, data = labels_of(config, list(args.sets))
    given = {s.partition("=")[0] for s in args.sets}
    overrides = [f"source.files={json.dumps([str(s) for s in samples])}", f"modules.{scorer}.model={model}"]
    if args.budget_ms is not None:
        overrides.append(f"options.budgetMs={args.budget_ms}")
    if args.input_rate_hz is not None:
        overrides.append(f"options.inputRateHz={args.input_rate_hz}")
    services = data.get("services") or {}
    overrides += [f"services.{name}={{}}" for name in ("Timing", "Memory") if name not in services]
    # the output file goes with the verdict, not into the working directory
    output_files = {label: Path(str((data["modules"][label] or {}).get("file", f"{label}.root"))).name
                    for label in outputs if f"modules.{label}.file" not in given}
    overrides += list(args.sets)
    engines, skipped = candidate_engines(model, args.engines)
    plan = Plan(model, samples, config, scorer, overrides, engines, skipped, max_events=args.events,
                out_dir=user_path(args.out_dir).resolve(), output_files=output_files)
    if not engines:
        return plan
    try:  # the configuration's own checks, once (the filter's threshold lookup among them)
        load(config, plan.engine_overrides(engines[0]), args.events)
    except ConfigError as exc:
        lacking = [f for f in filters if f"modules.{f}.threshold" not in given
                   and (data["modules"][f] or {}).get("threshold") is None]
        if "no threshold given" not in str(exc) or not lacking:
            raise
        plan.overrides += [f"modules.{f}.threshold={PERMISSIVE_THRESHOLD}" for f in lacking]
        plan.notes.append(
            f"no cut for {model.stem} in {model.parent / 'thresholds.json'}: ran with "
            + ", ".join(f"modules.{f}.threshold={PERMISSIVE_THRESHOLD}" for f in lacking)
            + " (every event with a scored jet passes). The cut does not change the scorer's cost; the output "
              "module then writes every event, so its time is an upper bound. Give a real cut with "
              f"--set modules.{lacking[0]}.threshold=X")
    check_out_dir(args.out_dir)  # the last input checked, before any engine runs: not after all of them
    return plan


def dig(results: dict[str, Any], where: tuple[str, ...]) -> Any:
    value: Any = results
    for key in where:
        value = value[key]
    return value


def path_run(plan: Plan, engine: str) -> dict[str, Any]:
    """One engine's path run with hltrun's own code; its figures read from the job's results object, its
    report folder written by hltrun's report writer. A ModuleError (the engine cannot run the model)
    propagates; a job that fails on its events becomes a ModuleError with the job's own line."""
    from hltrun.framework.config import load
    from hltrun.framework.errors import ModuleError
    from hltrun.framework.executors import execute, report_services
    from hltrun.framework.report import write_report_files

    argv = plan.hltrun_args(engine)
    report_dir = plan.out_dir / f"path-{engine}"
    cfg = load(plan.config, plan.engine_overrides(engine), plan.max_events)
    started = time.perf_counter()
    outcome = execute(cfg, report_dir, started, progress=False)
    summary = outcome.result.summary
    if isinstance(outcome.cause, KeyboardInterrupt):  # Ctrl-C or SIGTERM stops the verdict, not one engine
        raise outcome.cause
    if outcome.code:
        raise ModuleError(summary.failure or str(outcome.cause))
    if not summary.events_processed:  # the sample or the selection, not the engine: every engine would say so
        raise VerdictError(no_event_line(plan, summary.source or {}))
    services = report_services(cfg, outcome.result)
    by_name = {s.name: s for s in services}
    results = {"Timing": by_name["Timing"].result(summary), "Memory": by_name["Memory"].results()}
    write_report_files(report_dir, summary, services)  # hltrun.json from these same objects
    figures = {name: dig(results, where) for name, where in FIGURES.items()}
    scorer_mem = next((m for m in results["Memory"]["modules"] if m["label"] == plan.scorer), None)
    return {"engine": engine, "status": "ok",
            "hltrun_command": "hltrun " + shlex.join([*argv, "--report-dir", str(report_dir)]),
            "report_dir": str(report_dir), "passed": summary.events_passed,
            "entries_in_files": (summary.source or {}).get("entries_in_files"),
            "files_not_opened": (summary.source or {}).get("files_not_opened", 0), **figures,
            "scorer_begin_job_rss_mb": scorer_mem["begin_job_rss_mb"] if scorer_mem else None,
            "begin_job_s": summary.begin_job_s, "wall_s": time.perf_counter() - started}


def no_event_line(plan: Plan, source: dict[str, Any]) -> str:
    """Why there is no verdict when the path ran no event: no time per event to hold against the budget (its
    BudgetReport has no verdict, budget.fits null; the source's begin_job over "1 event" is no event's cost)."""
    read, dropped = source.get("entries_in_files"), source.get("not_selected")
    why = (f"lumisToProcess, eventsToProcess or lumiMask selected none of the {dropped:,} read" if dropped else
           "its files hold no event" if read == 0 else "no event was read")
    return (f"the path ran no event of {', '.join(s.name for s in plan.samples)} ({why}): no time per event to "
            f"judge against the budget; run it on events the path selects")


def scorer_inputs(cfg: Any, scorer: str) -> dict[str, Any]:
    """What the path's scorer feeds its model, as ``BackendOptions`` takes it (the scorer's own
    ``declared_inputs``): a ``--set modules.vae.inputs=...``, else the model's metadata, else the shipped
    input with the batcher's ``n_constituents`` and ``relative``. Without this the sweep would load the
    model with the defaults and skip a model the path itself ran."""
    from hltrun.modules.jet_batcher import JetBatcherParameters
    from hltrun.modules.vae_scorer import declared_inputs

    params = cfg.modules[scorer].params
    src = cfg.modules.get(params.src.label) if getattr(params, "src", None) is not None else None
    batcher = src.params if src is not None and isinstance(src.params, JetBatcherParameters) else JetBatcherParameters()
    return declared_inputs(params, batcher.n_constituents, batcher.relative)


def check_inputs(x_all: Any) -> Any:
    """``backend -> inputs`` for the agreement check, the same for every engine: the sample's real jets and
    ``autoselect``'s jets at every pT scale for the shipped input, else its values for each declared input."""
    import numpy as np

    from hltrun.modules.inference.autoselect import CHECK_JETS, sample_batch, sample_inputs

    def inputs(backend: Any) -> Any:
        contract = backend.contract
        if x_all is not None and contract.is_shipped() and contract.inputs[0].shape(0)[1:] == x_all.shape[1:]:
            return np.concatenate([x_all, sample_batch(CHECK_JETS, seed=1)])
        return sample_inputs(backend, CHECK_JETS, seed=1)
    return inputs


def agreement(checked: dict[str, Any], reference: Any, reason: str = "") -> dict[str, dict[str, Any]]:
    """Per engine: every output against ONNX Runtime's on the same inputs (``autoselect.output_difference``:
    ``AGREEMENT_RTOL`` relative on jets beyond float32 rounding of the median score, ``max_rel_diff``; and
    ``diff_of_largest``, the largest difference over the largest score, which near-zero scores do not inflate).
    An engine may read another file than the ``.onnx`` (a ``.tflite`` or ``.keras`` beside it): a different
    network there must not be ranked as this model's cost. ``agrees`` None: nothing to check against
    (``reason``)."""
    from hltrun.modules.inference.autoselect import difference_of_largest, disagreement, output_difference
    from hltrun.modules.inference.base import AGREEMENT_RTOL

    rows = {}
    for engine, outputs in checked.items():
        if isinstance(outputs, str):  # the engine failed on the check's jets
            rows[engine] = {"max_rel_diff": None, "agrees": None, "note": f"not checked: {outputs}"}
            continue
        if reference is None:
            rows[engine] = {"max_rel_diff": None, "agrees": None, "note": f"not checked: {reason}"}
            continue
        rel, missing = output_difference(outputs, reference)
        agrees = rel <= AGREEMENT_RTOL
        of_largest = difference_of_largest(outputs, reference)
        rows[engine] = {"max_rel_diff": None if missing or rel == float("inf") else rel, "agrees": agrees,  # strict JSON
                        "diff_of_largest": None if of_largest is None or of_largest == float("inf") else of_largest,
                        "note": missing or ("" if agrees else f"disagrees with onnxruntime ({disagreement(rel)}): "
                                                              f"another network")}
    return rows


def sweep(plan: Plan, engines: list[str], args: argparse.Namespace, cfg_outputs: Any,
          cfg_inputs: dict[str, Any] | None = None) -> tuple[list[dict], list[str], dict[str, dict[str, Any]]]:
    """µs per jet against batch size per engine, with ``hltbench backends``' timing code (cells in its format);
    the model fed as the path's scorer feeds it (``scorer_inputs``); and each engine's ``agreement`` with
    ONNX Runtime on the same jets."""
    from hltrun.tools.bench.backends import Collected, load_sample, make_backend, measure_config

    notes = []
    try:
        x_all = load_sample(plan.samples[0], max(*args.batches, CHECK_REAL_JETS))
    except Exception as exc:  # noqa: BLE001 - a sample the shipped reader cannot read: the path figures stand
        x_all = None
        notes.append(f"µs per jet not measured: {plan.samples[0]} is not readable by the sweep's jet loader "
                     f"({type(exc).__name__}: {exc})")
    ns = argparse.Namespace(models_dir=plan.model.parent, batch_sizes=list(args.batches), min_time=args.min_time,
                            min_calls=3, mem_calls=3, mem_jets=0, mem_batch=max(args.batches), outputs=cfg_outputs,
                            inputs=cfg_inputs or {})
    check = check_inputs(x_all)
    cells, checked = [], {}
    for engine in engines:
        spec = sweep_spec(engine)
        got = Collected()
        if x_all is None:  # no timing: the agreement check alone
            backend = make_backend(spec, ns.models_dir, plan.model.stem, 1, cfg_outputs, cfg_inputs)
            if not isinstance(backend, str):
                try:
                    checked[engine] = backend.run(check(backend))
                except HltError as exc:  # not checked: the row says why, the path figures stand
                    notes.append(f"agreement not checked on {engine}: {exc}")
                backend.close()
            continue
        progress(f"{engine}: µs per jet at batch {' '.join(map(str, args.batches))} ({spec}, hltbench backends' timing)")
        try:
            with contextlib.redirect_stdout(sys.stderr):  # its progress line; stdout keeps the table
                measure_config(ns, plan.model.stem, spec, 1, x_all, got, check=check)
        except HltError as exc:  # a failed call in the sweep: the path figures stand
            got.skipped.append({"reason": str(exc)})
            got.rows = []
        if got.skipped:
            notes.append(f"µs per jet not measured on {engine}: {got.skipped[0]['reason']}")
        if spec in got.checked:
            checked[engine] = got.checked[spec]
        if isinstance(checked.get(engine), str):
            notes.append(f"agreement not checked on {engine}: {checked[engine]}")
        cells += [{**c, "engine": engine, "spec": spec} for c in got.rows]
    reference, reason = checked.get("onnxruntime"), "ONNX Runtime did not run the model"
    if isinstance(reference, str):
        reference, reason = None, f"ONNX Runtime: {reference}"
    elif reference is None:
        ref = make_backend("ort-fp32", ns.models_dir, plan.model.stem, 1, cfg_outputs, cfg_inputs)
        if isinstance(ref, str):
            reason = f"ONNX Runtime cannot run {plan.model.name}: {ref}"
        else:
            try:
                reference = ref.run(check(ref))
            except HltError as exc:
                reason = f"ONNX Runtime failed on the check's jets: {exc}"
            ref.close()
    return cells, notes, agreement(checked, reference, reason)


# ---------------------------------------------------------------------- verdict
def verdict_line(model: str, best: dict[str, Any]) -> str:
    """The one line, from the best engine's job figures (the arithmetic is only the margin)."""
    budget, t, share = best["budget_ms"], best["real_per_event_ms"], best["share_of_budget"]
    cost = (f"{model} on {best['engine']} costs {fmt_ms(t)} ms/event on the path (scorer "
            f"{fmt_ms(best['scorer_real_per_event_ms'])} ms/event, {fmt_ms(100 * best['scorer_share_of_budget'])} % "
            f"of the budget)")
    cores = f"{best['cores_real']:,.1f} cores at {best['input_rate_hz']:,.0f} Hz"
    if best["fits"]:
        return (f"verdict: fits — {cost}; the path takes {fmt_ms(100 * share)} % of the {budget:g} ms budget, "
                f"{fmt_ms(budget - t)} ms to spare ({cores})")
    return (f"verdict: does not fit — {cost}; the path exceeds the {budget:g} ms budget by {fmt_ms(t - budget)} ms "
            f"({fmt_ms(100 * share)} % of it; {cores})")


def fmt_ms(ms: float) -> str:
    """Three significant figures, never in exponent form."""
    if ms == 0:
        return "0"
    digits = max(0, 2 - int(f"{abs(ms):e}".split("e")[1]))
    return f"{ms:,.{digits}f}"


def table_text(done: list[dict[str, Any]], batches: list[int], best: str) -> str:
    """Per engine: the path's figures (hltrun's own), then the engine alone, µs per jet against batch size."""
    head = (f"{'engine':14s} {'path ms/ev':>10} {'% budget':>8} {'scorer ms/ev':>12} {'scorer %':>8} "
            f"{'cores':>9} {'cores CPU':>9} {'peak RSS MB':>11} {'model MB':>8}")
    lines = ["the real path (hltrun's TimeReport, BudgetReport, FarmReport, MemoryReport):", head]
    for r in done:
        model_mb = r["scorer_begin_job_rss_mb"]
        mark = " *" if r["engine"] == best else " !" if r.get("agreement", {}).get("agrees") is False else ""
        lines.append(f"{r['engine'] + mark:14s} {r['real_per_event_ms']:>10.3f} "
                     f"{100 * r['share_of_budget']:>8.3f} {r['scorer_real_per_event_ms']:>12.3f} "
                     f"{100 * r['scorer_share_of_budget']:>8.3f} {r['cores_real']:>9,.1f} {r['cores_cpu']:>9,.1f} "
                     f"{r['peak_rss_mb']:>11.1f} {model_mb if model_mb is not None else float('nan'):>8.1f}")
    lines += ["", "the engine alone, µs per jet at batch size:",
              f"{'engine':14s} " + " ".join(f"{b:>7}" for b in batches)]
    for r in done:
        us = r.get("us_per_jet", {})
        lines.append(f"{r['engine']:14s} " + " ".join(f"{us[b]:>7.1f}" if b in us else f"{'-':>7}" for b in batches))
    return "\n".join(lines)


# ---------------------------------------------------------------------- files
def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ["engine", "status", *FIGURES, "passed", "scorer_begin_job_rss_mb", "hltrun_command", "reason"]
    rows = []
    for r in doc["engines"] + [{"engine": s["engine"], "status": "skipped", "reason": s["reason"]} for s in doc["skipped"]]:
        row = {k: (";".join(r[k]) if isinstance(r.get(k), list) else r.get(k, "")) for k in keys}
        row.update({f"us_per_jet_b{b}": r.get("us_per_jet", {}).get(b, "") for b in doc["batches"]})
        rows.append(row)
    return rows


def figure_html(doc: dict[str, Any]) -> str:
    """µs per jet against batch size per engine, and the per-event time per engine against the budget,
    as inline PNGs (framework/report/html.py's figure, style and img helpers; tools/bench/plots.py's series)."""
    try:
        from hltrun.framework.report.html import _figure, _style, img
        from hltrun.tools.bench.plots import latency_series
    except ImportError as exc:  # matplotlib is the 'cpu' extra
        return f"<p>No plots: {html.escape(str(exc))}</p>"
    cells = [{**c, "backend": c["engine"]} for c in doc["cells"]]
    with _style():
        fig = _figure(13, 4.8)
        left, right = fig.subplots(1, 2)
        for label, pts in latency_series(cells, doc["model_name"]).items():
            left.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=label)
        left.set(title="the engine alone: µs per jet vs batch size", xlabel="batch size (jets per call)",
                 ylabel="µs per jet")
        left.set_xscale("log", base=2)
        left.set_yscale("log")
        left.grid(True, which="both", alpha=0.3)
        if left.get_legend_handles_labels()[0]:
            left.legend()
        engines = [r["engine"] for r in doc["engines"]]
        y = list(range(len(engines)))[::-1]
        # points, not bars: a bar on a log axis starts at the axis' arbitrary left end, so its length (and two
        # bars' ratio: a scorer at 0.115 of a 0.299 ms path drawn as a fifth of it) measures nothing
        right.plot([r["real_per_event_ms"] for r in doc["engines"]], [v + 0.1 for v in y], "o", ms=9,
                   color="#1f77b4", label="path, mean real per event")
        right.plot([r["scorer_real_per_event_ms"] for r in doc["engines"]], [v - 0.1 for v in y], "D", ms=8,
                   color="#d62728", label="of it the scorer")
        right.set_ylim(-0.7, len(engines) - 0.3)
        right.axvline(doc["budget_ms"], color="#2ca02c", lw=2.5, label=f"budget {doc['budget_ms']:g} ms")
        right.set_yticks(y, engines)
        right.set_xscale("log")
        right.set(title="the real path: ms per event vs the budget", xlabel="ms per event")
        right.grid(True, which="both", axis="x", alpha=0.3)
        right.legend(loc="lower right")
        return img(fig, "µs per jet vs batch size per engine; ms per event per engine against the budget")


def render_html(doc: dict[str, Any], text: str) -> str:
    from hltrun.framework.report.html import _page, table

    good = doc["verdict"]["fits"]
    facts = table(["", ""], [["model", doc["model"]], ["sample", ", ".join(doc["sample"])],
                             ["events", doc["events"]], ["configuration", doc["config"]],
                             ["budget per event [ms]", doc["budget_ms"]], ["input rate [Hz]", doc["input_rate_hz"]],
                             ["machine", f"{doc['machine']['cpu']}, {doc['machine']['cores']} cores, load "
                                         f"{doc['machine']['load']}"], ["hltrun commit", doc["machine"]["hltrun_commit"]],
                             ["command", doc["command"]]], left=2)
    rows = [[r["engine"], r["real_per_event_ms"], r["scorer_real_per_event_ms"], 100 * r["share_of_budget"],
             100 * r["scorer_share_of_budget"], r["cores_real"], r["cores_cpu"], r["peak_rss_mb"],
             *[r.get("us_per_jet", {}).get(b) for b in doc["batches"]]] for r in doc["engines"]]
    engines = table(["engine", "path ms/event", "scorer ms/event", "% of budget", "scorer % of budget",
                     f"cores at {doc['input_rate_hz']:,.0f} Hz", "cores (CPU time)", "peak RSS MB",
                     *[f"µs/jet b={b}" for b in doc["batches"]]], rows,
                    highlight=[r["engine"] == doc["best"] for r in doc["engines"]])
    body = [f'<p class="verdict {"good" if good else "bad"}">{html.escape(doc["verdict"]["line"])}</p>',
            f"<p>{html.escape(doc['criterion'])}</p>", facts, "<h2>Engines</h2>", engines, figure_html(doc)]
    if doc["skipped"]:
        body += ["<h2>Not run here</h2>", "<ul>" + "".join(
            f"<li>{html.escape(s['engine'])}: {html.escape(s['reason'])}</li>" for s in doc["skipped"]) + "</ul>"]
    body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in doc["notes"]) + "</ul>",
             "<h2>The same path with hltrun</h2>", "<pre>" + "\n".join(
                 html.escape(r["hltrun_command"]) for r in doc["engines"]) + "</pre>",
             "<h2>Text</h2>", f"<pre>{html.escape(text)}</pre>"]
    return _page().substitute(process=html.escape(f"hltbench verdict — {doc['model_name']}"), body="\n".join(body))


def write_files(out_dir: Path, doc: dict[str, Any], text: str) -> list[Path]:
    """verdict.json, verdict.csv, verdict.html: written atomically, and as one set."""
    from hltrun.framework.atomic import together, write_text

    page = render_html(doc, text)  # before anything is staged: a plotting failure leaves no file behind
    with together():
        paths = [runner.write_json(out_dir / "verdict.json", doc, "verdict"),
                 runner.write_csv(out_dir / "verdict.csv", csv_rows(doc), "verdict"),
                 write_text(out_dir / "verdict.html", page, "hltbench verdict html")]
    print(f"wrote {paths[-1]}")
    return paths


# ---------------------------------------------------------------------- the command
CRITERION = ("Criterion: the best engine is the one, among those whose outputs agree with ONNX Runtime's on the same "
             "jets (relative 1e-4), whose scorer costs least per event on the path (FarmReport, "
             "farm.highlight.real_per_event_ms: the engine is all that differs between the runs); the model fits when that job's own BudgetReport says so (hltrun.json budget.fits): the mean real time "
             "per event of the whole path, the source's amortised bulk I/O included, is at most the budget "
             "(options.budgetMs). Cores: the FarmReport's, input rate x mean real time per event.")


def default_sample_hint(exc: BaseException, args: argparse.Namespace) -> str:
    """Where the model reads a branch the shipped sample lacks (a per-event rho, a PFNano constituent feature) and
    no ``--sample`` was given: the sample is what to change, not the feature's name the source's line asks for."""
    if args.sample or "no input file has" not in str(exc):
        return ""
    return (f" (hltbench verdict read the shipped sample {sample_path('qcd_dijet').name}, which has only its own "
            f"branches: give a file with your model's with --sample FILE)")


def run(args: argparse.Namespace) -> int:
    """Run the verdict; 0 when it ran (fits or not), 2/4 with one line for bad input."""
    from hltrun.framework.cli import setup_logging
    from hltrun.framework.interrupt import exit_code_of, handle_signals, remove_temporaries

    setup_logging(quiet=not args.debug, debug=args.debug)  # hltrun's warnings as the hltrun command prints them
    try:
        with handle_signals():  # SIGTERM / SIGHUP stop it like Ctrl-C, as they stop hltrun
            return _run(args)
    except KeyboardInterrupt as exc:
        remove_temporaries()
        print(f"hltbench verdict: {str(exc) or 'interrupted'}", file=sys.stderr)
        return exit_code_of(exc)
    except (HltError, VerdictError, runner.BenchError) as exc:
        if args.debug:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, HltError) else getattr(exc, "code", 2)
        print(f"hltbench verdict: {exc}{default_sample_hint(exc, args)}", file=sys.stderr)
        return code
    except Exception as exc:  # a bug: one line unless --debug
        if args.debug:
            raise
        print(f"hltbench verdict: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              f"traceback)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import os

    from hltrun.framework.errors import ModuleError

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as hltbench backends: TensorFlow's start-up chatter

    t0 = time.perf_counter()
    load_before = runner.loadavg()
    args.out_dir = Path(args.out_dir or f"verdict-{Path(args.model).stem}")
    plan = make_plan(args)
    for s in plan.skipped:
        progress(f"{s['engine']}: not run here ({s['reason']})")
    if not plan.engines:
        raise VerdictError(f"no engine can run {plan.model} here: "
                           + "; ".join(f"{s['engine']}: {s['reason']}" for s in plan.skipped), 4)
    done, failed = [], []
    for i, engine in enumerate(plan.engines, 1):
        progress(f"[{i}/{len(plan.engines)}] {engine}: the path on {', '.join(s.name for s in plan.samples)}"
                 f"{f' ({plan.max_events} events)' if plan.max_events else ''} (warm-up and compilation at "
                 f"begin_job, not charged) ...")
        try:
            r = path_run(plan, engine)
        except ModuleError as exc:  # this engine cannot run the model; the others may
            failed.append({"engine": engine, "reason": str(exc)})
            progress(f"{engine}: failed: {exc}")
            continue
        done.append(r)
        progress(f"{engine}: {r['real_per_event_ms']:.3f} ms/event on the path (scorer {r['scorer_real_per_event_ms']:.3f}), "
                 f"{r['cores_real']:,.1f} cores at {r['input_rate_hz']:,.0f} Hz, peak RSS {r['peak_rss_mb']:.0f} MB "
                 f"[{r['wall_s']:.1f} s, begin_job {r['begin_job_s']:.1f} s]")
    if not done:
        first = failed[0]["reason"]
        same = all(f["reason"].split(":", 1)[-1] == first.split(":", 1)[-1] for f in failed)
        raise VerdictError(f"no engine could run {plan.model}: {failed[0]['engine']}: {first}"
                           + ("" if len(failed) == 1 else
                              f" ({'the same on' if same else 'see above for'} {', '.join(f['engine'] for f in failed[1:])})"), 4)
    from hltrun.framework.config import load

    cfg = load(plan.config, plan.engine_overrides(done[0]["engine"]), plan.max_events)
    cells, sweep_notes, agreed = sweep(plan, [r["engine"] for r in done], args,
                                       cfg.modules[plan.scorer].params.outputs, scorer_inputs(cfg, plan.scorer))
    for r in done:
        r["us_per_jet"] = {c["batch"]: c["us_per_jet"] for c in cells if c["engine"] == r["engine"]}
        r["agreement"] = agreed.get(r["engine"], {"max_rel_diff": None, "agrees": None,
                                                  "note": "not checked: the engine did not load for the sweep"})
    ranked = [r for r in done if r["agreement"]["agrees"] is not False]
    if not ranked:
        raise VerdictError(f"no engine runs {plan.model} as ONNX Runtime does: "
                           + "; ".join(f"{r['engine']}: {r['agreement']['note']}" for r in done), 4)
    best = min(ranked, key=lambda r: r["scorer_real_per_event_ms"])
    line = verdict_line(plan.model.stem, best)
    # files past --events are never opened: the sample then holds more than the entries counted
    unopened = best.get("files_not_opened") or 0
    partial = unopened or (best["entries_in_files"] and best["events"] < best["entries_in_files"])
    sample = (f"the sample's {best['entries_in_files']} events" if not unopened else
              f"the sample's events ({unopened} of its files not opened)")
    notes = plan.notes + sweep_notes + ([
        f"{best['events']} of {sample}: the source's bulk I/O (file open, read "
        f"and conversion, partly at begin_job) is spread over the events processed, so a short run carries more "
        f"of it per event; judge on the whole sample (no --events)"] if partial else []) + [
        "Per-event times and cores are hltrun's own (TimeReport, BudgetReport, FarmReport of each engine's path run: "
        "OUT/path-<engine>/hltrun.json has the same numbers); warm-up and compilation happen at begin_job and are "
        "not charged.",
        "Peak RSS is the process's (MemoryReport): the engines run one after another in one process, so a later "
        "engine's peak includes what earlier ones loaded; model MB (scorer_begin_job_rss_mb) is the scorer's RSS growth across its begin_job (model load, warm-up), the MemoryReport's.",
        "µs per jet: the engine alone on real jets for the shipped input, jet-like values for other declared inputs (hltbench backends' timing, its engine options, one thread).",
        f"Measured on {runner.cpu_name()}, load average {load_before} before / {runner.loadavg()} after: other work "
        "on the machine makes absolute times noisy; ratios between engines of one run are steadier."]
    doc = {"model": str(plan.model), "model_name": plan.model.stem, "sample": [str(s) for s in plan.samples],
           "events": best["events"], "config": str(plan.config), "overrides": plan.overrides,
           "command": "hltbench " + shlex.join(getattr(args, "argv", [])),
           "budget_ms": best["budget_ms"], "input_rate_hz": best["input_rate_hz"], "batches": list(args.batches),
           "criterion": CRITERION, "figures_from": {k: "services." + ".".join(v) for k, v in FIGURES.items()},
           "best": best["engine"], "verdict": {"fits": best["fits"], "line": line, "engine": best["engine"]},
           "engines": done, "skipped": plan.skipped + failed, "notes": notes, "cells": cells,
           "elapsed_s": time.perf_counter() - t0}
    text = "\n".join([f"{plan.model.name} on {', '.join(s.name for s in plan.samples)} ({best['events']} events), "
                      f"{plan.config.name}, budget {best['budget_ms']:g} ms (options.budgetMs), input rate "
                      f"{best['input_rate_hz']:,.0f} Hz (options.inputRateHz); * best engine", "",
                      table_text(done, list(args.batches), best["engine"]), "",
                      *[f"not run: {s['engine']}: {s['reason']}" for s in doc["skipped"]],
                      *[f"not ranked: {r['engine']}: {r['agreement']['note']}" for r in done
                        if r["agreement"]["agrees"] is False],
                      *[f"unchecked: {r['engine']}: {r['agreement']['note']}" for r in done
                        if r["agreement"]["agrees"] is None],
                      *[f"note: {n}" for n in notes], "",
                      f"the best engine's path run as an hltrun command (the figures above are its report's, "
                      f"{best['report_dir']}/hltrun.json):", f"  {best['hltrun_command']}"])
    doc["machine"] = {**runner.machine(), "load_before": load_before}
    write_files(args.out_dir, doc, text + "\n" + line)
    print(text)
    print(line)
    return 0
