"""tools/gpu_check.sh against what the lent GPU machines bring back: the device tool returns at most 8
files from $OUT, at most 2 folders down (/work/.library/device: 'files back from $OUT'). The script is run
here with a stand-in ``python3`` that answers every step at once, so only the script's own bookkeeping
is checked: the files it leaves in $OUT, and that every step's log travels in them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_check.sh"
RETURNED_FILES = 8  # the device tool's limit on files brought back from $OUT


# a python3 that logs its arguments and exits 0, writing an empty hltrun.json where a path run is given a
# --report-dir; a 4-stream run writes its report too but exits 143, as hltrun stopped by timeout's SIGTERM.
# The versions step sees a GPU; pytest fails one test and expects another's failure, naming them only where its -r
# option asks for failures and expected failures (as pytest does), and a test prints whether CUDA captured a
# recurrent network, a translator form or a several-input network (-s); a sweep stops with its one-line error
STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
prev=""
for a in "$@"; do
    [ "$prev" = "--report-dir" ] && mkdir -p "$a" && echo '{}' > "$a/hltrun.json"
    prev="$a"
done
case "$*" in *configs/path.yaml*) cat "$STUB_PATH_LOG" ;; esac
case "$*" in *numberOfStreams=4*) exit 143 ;; esac
case "$*" in "-P -")
    echo "torch cuda: 13.0 available: True NVIDIA H100 80GB HBM3"
    echo "hltrun auto: ('torch', 'auto: PyTorch on NVIDIA H100 80GB HBM3')" ;;
esac
case "$*" in *"-m pytest"*)
    echo "F.......recurrent GRU under CUDA graphs: capture REFUSED (torch 2.11.0+cu130, cuDNN 91300): torch: model ..."
    echo "..translator form knn-gathernd under CUDA graphs: CAPTURED, one graph per bucket [1, 2, 4, 8, 16, 32] (...)"
    echo ".several-input EdgeConv under CUDA graphs: CAPTURED, one graph per bucket [1, 2, 4, 8, 16, 32] (...)"
    echo ".x"
    for a in "$@"; do
        case "$a" in -r*[fFaA]*) echo "FAILED tests/test_torch_gpu.py::test_scores_agree[conv_vae] - 3e-3 apart" ;; esac
        case "$a" in -r*[xaA]*) echo "XFAIL tests/test_torch_gpu.py::test_capture[GRU] - CUDA refused to capture" ;; esac
    done
    echo "1 failed, 8 passed, 1 xfailed in 1.00s"
    exit 1 ;;
esac
case "$*" in *gpu-sweep*) echo "hltbench gpu-sweep: torch: device gpu requested, but PyTorch sees no CUDA GPU"; exit 4 ;; esac
exit 0
"""

