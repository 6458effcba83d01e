"""hltdiff, hltinputs, hltbench and hltcard with their stderr closed (``2>&-``) or into a pipe whose reader
left (``2>&1 | head -1``), refusing a missing file: the refusal's own exit code (2), and nothing in stdout.

They used to exit 1 (hltdiff closed; hltdiff, hltinputs, hltbench, hltcard reader gone: the error line's
BrokenPipeError) or, with stderr closed, write the error line into stdout (hltinputs, hltbench: ``print(...,
file=sys.stderr)`` prints to stdout when ``sys.stderr`` is None), the command's product a user may redirect.
hltrun's own cases are in tests/test_robustness.py and tests/test_destinations.py (framework/stdio.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _commands(tmp: Path) -> dict[str, list[str]]:
    """Each command, refusing a file that is not there (exit 2), run as its console script runs it."""
    run = [sys.executable, "-c"]
    return {
        "hltdiff": [*run, "import sys; from hltrun.tools.hltdiff import main; sys.exit(main())",
                    str(REPO / "data" / "qcd_dijet.root"), str(tmp / "nope.root")],
        "hltinputs": [*run, "import sys; from hltrun.tools.declare_inputs import main; sys.exit(main())",
                      str(tmp / "nope.onnx")],
        "hltbench": [*run, "import sys; from hltrun.tools.bench.cli import main; sys.exit(main())", "verdict",
                     str(REPO / "data" / "models" / "conv_vae.onnx"), "--sample", str(tmp / "nope.root")],
        "hltcard": [*run, "import sys; from hltrun.tools.physics.card import main; sys.exit(main())",
                    str(tmp / "nope.onnx"), "--background", str(REPO / "data" / "qcd_dijet.root")],
    }


COMMANDS = ["hltdiff", "hltinputs", "hltbench", "hltcard"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refusal_with_stderr_closed_keeps_its_exit_code_and_leaves_stdout_alone(command, tmp_path):
    done = subprocess.run(_commands(tmp_path)[command], cwd=tmp_path, stdout=subprocess.PIPE,
                          preexec_fn=lambda: os.close(2), timeout=120)
    assert (done.returncode, done.stdout) == (2, b"")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_refusal_into_a_pipe_whose_reader_left_keeps_its_exit_code(command, tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes: every write is EPIPE
    try:
        done = subprocess.run(_commands(tmp_path)[command], cwd=tmp_path, stdout=write, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 2


# the physics tools run as ``python -m hltrun.tools.physics.X``, each with an argument or input error before any
# library loads (tests/test_physics_tool_args.py): with stderr closed, ``catalogue.usage_error``'s and their own
# ``print(..., file=sys.stderr)`` wrote the line into stdout (the tool's printed result a user may redirect), and
# with a reader gone its BrokenPipeError made the refusal exit 1
PHYSICS_TOOLS = {
    "generate_events": (["--process", "qcd", "--events", "0"], 2),
    "evaluate_models": (["--max-events", "0"], 2),
    "make_large_sample": (["--events", "10", "--inputs", "{t}/nope.root", "--out", "{t}/s.root"], 3),
    "quantize_models": (["--max-events", "0"], 2),
    "train_vae": (["--model", "conv", "--beta", "0"], 2),
    "conv_tflite": (["--out", "{t}/c.onnx"], 2),
    "optimize_conv": (["--model", "{t}/nope.onnx", "--out", "{t}/x.onnx"], 2),
    "export_onnx": (["--check-file", "{t}/nope.root"], 2),
}


def _physics_tool(tool: str, tmp: Path) -> tuple[list[str], int]:
    argv, code = PHYSICS_TOOLS[tool]
    return [sys.executable, "-m", f"hltrun.tools.physics.{tool}", *(a.format(t=tmp) for a in argv)], code


@pytest.mark.parametrize("tool", sorted(PHYSICS_TOOLS))
def test_a_physics_tool_refusing_with_stderr_closed_keeps_its_exit_code_and_leaves_stdout_alone(tool, tmp_path):
    command, code = _physics_tool(tool, tmp_path)
    done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2), timeout=300)
    assert (done.returncode, done.stdout) == (code, b"")


@pytest.mark.parametrize("tool", sorted(PHYSICS_TOOLS))
def test_a_physics_tool_refusing_into_a_pipe_whose_reader_left_keeps_its_exit_code(tool, tmp_path):
    command, code = _physics_tool(tool, tmp_path)
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(command, cwd=REPO, stdout=write, stderr=write, timeout=300)
    finally:
        os.close(write)
    assert done.returncode == code
