"""The one interface every inference backend implements, and the checks they all share.

A backend wraps one model file and one framework. The scorer (and the benchmarks) only ever call
``load``, ``warm_up``, ``run`` and ``describe``; everything that must behave the same on every
framework — file checks, input-shape check, the empty batch, non-finite jets, the output format —
lives here once, so the backends contain only framework calls.

Conventions (the exported VAE graphs of ``hltrun.modules.models``):

* input ``jets``: float32 (N, 100, 3), N dynamic;
* outputs ``score`` (N,) and ``kl`` (N,), float32.

A user's model need not follow the output names: ``outputs`` maps the roles the scorer keeps to the
model's own output names (``{score: output}``, PyTorch's default name; ``resolve_outputs``), and
``run`` returns arrays keyed by role. Left unset, the score is the output named ``score`` (else the
model's only output) and ``kl`` is taken when the model has one.

Non-finite jets: a jet whose (100, 3) block holds a NaN or an inf is replaced by zeros before the
framework sees it (so it can never poison a batch-wide op or trip a framework assertion) and its
outputs are set to NaN; ``run`` reports it in ``valid``. NaN never passes a ``score > threshold``
cut, so such a jet never fires the trigger.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, Union

import numpy as np

from hltrun.framework.errors import ConfigError, ModuleError, one_line

from ..finite import dot_is_finite, known_finite
from ..products import all_valid

log = logging.getLogger("hltrun.inference")

N_CONSTITUENTS = 100
MAX_BATCH = 65_536  # jets in one backend call at most (a configuration limit: ~80 MB of float32 input)
N_FEATURES = 3
INPUT_NAME = "jets"
OUTPUT_NAMES: tuple[str, ...] = ("score", "kl")  # the roles the scorer keeps; score is the one required
SCORE, KL = OUTPUT_NAMES
# role -> model output name; a list names roles whose outputs carry the same name; None: the default
OutputsSetting = Union[Mapping[str, str], Sequence[str], None]
NONFINITE_FILL = np.float32(np.nan)
AGREEMENT_RTOL = 1e-4  # two backends agree when their scores differ by at most this, relatively (DESIGN.md)
_FLOAT32 = np.dtype(np.float32)
_JET_SHAPE = (N_CONSTITUENTS, N_FEATURES)


@dataclass
class BackendOptions:
    """Backend settings, as the scorer's parameters give them (each backend reads what it knows).

    ``threads``/``inter_threads`` default to 1 as in CMSSW: concurrency comes from streams.
    """

    mode: str = "function"  # tensorflow: predict | eager | function | xla
    threads: int = 1
    inter_threads: int = 1
    providers: list[str] = field(default_factory=lambda: ["cpu"])  # onnxruntime
    graph_optimization: str = "all"  # onnxruntime: disable | basic | extended | all
    io_binding: bool = False  # onnxruntime
    precision: str = "auto"  # fp32 | fp16 | int8 | auto (backend default)
    max_batch: int = 1024  # tensorrt optimisation profile max
    opt_batch: int = 9  # tensorrt optimisation profile opt (typical jets per HLT event)
    engine_cache: str | None = None  # tensorrt: folder of built engines
    device: str = "auto"  # jax: auto (a GPU when JAX sees one, else the CPU) | cpu | gpu
    # role -> model output name ({score: output}); a list: roles with the same names; None: 'score' (or
    # the model's only output) and 'kl' when the model has it (resolve_outputs)
    outputs: dict[str, str] | list[str] | None = None


class InferenceBackend(ABC):
    """Load a model, warm it up, run batches, describe itself. Subclasses implement the ``_`` hooks.

    ``run`` is safe to call from one thread at a time per instance (the scorer is a per-stream
    module, so each stream has its own backend instance).
    """

    name: ClassVar[str] = "base"
    model_suffixes: ClassVar[tuple[str, ...]] = ()
    device: ClassVar[str] = "cpu"

    def __init__(self, model_path: str | os.PathLike[str], options: BackendOptions | None = None) -> None:
        self.model_path = Path(model_path)
        self.options = options or BackendOptions()
        self.loaded = False
        # role -> model output name, and the model outputs fetched per call: settled at load
        # (resolve_outputs), empty before
        self.outputs: dict[str, str] = {}
        self.output_names: list[str] = []
        self._order: list[str] = []  # the model's outputs, in the order a list/tuple result has them
        self._pairs: tuple[tuple[str, str], ...] = ()  # (role, model output name): a tuple, as fast as a list
        self.counters: dict[str, int] = {"calls": 0, "jets": 0, "nonfinite_jets": 0, "empty_batches": 0}

    # ------------------------------------------------------------------ public interface
    def load(self) -> "InferenceBackend":
        """Open the model; every user-caused problem becomes one ModuleError line naming the file."""
        check_model_file(self.model_path, self.model_suffixes, self.name)
        try:
            self._load()
        except (ModuleError, ConfigError):
            raise
        except Exception as exc:
            raise ModuleError(f"{self.name}: cannot load model {self.model_path}: "
                              f"{type(exc).__name__}: {one_line(exc)}") from exc
        check_input_shape(self._input_shape(), self.model_path)
        self.resolve_outputs()
        self.loaded = True
        return self

    def resolve_outputs(self) -> dict[str, str]:
        """Settle ``outputs`` (role -> model output name) against the model's outputs; a backend that
        sizes buffers per output in ``_load`` (TensorRT) calls it there, once ``_output_names`` works."""
        if not self.outputs:
            self._order = list(self._output_names())
            self.outputs = resolve_outputs(self.options.outputs, self._order, self.model_path, self.name)
            self.output_names = list(dict.fromkeys(self.outputs.values()))
            self._pairs = tuple(self.outputs.items())
        return self.outputs

    def warm_up(self, batch_sizes: Sequence[int] = (1, 9)) -> None:
        """Run zeros once per batch size so that lazy initialisation (graph tracing, XLA compilation,
        TensorRT context set-up, memory arenas) is not charged to the first events. The output shapes
        are checked on every size: with the default sizes (1 and 9) a score per event ((1,) whatever
        the batch) is refused here; warmed up on 1 jet only, at the first event with two."""
        saved = dict(self.counters)  # warm-up work is not job work (TensorRT counts its copies)
        for n in batch_sizes:
            try:
                raw = self._run(np.zeros((int(n), N_CONSTITUENTS, N_FEATURES), np.float32))
            except (ModuleError, ConfigError):
                raise
            except Exception as exc:  # at begin_job, in one line: not the framework's own text
                raise ModuleError(f"{self.name}: model {self.model_path} failed its warm-up on a batch of {n} "
                                  f"jet(s): {type(exc).__name__}: {one_line(exc)}") from exc
            normalise_outputs(raw, self._pairs, int(n), self.model_path, self._order)  # now, not at event 1
        self.counters.update(saved)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 100, 3) -> {role: float32 (N,)} plus ``valid`` (bool (N,), False for non-finite jets).

        N == 0 returns empty arrays without calling the framework. A read-only view of a source chunk
        whose inputs were checked finite at once (``finite.vouch_finite``: the default path's batches) skips
        the per-batch check; any other array, or a converted copy, is checked jet by jet.
        """
        if not self.loaded:
            raise ModuleError(f"{self.name}: run() before load() for model {self.model_path}")
        x = check_batch(batch, self.model_path)
        n = len(x)
        counters = self.counters
        counters["calls"] += 1
        counters["jets"] += n
        if n == 0:
            counters["empty_batches"] += 1
            return empty_outputs(self.outputs)
        if known_finite(x):
            valid, bad = all_valid(n), 0
        else:
            x, valid, bad = sanitise(x)
        try:
            raw = self._run(x)
        except (ModuleError, ConfigError):
            raise
        except Exception as exc:  # a framework failure is reported as one line naming the model
            raise ModuleError(f"{self.name}: inference failed for model {self.model_path} on {n} jets: "
                              f"{type(exc).__name__}: {one_line(exc)}") from exc
        out = normalise_outputs(raw, self._pairs, n, self.model_path, self._order)
        if bad:
            counters["nonfinite_jets"] += bad
            for key in self.outputs:
                out[key][~valid] = NONFINITE_FILL
        out["valid"] = valid
        return out

    def describe(self) -> dict[str, Any]:
        """Versions, device, threads and precision, for the job report and the benchmark table."""
        return {"backend": self.name, "model": str(self.model_path), "device": self.device,
                "threads": self.options.threads, **self._describe()}

    def close(self) -> None:
        """Release framework resources (device memory, sessions)."""

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _load(self) -> None:
        """Open the model file with the framework."""

    @abstractmethod
    def _input_shape(self) -> tuple[Any, ...]:
        """The model's input shape, dynamic dimensions as None (or a string)."""

    @abstractmethod
    def _output_names(self) -> Sequence[str]:
        """Names of the model outputs."""

    @abstractmethod
    def _run(self, x: np.ndarray) -> Any:
        """Run a finite, non-empty, C-contiguous float32 (N, 100, 3) batch: a dict model output name ->
        array (at least those in ``output_names``), or a list/tuple in the order of ``_output_names()``."""

    @abstractmethod
    def _describe(self) -> dict[str, Any]:
        """Framework-specific part of ``describe``."""


