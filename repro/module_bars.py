"""Render report.html's 'time per module' plot from a run's hltrun.json: python repro/module_bars.py RUN/hltrun.json OUT.png"""
import base64, json, re, sys

from hltrun.framework.report.html import _module_bars

res = json.load(open(sys.argv[1]))["services"]["Timing"]
tag = _module_bars(res)
open(sys.argv[2], "wb").write(base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", tag).group(1)))
