#!/usr/bin/env bash
# One short check of hltrun's GPU code on a machine with an NVIDIA GPU (6 minutes at most, in all).
#
#   OUT=/some/folder tools/gpu_check.sh        # results in $OUT (default ./gpu_out)
#
# $OUT receives summary.txt (each step's exit code and time, its figures, what ran where, why it failed),
# gpu_check.tar.gz (every step's log and output folder, the paths' event files out.root left out; their
# timing.root and scores.root, ~40 kB a run, kept) and, flat beside them, sweep-torch.csv, sweep-jax.csv,
# sweep-torch.png and farm.csv:
# the device tool brings back at most 8 files from $OUT, so the steps work in $WORK (default: a new
# folder under ${TMPDIR:-/tmp}) and the archive is rewritten after every step (a run cut short keeps
# what it did).
#
# The GPU machines have no network: hltrun is installed here from this checkout into /tmp/site
# (pip --no-index --no-build-isolation: needs setuptools in python3; when that fails, a wheel carried
# in .whl/ is used, built beforehand on a networked machine with `pip wheel --no-deps -w .whl .`),
# with any other wheels carried in .whl/ (uproot, awkward, awkward-cpp, cramjam, ...). hltrun
# imports as `hltrun.*` from /tmp/site; python3 runs with -P so that the checkout's folders never
# shadow the installed package.
#
# Carry in .whl/ what the GPU machines lack (they have torch, jax, numpy, onnx, onnxruntime-CPU):
#   tools/gpu_wheels.sh        # array-api-compat, uproot/awkward, boost-histogram, jsonschema ... (~7 MB)
#
# Steps (each under `timeout`, and all of them under one 350 s deadline, so the script ends in time;
# the most wanted first, so a slow machine loses the last ones):
#   versions      nvidia-smi, python packages, torch/JAX devices, hltrun's backends and `auto` choice
#   pytest-torch  tests/test_torch_gpu.py: the torch backend on the GPU (agreement with ONNX Runtime CPU
#                 on every shipped sample with and without CUDA graphs, a graph per bucket, no device
#                 allocation at run time, a CUDA stream per instance, pinned buffers, CUDA events; a recurrent
#                 network and session 39's translator forms (If on values, QDQ Conv, kNN GatherND) under CUDA graphs:
#                 captured, or refused naming cuda_graphs: false, which the summary says)
#   sweep-torch   hltbench gpu-sweep: both models, batch 1 ... 4096, torch with CUDA graphs and op by op
#                 on the GPU beside ONNX Runtime on the CPU, same process: latency median/p99, jets/s,
#                 H2D/compute/D2H (CUDA events), device memory -> $WORK/sweep-torch/sweep.{csv,json,png}
#   path-*        the shipped path end to end (2000 events): ONNX Runtime on 1 CPU stream, then torch on
#                 the GPU with 1, 2 and 4 streams -> $WORK/path-*/hltrun.json
#   farm          hltbench gpu-farm: events/s per GPU, x one CPU core, CPU cores one GPU replaces
#   pytest-gpu    tests/test_jax_gpu.py and tests/test_gpu.py (CUDA wrappers, TensorRT, ORT GPU providers)
#   pytest-fakes  the strict-fake TensorRT / CUDA tests on this Python
#   sweep-jax     the same sweep on jax (XLA compiles 13 buckets per model: slower to start)
#   path-jax-4    the shipped path on jax, 4 streams
#   hltbench      the TensorRT / ORT-GPU engines where installed (absent ones are named, not run)
# Absent pieces are skipped and named (pytest -rs; hltbench 'Not measured here').
#
#   tools/gpu_check.sh --source-id             # prints the source id the summary's first line gives
#
# The device tool copies the working tree without .git, so the commit is '?' there: the summary's first line
# also gives a sha256 of the files that make the figures (code, configs, tests, models and samples), which
# `--source-id` prints on any checkout, to tie a GPU run's figures to a commit.
set -u
cd "$(dirname "$0")/.."
source_id() {  # 12 hex digits of the sha256 of the files below (caches and git-ignored data left out)
    find framework modules tools hltrun configs tests data setup.cfg pyproject.toml -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path 'data/large/*' ! -path 'data/models/engines/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
}
if [ "${1:-}" = "--source-id" ]; then source_id; exit 0; fi
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/hltrun-gpu-check.XXXXXX")}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
SITE="${SITE:-/tmp/site}"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# JAX: device memory figures show what the model needs, not XLA's default 75 % preallocation; the
# buckets compiled by one step are loaded, not compiled again, by the next (persistent cache)
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/hltrun-jax-cache}"
PY=(python3 -P)
export PYTHONSAFEPATH=1  # -P for the children too (hltbench --isolate, tests that start python)
DEADLINE=$((SECONDS + 350))
RC=0
note() { echo "== $*" | tee -a "$SUMMARY"; }
pack() {  # $WORK as $OUT/gpu_check.tar.gz (replaced whole), and the main tables flat beside it
    tar -czf "$OUT/gpu_check.tar.gz.part" --exclude=out.root -C "$WORK" . 2>/dev/null \
        && mv -f "$OUT/gpu_check.tar.gz.part" "$OUT/gpu_check.tar.gz"
    local f
    for f in sweep-torch/sweep.csv sweep-torch/sweep.png sweep-jax/sweep.csv farm/farm.csv; do
        [ -f "$WORK/$f" ] && cp -f "$WORK/$f" "$OUT/${f%%/*}.${f##*.}"
    done
    return 0
}
# what the summary keeps of a step's log (the summary is what is read first, and the device tool shows only the
# output's tail): the figures and the lines that say what ran where, and why a step failed (its last lines:
# the one-line error, a traceback's exception, where a timed-out run had got to)
summary_lines() {  # summary_lines NAME LOG
    case "$1" in
        versions) grep -E '^(python |torch cuda:|jax devices:|cuda\.bindings\.runtime|hltrun auto:|hltrun import failed)| ABSENT ' "$2" ;;
        pytest-*) pytest_lines "$2" ;;
        path-*) path_lines "$2"; [ "$RC" -ne 0 ] && grep -E '^hltrun: error|Error:|Traceback' "$2" | tail -n 3 ;;
        farm) cat "$2" ;;
        hltbench) grep -A20 "^Not measured here" "$2" ;;
        *) [ "$RC" -ne 0 ] && tail -n 4 "$2" ;;
    esac
    return 0
}
# pytest's short summary (FAILED, ERROR, SKIPPED and XFAIL lines, with -rfEsx), its count line, and what the
# recurrent network's, the translator forms' and the several-input network's tests printed (-s, after the dots of the
# tests before them): whether CUDA captured cuDNN's RNN, an If on the values, a QDQ Conv, a kNN (GatherND batch_dims), a
# ParticleNet-like EdgeConv on three inputs as graphs or refused them
pytest_lines() {
    grep -E '^(FAILED|ERROR|SKIPPED|XFAIL) |^=* ?[0-9]+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b.* in [0-9.]+s|no tests ran|(recurrent [A-Z]+|translator form [a-z-]+|several-input [A-Za-z]+) under CUDA graphs: ' "$1"
}
step() {  # step NAME SECONDS COMMAND...: run with a time limit (cut to the deadline), log to $WORK/NAME.txt
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 10 ]; then note "$name: NOT RUN (script deadline reached)"; RC=125; return 0; fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    timeout --kill-after=5 "$limit" "$@" > "$WORK/$name.txt" 2>&1
    RC=$?
    note "$name: rc=$RC ($((SECONDS - t0)) s, limit $limit s)$( ( [ $RC -eq 124 ] || [ $RC -eq 137 ] ) && echo ' TIMED OUT')"
    tail -n 25 "$WORK/$name.txt"
    summary_lines "$name" "$WORK/$name.txt" >> "$SUMMARY"
    pack
    return 0
}

