#!/usr/bin/env bash
# One short check of hltrun's GPU code on a machine with an NVIDIA GPU (about 5 minutes at most).
#
#   OUT=/some/folder tools/gpu_check.sh        # logs in $OUT (default ./gpu_out)
#
# Prints nvidia-smi and versions; installs wheels carried in .whl/ (no network needed) into
# /tmp/site; runs tests/test_gpu.py (marker gpu: the real CUDA wrappers' contract, TensorRT when the
# tensorrt package is importable, ONNX Runtime's CUDA/TensorRT providers when present) and the
# strict-fake TensorRT tests, then hltbench backends on the GPU backends (tools/bench/backends.py, figures and
# plots in $OUT/hltbench). Absent pieces are skipped and named (pytest -rs; hltbench 'Not measured here').
# Every step runs under `timeout`, so the script never hangs. It needs python3 with numpy, onnx,
# onnxruntime, pytest, pyyaml; cuda-python (cuda.bindings) or pycuda for the real CUDA checks.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
note() { echo "== $*" | tee -a "$SUMMARY"; }
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.txt, record rc
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    note "$name: rc=$rc ($((SECONDS - t0)) s, limit $limit s)$([ $rc -eq 124 ] && echo ' TIMED OUT')"
    tail -n 25 "$OUT/$name.txt"
    return 0
}

note "hltrun GPU check $(date -u +%FT%TZ) on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
step nvidia-smi 20 nvidia-smi

if compgen -G ".whl/*.whl" > /dev/null; then
    step wheels 90 python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
else
    note "no .whl/ wheels carried: using what python3 has"
fi

step versions 60 python3 - <<'PY'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "onnx", "onnxruntime", "cuda.bindings", "pycuda", "tensorrt", "uproot", "awkward", "yaml", "pytest"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:14s} {getattr(mod, '__version__', 'present')}")
    except Exception as exc:  # absent or broken: say which
        print(f"{name:14s} ABSENT ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
try:
    import onnxruntime as ort
    print("onnxruntime providers:", ort.get_available_providers())
except Exception:
    pass
try:
    from cuda.bindings import runtime as rt
    err, n = rt.cudaGetDeviceCount()
    print("cuda.bindings.runtime cudaGetDeviceCount:", err, n)
    err, v = rt.cudaRuntimeGetVersion()
    print("CUDA runtime version:", err, v)
except Exception as exc:
    print("cuda.bindings check:", type(exc).__name__, exc)
try:
    from hltrun.modules.inference.accelerator import tensorrt_gpu_status
    print("hltrun tensorrt_gpu_status:", tensorrt_gpu_status())
except Exception as exc:
    print("hltrun import failed:", type(exc).__name__, exc)
PY

# real hardware: CUDA wrappers (cuda-python / pycuda), TensorRT, ONNX Runtime GPU providers
step pytest-gpu 200 python3 -m pytest --noconftest -p no:cacheprovider -q -rs -s -m gpu tests/test_gpu.py \
    --junitxml="$OUT/pytest-gpu.xml"
# the strict fakes on this Python (no GPU needed; checks the fake contracts still hold here)
step pytest-fakes 90 python3 -m pytest --noconftest -p no:cacheprovider -q -rs \
    tests/test_cuda_wrappers.py tests/test_tensorrt_fake.py --junitxml="$OUT/pytest-fakes.xml"

# the shipped path as a user runs it: backend auto (TensorRT on the GPU when installed, else ONNX Runtime
# on the CPU, with the reason in the report), 2000 events, reports in $OUT/path
step shipped-path 120 python3 -m hltrun.framework.cli configs/path.yaml -n 2000 --report-dir "$OUT/path" \
    modules.out.file="$OUT/path/out.root"
grep -hE "backend|TensorRT|CPU|fallback|Events total" "$OUT/shipped-path.txt" | head -n 8 | tee -a "$SUMMARY"

# hltbench on every GPU backend (ONNX Runtime CUDA / TensorRT providers, TensorRT fp32 / fp16) beside ONNX
# Runtime on this host's CPU: latency, peak RSS and GPU memory vs batch size, JSON/CSV/PNG in
# $OUT/hltbench; a backend not installed here is listed in the output with the reason
step hltbench 240 python3 -m hltrun.tools.bench backends --models conv_vae gcn_vae \
    --backends ort-fp32 ort-cuda ort-trt trt-fp32 trt-fp16 --batch-sizes 1 9 64 1024 \
    --min-time 0.2 --mem-jets 2000 --isolate --out "$OUT/hltbench"
grep -A20 "^Not measured here" "$OUT/hltbench.txt" | tee -a "$SUMMARY"

grep -hE "passed|failed|skipped|error" "$OUT/pytest-gpu.txt" "$OUT/pytest-fakes.txt" | tail -n 4 | tee -a "$SUMMARY"
grep -h "^SKIPPED" "$OUT/pytest-gpu.txt" | tee -a "$SUMMARY"
note "logs in $OUT"
