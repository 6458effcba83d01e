"""The shipped samples, models and reference outputs (``hltrun.data``): found with ``hltrun.framework.resources``, from a checkout or an installed wheel alike."""
