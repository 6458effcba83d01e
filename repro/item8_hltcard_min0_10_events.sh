#!/bin/bash
# Finding 8: hltcard --min-events-above 0 on 10 events quoted the pT-dependent cut's large-sample error.
cd "$(dirname "$0")/.." || exit 1
D=${D:-/tmp/s33/cards_repro_card8}; rm -rf "$D"; mkdir -p "$D"; cp data/models/conv_vae.onnx "$D"/
.venv/bin/hltcard "$D"/conv_vae.onnx --background /tmp/s33/seeds/samples/qcd_s44_n10.root --min-events-above 0 \
  --set modules.vae.backend=onnxruntime --no-plots > /dev/null; echo "rc=$?"
grep '^\*\*pT-dependent cut' "$D"/conv_vae_card.md
