"""Reference outputs of the shipped path: every event's decision and per-jet scores, per model and backend.

``data/reference/<model>_<backend>.root`` holds what ``hltrun configs/path.yaml`` gives on all shipped
samples when the output keeps every event (``select_events: []``). ``tests/test_reference_outputs.py``
reruns the same commands and compares with these files through the hltdiff library: decisions
exactly, scores within ``SCORE_RTOL``.

Regenerate them on purpose, and only then: after retraining or re-exporting a model, after changing
thresholds, or after a deliberate change of the physics of the path (batching, inputs). The tool
prints the hltdiff table of old vs new before it replaces a file, so the change is reviewed, not
slipped in::

    python -m hltrun.tools.physics.make_reference            # rerun, show the differences, rewrite data/reference/
    python -m hltrun.tools.physics.make_reference --check    # rerun and compare only (exit 1 when anything differs)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from hltrun.framework.atomic import write_bytes
from hltrun.modules.inference.base import AGREEMENT_RTOL
from hltrun.tools.catalogue import MODELS, SAMPLE_NAMES

from hltrun.tools.catalogue import checkout  # noqa: E402

ROOT = checkout()
REFERENCE_DIR = ROOT / "data" / "reference"
CONFIG = ROOT / "configs" / "path.yaml"
SAMPLES = SAMPLE_NAMES
BACKENDS = ("onnxruntime", "tensorflow")
# ORT vs TF differ by <= AGREEMENT_RTOL relative on the score (the project's agreement criterion);
# reruns on one backend are bit-identical, so the same bound catches any real change.
SCORE_RTOL = AGREEMENT_RTOL
SCORE_ATOL = 1e-6


def reference_path(model: str, backend: str, folder: Path = REFERENCE_DIR) -> Path:
    return folder / f"{model}_{backend}.root"


def command(model: str, backend: str, output: Path) -> list[str]:
    """The hltrun command line whose output is the reference for (model, backend)."""
    files = "[" + ", ".join(f"data/{s}.root" for s in SAMPLES) + "]"
    return [sys.executable, "-m", "hltrun.framework.cli", str(CONFIG), "-q",
            f"source.files={files}", f"modules.vae.model={model}", f"modules.vae.backend={backend}",
            "modules.out.select_events=[]",
            f"modules.out.file={output}", "options.accelerators=[cpu]", "services={}"]


def run(model: str, backend: str, output: Path) -> None:
    """Run the reference command; raise with hltrun's own error line if it fails."""
    res = subprocess.run(command(model, backend, output), cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"hltrun failed for {model} on {backend} (exit {res.returncode}): "
                           f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")


def compare_files(reference: Path, candidate: Path):
    """hltdiff of reference vs candidate, both keeping every event."""
    from hltrun.tools.hltdiff import compare, read_side

    return compare(read_side([reference], "Events"), read_side([candidate], "Events"),
                   rtol=SCORE_RTOL, atol=SCORE_ATOL, selected_old=False, selected_new=False)


def main(argv: list[str] | None = None) -> int:
    from hltrun.framework.stdio import standard_streams

    standard_streams()  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
    ap = argparse.ArgumentParser(prog="python -m hltrun.tools.physics.make_reference", description=__doc__.splitlines()[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare only; do not rewrite data/reference/")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                    help="shipped models whose reference outputs are made or checked (default: all)")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                    help="backends whose reference outputs are made or checked (default: all)")
    args = ap.parse_args(argv)
    from hltrun.tools.hltdiff import render_header, render_products, render_table

    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    differs = False
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for backend in args.backends:
                new = Path(tmp) / f"{model}_{backend}.root"
                print(f"== {model} on {backend}", flush=True)
                run(model, backend, new)
                ref = reference_path(model, backend)
                if ref.exists():
                    diff = compare_files(ref, new)
                    print(render_header(diff))
                    print(render_table(diff))
                    print(render_products(diff, SCORE_RTOL, SCORE_ATOL))
                    differs |= not diff.identical
                else:
                    print(f"no reference yet: {ref}")
                    differs = True
                if not args.check:
                    write_bytes(ref, new.read_bytes(), "make_reference")  # /tmp may be another file system
                    print(f"wrote {ref.relative_to(ROOT)}")
    return 1 if (differs and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
