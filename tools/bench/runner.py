"""What every hltbench study shares: the machine and versions record, repeats interleaved across the
compared variants, and results written as JSON (atomically) and CSV.

Why: numbers from a shared machine mean little without the CPU, the load and the library versions they
were taken with, and a comparison is only fair when a disturbance hits every variant alike (variants run
in turn, round after round, not one after the other).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from hltrun.framework.atomic import write_text, writing
from hltrun.framework.resources import local_output_path, shipped_dir
from hltrun.tools.catalogue import checkout, sample_path

T = TypeVar("T")
LIBRARIES = ("numpy", "awkward", "uproot", "onnxruntime", "tensorflow", "tensorflow-cpu", "keras")


def python() -> list[str]:
    """This interpreter for a child process, with ``-P`` when this one runs with it: started from the checkout
    (tools/gpu_check.sh), a child without it would import the checkout's ``hltrun/`` folder instead of the
    installed package the parent imported."""
    return [sys.executable, "-P"] if sys.flags.safe_path else [sys.executable]


def loadavg() -> str:
    """1-minute load average: other work on the machine shows up here (report it with the numbers)."""
    import psutil

    try:
        return f"{psutil.getloadavg()[0]:.2f}"  # as /proc/loadavg prints it
    except (OSError, AttributeError):
        return "?"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        return match.group(1).strip() if match else platform.processor() or "unknown CPU"
    except OSError:
        return platform.processor() or "unknown CPU"


def affinity() -> list[int]:
    """The cores this process may run on (taskset), empty where the OS cannot say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def versions() -> dict[str, str]:
    """Installed versions of the libraries that set the numbers, read from package metadata (no import)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@lru_cache(maxsize=1)
def commit() -> str:
    """hltrun's git commit (with ``-dirty`` for uncommitted changes), or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=checkout(),
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def machine() -> dict[str, Any]:
    """The record stored with every result: CPU model, cores, pinning, load, python, library versions, commit."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "affinity": ",".join(map(str, affinity())) or "?",
            "load": loadavg(), "python": platform.python_version(), "versions": versions(),
            "hltrun_commit": commit()}


def add_repeat(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """The one ``--repeat`` option: ``what`` says how the repeats are combined (median, fastest...)."""
    parser.add_argument("--repeat", type=int, default=default, help=f"{what} (default {default})")


def add_json(parser: argparse.ArgumentParser) -> None:
    """The one ``--json FILE`` option (see ``write_json``)."""
    parser.add_argument("--json", type=local_output_path, default=None,
                        help="also write the results here, with the machine and library versions")


def _int_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least} (got {value})")
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` of every count that must be at least 1 (batch sizes, event counts, threads):
    ``0`` or ``-1`` is refused while the command line is read, in argparse's one error line (exit 2), the
    rule ``check_repeat`` applies to ``--repeat``, not as a division by zero or a negative time per jet."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse ``type`` of a count where 0 means "none" (calls under the RSS sampler, jets of the memory
    curve): a negative one is refused while the command line is read, as ``positive_int`` refuses 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """argparse ``type`` of a quantity that must be a finite number above 0 (a clock, FLOP per cycle, a
    rate): ``--ghz -1`` gave a negative limit per jet and "-11.0%" of the peak."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0 (got {text})")
    return value


def seconds(text: str) -> float:
    """argparse ``type`` of ``--min-time``, the seconds timed per cell on top of its minimum number of
    calls: 0 is the quickest measurement (those calls only, as a smoke check), a negative or nan one
    is refused (it timed each cell on its minimum number of calls without a word)."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, at least 0 (got {text})")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text})")
    return value


def check_repeat(repeat: int, prog: str) -> None:
    """A non-positive ``--repeat`` is a user error: one line, exit 2 (through ``BenchError``)."""
    if repeat < 1:
        raise BenchError(f"{prog}: --repeat must be at least 1 (got {repeat})")


class BenchError(Exception):
    """A user error in a study's options or inputs: hltbench prints it as one line and exits 2."""


OUTPUT_FILES = ("json", "csv", "write_rebasketed")  # the options a study writes one file to (argparse dests)
OUTPUT_FOLDERS = ("out", "plots", "save_optimised")  # the options a study writes files into (argparse dests)


def check_outputs(args: argparse.Namespace, prog: str) -> None:
    """Every output the study's options name (``--json``/``--csv`` files, ``--out``/``--plots``/
    ``--save-optimised`` folders),
    checked by hltrun's destination policy (framework/destinations.py) before the study measures anything:
    an unwritable one is one ModuleError line (exit 4) now, not a traceback after the run. As hltrun does,
    a missing folder is created here (the probe), a folder where a file should go is refused."""
    from hltrun.framework.destinations import check_file_destination, check_folder_destination

    for option in OUTPUT_FOLDERS:
        folder = getattr(args, option, None)
        if isinstance(folder, (str, os.PathLike)):
            check_folder_destination(folder, f"{prog} --{option.replace('_', '-')}")
    for option in OUTPUT_FILES:
        path = getattr(args, option, None)
        if isinstance(path, (str, os.PathLike)):
            check_file_destination(path, f"{prog} --{option.replace('_', '-')}")


