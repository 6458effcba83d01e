"""The shipped configurations (``hltrun.configs``): found with ``hltrun.framework.resources``, so an installed hltrun runs ``hltrun configs/path.yaml`` from any directory."""
