"""A native library's notice kept off the console (framework/native_stderr.py), every other line kept.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ to fd 2 on its first
allocation in a process, past ``-q``; the shipped path picks TFLite, so every run showed it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hltrun.framework.native_stderr import without_native_notice
from tests.agreement import MODELS


def test_only_the_notice_is_dropped_and_the_rest_is_kept_in_order(capfd):
    with without_native_notice(lambda line: line.startswith("INFO: noise")):
        os.write(2, b"first real line\nINFO: noise from C++\n")
        os.write(2, b"second real line\n")
        os.write(2, b"last line without newline")
    os.write(2, b"\nafter\n")
    err = capfd.readouterr().err
    assert "noise" not in err
    assert err == "first real line\nsecond real line\nlast line without newline\nafter\n"


def test_lines_written_inside_a_failing_block_are_still_shown(capfd):
    with pytest.raises(RuntimeError):
        with without_native_notice(lambda line: False):
            os.write(2, b"the engine's own error\n")
            raise RuntimeError("failed")
    assert capfd.readouterr().err == "the engine's own error\n"


def test_a_large_output_does_not_block_the_call(capfd):
    """More than a pipe holds (64 KiB): a reader drains it while the block runs."""
    line = b"x" * 99 + b"\n"
    with without_native_notice(lambda text: False):
        for _ in range(3000):
            os.write(2, line)
    assert len(capfd.readouterr().err) == 300_000


def test_the_shipped_tflite_model_prints_no_delegate_notice():
    """A fresh process (the notice is printed once per process), the backend as the path runs it."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (extra 'cpu') not installed")
    code = f"MODEL = {str(MODELS / 'conv_vae.tflite')!r}\n" + textwrap.dedent("""
        from hltrun.modules.inference import BackendOptions, create_backend
        backend = create_backend("tflite", MODEL, BackendOptions()).load()
        backend.warm_up()
        print("loaded", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"
    assert "XNNPACK delegate" not in done.stderr, done.stderr