note "hltrun GPU check $(date -u +%FT%TZ) on $(hostname)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), source $(source_id)"
step nvidia-smi 20 nvidia-smi

mkdir -p "$SITE"
# one wheel per distribution, its highest version: pip installs nothing at all when given two versions of one
# (ResolutionImpossible), and .whl/ can hold two when tools/gpu_wheels.sh ran again after a release
newest_wheels() {  # newest_wheels < paths: one path per distribution (name compared case-blind), by sort -V
    local f b
    while read -r f; do b=${f##*/}; printf '%s %s %s\n' "$(echo "${b%%-*}" | tr 'A-Z' 'a-z')" "${b#*-}" "$f"; done \
        | sort -k1,1 -k2,2V | awk '{ last[$1] = $3 } END { for (d in last) print last[d] }' | sort
}
all_carried=$(compgen -G ".whl/*.whl" | grep -v '/hltrun-' || true)
carried=$(echo "$all_carried" | grep . | newest_wheels || true)
older=$(comm -23 <(echo "$all_carried" | sort) <(echo "$carried" | sort) | xargs -r -n1 basename | tr '\n' ' ')
[ -n "$older" ] && note "wheels: older versions carried beside newer ones, left out: $older"
if [ -n "$carried" ]; then
    # shellcheck disable=SC2086
    step wheels 90 python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" $carried
else
    note "no .whl/ wheels carried: using what python3 has"
fi
step install-hltrun 120 python3 -m pip install -q --no-deps --no-index --no-build-isolation --no-compile \
    --upgrade --target "$SITE" .
if [ "$RC" -ne 0 ]; then
    own=$(compgen -G ".whl/hltrun-*.whl" | head -n 1 || true)
    if [ -n "$own" ]; then
        step install-hltrun-wheel 60 python3 -m pip install -q --no-index --no-deps --no-compile --upgrade \
            --target "$SITE" "$own"
    else
        note "hltrun could not be installed from the checkout and no .whl/hltrun-*.whl is carried: build one with"
        note "  pip wheel --no-deps -w .whl .   (on a machine with setuptools/network) and copy .whl/ along"
    fi
fi

step versions 60 "${PY[@]}" - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "onnx", "onnxruntime", "torch", "array_api_compat", "jax", "jaxlib", "cuda.bindings", "pycuda",
             "tensorrt", "uproot", "awkward", "yaml", "psutil", "tqdm", "boost_histogram", "jsonschema", "attrs",
             "pytest", "matplotlib", "hltrun"):  # hltrun's install requirements among them: one missing shows here
    try:
        mod = importlib.import_module(name)
        print(f"{name:14s} {getattr(mod, '__version__', 'present')} {getattr(mod, '__file__', '') or ''}")
    except Exception as exc:  # absent or broken: say which
        print(f"{name:14s} ABSENT ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
try:
    import onnxruntime as ort
    print("onnxruntime providers:", ort.get_available_providers())
except Exception:
    pass
try:
    import torch
    print("torch cuda:", torch.version.cuda, "available:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as exc:
    print("torch:", type(exc).__name__, exc)
try:
    import jax
    print("jax devices:", jax.devices())
except Exception as exc:
    print("jax devices:", type(exc).__name__, exc)
try:
    from cuda.bindings import runtime as rt
    err, n = rt.cudaGetDeviceCount()
    print("cuda.bindings.runtime cudaGetDeviceCount:", err, n)
except Exception as exc:
    print("cuda.bindings check:", type(exc).__name__, exc)
try:
    from hltrun.modules.inference import backend_names
    from hltrun.modules.inference.accelerator import (choose_backend, jax_gpu_status, tensorrt_gpu_status,
                                                      torch_gpu_status)
    print("hltrun backends:", backend_names())
    print("hltrun tensorrt_gpu_status:", tensorrt_gpu_status())
    print("hltrun torch_gpu_status:", torch_gpu_status())
    print("hltrun jax_gpu_status:", jax_gpu_status())
    print("hltrun auto:", choose_backend("auto", ["*"]))
except Exception as exc:
    print("hltrun import failed:", type(exc).__name__, exc)
PY

# pytest: --import-mode=append and python3 -P keep the checkout's folders behind the installed hltrun
PYTEST=("${PY[@]}" -m pytest --noconftest -p no:cacheprovider --import-mode=append -q -rfEsx)
step pytest-torch 75 "${PYTEST[@]}" -s -m gpu tests/test_torch_gpu.py --junitxml="$WORK/pytest-torch.xml"

# batch sweep: torch on the GPU (CUDA graphs, and op by op) beside ONNX Runtime on this host's CPU (one thread)
BATCHES=(1 2 4 8 16 32 64 128 256 512 1024 2048 4096)
step sweep-torch 70 "${PY[@]}" -m hltrun.tools.bench gpu-sweep --device gpu --engines torch torch-eager \
    --onnxruntime --repeat 50 --max-seconds 0.5 --batches "${BATCHES[@]}" --out "$WORK/sweep-torch"

# the lines of a path run's log that the summary keeps: the event loop's time per event, the TimeReport's
# device split (its title, header and rows: the table repeats its header below, and a count of grepped
# lines once cut the accelerator line and left the header without its figures), the warm-up, the
# JobReport's wall time and the accelerator chosen (the line that says whether the GPU ran), device memory
path_lines() {
    awk '/Inference device split/ { split_ = 1; heads = 0; print; next }
         split_ && /H2D ms/ { if (++heads == 1) print; else split_ = 0; next }
         split_ && /^TimeReport / { print; next }
         { split_ = 0 }
         /event loop (CPU|Real)\/event|warm-up at begin_job|JobReport  wall time|accelerator for|device memory/' "$1"
}
# the shipped path end to end: ONNX Runtime on one CPU stream (the reference), then the GPU backends
run_path() {  # run_path NAME BACKEND STREAMS
    step "path-$1" 40 "${PY[@]}" -m hltrun configs/path.yaml -n 2000 "modules.vae.backend=$2" \
        "options.numberOfThreads=$3" "options.numberOfStreams=$3" --report-dir "$WORK/path-$1" \
        "modules.out.file=$WORK/path-$1/out.root"
    [ "$RC" -eq 0 ] && PATHS_DONE+=("path-$1")
    return 0
}
PATHS_DONE=()  # the path runs that ended well (a stopped one may still write an hltrun.json, of fewer events)
run_path ort-1 onnxruntime 1
run_path torch-1 torch 1
run_path torch-2 torch 2
run_path torch-4 torch 4
# the farm from the GPU runs that ended well (one that timed out must not cost the others' figures)
GPU_RUNS=()
for run in "${PATHS_DONE[@]}"; do [[ $run == path-torch-* ]] && GPU_RUNS+=("$WORK/$run"); done
if [[ " ${PATHS_DONE[*]} " == *" path-ort-1 "* ]] && [ "${#GPU_RUNS[@]}" -gt 0 ]; then
    step farm 20 "${PY[@]}" -m hltrun.tools.bench gpu-farm --cpu "$WORK/path-ort-1" --gpu "${GPU_RUNS[@]}" \
        --out "$WORK/farm"
else
    note "farm: NOT RUN (path-ort-1 or every path-torch-* failed or timed out)"
fi

step pytest-gpu 90 "${PYTEST[@]}" -s -m gpu tests/test_jax_gpu.py tests/test_gpu.py --junitxml="$WORK/pytest-gpu.xml"
step pytest-fakes 40 "${PYTEST[@]}" tests/test_cuda_wrappers.py tests/test_tensorrt_fake.py \
    --junitxml="$WORK/pytest-fakes.xml"
step sweep-jax 60 "${PY[@]}" -m hltrun.tools.bench gpu-sweep --device gpu --engines jax --repeat 50 --max-seconds 0.5 \
    --batches "${BATCHES[@]}" --out "$WORK/sweep-jax"
run_path jax-4 jax 4

# TensorRT / ORT GPU engines, where installed (listed under 'Not measured here' otherwise)
step hltbench 40 "${PY[@]}" -m hltrun.tools.bench backends --models conv_vae gcn_vae \
    --backends ort-fp32 ort-cuda ort-trt trt-fp32 trt-fp16 --batch-sizes 1 64 \
    --min-time 0.1 --mem-jets 500 --isolate --out "$WORK/hltbench"
pack
note "total $SECONDS s; logs in $WORK, packed in $OUT/gpu_check.tar.gz"
echo; echo "== summary.txt:"; cat "$SUMMARY"  # the console's tail holds it too, should no file come back