# ---------------------------------------------------------------------- shared checks
def check_model_file(path: Path, suffixes: Sequence[str], backend: str) -> None:
    """Missing, unreadable, empty or wrong-type file: one clear line, before any framework import."""
    if not path.exists():
        raise ModuleError(f"{backend}: model file {path} does not exist")
    if not path.is_file():
        raise ModuleError(f"{backend}: model {path} is not a file")
    if suffixes and path.suffix not in suffixes:
        raise ModuleError(f"{backend}: model {path} has suffix {path.suffix!r}; this backend reads "
                          f"{' or '.join(suffixes)} files")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ModuleError(f"{backend}: model file {path} is not readable: {exc.strerror}") from exc
    if not head:
        raise ModuleError(f"{backend}: model file {path} is empty")


INPUT_CONTRACT = (f"hltrun feeds one float32 input of (N, {N_CONSTITUENTS}, {N_FEATURES}) jets today "
                  f"({N_CONSTITUENTS} constituents x (Δη, Δφ, pT), zero-padded; docs/your-model.md)")


def several_inputs(backend: str, model: Path, names: Sequence[str]) -> ModuleError:
    """The one line for a model with other than one input (ParticleNet's points, features, mask)."""
    return ModuleError(f"{backend}: model {model} has {len(names)} inputs {list(names)}; {INPUT_CONTRACT}, "
                       f"so a model with several inputs cannot run yet")


