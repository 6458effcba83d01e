"""A native library's notice kept off the console (framework/native_stderr.py), every other line kept.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ to fd 2 on its first
allocation in a process, past ``-q``; the shipped path picks TFLite, so every run showed it."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest

from hltrun.framework.native_stderr import without_native_lines, without_native_notice
from hltrun.modules.inference.tf_import import start_up_lines
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


# TensorFlow's start-up log (modules/inference/tf_import.py): TF 2.21 prints "I0000 ... port.cc:153] oneDNN custom
# operations are on" twice per import, before its logging reads TF_CPP_MIN_LOG_LEVEL, so -q did not keep it off.
ABSL_INFO = "I0000 00:00:1796685192.562883    8970 port.cc:153] oneDNN custom operations are on. ..."
ABSL_WARNING = "W0000 00:00:1796685192.562883    8970 loader.cc:12] a warning"
ABSL_ERROR = "E0000 00:00:1796685192.562883    8970 loader.cc:12] could not load the op library"
PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def test_the_filter_process_keeps_every_other_line_in_order(capfd):
    with without_native_lines("^INFO: noise"):
        os.write(2, b"first real line\nINFO: noise from C++\n")
        os.write(2, b"second real line\n")
        os.write(2, b"last line without newline")
    os.write(2, b"\nafter\n")
    assert capfd.readouterr().err == "first real line\nsecond real line\nlast line without newline\nafter\n"


def test_lines_before_an_abort_inside_the_block_still_reach_the_console():
    """A native library that aborts in its import (TensorFlow's fatal log on a CPU without AVX) must still be
    seen saying why: the lines are written by the filter process, which outlives the aborted one."""
    code = textwrap.dedent("""
        import os
        from hltrun.framework.native_stderr import without_native_lines
        with without_native_lines("^INFO"):
            os.write(2, b"INFO: dropped\\nF0000 the library was compiled to use AVX instructions\\n")
            os.abort()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr == "F0000 the library was compiled to use AVX instructions\n"


@pytest.mark.parametrize("level, kept", [
    ("2", [ABSL_ERROR]),
    ("1", [ABSL_WARNING, ABSL_ERROR]),
    ("3", [ABSL_ERROR]),  # an error is never hidden, whatever the level
    ("0", [PRE_INIT, ABSL_INFO, ABSL_WARNING, ABSL_ERROR]),  # the user asked for everything
])
def test_start_up_lines_are_dropped_as_tf_cpp_min_log_level_asks(capfd, level, kept):
    lines = [PRE_INIT, ABSL_INFO, ABSL_WARNING, ABSL_ERROR,
             "2026-01-30 22:44:42.456316: I tensorflow/core/util/port.cc:153] oneDNN custom operations are on."]
    pattern = start_up_lines(int(level))
    with without_native_lines(pattern) if pattern else contextlib.nullcontext():
        os.write(2, "".join(line + "\n" for line in lines).encode())
    err = capfd.readouterr().err.splitlines()
    assert err == (lines if level == "0" else kept)


def test_the_tensorflow_backend_prints_no_start_up_log():
    """A fresh process (the lines come with the import), the backend as ``backend: tensorflow`` runs it."""
    pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    code = f"MODEL = {str(MODELS / 'conv_vae.keras')!r}\n" + textwrap.dedent("""
        from hltrun.modules.inference import BackendOptions, create_backend
        backend = create_backend("tensorflow", MODEL, BackendOptions()).load()
        backend.warm_up()
        print("loaded", flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded"
    assert done.stderr == "", done.stderr


def test_tflite_on_tensorflows_interpreter_prints_no_start_up_log():
    """Without LiteRT (``ai_edge_litert``) the tflite backend runs TensorFlow's interpreter: its import printed the
    start-up lines the tensorflow backend keeps off the console."""
    pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    code = f"MODEL = {str(MODELS / 'conv_vae.tflite')!r}\n" + textwrap.dedent("""
        import sys
        sys.modules["ai_edge_litert"] = None  # as if not installed: import fails, TensorFlow's interpreter runs
        from hltrun.modules.inference import BackendOptions, create_backend
        backend = create_backend("tflite", MODEL, BackendOptions()).load()
        backend.warm_up()
        print(backend.runtime, flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tensorflow.lite"
    assert done.stderr == "", done.stderr


@pytest.mark.parametrize("filtered", ["without_native_lines('^INFO')", "without_native_notice(lambda line: "
                                      "line.startswith('INFO'))"], ids=["lines", "notice"])
def test_two_threads_blocks_ending_first_in_first_out_leave_fd_2_as_it_was(filtered):
    """fd 2 is the process's: two threads of a Dask worker (``threadsPerWorker: 2``), each loading its model, both
    filter it. Thread A's block began, then B's, and A's ended first: B had saved A's pipe as "fd 2" and put it back
    at its end, so fd 2 stayed on A's pipe for good and A waited forever for its end of file (until 2026-12-07)."""
    code = textwrap.dedent(f"""
        import os, sys, threading, time
        from hltrun.framework.native_stderr import without_native_lines, without_native_notice
        before = os.fstat(2)
        a_inside, b_inside, done = threading.Event(), threading.Event(), []
        def a():
            with {filtered}:
                os.write(2, b"INFO: dropped\\nfrom a\\n")
                a_inside.set()
                b_inside.wait(3)  # never set while A's block holds fd 2: B waits for A to end
            done.append("a")
        def fd_2_restored_by_a():
            now = os.fstat(2)
            return (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino)
        def b():
            a_inside.wait(30)  # A's block first
            with {filtered}:
                b_inside.set()
                os.write(2, b"from b\\n")
                for _ in range(300):  # A's block ends while B's runs (never, where B waited for A to end)
                    if fd_2_restored_by_a():
                        break
                    time.sleep(0.01)
            done.append("b")
        ta = threading.Thread(target=a, daemon=True)
        ta.start()
        tb = threading.Thread(target=b, daemon=True)
        tb.start()
        ta.join(60)
        tb.join(60)
        after = os.fstat(2)
        print(sorted(done), (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino), flush=True)
        os._exit(0)  # a thread left waiting must not hold the process
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "['a', 'b'] True", (done.stdout, done.stderr)
    assert sorted(done.stderr.splitlines()) == ["from a", "from b"]


@pytest.mark.parametrize("closed", ["2>&-", "sys.stderr closed"])
def test_a_process_without_python_stderr_runs_the_filtered_block(closed):
    """Python sets sys.stderr to None where the process starts with fd 2 closed (``2>&-``, cron, pythonw): a
    script calling the tensorflow backend there failed in the filter's flush (AttributeError, until 2026-12-07)."""
    code = textwrap.dedent("""
        import os, sys
        from hltrun.framework.native_stderr import without_native_lines, without_native_notice
        if sys.stderr is not None:
            sys.stderr.close()
        with without_native_lines("^INFO"):
            with without_native_notice(lambda line: False):
                pass
        print("ran", sys.stderr is None, flush=True)
    """)
    done = subprocess.run(["/bin/sh", "-c", f'"$0" -c "$1" {"2>&-" if closed == "2>&-" else ""}', sys.executable,
                           code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == f"ran {closed == '2>&-'}", (done.stdout, done.stderr)


def test_tensorflow_imported_already_starts_no_filter(monkeypatch):
    """The filter is a child process (~30 ms): started for TensorFlow's first import only, not on every backend
    load of a process that has it (a job's streams, auto's candidates, a Dask worker's next job)."""
    pytest.importorskip("tensorflow", reason="tensorflow (extra 'cpu') not installed")
    import tensorflow

    from hltrun.modules.inference import tf_import

    started: list[str] = []
    monkeypatch.setattr(tf_import, "without_native_lines", lambda pattern: started.append(pattern))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    assert tf_import.import_tensorflow("a test") is tensorflow
    assert started == []