# what a path run prints around its figures (a rehearsal's torch run, 4 streams, on the CPU): the summary
# must keep the device split's row and the accelerator line, which say what ran where
PATH_LOG = """TimeReport ---------- Event  Summary ---[sec]----
TimeReport       event loop CPU/event = 0.002047
TimeReport      event loop Real/event = 0.001793
TimeReport     sum Streams Real/event = 0.006836
TimeReport   0.003963     0.003963     0.003963  vae
TimeReport  per event     per exec    per visit  Name

TimeReport ---------- Inference device split ---[Real msec per device call; per event]----
TimeReport     H2D ms compute ms     D2H ms copies % kB in/call kB out/call padded jets % calls/event   ms/event  Name
TimeReport          -     3.5429          -        -          -           -          0.00        1.00     3.5429  vae
TimeReport     H2D ms compute ms     D2H ms copies % kB in/call kB out/call padded jets % calls/event   ms/event  Name
TimeReport warm-up at begin_job (compiling or capturing every batch bucket, the slowest stream's backend; charged to no event): vae 3.16 s

JobReport  events read 2000, skipped (skipEvents) 0, processed 2000 (passed 22, failed 1978, error 0), read but not processed 0
JobReport  wall time 29.44 s, event loop 3.59 s at 557.6 events/s, begin_job 24.15 s, start to first event 25.87 s, streams 4
JobReport  accelerator for 'vae': torch on cpu (torch on cpu (explicit)); model data/models/conv_vae.onnx
"""


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    """A PATH whose python3 is STUB (no nvidia-smi: that step fails, as here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python3"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def _run(tmp_path: Path, path: str) -> tuple[Path, list[str]]:
    """The script under the stub: $OUT, and the stub's command lines."""
    out, log, path_log = tmp_path / "out", tmp_path / "stub.log", tmp_path / "path.log"
    path_log.write_text(PATH_LOG)
    env = {**os.environ, "PATH": path, "OUT": str(out), "SITE": str(tmp_path / "site"), "TMPDIR": str(tmp_path),
           "STUB_LOG": str(log), "STUB_PATH_LOG": str(path_log)}
    res = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, log.read_text().splitlines()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_out_holds_what_the_device_tool_brings_back(tmp_path, stub_path):
    out, _ = _run(tmp_path, stub_path)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= RETURNED_FILES, sorted(str(p.relative_to(out)) for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert (out / "summary.txt").is_file()
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    for step in ("versions", "pytest-torch", "sweep-torch", "path-ort-1", "path-torch-4", "farm", "hltbench"):
        assert f"{step}.txt" in names, (step, sorted(names))


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_farm_takes_the_gpu_runs_that_wrote_a_report(tmp_path, stub_path):
    """A 4-stream run stopped by its time limit (its hltrun.json of fewer events would make the farm refuse
    every run) leaves the farm the 1- and 2-stream runs, not nothing."""
    _, calls = _run(tmp_path, stub_path)
    farm = [c for c in calls if "gpu-farm" in c]
    assert len(farm) == 1, calls
    assert "path-torch-1" in farm[0] and "path-torch-2" in farm[0] and "path-torch-4" not in farm[0]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_summary_keeps_each_path_runs_device_split_and_accelerator(tmp_path, stub_path):
    """summary.txt is read first (and the device tool shows only the output's tail): per path run it keeps
    the device split's figures (once, without the table's repeated header) and the accelerator line,
    which a count of grepped lines once cut off."""
    out, _ = _run(tmp_path, stub_path)
    summary = (out / "summary.txt").read_text()
    runs = summary.split("== path-")[1:]
    assert [r.split(":")[0] for r in runs] == ["ort-1", "torch-1", "torch-2", "torch-4", "jax-4"], summary
    for run in runs:
        run = run.split("\n== ")[0]
        assert "accelerator for 'vae': torch on cpu" in run, run
        assert "3.5429  vae" in run, run
        assert run.count("H2D ms compute ms") == 1, run
        assert "event loop 3.59 s at 557.6 events/s" in run, run


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_the_summary_says_what_ran_where_and_why_a_step_failed(tmp_path, stub_path):
    """The summary alone tells a GPU run's reader whether the GPU was seen (the versions step's torch and auto
    lines), which GPU test failed (pytest asked for failures as well as skips), and why a step stopped (the
    sweep's one-line error): it once gave a failed test only as a count, and a failed step only its exit code;
    until 2026-12-07 an expected failure (a CUDA graph capture refused, said in one line) was a count too, and
    whether CUDA captured the recurrent network was not said at all, nor (until session 39's GPU tests) the translator
    forms, nor (until session 40) the several-input network."""
    out, _ = _run(tmp_path, stub_path)
    summary = (out / "summary.txt").read_text()
    steps = {part.split(":")[0]: part for part in summary.split("\n== ")}
    assert "torch cuda: 13.0 available: True NVIDIA H100" in steps["versions"], summary
    assert "hltrun auto: ('torch'" in steps["versions"], summary
    assert "FAILED tests/test_torch_gpu.py::test_scores_agree[conv_vae]" in steps["pytest-torch"], summary
    assert "1 failed, 8 passed, 1 xfailed" in steps["pytest-torch"], summary
    assert "XFAIL tests/test_torch_gpu.py::test_capture[GRU] - CUDA refused to capture" in steps["pytest-torch"], summary
    assert "recurrent GRU under CUDA graphs: capture REFUSED (torch 2.11.0+cu130" in steps["pytest-torch"], summary
    assert "translator form knn-gathernd under CUDA graphs: CAPTURED, one graph" in steps["pytest-torch"], summary
    assert "several-input EdgeConv under CUDA graphs: CAPTURED, one graph" in steps["pytest-torch"], summary
    assert "PyTorch sees no CUDA GPU" in steps["sweep-torch"], summary
    assert "PyTorch sees no CUDA GPU" in steps["sweep-jax"], summary


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_two_versions_of_a_carried_wheel_install_the_newest_alone(tmp_path, stub_path):
    """pip given two versions of one distribution installs nothing (ResolutionImpossible: no uproot, no awkward,
    no array-api-compat on the GPU machine, so no step could run), and .whl/ holds two once tools/gpu_wheels.sh ran
    again after a release: the wheels step gets the newest of each (fsspec 2026.10.0 after 2026.9.0: by version,
    not by name), never hltrun's own wheel, and the summary names the ones left out."""
    tree = tmp_path / "tree"
    (tree / "tools").mkdir(parents=True)
    shutil.copy2(SCRIPT, tree / "tools" / "gpu_check.sh")
    wheels = ["array_api_compat-1.15.0-py3-none-any.whl", "array_api_compat-1.16.0-py3-none-any.whl",
              "fsspec-2026.10.0-py3-none-any.whl", "fsspec-2026.9.0-py3-none-any.whl",
              "uproot-5.7.7-py3-none-any.whl", "hltrun-0.1.0-py3-none-any.whl"]
    (tree / ".whl").mkdir()
    for name in wheels:
        (tree / ".whl" / name).write_bytes(b"")
    out, log = tmp_path / "out", tmp_path / "stub.log"
    env = {**os.environ, "PATH": stub_path, "OUT": str(out), "SITE": str(tmp_path / "site"), "TMPDIR": str(tmp_path),
           "STUB_LOG": str(log), "STUB_PATH_LOG": str(tmp_path / "none"), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    res = subprocess.run(["bash", str(tree / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    install = [c for c in log.read_text().splitlines() if "pip install" in c and ".whl/" in c]
    assert len(install) == 1, install
    given = sorted(Path(a).name for a in install[0].split() if a.endswith(".whl"))
    assert given == ["array_api_compat-1.16.0-py3-none-any.whl", "fsspec-2026.10.0-py3-none-any.whl",
                     "uproot-5.7.7-py3-none-any.whl"], install
    summary = (out / "summary.txt").read_text()
    assert "array_api_compat-1.15.0-py3-none-any.whl" in summary and "fsspec-2026.9.0" in summary, summary


# a python3 whose `pip download ... -d DIR NAME...` writes an empty NAME-9.9 wheel into DIR for each name
DOWNLOAD_STUB = """#!/bin/sh
dir=""; prev=""
for a in "$@"; do
    case "$prev" in
        -d) dir="$a" ;;
        --python-version|--implementation|--platform) ;;
        *) case "$a" in -*|pip|download) ;; *) : > "$dir/$(echo "$a" | tr - _)-9.9-py3-none-any.whl" ;; esac ;;
    esac
    prev="$a"
done
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_wheels_run_again_replaces_the_earlier_versions(tmp_path):
    """tools/gpu_wheels.sh run again after a release left both versions in .whl/ (and the GPU machine's pip then
    installed nothing): the earlier version of each wheel it fetches goes, other carried wheels (hltrun's own, a
    user's) stay."""
    tree = tmp_path / "tree"
    (tree / "tools").mkdir(parents=True)
    shutil.copy2(REPO / "tools" / "gpu_wheels.sh", tree / "tools" / "gpu_wheels.sh")
    (tree / ".whl").mkdir()
    for name in ("uproot-5.0.0-py3-none-any.whl", "jsonschema_specifications-2025.1.1-py3-none-any.whl",
                 "hltrun-0.1.0-py3-none-any.whl", "their_tool-1.0-py3-none-any.whl"):
        (tree / ".whl" / name).write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(DOWNLOAD_STUB)
    (bin_dir / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "TMPDIR": str(tmp_path)}
    res = subprocess.run(["bash", str(tree / "tools" / "gpu_wheels.sh")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    have = sorted(p.name for p in (tree / ".whl").iterdir())
    assert "uproot-9.9-py3-none-any.whl" in have and "uproot-5.0.0-py3-none-any.whl" not in have, have
    assert "jsonschema-9.9-py3-none-any.whl" in have and "jsonschema_specifications-9.9-py3-none-any.whl" in have
    assert "jsonschema_specifications-2025.1.1-py3-none-any.whl" not in have, have
    assert {"hltrun-0.1.0-py3-none-any.whl", "their_tool-1.0-py3-none-any.whl"} <= set(have), have
    assert len(have) == 12 + 2, have  # the 12 it fetches, one version each, and the two others


SOURCE = ("framework", "modules", "tools", "hltrun", "configs", "tests", "data", "setup.cfg", "pyproject.toml")


def _source_id(root: Path, env: dict[str, str]) -> str:
    """What ``gpu_check.sh --source-id`` prints in ``root`` (under the stub: a script without the option runs
    no real step)."""
    res = subprocess.run(["bash", str(root / "tools" / "gpu_check.sh"), "--source-id"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash, sha256sum")
def test_the_summary_names_the_source_without_git(tmp_path, stub_path):
    """The device tool copies the tree without .git, so the summary's commit is '?' there: its first line also
    gives the source id that --source-id prints on the checkout, so a GPU run's figures name their code; a
    changed source file changes it."""
    tree = tmp_path / "tree"
    for name in SOURCE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "large", "engines"))
        else:
            shutil.copy2(src, tree / name)
    out, log, path_log = tmp_path / "out", tmp_path / "stub.log", tmp_path / "path.log"
    path_log.write_text(PATH_LOG)
    env = {**os.environ, "PATH": stub_path, "OUT": str(out), "SITE": str(tmp_path / "site"), "TMPDIR": str(tmp_path),
           "STUB_LOG": str(log), "STUB_PATH_LOG": str(path_log), "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    res = subprocess.run(["bash", str(tree / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    first = (out / "summary.txt").read_text().splitlines()[0]
    env["OUT"] = str(tmp_path / "out-id")
    source = _source_id(REPO, env)
    assert len(source) == 12 and first.endswith(f"commit ?, source {source}"), (first, source[-300:])
    (tree / "modules" / "inference" / "base.py").write_text("# changed\n", encoding="utf-8")
    assert _source_id(tree, env) != source
