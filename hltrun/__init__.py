"""hltrun: a CMSSW-style HLT path emulator that measures what an anomaly-detection network costs per event.

Everything installs under this one import name; the checkout keeps its folders (``framework/``,
``modules/``, ``tools/``, ``configs/``, ``data/``), mapped here by ``package_dir`` in setup.cfg.
The layers, each importing only the ones above it:

``hltrun.framework``
    The event loop and nothing physics-specific: configuration (``config``, ``schema``), the module
    base classes (``module``), the schedule and streams (``schedule``, ``eventloop``, ``process``),
    services (``services``: Timing, Memory), executors (``executors``: threads, Dask), reports
    (``report``: TrigReport, TimeReport, JSON, HTML, job report XML) and errors (``errors``).
``hltrun.modules``
    The built-in plugins: ROOT source and output (uproot/awkward), jet batcher, VAE scorer and its
    inference backends (``modules.inference``: ONNX Runtime, TensorFlow, TensorRT), the anomaly
    filter, the models' Keras code (``modules.models``). They register through the entry-point
    groups ``hltrun.modules``, ``hltrun.services`` and ``hltrun.backends`` exactly as a third-party
    plugin does; the framework never names them.
``hltrun.tools``
    Commands around the path: ``hltdiff``; ``hltbench`` (``tools.bench``: one sub-command per benchmark
    study, one shared runner); the sample/model production scripts (``tools.physics``); and the one
    catalogue of models and samples they all read (``tools.catalogue``).
``hltrun.configs``, ``hltrun.data``
    The shipped configurations, samples and models (found with :func:`hltrun.framework.resources`).

A plugin author imports only from this module (the names below); everything else is internal and
may move. Names are imported lazily, so ``import hltrun`` costs nothing until one is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    # module base classes and the parameters convention
    "Module": "hltrun.framework.module", "Producer": "hltrun.framework.module",
    "Filter": "hltrun.framework.module", "Analyzer": "hltrun.framework.module",
    "OutputModule": "hltrun.framework.module", "Source": "hltrun.framework.module",
    "NoParameters": "hltrun.framework.module",
    "Service": "hltrun.framework.service",
    # what a plugin receives at begin_job (its label, static facts, typed consumes/produces, asked-for services)
    "ModuleContext": "hltrun.framework.context", "SourceContext": "hltrun.framework.context",
    "StreamActivity": "hltrun.framework.context", "AcceleratorChoice": "hltrun.framework.context",
    # registration (decorators, for plugins not installed through entry points)
    "register_module": "hltrun.framework.registry", "register_service": "hltrun.framework.registry",
    # events and products
    "Event": "hltrun.framework.event", "EventID": "hltrun.framework.event",
    "InputTag": "hltrun.framework.schema",
    "JetCollection": "hltrun.modules.products", "JetBatch": "hltrun.modules.products",
    "JetScores": "hltrun.modules.products",
    # inference backends
    "InferenceBackend": "hltrun.modules.inference.base", "BackendOptions": "hltrun.modules.inference.base",
    # errors
    "HltError": "hltrun.framework.errors", "ConfigError": "hltrun.framework.errors",
    "SourceError": "hltrun.framework.errors", "ModuleError": "hltrun.framework.errors",
    "ProductNotFound": "hltrun.framework.errors", "AcceleratorUnavailable": "hltrun.framework.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), so ``import hltrun`` stays free."""
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'hltrun' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
