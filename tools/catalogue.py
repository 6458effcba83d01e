"""The one catalogue of what hltrun's tools know by name: the shipped models, the shipped samples
and their physics labels, and where the tools read and write them. Every tool imports these names
instead of defining its own list, so adding a model or a sample is one line here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psutil

from hltrun.framework.resources import shipped_dir

MODELS: tuple[str, ...] = ("conv_vae", "gcn_vae")  # data/models/<name>.{keras,onnx}


@dataclass(frozen=True)
class Sample:
    name: str  # data/<name>.root
    label: str  # for plots and tables
    signal: bool


SAMPLES: tuple[Sample, ...] = (
    Sample("qcd_dijet", "QCD dijets", False),
    Sample("rsg_ww_1p5TeV", "RS G* (1.5 TeV) → WW", True),
    Sample("rsg_ww_3p5TeV", "RS G* (3.5 TeV) → WW", True),
    Sample("zprime_tt_2TeV", "Z′ (2 TeV) → tt̄", True),
)
SAMPLE_NAMES: tuple[str, ...] = tuple(s.name for s in SAMPLES)


def data_dir() -> Path:
    """The shipped ``data/`` folder (the checkout's in an editable install)."""
    return shipped_dir("data")


def checkout() -> Path:
    """The folder holding configs/, data/, docs/ and tools/ (the checkout, in the editable install the tools
    assume for what they write beside the shipped files)."""
    return data_dir().parent


def models_dir() -> Path:
    return data_dir() / "models"


def sample_path(name: str) -> Path:
    return data_dir() / f"{name}.root"


def rss_mb() -> float:
    """Resident set size of this process now (MiB)."""
    return psutil.Process().memory_info().rss / 2**20


def usage_error(prog: str, message: str) -> NoReturn:
    """An argument or usage error of a tool: one line ``prog: message`` on stderr and exit 2 (README's
    exit codes: 2 configuration), as hltbench's studies say theirs (``BenchError``). ``raise SystemExit("msg")``
    exited 1, the code of a run that failed, without naming the tool."""
    print(f"{prog}: {message}", file=sys.stderr)
    raise SystemExit(2)


def require_files(prog: str, **files: Path | None) -> None:
    """A tool's input files (``--model=path``...), each readable, or one line naming the option and the file
    (``framework.resources.unreadable_reason``'s words) and exit 2, before the tool loads TensorFlow or
    ONNX: not the traceback of whichever library opens it first. None (an option not given) is skipped."""
    from hltrun.framework.resources import unreadable_reason

    for option, path in files.items():
        why = None if path is None else unreadable_reason(path, f"--{option.replace('_', '-')}")
        if why is not None:
            usage_error(prog, why)