def check_input_shape(shape: Sequence[Any], model: Path) -> None:
    """The model must take (N, 100, 3) with a dynamic N: an event brings 1 to max_jets jets (or the
    dynamic batcher a variable batch), so a model exported for a fixed batch is refused at load
    rather than run jet by jet (a fixed batch of 1 would cost one framework call per jet: the cost
    hltrun measures would be the export's, not the network's; docs/your-model.md)."""
    dims = tuple(None if (d is None or isinstance(d, str) or (isinstance(d, int) and d < 0)) else int(d)
                 for d in shape)
    shown = "(" + ", ".join("N" if d is None else str(d) for d in dims) + ")"
    if len(dims) != 3 or dims[1:] != (N_CONSTITUENTS, N_FEATURES):
        raise ModuleError(f"model {model} takes input of shape {shown}; {INPUT_CONTRACT}")
    if dims[0] is not None:
        raise ModuleError(f"model {model} takes a fixed batch of {dims[0]} jet(s), input shape {shown}; hltrun "
                          f"sends a variable number of jets per call: export it with a dynamic first axis "
                          f"(torch.onnx.export(..., dynamic_axes={{input: {{0: 'N'}}}}), or tf2onnx with a "
                          f"None batch dimension)")


def check_batch(batch: Any, model: Path) -> np.ndarray:
    """A float32, C-contiguous (N, 100, 3) array (converted only when needed)."""
    if type(batch) is np.ndarray and batch.dtype is _FLOAT32 and batch.shape[1:] == _JET_SHAPE \
            and batch.flags.c_contiguous:
        return batch  # what the source hands out: nothing to convert (checked once per event)
    x = np.asarray(batch)
    if x.ndim != 3 or x.shape[1:] != _JET_SHAPE:
        raise ModuleError(f"model {model}: batch of shape {x.shape}, expected (N, {N_CONSTITUENTS}, {N_FEATURES})")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def sanitise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (x with non-finite jets zeroed, per-jet validity, number of bad jets). Copies only if a
    jet is bad; an all-valid mask is a shared read-only array per batch size (``products.all_valid``)."""
    if dot_is_finite(x):
        return x, all_valid(len(x)), 0
    valid = np.isfinite(x).all(axis=(1, 2))
    bad = len(valid) - int(np.count_nonzero(valid))
    if bad:
        x = x.copy()
        x[~valid] = 0.0
    return x, valid, bad


def resolve_outputs(setting: OutputsSetting, available: Sequence[str], model: Path,
                    backend: str) -> dict[str, str]:
    """role -> model output name for a model whose outputs are ``available``.

    ``None`` (the default): the score is the output named ``score``, else the model's only output
    (PyTorch exports call it ``output``); ``kl`` is taken when the model has one, else not written
    (logged once). A mapping or list names every role it wants: each must exist. Errors are one line
    listing the model's outputs and the setting that fixes them."""
    available = list(available)
    fix = "set outputs: {score: <one of them>} (kl likewise, optional)"
    if setting is None:
        if SCORE in available:
            roles = {SCORE: SCORE}
        elif len(available) == 1:
            roles = {SCORE: available[0]}
            log.info("%s: model %s: its only output %r is the score", backend, model.name, available[0],
                     extra={"once": True})
        else:
            raise ModuleError(f"{backend}: model {model} has no output named 'score' and {len(available)} "
                              f"outputs {available}; {fix}")
        if KL in available and roles[SCORE] != KL:
            roles[KL] = KL
        else:
            log.info("%s: model %s has no 'kl' output: kl is not written", backend, model.name, extra={"once": True})
        return roles
    roles = dict(setting) if isinstance(setting, Mapping) else {str(r): str(r) for r in setting}
    missing = {role: name for role, name in roles.items() if name not in available}
    if missing:
        shown = ", ".join(f"{name!r}" + (f" (for {role})" if role != name else "") for role, name in missing.items())
        raise ModuleError(f"{backend}: model {model} has no output {shown}; its outputs are {available}: {fix}")
    return roles


