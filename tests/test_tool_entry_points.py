"""Every command-line entry point in tools/ (hltcard, hltdiff, hltinputs, hltbench and the physics tools) meets
closed and full standard streams the same way (framework/stdio.py ``entry_point``): a closed stderr (``2>&-``) sent
the physics tools' refusals into stdout, their product; ``--help > /dev/full`` lost the text with exit 0, and a
summary to a full stdout ended in a traceback after the work."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# module under hltrun.tools -> (the name its lines start with, a refusal of its own: arguments, exit code);
# "{tmp}" is a folder that holds nothing
ENTRY_POINTS = {
    "physics.conv_tflite": ("conv_tflite", ["--out", "{tmp}/x.tflite", "--model", "{tmp}/m.onnx"], 2),
    "physics.evaluate_models": ("evaluate_models", ["--models-dir", "{tmp}"], 3),
    "physics.export_onnx": ("export_onnx", ["--check-file", "{tmp}/a.root"], 2),
    "physics.generate_events": ("generate_events", ["--process", "nope"], 2),
    "physics.make_large_sample": ("make_large_sample", ["--inputs", "{tmp}/a.root"], 3),
    "physics.make_reference": ("make_reference", ["--models", "nope"], 2),  # argparse's: it has no cheaper one
    "physics.optimize_conv": ("optimize_conv", ["--model", "{tmp}/m.onnx", "--out", "{tmp}/o.onnx"], 2),
    "physics.quantize_models": ("quantize_models", ["--background", "{tmp}/a.root"], 2),
    "physics.train_vae": ("train_vae", ["--epochs", "0"], 2),
    "physics.card": ("hltcard", ["{tmp}/m.onnx", "--background", "{tmp}/a.root"], 2),
    "hltdiff": ("hltdiff", ["{tmp}/a.root", "{tmp}/b.root"], 2),
    "declare_inputs": ("hltinputs", ["{tmp}/m.onnx"], 2),
    "bench.cli": ("hltbench", ["nope"], 2),
}


def _entry_points_in_tools() -> set[str]:
    """Modules of tools/ with a top-level ``main`` (what ``python -m`` or a console script runs)."""
    found = set()
    for path in (REPO / "tools").rglob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            found.add(".".join(path.relative_to(REPO / "tools").with_suffix("").parts))
    return found


def _run(module: str, args: list[str], tmp: Path, *, stdout, stderr, close_stderr: bool = False):
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    return subprocess.run([sys.executable, "-m", f"hltrun.tools.{module}", *argv], cwd=tmp, stdout=stdout,
                          stderr=stderr, text=True, timeout=300,
                          preexec_fn=(lambda: os.close(2)) if close_stderr else None)


def test_every_entry_point_is_tested():
    """A new tool with a main is added to ENTRY_POINTS (and wrapped by ``entry_point``)."""
    assert _entry_points_in_tools() == set(ENTRY_POINTS)


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_a_closed_stderr_keeps_a_refusal_out_of_stdout(module, tmp_path):
    _, args, code = ENTRY_POINTS[module]
    done = _run(module, args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_stderr=True)
    assert (done.returncode, done.stdout) == (code, "")


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_to_a_full_stdout_is_one_line_not_lost(module, tmp_path):
    prog = ENTRY_POINTS[module][0]
    with open("/dev/full", "w") as full:
        done = _run(module, ["--help"], tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == (2 if prog == "hltdiff" else 4)  # hltdiff's exit codes: 0, 1 or 2 (bad input)
    assert done.stderr.splitlines() == [f"{prog}: error: stdout: cannot print its output (No space left on device)"]


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_a_refusal_with_a_full_stdout_keeps_its_line_and_code(module, tmp_path):
    _, args, code = ENTRY_POINTS[module]
    with open("/dev/full", "w") as full:
        done = _run(module, args, tmp_path, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == code and "Traceback" not in done.stderr, done.stderr


def test_a_summary_to_a_full_stdout_is_one_line_after_the_work(tmp_path):
    """make_large_sample wrote its sample, then its 'wrote ...' line to /dev/full was a traceback, exit 1."""
    out = tmp_path / "s.root"
    with open("/dev/full", "w") as full:
        done = _run("physics.make_large_sample", ["--events", "10", "--out", str(out)], tmp_path, stdout=full,
                    stderr=subprocess.PIPE)
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == ("make_large_sample: error: stdout: cannot print its output "
                                            "(No space left on device)")
    assert out.exists()
