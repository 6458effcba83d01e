"""The one interface every inference backend implements, and the checks they all share.

A backend wraps one model file and one framework. The scorer (and the benchmarks) only ever call
``load``, ``warm_up``, ``run`` and ``describe``; everything that must behave the same on every
framework — file checks, input-shape check, the empty batch, non-finite jets, the output format —
lives here once, so the backends contain only framework calls.

Conventions (the exported VAE graphs of ``hltrun.modules.models``):

* input ``jets``: float32 (N, 100, 3), N dynamic;
* outputs ``score`` (N,) and ``kl`` (N,), float32.

A user's model may read other inputs: the backend settles its input contract at load
(``modules/contract.py``: the scorer's ``inputs``, else the model's ONNX metadata, else the shipped
input) against the model's real input shapes, and ``run`` then takes one array per declared input
(one array for a single-input model, as before; a tuple in the model's input order otherwise).

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

import contextlib
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from hltrun.framework.destinations import reading
from hltrun.framework.errors import ConfigError, ModuleError, one_line
from hltrun.framework.interrupt import reraise_interrupt
from hltrun.framework.resources import unreadable_reason

from ..contract import Contract, default_contract, from_metadata, match_model, read_onnx_metadata
from ..finite import dot_is_finite, known_finite
from ..products import all_valid
from .dynamic_quant import padding_moves_scale
from .output_types import refuse_unscorable

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
_SHIPPED_SHAPES = (_JET_SHAPE,)


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
    device: str = "auto"  # jax, torch: auto (a GPU when the engine sees one, else the CPU) | cpu | gpu
    cuda_graphs: bool = True  # torch on a GPU: replay one captured CUDA graph per batch bucket
    # role -> model output name ({score: output}); a list: roles with the same names; None: 'score' (or
    # the model's only output) and 'kl' when the model has it (resolve_outputs)
    outputs: dict[str, str] | list[str] | None = None
    # jet: every output is one value per jet; event: one value per call, the scorer calls once per event
    score_per: str = "jet"
    # the declared input contract (the scorer's ``inputs``); None: the model's ONNX metadata, else ``fallback_inputs``
    inputs: Contract | None = None
    fallback_inputs: Contract = field(default_factory=default_contract)


# the scorer's settings only some engines read (each engine lists its own in ``reads``): one given away from
# its default to an engine that does not read it is named at begin_job (``unread_settings``), since the job
# would otherwise run, and report, as if it had never been written (``mode: xla`` on ONNX Runtime)
ENGINE_SETTINGS = ("mode", "threads", "providers", "graph_optimization", "io_binding", "max_batch", "engine_cache",
                   "cuda_graphs")


def _yaml_word(value: Any) -> str:
    """A setting as the configuration spells it (``true``, ``[cuda]``), not as Python prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_word(v) for v in value) + "]"
    return str(value)