def empty_outputs(roles: Sequence[str]) -> dict[str, np.ndarray]:
    out = {k: np.zeros(0, np.float32) for k in roles}
    out["valid"] = np.zeros(0, bool)
    return out


def normalise_outputs(raw: Any, pairs: Sequence[tuple[str, str]], n: int, model: Path,
                      order: Sequence[str] = OUTPUT_NAMES) -> dict[str, np.ndarray]:
    """The framework's result (a dict by model output name, a list/tuple in ``order``, or one array)
    as {role: float32 (n,)}; an output that is not one value per jet is one line naming it, its role,
    its shape and the shape expected (a score per event, (1,) for a batch of n, among them). ``pairs``
    are (role, model output name): iterated once per event, a tuple of pairs costs what the list of
    names did before the mapping (a dict's ``items()`` cost ~100 ns more per call)."""
    if isinstance(raw, dict):
        table = raw
    elif isinstance(raw, (list, tuple)):
        table = dict(zip(order, raw))
    else:
        table = {order[0]: raw}
    out: dict[str, np.ndarray] = {}
    for role, name in pairs:
        arr = table.get(name)
        if type(arr) is np.ndarray and arr.dtype is _FLOAT32 and arr.shape == (n,) and arr.flags.writeable:
            out[role] = arr  # what ONNX Runtime returns: taken as it is (once per event, so it counts)
            continue
        shown = f"output {name!r}" + (f" (the {role})" if role != name else "")
        if name not in table:
            raise ModuleError(f"model {model}: no {shown} (got {sorted(table)})")
        arr = np.asarray(table[name], dtype=np.float32)
        shape = arr.shape
        arr = arr.reshape(-1)
        if arr.shape != (n,):
            per_event = " (a value per event is not supported: score each jet, the filter reduces them)" \
                if shape in ((), (1,)) and n > 1 else ""
            raise ModuleError(f"model {model}: {shown} has shape {shape} for {n} jet(s); expected one "
                              f"value per jet, shape ({n},){per_event}")
        out[role] = arr if arr.flags.writeable else arr.copy()
    return out
