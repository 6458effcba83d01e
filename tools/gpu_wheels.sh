#!/usr/bin/env bash
# Fetch the wheels tools/gpu_check.sh needs on a GPU machine that has no network, into .whl/ (~7 MB).
#
#   tools/gpu_wheels.sh [PYTHON_VERSION]      # default 3.12: the lent GPU machines' python3
#
# What those machines lack of hltrun's needs (they have torch, jax, numpy, onnx, onnxruntime-CPU,
# pyyaml, psutil, tqdm, attrs, packaging, typing-extensions): array-api-compat (the torch backend),
# uproot/awkward and their compiled parts (the source), boost-histogram (timing histograms) and
# jsonschema (hltrun.json is checked against its schema). Binary wheels for manylinux x86_64 and the
# given CPython, no dependencies resolved (each one is named here).
#
# Run again (after a release), it replaces the earlier versions of these wheels in .whl/ (two versions of one
# distribution there made the GPU machine's pip install nothing); other wheels there, hltrun's own among them,
# stay.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.12}"
NEW="$(mktemp -d "${TMPDIR:-/tmp}/hltrun-wheels.XXXXXX")"
trap 'rm -rf "$NEW"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$NEW" \
    array-api-compat uproot awkward awkward-cpp cramjam fsspec xxhash \
    boost-histogram jsonschema jsonschema-specifications referencing rpds-py
mkdir -p .whl
for wheel in "$NEW"/*.whl; do
    name=$(basename "$wheel")
    rm -f .whl/"${name%%-*}"-*.whl  # this distribution's earlier version, if any
    mv "$wheel" .whl/
done
ls .whl
du -sh .whl
