#!/bin/sh
# The runs behind the report (from the worktree root). Outputs under /tmp/s32/reader_out/.
set -x
.venv/bin/hltrun configs/path.yaml --report-dir /tmp/s32/reader_out/a                     # the README's main job, 4000 events
.venv/bin/hltrun configs/menu.yaml --report-dir /tmp/s32/reader_out/b                     # the menu, 5500 events
.venv/bin/hltrun configs/path.yaml -n 300 modules.vae.model=gcn_vae --report-dir /tmp/s32/reader_out/c
.venv/bin/hltrun configs/menu.yaml -n 2000 --report-dir /tmp/s32/reader_out/m2           # the README's quoted menu rates
.venv/bin/hltrun configs/menu.yaml -n 2000 services.Memory.memray=/tmp/s32/reader_out/menu.memray   # leak flag, allocations
# the images of a report.html, to view:
python3 - <<'PY'
import base64, re, sys
for run in "abc":
    page = open(f"/tmp/s32/reader_out/{run}/report.html").read()
    for i, b in enumerate(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)):
        open(f"/tmp/s32/reader_out/img/{run}{i}.png", "wb").write(base64.b64decode(b))
PY
# the time-per-module plot alone, from a run's hltrun.json:
.venv/bin/python repro/module_bars.py /tmp/s32/reader_out/a/hltrun.json /tmp/s32/reader_out/img/bars_a.png
