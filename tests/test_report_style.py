"""The HTML report's plots use the field's style (mplhep CMS) when mplhep is installed (cpu extra)."""

from __future__ import annotations

import pytest

from hltrun.framework.report.html import _style


def test_plots_use_the_mplhep_cms_style():
    mplhep = pytest.importorskip("mplhep")
    import matplotlib

    cms = dict(mplhep.style.CMS) if isinstance(mplhep.style.CMS, dict) else {}
    before = matplotlib.rcParams["xtick.minor.visible"]
    with _style():
        assert matplotlib.rcParams["xtick.minor.visible"] is True  # CMS style: minor ticks on
        assert matplotlib.rcParams["xtick.direction"] == cms.get("xtick.direction", "in")
        assert matplotlib.rcParams["font.size"] == 12  # resized for the report's wide figures
    assert matplotlib.rcParams["xtick.minor.visible"] == before  # only inside the report's plots
