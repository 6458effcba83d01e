"""Optional dependencies in one place (as uproot's ``extras.py``): which extra installs each, and
one error line naming what needs it and how to install it.

Every import of an optional package goes through :func:`need` (or :func:`install_hint` where a
missing package only turns a feature off), so the hint a user reads is the same everywhere and
follows setup.cfg's extras.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import HltError, ModuleError
from .interrupt import reraise_interrupt

# import name -> (extra of setup.cfg that installs it, the package's own pip name)
EXTRAS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("cpu", "onnxruntime"),
    "onnx": ("cpu", "onnx"),
    "tensorflow": ("cpu", "tensorflow-cpu"),
    "keras": ("cpu", "keras"),
    "memray": ("cpu", "memray"),
    "matplotlib": ("cpu", "matplotlib"),
    "threadpoolctl": ("cpu", "threadpoolctl"),
    "tensorrt": ("gpu", "tensorrt"),
    "pycuda": ("gpu", "pycuda"),
    "cuda": ("gpu", "cuda-python"),
    "iree": ("iree", "iree-base-runtime iree-base-compiler"),
    "jax": ("jax", "jax"),
    "jaxlib": ("jax", "jax"),
    "torch": ("torch", "torch"),
    "array_api_compat": ("torch", "array-api-compat"),
    "dask": ("dist", "dask[distributed]"),
    "distributed": ("dist", "dask[distributed]"),
    "pythia8mc": ("generate", "pythia8mc"),
    "fastjet": ("generate", "fastjet"),
}


def install_hint(module: str) -> str:
    """``pip install -e ".[cpu]"  (or: pip install onnxruntime)`` for an import name."""
    top = module.split(".")[0]
    if top not in EXTRAS:
        return f"pip install {top}"
    extra, package = EXTRAS[top]
    return f'pip install -e ".[{extra}]"  (or: pip install "{package}")'


def installed(module: str) -> bool:
    """Is ``module`` importable here, known without importing it (a dotted name imports its parents only)?"""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def need(module: str, purpose: str, error: type[HltError] = ModuleError) -> ModuleType:
    """Import ``module`` or raise ``error`` in one line: ``<purpose> needs <module>, which is not
    installed: <hint>``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reraise_interrupt(exc)  # a signal that cut the import is not a missing package
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise error(f"{purpose}: importing {module} failed: {exc}") from exc  # installed, but broken
        raise error(f"{purpose} needs {module}, which is not installed: {install_hint(module)}") from None
