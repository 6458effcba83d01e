"""Built-in services. Importing this package registers them (``services: {Timing: {...}}``)."""

from importlib import import_module

_SERVICES = ("hltrun.framework.services.timing", "hltrun.framework.services.memory")

for _name in _SERVICES:
    import_module(_name)
