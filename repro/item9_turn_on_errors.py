"""Finding 9: the L1 turn-on's error bars at efficiency 0 and 1 (report.html, framework/services/rates.py)."""
from types import SimpleNamespace

import matplotlib.axes

from hltrun.framework.services.rates import _turn_on_plots

real = matplotlib.axes.Axes.errorbar


def spy(self, x, y, yerr=None, **kw):
    print("efficiency", list(y), "error bars", yerr)
    return real(self, x, y, yerr=yerr, **kw)


matplotlib.axes.Axes.errorbar = spy
_turn_on_plots(SimpleNamespace(module_summaries={"seed": {
    "pt_all:100": 10, "pt_all:200": 10, "pt_fired:L1_X:100": 0, "pt_fired:L1_X:200": 10, "expression": "L1_X"}}))
