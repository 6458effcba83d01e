"""The built-in plugins. The registry imports this module the first time it looks a type up,
so importing ``modules`` (or a submodule such as ``modules.models.preprocess``) stays light."""

from importlib import import_module

_PLUGINS = ("modules.root_source", "modules.jet_batcher", "modules.anomaly_filter", "modules.root_output",
            "modules.vae_scorer")

for _name in _PLUGINS:
    import_module(_name)
