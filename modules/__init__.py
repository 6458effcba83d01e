"""Built-in hltrun plugins. Importing this package registers them with the framework."""

from importlib import import_module

_PLUGINS = ("modules.root_source", "modules.jet_batcher", "modules.anomaly_filter", "modules.root_output",
            "modules.vae_scorer")

for _name in _PLUGINS:
    import_module(_name)
