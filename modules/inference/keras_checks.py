"""What hltrun checks of a user's ``.keras`` file around Keras' own load: one line where Keras' words would mislead.

Why a module of its own: Keras 3 loads what it can and casts what it is fed without a word, and its errors name
options hltrun's user cannot reach (``safe_mode=False`` "to the loading function") or the wrong culprit ("File not
found" for a file that is there). The tensorflow backend calls these at load; ``kept_values`` wraps its call for
the models that need it only, so the one-input call path of every other model is unchanged.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ModuleError
from hltrun.modules.contract import ModelInput

_UNKNOWN_CLASS = re.compile(r"Could not locate class '([^']+)'")
_PYTHON_LAMBDA = "deserialization of a `Lambda` layer whose `function` is a Python lambda"


def unloadable_keras(exc: BaseException, model: Path) -> ModuleError | None:
    """A ``.keras`` file that Keras 3 cannot rebuild here is one line saying why and the way on, or None for another
    failure. A custom layer (or function) whose class is not registered in this process: Keras rebuilds it from its
    Python class only, and the user's training code is not imported here (Keras' own words were a 400-character
    dump of the functional model's configuration, "could not be deserialized properly", the class lost in it). A
    ``Lambda`` layer of a Python lambda: Keras loads its pickled code only with ``safe_mode=False`` (it would run
    code from the file), and its line told the user to pass that "to the loading function", which hltrun's user
    cannot reach."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found = _UNKNOWN_CLASS.search(str(exc))
        if found:
            return ModuleError(f"tensorflow: model {model} uses the custom Keras class {found.group(1)!r}, whose "
                               f"Python code is not imported by hltrun (Keras 3 rebuilds a custom layer only from "
                               f"its registered class): {_way_on(model)}")
        if _PYTHON_LAMBDA in str(exc):
            return ModuleError(f"tensorflow: model {model} has a Lambda layer of a Python lambda, which Keras loads "
                               f"only with safe_mode=False (it runs code saved in the file); hltrun loads in safe "
                               f"mode: write it with keras.ops in the model itself and save again, or "
                               f"{_way_on(model)}")
        exc = exc.__cause__ or exc.__context__
    return None


def _way_on(model: Path) -> str:
    """Where a ``.keras`` file hltrun cannot rebuild goes on: the ``.onnx`` beside it, else an ONNX export."""
    beside = model.with_suffix(".onnx")
    if beside.is_file():
        return (f"run {beside.name} beside it on another engine (the scorer's model: {beside}, with backend: "
                f"onnxruntime or auto; every engine but tensorflow reads ONNX)")
    return "export it to ONNX (tf2onnx, docs/your-model.md) and run that file on any engine"


# what Keras' cast of hltrun's float32 values to an input's dtype keeps exactly: float64 widens every value; an
# integer type holds whole numbers (a 0/1 mask, a constituent count); bool and a half type, a 0/1 mask only. A file
# branch's values (a charge, a pdgId) are the user's: checked on every call, for such a model only (``kept_values``).
FED_EXACTLY = ("float32", "float64")
_WHOLE_FEATURES = frozenset(("mask", "n_constituents"))
_CAST_LOSES = {"int": "truncating them to whole numbers", "bool": "turning every non-zero value into 1 (True)",
               "float16": "rounding them to 11 significant bits (and any above 65504 to inf)",
               "bfloat16": "rounding them to 8 significant bits"}


def numpy_dtype(dtype: str) -> np.dtype | None:
    """numpy's type of a Keras dtype name, or None where numpy has none (bfloat16, string)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def lossy_input(model: Path, name: str, dtype: str, decl: ModelInput) -> ModuleError | None:
    """A Keras input whose dtype would change hltrun's float32 values is one line naming it, its dtype and the
    features lost; None where the cast is exact, or is checked per call (file branches). Why: Keras casts what it
    is fed to each ``keras.Input``'s dtype without a word, so an int32 ``features`` input ran with every value
    truncated (-32.2 scored as -16), a bool one with all ones, and the engines that refuse a non-float32 input
    (``require_float32``) were not asked. A 0/1 mask is exact in any of these types and is fed so (ParticleNet's
    ``mask`` is often int or bool)."""
    if dtype in FED_EXACTLY:
        return None
    kind = "int" if dtype.startswith(("int", "uint")) else dtype
    exact = set(_WHOLE_FEATURES if kind == "int" else {"mask"} if kind in _CAST_LOSES else ())
    if kind in _CAST_LOSES and numpy_dtype(dtype) is not None:
        exact.update(decl.file_branches())
    lost = [f for f in decl.features if f not in exact]
    if not lost:
        return None
    how = _CAST_LOSES.get(kind, "which it cannot hold")
    return ModuleError(f"tensorflow: model {model} input {name!r} is {dtype}: Keras would cast hltrun's float32 values "
                       f"{lost} to it, {how}; declare it keras.Input(..., dtype=\"float32\") (float64 is fed "
                       f"exactly too; only a 0/1 mask{', a constituent count' if kind == 'int' else ''} or a file "
                       f"branch whose values it holds may stay {dtype}) and save the model again")


def kept_values(model: Path, checks: Sequence[tuple[str | None, str, str, tuple[str, ...]]],
                call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``call`` that first checks that the values of each (feed key (None: the one input's array), name, dtype, file
    branches) input survive Keras' cast to its dtype: a branch the user declared is whole numbers (a charge) or not
    (a weight), which only its values tell. One line at the first call that would change one."""
    def checked(feed: Any) -> Any:
        for key, name, dtype, branches in checks:
            x = feed if key is None else feed[key]
            with np.errstate(invalid="ignore", over="ignore"):
                cast = x.astype(dtype).astype(x.dtype)
            changed = cast != x
            if changed.any():
                at = tuple(np.argwhere(changed)[0])
                raise ModuleError(f"tensorflow: model {model} input {name!r} is {dtype}, and Keras would change "
                                  f"hltrun's float32 values of {list(branches)} in the cast to it ({float(x[at]):g} "
                                  f"became {float(cast[at]):g}); declare it keras.Input(..., dtype=\"float32\") and "
                                  f"save the model again")
        return call(feed)
    return checked


_HDF5 = b"\x89HDF\r\n\x1a\n"
_LFS = b"version https://git-lfs"


def not_a_keras_file(model: Path) -> ModuleError | None:
    """A ``.keras`` file that is not the zip archive Keras saves is one line saying what it is. Keras' own words
    were "File not found: filepath=... Please ensure the file is an accessible `.keras` zip file." for a file that
    is there: a Git LFS pointer not pulled, a copy cut short, an HDF5 model saved under the name."""
    if zipfile.is_zipfile(model):
        return None
    with open(model, "rb") as fh:
        head = fh.read(64)
    what = ("a Git LFS pointer, not the model: fetch it (git lfs pull)" if head.startswith(_LFS) else
            "an HDF5 file (Keras' legacy .h5 format) under a .keras name: load it in the Keras that saved it and "
            "save it again with model.save('<name>.keras')"
            if head.startswith(_HDF5) else
            f"cut short ({model.stat().st_size} bytes, a zip archive's start but not its end): copy it again"
            if head.startswith(b"PK") else "not the zip archive Keras saves: save it with model.save('<name>.keras')")
    return ModuleError(f"tensorflow: cannot load model {model}: it is {what}")


__all__ = ["FED_EXACTLY", "kept_values", "lossy_input", "not_a_keras_file", "unloadable_keras"]