def named_models(names: Sequence[str], folder: Path, prog: str) -> list[Path]:
    """``<name>.onnx`` in ``folder`` for each ``--models`` name: one that is not a readable file is one
    BenchError line naming it (exit 2, an argument error), before the study reads its sample or loads an engine."""
    from hltrun.framework.resources import unreadable_reason

    paths = [folder / f"{name}.onnx" for name in names]
    for name, path in zip(names, paths):
        why = unreadable_reason(path, "model file")
        if why is not None:
            raise BenchError(f"{prog}: --models {name}: {why}")
    return paths


def check_model(path: Path, prog: str, inputs: Mapping[str, Any] | None = None) -> None:
    """Refuse, in hltrun's own line, a model whose inputs the scorer would refuse: ``path`` is opened on
    ONNX Runtime as the scorer opens it (empty or unreadable file, not ONNX, input types, the input
    contract), before a study runs anything of its own on it. Its outputs are each engine's business
    (a study skips an engine that cannot find the score). ``inputs``: ``BackendOptions``'."""
    from hltrun.framework.errors import ConfigError, ModuleError, one_line
    from hltrun.modules.inference import BackendOptions, create_backend

    try:
        create_backend("onnxruntime", path, BackendOptions(threads=1, **(inputs or {}))).load(outputs=False).close()
    except (ModuleError, ConfigError) as exc:
        raise BenchError(f"{prog}: {one_line(exc)}") from None


def read_sample_jets(path: Path, prog: str, max_events: int | None = None) -> tuple[Any, Any]:
    """``preprocess.load_jets`` of the sample a user named (``--sample``): a missing, unreadable or corrupt
    file, or one without the jet branches, is one BenchError line naming it (exit 2), not a traceback."""
    from uproot.deserialization import DeserializationError

    from hltrun.framework.resources import unreadable_reason
    from hltrun.modules.models.preprocess import load_jets

    why = unreadable_reason(path, "sample file")
    if why is not None:
        raise BenchError(f"{prog}: --sample: {why}")
    try:
        return load_jets(str(path), max_events=max_events)
    except (OSError, ValueError, KeyError, DeserializationError) as exc:  # what uproot raises for such a file
        raise BenchError(f"{prog}: --sample {path}: cannot read its jets ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from None


def interleave(variants: Mapping[str, Callable[[], T]], repeat: int) -> dict[str, list[T]]:
    """Run every variant once per round, ``repeat`` rounds, in turn: drift on a shared machine hits all alike.
    A study's runs take minutes: on a terminal a bar counts them (run k of N, the variant running)."""
    from tqdm import tqdm

    results: dict[str, list[T]] = {name: [] for name in variants}
    with tqdm(total=repeat * len(variants), unit="run", desc="hltbench", leave=False, disable=None,
              dynamic_ncols=True) as bar:  # disable=None: only on a terminal, as hltrun's own bar
        for _ in range(repeat):
            for name, fn in variants.items():
                bar.set_postfix_str(name)
                results[name].append(fn())
                bar.update(1)
    return results


def write_json(path: Path, result: Mapping[str, Any], study: str) -> Path:
    """``result`` with the machine record under ``machine`` (unless it has one), written atomically."""
    doc = {"study": study, "machine": machine(), **result} if "machine" not in result else {"study": study, **result}
    with writing(path, f"hltbench {study} --json") as staged:
        with io.TextIOWrapper(staged.open(), encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, default=_plain)
    print(f"wrote {path}")
    return path


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> str:
    """One row per dict as CSV text: columns ``fields`` (a row's missing cell empty, other keys left out),
    else the first row's."""
    rows = list(rows)
    text = io.StringIO(newline="")
    out = csv.DictWriter(text, fieldnames=list(fields or (rows[0] if rows else ["empty"])), restval="",
                         extrasaction="ignore" if fields else "raise")
    out.writeheader()
    out.writerows(rows)
    return text.getvalue()


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], study: str) -> Path:
    """One row per dict (columns from the first row), written atomically."""
    write_text(path, csv_text(rows), f"hltbench {study} csv")
    print(f"wrote {path}")
    return path


def _plain(value: Any) -> Any:
    """JSON for numpy arrays and scalars, paths and the rest (as text)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


PATH_SAMPLES = ("qcd_dijet", "rsg_ww_3p5TeV")  # what configs/path.yaml reads


def path_config() -> Path:
    """The shipped default path, configs/path.yaml: what most studies run."""
    return shipped_dir("configs") / "path.yaml"


def path_files() -> list[Path]:
    """The default path's input files, absolute (studies run it from any directory)."""
    return [sample_path(name) for name in PATH_SAMPLES]


def default_path(study: str, services: dict[str, Any], *overrides: str) -> Any:
    """The default path as most studies time it: configs/path.yaml on its shipped samples (absolute paths),
    ONNX Runtime unless an override says otherwise, no output module, only ``services``; a built Process."""
    from hltrun.framework.config import apply_overrides, read_yaml, validate
    from hltrun.framework.process import Process

    data = apply_overrides(read_yaml(path_config()), [
        "endpaths={}", "options.wantSummary=false", f"source.files={json.dumps([str(f) for f in path_files()])}",
        "modules.vae.backend=onnxruntime", *overrides])
    del data["modules"]["out"]
    data["services"] = services
    return Process(validate(data, f"hltbench {study}"))