class InferenceBackend(ABC):
    """Load a model, warm it up, run batches, describe itself. Subclasses implement the ``_`` hooks.

    ``run`` is safe to call from one thread at a time per instance (the scorer is a per-stream
    module, so each stream has its own backend instance).
    """

    name: ClassVar[str] = "base"
    model_suffixes: ClassVar[tuple[str, ...]] = ()
    device: ClassVar[str] = "cpu"
    pads_batches: ClassVar[bool] = False  # runs a batch padded to a compiled size (its padded jets reach the model)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # what the engine really runs (``precision: auto``: fp32)
    precision_hint: ClassVar[str] = ""  # said after a refused precision: how to get it another way
    reads: ClassVar[frozenset[str]] = frozenset()  # the ENGINE_SETTINGS this engine honours
    # whether load and warm-up say what they prepared (INFO); ``auto`` turns it off for the candidates it
    # only times, so the log names the engine the job runs, after the table that chose it
    announce: bool = True

    @classmethod
    def precision_refusal(cls, precision: str) -> str | None:
        """Why this engine does not run ``precision``, in one line, or None when it does. The one rule
        for every engine (``load`` and the scorer's begin_job apply it): a precision the engine would
        not run is refused, never ignored with the job run at another."""
        if precision == "auto" or precision in cls.precisions:
            return None
        return (f"{cls.name}: precision {precision!r} not supported ({' or '.join(cls.precisions)} only)"
                f"{cls.precision_hint}")

    @classmethod
    def unread_settings(cls, options: BackendOptions) -> list[str]:
        """``key: value`` for each ENGINE_SETTINGS entry set away from its default that this engine does
        not read: the scorer says so in one line rather than let the setting pass for applied."""
        default = BackendOptions()
        return [f"{key}: {_yaml_word(getattr(options, key))}" for key in ENGINE_SETTINGS
                if key not in cls.reads and getattr(options, key) != getattr(default, key)]

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
        self.contract: Contract = default_contract()  # what the model reads, settled at load
        self._jet_shapes: tuple[tuple[int, ...], ...] = _SHIPPED_SHAPES  # per input, one jet's shape
        self._inputs_settled = False
        self._per_event = self.options.score_per == "event"
        self._single_shape: tuple[int, ...] | None = _JET_SHAPE  # one input's jet shape; None: several inputs
        self.counters: dict[str, int] = {"calls": 0, "jets": 0, "nonfinite_jets": 0, "empty_batches": 0}
        # exact ns sums of the copy in, computation, copy out (``device_split_ns``): None for an engine that
        # does not time its parts; one that does sets them to 0 at load and adds with ``_count_split``
        self._split_ns: dict[str, int] | None = None

    @classmethod
    def cannot_run(cls, model_path: Path) -> str | None:
        """Why this engine can never run ``model_path``, known cheaply from the file (no compiling, no engine
        imported), or None where it may: ``auto`` and ``hltbench verdict`` leave the engine out with this reason
        instead of starting it on a model it only refuses."""
        return None

    @classmethod
    def not_ready_for_auto(cls, model_path: Path, options: BackendOptions) -> str | None:
        """Why ``backend: auto`` must not time this engine on ``model_path`` now, or None to time it.
        ``auto`` spends at most ~2 s at begin_job, so an engine that would first have to compile, or to
        import seconds of framework, waits until the user has run it once by name."""
        return None

    def computes_in(self) -> str | None:
        """The reduced type (``int8``, ``float16``) the loaded model computes in, where its file says so in a form
        ``fidelity`` cannot read itself (a quantised ``.tflite``); None: float32, or an ONNX/Keras model."""
        return None

    # ------------------------------------------------------------------ public interface
    def load(self, outputs: bool = True) -> "InferenceBackend":
        """Open the model; every user-caused problem becomes one ModuleError line naming the file.
        ``outputs=False``: the model's inputs are checked, its outputs not settled (a tool that checks a
        model before running it its own way, hltbench; such a backend is only closed, never run)."""
        refusal = self.precision_refusal(self.options.precision)
        if refusal:
            raise ModuleError(refusal)
        check_model_file(self.model_path, self.model_suffixes, self.name)
        refuse_missing_external_data(self.model_path, self.name)
        refuse_training_mode(self.model_path, self.name)
        if self._per_event and self.pads_batches:
            raise ModuleError(f"{self.name}: runs batches padded to its compiled sizes, so a model scoring the whole "
                              f"call (score_per: event) would score the padding too: use backend: onnxruntime")
        per_call = per_call_quant_ops(self.model_path) if self.pads_batches else ()
        moves = padding_moves_scale(self.model_path, per_call) if per_call else None
        if moves:  # a zero jet that reaches every quantiser as zeros cannot move its range (dynamic_quant)
            raise ModuleError(f"{self.name}: model {self.model_path} quantises its activations per call "
                              f"({', '.join(per_call)}: one int8 scale from every jet of a call), and {moves}; "
                              f"{self.name} runs batches padded with zero jets to its compiled sizes, so the padding "
                              f"may move the real jets' scores: use backend: onnxruntime, or quantise statically in "
                              f"the QDQ format (quantize_static(..., quant_format=QuantFormat.QDQ)), which "
                              f"{self.name} runs")
        try:
            self._load()
        except (ModuleError, ConfigError):
            raise
        except Exception as exc:
            reraise_interrupt(exc)  # a signal that cut the engine's import or load
            raise ModuleError(f"{self.name}: cannot load model {self.model_path}: "
                              f"{type(exc).__name__}: {one_line(exc)}") from exc
        self.settle_inputs()
        if not outputs:
            return self
        self.resolve_outputs()
        self.loaded = True
        return self

    def settle_inputs(self) -> Contract:
        """The contract in force (configured, else the model's metadata, else the fallback), matched to
        the model's real inputs in one line per mismatch; a backend that sizes buffers by the input in
        ``_load`` (IREE, JAX) calls it there. TensorRT builds its engine from the ONNX input's own shape
        first (a mismatch is said after the build)."""
        if not self._inputs_settled:
            declared = self.options.inputs
            signature = self._input_signature()
            if declared is None:
                onnx_file = self.model_path.with_suffix(".onnx")
                declared = from_metadata(self._metadata(), onnx_file) or self.options.fallback_inputs
                if onnx_file != self.model_path and len(declared.inputs) == 1 and len(signature) == 1:
                    # the .onnx's names are its graph's; a converted sibling (.tflite, .keras) names its one
                    # input its own way: one declared input is that input, as an unnamed declaration is
                    declared = Contract((replace(declared.inputs[0], name=None),), declared.origin)
            self.contract = match_model(declared, signature, self.model_path)
            self._jet_shapes = tuple(i.shape(0)[1:] for i in self.contract.inputs)
            self._single_shape = self._jet_shapes[0] if len(self._jet_shapes) == 1 else None
            self._inputs_settled = True
        return self.contract

    def _metadata(self) -> Mapping[str, str]:
        """The model's ONNX ``metadata_props`` (its declared inputs live there): read from the .onnx
        file (beside a .keras one); ONNX Runtime answers from its session, without importing onnx."""
        return read_onnx_metadata(self.model_path.with_suffix(".onnx"))

    def _input_signature(self) -> Sequence[tuple[str, Sequence[Any]]]:
        """(name, shape) of every model input, in the model's order; default: the one ``_input_shape``."""
        return [(INPUT_NAME, self._input_shape())]

    def resolve_outputs(self) -> dict[str, str]:
        """Settle ``outputs`` (role -> model output name) against the model's outputs; a backend that
        sizes buffers per output in ``_load`` (TensorRT) calls it there, once ``_output_names`` works."""
        if not self.outputs:
            self._order = list(self._output_names())
            self.outputs = resolve_outputs(self.options.outputs, self._order, self.model_path, self.name)
            refuse_unscorable(self.outputs, self._output_types(), self.model_path, self.name)
            self.output_names = list(dict.fromkeys(self.outputs.values()))
            self._pairs = tuple(self.outputs.items())
        return self.outputs

    def warm_up(self, batch_sizes: Sequence[int] = (1, 9)) -> None:
        """Run zeros once per batch size so that lazy initialisation (graph tracing, XLA compilation,
        TensorRT context set-up, memory arenas) is not charged to the first events. The output shapes
        are checked on every size: with the default sizes (1 and 9) a score per event ((1,) whatever
        the batch) is refused here; warmed up on 1 jet only, at the first event with two."""
        with self.uncounted():  # warm-up work is not job work (TensorRT counts its copies)
            self._warm_up(batch_sizes)

    def _warm_up(self, batch_sizes: Sequence[int]) -> None:
        for n in batch_sizes:
            try:
                raw = self._run_inputs(tuple(np.zeros((int(n), *shape), np.float32) for shape in self._jet_shapes))
            except (ModuleError, ConfigError):
                raise
            except Exception as exc:  # at begin_job, in one line: not the framework's own text
                reraise_interrupt(exc)
                raise ModuleError(f"{self.name}: model {self.model_path} failed its warm-up on a batch of {n} "
                                  f"jet(s): {type(exc).__name__}: {one_line(exc)}{self.failure_hint(str(exc))}") from exc
            normalise_outputs(raw, self._pairs, int(n), self.model_path, self._order,  # now, not at event 1
                              self.options.score_per == "event")

    @contextlib.contextmanager
    def uncounted(self) -> Iterator[None]:
        """Calls made inside are not the job's work: the counters and the device split are as before them
        (the warm-up; the checks of ``fidelity`` at begin_job)."""
        saved = dict(self.counters)
        saved_split = dict(self._split_ns) if self._split_ns is not None else None
        try:
            yield
        finally:
            self.counters.update(saved)
            self._split_ns = saved_split

    def run(self, batch: np.ndarray | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """(N, 100, 3) -> {role: float32 (N,)} plus ``valid`` (bool (N,), False for non-finite jets); a
        model with several declared inputs takes a tuple of arrays, one per input, in its input order.

        N == 0 returns empty arrays without calling the framework. A read-only view of a source chunk
        whose inputs were checked finite at once (``finite.vouch_finite``: the default path's batches) skips
        the per-batch check; any other array, or a converted copy, is checked jet by jet.
        """
        if not self.loaded:
            raise ModuleError(f"{self.name}: run() before load() for model {self.model_path}")
        single = self._single_shape
        if single is not None and type(batch) is np.ndarray:  # one input: the per-event path, no tuples
            x = check_batch(batch, self.model_path, single)
            xs = None
            n = len(x)
        else:
            xs = self.check(batch)
            n = len(xs[0])
        counters = self.counters
        counters["calls"] += 1
        counters["jets"] += n
        if n == 0:
            counters["empty_batches"] += 1
            return empty_outputs(self.outputs)
        if known_finite(x) if xs is None else all([known_finite(a) for a in xs]):
            valid, bad = all_valid(n), 0
        elif xs is None:
            x, valid, bad = sanitise(x)
        else:
            xs, valid, bad = sanitise_all(xs)
        try:  # the arrays as sanitised: an engine never sees a non-finite value
            raw = self._run(x) if xs is None else self._run(xs[0]) if len(xs) == 1 else self._run_inputs(xs)
        except (ModuleError, ConfigError):
            raise
        except Exception as exc:  # a framework failure is reported as one line naming the model
            raise ModuleError(f"{self.name}: inference failed for model {self.model_path} on {n} jets: "
                              f"{type(exc).__name__}: {one_line(exc)}{self.failure_hint(str(exc))}") from exc
        out = normalise_outputs(raw, self._pairs, n, self.model_path, self._order, self._per_event)
        if bad:
            counters["nonfinite_jets"] += bad
            for key in self.outputs:
                out[key][~valid] = NONFINITE_FILL
        out["valid"] = valid
        return out

    def check(self, batch: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """One float32, C-contiguous array per declared input, each (N, ...) as the contract says."""
        if len(self._jet_shapes) == 1:  # one input: an array-like (a list of jets too), or a 1-tuple of it
            xs = (batch[0],) if isinstance(batch, tuple) and len(batch) == 1 else (batch,)
        else:
            xs = (batch,) if isinstance(batch, np.ndarray) else tuple(batch)
        if len(xs) != len(self._jet_shapes):
            raise ModuleError(f"model {self.model_path}: {len(xs)} input array(s) for a model with "
                              f"{len(self._jet_shapes)} declared inputs")
        out = tuple(check_batch(x, self.model_path, shape) for x, shape in zip(xs, self._jet_shapes))
        if len({len(x) for x in out}) > 1:
            raise ModuleError(f"model {self.model_path}: input arrays of different lengths {[len(x) for x in out]}")
        return out

    def describe(self) -> dict[str, Any]:
        """Versions, device, threads and precision, for the job report and the benchmark table. ``threads`` is
        None for an engine that does not read the setting (JAX, TensorRT): a number there would claim a
        thread count the engine never took."""
        return {"backend": self.name, "model": str(self.model_path), "device": self.device,
                "threads": self.options.threads if "threads" in self.reads else None,
                "inputs": [i.describe() for i in self.contract.inputs], "inputs_from": self.contract.origin,
                **self._describe()}

    def close(self) -> None:
        """Release framework resources (device memory, sessions)."""

    def failure_hint(self, reason: str) -> str:
        """Said after the engine's own words when it fails on the model (at the warm-up, on an event): what
        in the model it is likely about and what runs it instead; "" where the engine's words are all."""
        return ""

    # ------------------------------------------------------------------ device figures (benchmarks)
    def device_split_ns(self) -> dict[str, int] | None:
        """``h2d_ns``, ``compute_ns``, ``d2h_ns``: exact sums, in nanoseconds, of the job work's copy in,
        computation and copy out (warm-up excluded); a copy. The ``*_us`` counters are their floor: right
        for a job's totals, ±1 µs on the difference over one call of a few µs (``hltbench gpu-sweep``
        takes per-call times from here). None: the engine does not time its parts."""
        return dict(self._split_ns) if self._split_ns is not None else None

    def _count_split(self, h2d_ns: int, compute_ns: int, d2h_ns: int) -> None:
        """Add one engine call's parts to the exact sums and set ``h2d_us``/``compute_us``/``d2h_us`` to their
        floor: summed in ns, so that sub-µs parts (a 40-byte copy) are not lost or rounded call by call."""
        ns, c = self._split_ns, self.counters
        assert ns is not None, "an engine that times its parts sets _split_ns at load"
        ns["h2d_ns"] += h2d_ns
        ns["compute_ns"] += compute_ns
        ns["d2h_ns"] += d2h_ns
        c["h2d_us"], c["compute_us"], c["d2h_us"] = ns["h2d_ns"] // 1000, ns["compute_ns"] // 1000, ns["d2h_ns"] // 1000

    def device_memory(self) -> dict[str, int] | None:
        """The device allocator's figures in bytes (``bytes_in_use``, ``peak_bytes_in_use``, ...: JAX's key
        names, process-wide for the device), None where the engine has no device allocator to read."""
        return None

    def reset_device_peak(self) -> bool:
        """Start the allocator's peaks (``peak_bytes_in_use``, ``peak_bytes_reserved``) again from its current
        figures, process-wide for the device (for a tool that runs one engine at a time); False where the
        engine cannot (JAX has no reset; no device allocator): its peak then covers the whole process."""
        return False

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

    def _output_types(self) -> Mapping[str, str]:
        """Model output name -> its type as ONNX Runtime writes it (``tensor(float)``, ``seq(map(int64,tensor(float)))``),
        for the outputs the engine knows the type of (none by default): checked at load (``output_types``)."""
        return {}

    @abstractmethod
    def _run(self, x: np.ndarray) -> Any:
        """Run a finite, non-empty, C-contiguous float32 (N, ...) batch of a single-input model: a dict
        model output name -> array (at least those in ``output_names``), or a list/tuple in the order
        of ``_output_names()``."""

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> Any:
        """``_run`` for a model with several inputs (one array each, in the model's input order); an
        engine that feeds one input only keeps this refusal (load has refused such a model already)."""
        if len(xs) == 1:
            return self._run(xs[0])
        raise several_inputs(self.name, self.model_path, [i.name or "?" for i in self.contract.inputs])

    @abstractmethod
    def _describe(self) -> dict[str, Any]:
        """Framework-specific part of ``describe``."""


# ---------------------------------------------------------------------- shared checks
def check_model_file(path: Path, suffixes: Sequence[str], backend: str) -> None:
    """Missing, unreadable, empty or wrong-type file: one clear line, before any framework import.
    ``backend`` begins the line (``onnxruntime: model file ...``); a tool that names itself passes ""."""
    prefix = f"{backend}: " if backend else ""
    unreadable = unreadable_reason(path, "model file")
    if unreadable is not None:
        raise ModuleError(f"{prefix}{unreadable}")
    if suffixes and path.suffix not in suffixes:
        raise ModuleError(f"{prefix}model {path} has suffix {path.suffix!r}; this backend reads "
                          f"{' or '.join(suffixes)} files")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ModuleError(f"{prefix}model file {path} is not readable: {exc.strerror}") from exc
    if not head:
        raise ModuleError(f"{prefix}model file {path} is empty")
    reading([path])  # every model reader comes here: no output of the running job may replace it


def missing_external_data(path: Path) -> str | None:
    """The ONNX external-data file (``model.onnx.data``: torch's dynamo exporter writes one for every model)
    that a tensor of the model at ``path`` names and that is not there, as the model names it (relative to
    its folder, or absolute as a hand-edited model may have it); None if all are there."""
    from .machine import external_data_files

    missing = next((f for f in external_data_files(path) if not f.is_file()), None)
    if missing is None:
        return None
    return str(missing.relative_to(path.parent)) if missing.is_relative_to(path.parent) else str(missing)


def external_data_line(path: Path, location: str) -> str:
    """The one line for a missing external-data file: "beside it" only where the model names it so."""
    if Path(location).name == location:
        return (f"model {path} keeps its weights in {location!r} beside it (ONNX external data), which is not "
                f"there: copy it next to the model")
    named = "an absolute path" if Path(location).is_absolute() else "relative to the model's folder"
    return (f"model {path} keeps its weights in {location!r} (ONNX external data, {named}), which is not there: "
            f"put it there, or re-save the model with its data beside it (onnx.save(..., location=<name>))")


def ort_format_line(path: Path) -> str:
    """The one line for an ONNX Runtime format (``.ort``) model without the ``.onnx`` beside it. ``.ort`` is
    the flatbuffer ONNX Runtime's minimal builds read (``python -m onnxruntime.tools.convert_onnx_models_to_ort``),
    which no other engine, nor ``onnx`` itself, reads: hltrun said "the onnxruntime backend reads .onnx files",
    which ONNX Runtime does, of a file ONNX Runtime also reads."""
    return (f"model {path} is in ONNX Runtime's own .ort format (for its minimal builds), which hltrun does not read: "
            f"give the .onnx model it was converted from (convert_onnx_models_to_ort converts one way only)")


def refuse_missing_external_data(path: Path, backend: str) -> None:
    """One line, the same on every engine, for weights whose external-data file is not beside the model:
    each engine said it its own way (ONNX Runtime quoting its C++ source file, the others "should be stored
    in ..., but it is not regular file"). Only a file that names a location (its bytes, as
    ``model_has_ops``) is parsed."""
    if path.suffix != ".onnx":
        return
    import mmap

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data.find(b"\x0a\x08location") < 0:  # StringStringEntryProto key "location": field 1, 8 bytes
            return
    location = missing_external_data(path)
    if location:
        raise ModuleError(f"{backend}: {external_data_line(path, location)}")


_TRAINING_OPS = ("BatchNormalization", "Dropout")  # the ops an export in training mode leaves behaving so
_EVAL_HINT = ("re-export the model in eval mode (PyTorch: model.eval() and torch.onnx.export's default "
              "training=TrainingMode.EVAL; Keras: training=False)")


def refuse_training_mode(path: Path, backend: str) -> None:
    """An ONNX model exported in training mode is one line at load, on every engine that reads ONNX: a
    BatchNormalization with ``training_mode=1`` normalises each call with that call's own batch statistics
    (a jet's score depends on the other jets of the call, and on an engine's padded batch), a Dropout whose
    ``training_mode`` is true drops activations at random (a jet scores differently on every call). ONNX
    Runtime and IREE ran both without a word. The file's bytes are searched first, so a model without
    either op (the shipped ones) costs no onnx import."""
    if path.suffix != ".onnx" or not model_has_ops(path, _TRAINING_OPS):
        return
    import onnx
    from onnx import numpy_helper

    try:  # a layer exported as a model-local function is checked as its nodes
        graph = inline_local_functions(onnx.load(str(path), load_external_data=False)).graph
    except Exception:  # the backend's own load reports an unreadable model in its words
        return
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"})
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        why = ""
        if node.op_type == "BatchNormalization" and (any(a.name == "training_mode" and a.i for a in node.attribute)
                                                     or any(node.output[1:])):  # before opset 14: the statistics' outputs
            why = ("training_mode=1" if any(a.name == "training_mode" for a in node.attribute) else
                   "it outputs its running statistics, as in training before opset 14")
            why += (": it normalises each call with that call's own batch statistics, so a jet's score would depend "
                    "on the other jets of the call")
        elif node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
            flag = constants.get(node.input[2])
            if flag is None or bool(np.asarray(flag).reshape(-1)[0]):
                why = ("its training_mode input is " + ("true" if flag is not None else "computed in the graph") +
                       ": it drops activations at random, so a jet would score differently on every call")
        if why:
            name = node.output[0] if node.output else node.name
            raise ModuleError(f"{backend}: model {path}: {node.op_type} node {name!r} is in training mode ({why}); "
                              f"{_EVAL_HINT}")


_TYPE_CLASH = ("inconsistent type", "bound to different types")  # ONNX's words for an op fed two types


def refuse_mixed_types(model: Any, engine: str, path: Path) -> None:
    """One line when a node's inputs disagree on a type the op says they share (a float16 ``Greater`` fed a
    float32 constant): not valid ONNX, and ONNX Runtime refuses it at load; numpy, JAX and PyTorch would promote
    the two types and run it. A float16 converter writes such graphs (onnxconverter_common's
    ``convert_float_to_float16`` leaves a float32 initializer that a float16 node shares; block lists do not
    mend it): the shipped GCN-VAE so converted ran on JAX with a NaN score for 39 jets of 40, without a word. ONNX's own
    type inference (strict) finds it; what it cannot infer otherwise is left to the engines, as before."""
    from onnx import shape_inference

    try:
        shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx's InferenceError, or a model too large to serialise: only a type clash counts
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not any(words in text for words in _TYPE_CLASH):
            return
        where = text.split("] ", 1)[-1]  # "(op_type:Greater, node name: n): B has inconsistent type tensor(float)"
        raise ModuleError(f"{engine}: model {path} is not valid ONNX, its types disagree {where} (ONNX Runtime "
                          f"refuses it too; this engine would mix the two types silently); a float16 converter wrote "
                          f"it (convert_float_to_float16 mis-types a value two nodes share): use the float32 model, "
                          f"or a conversion that onnx.checker.check_model(model, full_check=True) passes") from None


def inline_local_functions(model: Any) -> Any:
    """The ModelProto with its model-local functions expanded into their ONNX nodes. An exporter may wrap
    layers in functions (``torch.onnx.export(..., export_modules_as_functions=...)``; onnxscript's
    exporter without its optimiser): a node then calls e.g. ``torch.nn.modules.linear.Linear``, which
    ONNX Runtime expands itself but hltrun's translator and IREE's importer would take for an unknown op."""
    if not len(model.functions):
        return model
    from onnx import inliner

    return inliner.inline_local_functions(model)


STANDARD_DOMAINS = ("", "ai.onnx")  # the ONNX operators every engine reading ONNX starts from


def graph_nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of its subgraphs (a Loop's, an If's, a Scan's body): a check that looked at the
    top graph only would miss what an exporter put in a branch."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            yield node
            for a in node.attribute:
                stack.extend([a.g] if a.HasField("g") else a.graphs)


def vendor_ops(graph: Any) -> list[str]:
    """``domain.Op`` of every node outside the standard ONNX domain, subgraphs included (functions are
    inlined first). ONNX Runtime's graph optimiser writes its own ops (``com.microsoft.FusedGemm``,
    ``FusedConv``, ``BiasGelu``, ``com.microsoft.nchwc.*``) into a model saved with
    ``SessionOptions.optimized_model_filepath``: only ONNX Runtime runs them, and IREE's compiler, handed
    one, named a standard op of the model as the culprit instead."""
    return sorted({f"{node.domain}.{node.op_type}" for node in graph_nodes(graph)
                   if node.domain not in STANDARD_DOMAINS})


# the ops onnxruntime.quantization's QOperator format writes (quantize_static(quant_format=QuantFormat.QOperator)):
# the standard QLinearConv / QLinearMatMul, and com.microsoft ones for the rest (QGemm, QLinearAdd, ...)
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "com.microsoft.QGemm", "com.microsoft.QLinear")


def vendor_note(ops: Iterable[str]) -> str:
    """Why ops of ONNX Runtime's own domain are in the model, and the way back to ops every engine runs."""
    ops = list(ops)
    if any(op.startswith(QOPERATOR_OPS) for op in ops):  # not the optimiser's: the quantiser's QOperator format
        return ("; QLinear* and com.microsoft Q ops are onnxruntime.quantization's QOperator format: quantise "
                "with quant_format=QuantFormat.QDQ (QuantizeLinear/DequantizeLinear around float ops), which the "
                "ONNX translator and IREE run")
    if not any(op.startswith("com.microsoft.") for op in ops):
        return ""
    return ("; com.microsoft ops are ONNX Runtime's own, written by its graph optimiser into a model saved "
            "with SessionOptions.optimized_model_filepath: give hltrun the model as exported, or save it with "
            "graph_optimization_level ORT_ENABLE_BASIC, which keeps to ONNX operators")


def model_has_ops(path: Path, ops: Iterable[str]) -> bool:
    """Whether an ONNX file has a node of one of ``ops`` (``ops_in_model``)."""
    return bool(ops_in_model(path, ops))


def ops_in_model(path: Path, ops: Iterable[str]) -> tuple[str, ...]:
    """Those of ``ops`` an ONNX file has a node of, looked up in its bytes (a NodeProto's op_type is field 4:
    tag 0x22, its length, the name), so that asking costs no onnx import and no parse; a message can then
    name the op the model really has."""
    import mmap

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return tuple(op for op in ops if data.find(b"\x22" + bytes([len(op)]) + op.encode()) >= 0)


# ops that quantise their input with one scale from the whole call: ``quantize_dynamic``'s, and the fused ones
# ONNX Runtime writes into a model saved after its optimisation (``optimized_model_filepath``: a MatMul of
# gcn_vae_int8 becomes a com.microsoft DynamicQuantizeMatMul, and the DynamicQuantizeLinear is gone)
PER_CALL_QUANT_OPS = ("DynamicQuantizeLinear", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM")


def quantises_per_call(path: Path) -> bool:
    """Whether an ONNX model quantises activations per call (``PER_CALL_QUANT_OPS``, onnxruntime's
    ``quantize_dynamic``: one int8 scale from every jet of the call), so that a jet's score depends on the
    other jets of the call."""
    return bool(per_call_quant_ops(path))


def per_call_quant_ops(path: Path) -> tuple[str, ...]:
    """The ``PER_CALL_QUANT_OPS`` an ONNX model has (none for another format): what a refusal names."""
    return ops_in_model(path, PER_CALL_QUANT_OPS) if path.suffix == ".onnx" else ()


def several_inputs(backend: str, model: Path, names: Sequence[str]) -> ModuleError:
    """The one line for a model with several inputs (ParticleNet's points, features, mask) on an
    engine that feeds one: every engine hltrun ships feeds them all since 2026-12-07 (TensorFlow and TFLite by
    name, from the model's .keras or .tflite file; docs/your-model.md), so this is what a plugin engine that does not
    override ``_run_inputs`` says."""
    return ModuleError(f"{backend}: model {model} has {len(names)} inputs {list(names)}; the {backend} backend "
                       f"feeds models with one input: use backend: onnxruntime (or iree; jax, torch: on a GPU too; "
                       f"tensorrt on a GPU)")


FLOAT32_ONLY = ("hltrun feeds float32: a mask too, as 0/1); export the model with a float32 input (PyTorch: "
                "model.float() and a float32 example input; tf2onnx: a tf.float32 TensorSpec)")


def require_float32(backend: str, model: Path, name: str, dtype: Any) -> None:
    """hltrun feeds float32: a model input of another type is one line at load, before any engine
    compiles it (IREE compiled every bucket of a float64 model, then failed its warm-up on a type
    mismatch in the runtime's words). The same line on every engine (``not_float32``)."""
    why = not_float32(model, name, dtype)
    if why is not None:
        raise ModuleError(f"{backend}: {why}")


def not_float32(model: Path, name: str, dtype: Any) -> str | None:
    """The line for a model input that is not float32, or None: ONNX Runtime's type names (``tensor(double)``)
    read as numpy's, with the way out (it said only "expected float32"); hltinputs says it too."""
    if isinstance(dtype, str) and dtype.startswith("tensor(") and dtype.endswith(")"):
        dtype = {"float": "float32", "double": "float64"}.get(dtype[7:-1], dtype[7:-1])
    try:
        shown = str(np.dtype(dtype))
    except TypeError:  # a type numpy has no name for (bfloat16, string): said as the engine names it
        shown = str(dtype)
    if shown == "float32":
        return None
    if shown in ("float16", "bfloat16"):  # a converted model: hltrun would have to feed it float32 bytes as half ones
        return (f"model {model} input {name!r} is {shown}, expected float32 (hltrun feeds float32 jets; a model "
                f"converted to {shown} computes in it from a float32 input): convert it again keeping float32 inputs "
                f"and outputs (onnxconverter_common float16.convert_float_to_float16(model, keep_io_types=True)), or "
                f"use the float32 model")
    return f"model {model} input {name!r} is {shown}, expected float32 ({FLOAT32_ONLY}"


def check_input_shape(shape: Sequence[Any], model: Path) -> None:
    """The shipped contract's check of one input shape: (N, 100, 3) with a dynamic N (an event brings
    1 to max_jets jets, or the dynamic batcher a variable batch, so a model exported for a fixed batch
    is refused at load rather than run jet by jet: the cost hltrun measured would be the export's,
    not the network's; docs/your-model.md). Other contracts: ``contract.match_model``."""
    match_model(default_contract(), [(INPUT_NAME, shape)], model)


def check_batch(batch: Any, model: Path, jet_shape: tuple[int, ...] = _JET_SHAPE) -> np.ndarray:
    """A float32, C-contiguous (N, *jet_shape) array (converted only when needed)."""
    if type(batch) is np.ndarray and batch.dtype is _FLOAT32 and batch.shape[1:] == jet_shape \
            and batch.flags.c_contiguous:
        return batch  # what the source hands out: nothing to convert (checked once per event)
    x = np.asarray(batch)
    if x.ndim != len(jet_shape) + 1 or x.shape[1:] != jet_shape:
        want = ", ".join(["N", *map(str, jet_shape)])
        raise ModuleError(f"model {model}: batch of shape {x.shape}, expected ({want})")
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def sanitise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (x with non-finite jets zeroed, per-jet validity, number of bad jets). Copies only if a
    jet is bad; an all-valid mask is a shared read-only array per batch size (``products.all_valid``)."""
    if dot_is_finite(x):
        return x, all_valid(len(x)), 0
    xs, valid, bad = sanitise_all((x,))
    return xs[0], valid, bad


def sanitise_all(xs: tuple[np.ndarray, ...]) -> tuple[tuple[np.ndarray, ...], np.ndarray, int]:
    """``sanitise`` over every input of a model: a jet is valid when all its inputs are finite."""
    if all([dot_is_finite(x) for x in xs]):
        return xs, all_valid(len(xs[0])), 0
    valid = np.ones(len(xs[0]), bool)
    for x in xs:
        valid &= np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    bad = len(valid) - int(np.count_nonzero(valid))
    if bad:
        xs = tuple(x.copy() for x in xs)
        for x in xs:
            x[~valid] = 0.0
    return xs, valid, bad


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


def per_jet_hint(shape: tuple[int, ...], n: int, name: str) -> str:
    """What an output that is not one value per jet most likely is, and the way to one score per jet. Most
    autoencoders are exported returning their reconstruction, a tagger its class probabilities: until
    2026-12-07 both were refused with the shapes alone, nothing said of what to change; until session 42 the line
    named neither the docs' script that appends the score to the file a user may only have, nor the output as one
    (an output named ``score``: "between score and the input")."""
    if shape in ((), (1,)) and n > 1:
        return " (a value per event: set the scorer's score_per: event)"
    if len(shape) < 2 or shape[0] != n:
        return ""
    if len(shape) > 2:
        what = (f"{shape[1:]} per jet, as a reconstruction does: return the score from the network instead (e.g. "
                f"the mean squared difference between the output {name!r} and the input)")
    else:
        what = (f"{shape[1]} values per jet (class probabilities, or one per constituent?): return the one value "
                f"the trigger cuts on instead (e.g. a classifier's {name}[:, 1], or a sum over constituents)")
    return (f"; it gives {what} and export again, or append it to this .onnx file with add_score.py "
            f"(docs/your-model.md, 'One score per jet')")


def empty_outputs(roles: Sequence[str]) -> dict[str, np.ndarray]:
    out = {k: np.zeros(0, np.float32) for k in roles}
    out["valid"] = np.zeros(0, bool)
    return out


def normalise_outputs(raw: Any, pairs: Sequence[tuple[str, str]], n: int, model: Path,
                      order: Sequence[str] = OUTPUT_NAMES, per_event: bool = False) -> dict[str, np.ndarray]:
    """The framework's result (a dict by model output name, a list/tuple in ``order``, or one array)
    as {role: float32 (n,)}; an output that is not one value per jet is one line naming it, its role,
    its shape and the shape expected (a score per event, (1,) for a batch of n, among them). With
    ``per_event`` (``score_per: event``: the model scores the whole call, one event) each output is one
    value, given to each of the n jets. ``pairs`` are (role, model output name): iterated once per
    event, a tuple of pairs costs what the list of names did before the mapping (a dict's ``items()``
    cost ~100 ns more per call)."""
    if isinstance(raw, dict):
        table = raw
    elif isinstance(raw, (list, tuple)):
        table = dict(zip(order, raw))
    else:
        table = {order[0]: raw}
    out: dict[str, np.ndarray] = {}
    for role, name in pairs:
        arr = table.get(name)
        if type(arr) is np.ndarray and arr.dtype is _FLOAT32 and arr.shape == (n,) and arr.flags.writeable \
                and not per_event:
            out[role] = arr  # what ONNX Runtime returns: taken as it is (once per event, so it counts)
            continue
        shown = f"output {name!r}" + (f" (the {role})" if role != name else "")
        if name not in table:
            raise ModuleError(f"model {model}: no {shown} (got {sorted(table)})")
        arr = np.asarray(table[name], dtype=np.float32)
        shape = arr.shape
        arr = arr.reshape(-1)
        if per_event:
            if arr.shape != (1,):
                raise ModuleError(f"model {model}: {shown} has shape {shape} for {n} jet(s); score_per: event "
                                  f"expects one value per call (the event), shape (1,) or ()")
            out[role] = np.full(n, arr[0], np.float32)
            continue
        if arr.shape != (n,):
            raise ModuleError(f"model {model}: {shown} has shape {shape} for {n} jet(s); expected one "
                              f"value per jet, shape ({n},){per_jet_hint(shape, n, name)}")
        out[role] = arr if arr.flags.writeable else arr.copy()
    return out
