"""IREE backend: the ONNX model compiled ahead of time for this CPU, one static shape per batch bucket.

Why a compiler: the GCN-VAE's time on ONNX Runtime is mostly chains of small elementwise ops that a
compiler fuses (docs/inference.md has the per-engine figures). Why buckets: IREE's code for a dynamic
batch axis ran 4x slower than for a static one on the GCN-VAE (batch 2, 197 vs 46 µs per jet,
measured in one run), so the model is compiled once per batch bucket — powers of two up to the
bucket that holds ``opt_batch`` jets (9 by default: 1, 2, 4, 8, 16) — and a batch is zero-padded to
its bucket; a batch larger than the largest bucket runs in slices of it. Compilation (seconds per
bucket) happens at ``load``, never in the event loop, and its result is cached on disk keyed by the
model's hash (its external-data files included), the compiler's version, this CPU's features and the bucket
(``engine_cache`` or ``$XDG_CACHE_HOME/hltrun/iree``), so a second job loads in milliseconds. Where
that folder cannot be written, the modules stay in this process's memory (``machine.IN_MEMORY``), so
that the job's other streams load them from there instead of compiling again.

A model with several inputs (ParticleNet's points, features, mask) is compiled the same way, every input's
batch axis fixed to the bucket; each call hands the bucket's entry point one array per input in the graph's
order, each padded along the batch axis with the same zero jets (a mask's padding is 0).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hltrun.framework.atomic import write_bytes
from hltrun.framework.destinations import check_folder_destination, fit_name
from hltrun.framework.errors import ModuleError, one_line
from hltrun.framework.extras import install_hint, installed, need

from .machine import (CACHE_STEM_BYTES, IN_MEMORY, cache_entry, cache_root, cpu_key, dist_version, engine_cache_dir,
                      folder_or_none, model_digest)
from .autoselect import CHECK_JETS, sample_inputs
from .buckets import bucket_for, up_to_typical
from .opset_upgrade import importable
from .output_types import graph_output_types
from .base import (STANDARD_DOMAINS, InferenceBackend, graph_nodes, inline_local_functions, log, refuse_mixed_types,
                   require_float32, vendor_note, vendor_ops)

TARGET = "llvm-cpu"


def cache_path(model: Path, cache_dir: Path, compiler_version: str, bucket: int, digest: str | None = None) -> Path:
    """``digest``: the model's ``model_digest``, when the caller has it (one hash and parse per load, not per bucket)."""
    return cache_dir / cache_name(model, compiler_version, bucket, digest)


def cache_name(model: Path, compiler_version: str, bucket: int, digest: str | None = None) -> str:
    """A compiled bucket's file name: the whole cache key (on disk and in ``IN_MEMORY``)."""
    digest = (digest or model_digest(model))[:16]
    stem = fit_name(model.stem, CACHE_STEM_BYTES)  # a 255-byte model name still makes a valid cache name
    return f"{stem}-{digest}-iree{compiler_version}-{cpu_key()}-b{bucket}.vmfb"


# what hltrun hands the compiler (static_onnx, the importer's flags): a refusal recorded by an older one is
# not trusted (2: outputs without a batch axis compile since 2026-12-06; 3: model-local functions are inlined
# since 2026-12-07; 4: below); a compiled module stays valid
RECIPE = 4  # 4: a model of opset < 13 is upgraded to 17 before its import, since 2026-12-07


def refusal_path(module: Path) -> Path:
    """Where the compiler's refusal of one bucket is remembered, beside its would-be module."""
    return module.with_suffix(f".r{RECIPE}.failed")


def refusal_name(module: str) -> str:
    return refusal_path(Path(module)).name


def is_stored(folder: Path | None, name: str) -> bool:
    return (folder is not None and (folder / name).is_file()) or IN_MEMORY.get(folder, name) is not None


def default_cache_dir() -> Path:
    return cache_root("iree")


_FLAGS = threading.Lock()  # IREE's runtime flags are process-wide: one backend sets, uses and resets them at a time
WORKERS_FLAG = "--task_topology_group_count"  # the local-task executor's worker count (0: IREE's own heuristic)


def runtime_config(runtime: Any, threads: int) -> tuple[Any, Any]:
    """(IREE's runtime configuration, the driver to keep alive with it) running calls on ``threads`` threads.

    1: the synchronous local device, on the calling thread. N > 1: a local-task device of this backend's own
    with exactly N worker threads (``iree-worker-*``). The "local-task" device by name is one cached device
    whose worker count IREE chooses (one per physical core): ``threads: 2`` ran on every core. The count is a
    process-wide runtime flag read when a driver is made, so it is set, a driver made, and the flag reset,
    under one lock. An IREE without the uncached driver factory runs on its own count, said in one warning."""
    if threads <= 1:
        return runtime.Config("local-sync"), None
    binding = getattr(runtime, "_binding", None)
    create = getattr(binding, "create_hal_driver", None)
    parse = getattr(getattr(runtime, "flags", None), "parse_flags", None)
    if create is None or parse is None:
        log.warning("iree: threads: %d is not honoured by this IREE runtime (no create_hal_driver / parse_flags): "
                    "calls run on IREE's own worker count (one per physical core)", threads, extra={"once": True})
        return runtime.Config("local-task"), None
    with _FLAGS:
        parse(f"{WORKERS_FLAG}={threads}")
        try:
            driver = create("local-task")
            device = driver.create_default_device()
        finally:
            parse(f"{WORKERS_FLAG}=0")
    return runtime.Config(device=device), driver


def static_onnx(model: Any, batch: int) -> Any:
    """A copy of the ONNX graph with its first input/output axis fixed to ``batch``."""
    import copy

    fixed = copy.deepcopy(model)
    for value in [*fixed.graph.input, *fixed.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            continue  # a scalar or fixed-size output (a per-call total) has no batch axis to fix
        dims[0].ClearField("dim_param")
        dims[0].dim_value = batch
    del fixed.graph.value_info[:]  # intermediate shapes were inferred for a dynamic batch
    return fixed


def compile_bucket(model: Any, batch: int, extra_flags: Sequence[str] = ()) -> bytes:
    """ONNX graph -> IREE module (vmfb bytes) for a static batch, for this host's CPU (``extra_flags``:
    more iree-compile flags, for studies such as tools/physics/optimize_conv.py)."""
    import onnx

    compiler = need("iree.compiler", "iree: compiling the model")
    with tempfile.TemporaryDirectory(prefix="hltrun-iree-") as tmp:
        onnx_file, mlir_file = Path(tmp) / "model.onnx", Path(tmp) / "model.mlir"
        onnx.save(static_onnx(model, batch), str(onnx_file))
        imported = subprocess.run([sys.executable, "-m", "iree.compiler.tools.import_onnx", str(onnx_file),
                                   "-o", str(mlir_file)], capture_output=True, text=True)
        if imported.returncode != 0:
            lines = [ln for ln in imported.stderr.splitlines() if ln.strip()]
            raise ModuleError(f"iree: the ONNX importer cannot read the model: "
                              f"{without_locations(lines[-1]) if lines else 'failed'}")
        return compiler.compile_file(str(mlir_file), target_backends=[TARGET],
                                     extra_args=["--iree-llvmcpu-target-cpu=host", *extra_flags])


RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def refuse_ignored_sequence_lens(graph: Any, model: Path) -> None:
    """IREE's ONNX import (iree-base-compiler 3.x) drops a recurrent layer's ``sequence_lens`` input and runs
    every jet over all its rows, padded ones included: measured on an LSTM reading each jet's count of
    real constituents, scores off ONNX Runtime's by up to 89 % of the largest score, silently. Refused
    before compiling."""
    for node in graph.node:
        if node.op_type in RECURRENT_OPS and node.domain in ("", "ai.onnx") and len(node.input) > 4 and node.input[4]:
            name = next((o for o in node.output if o), node.name)
            raise ModuleError(f"iree: model {model}: {node.op_type} node {name!r} has a sequence_lens input, which "
                              f"IREE's ONNX import ignores (every jet would run over its padded rows too, scores "
                              f"unlike ONNX Runtime's): use backend: onnxruntime for this model")


def never_compiles(model: Path) -> str | None:
    """Why IREE would refuse this ONNX file whatever it compiles (its graph only, not its external weights): ops
    outside the default ONNX domain it cannot read; None where it may compile, or cannot be read here, which
    loading it then says. ``auto`` gives it instead of "run once with backend: iree", a command that would only
    be refused. Several inputs are no reason: IREE feeds each (ParticleNet's points, features, mask) since
    2026-12-07."""
    try:
        import onnx

        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - unreadable here: load() gives the line
        return None
    ops = unreadable_ops(graph)
    if ops:
        return f"cannot read this model's {', '.join(ops)} (ops outside the default ONNX domain)"
    return None


# the com.microsoft ops iree-base-compiler 3.13's ONNX import has a lowering for (torch-mlir's ComMicrosoftDomain);
# its FusedMatMul is left out: an ORT-optimised MatMul * 0.5 (com.microsoft.FusedMatMul, alpha 0.5) was refused by
# its compiler ('failed to legalize ... onnx.FusedMatMul') on 2026-12-07
IREE_READS = frozenset(f"com.microsoft.{op}" for op in (
    "GroupQueryAttention", "QLinearAdd", "QLinearAveragePool", "QLinearConcat", "QLinearGlobalAveragePool",
    "QLinearLeakyRelu", "QLinearMul", "QLinearSigmoid", "RotaryEmbedding", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization"))


def unreadable_ops(graph: Any) -> list[str]:
    """The model's ops outside the default ONNX domain that IREE's import has no lowering for."""
    return [op for op in vendor_ops(graph) if op not in IREE_READS]


def refuse_vendor_ops(graph: Any, model: Path) -> None:
    """IREE's ONNX import reads the default ONNX domain and a few ONNX Runtime ops (``IREE_READS``). Handed
    another of ONNX Runtime's own ops (a model saved after ORT's optimisation: ``com.microsoft.FusedGemm``),
    iree-base-compiler 3.13 failed on the standard Gemm reading the fused op's output, and the line named
    that Gemm. Refused before compiling, naming them."""
    ops = unreadable_ops(graph)
    if ops:
        raise ModuleError(f"iree: model {model} uses op(s) outside the default ONNX domain that IREE's ONNX "
                          f"import does not read: {', '.join(ops)} (use backend: onnxruntime for this model"
                          f"{vendor_note(ops)})")


# ops whose IREE import handles some forms only (control flow, data-dependent shapes): iree-base-compiler 3.x
# refused a Loop and a Scan carrying a per-jet state in words naming no ONNX op ('torch.prim.Loop' ..., 'failed
# to legalize unresolved target materialization'), compiled a Loop carrying a scalar, and compiled a boolean
# indexing (NonZero) whose warm-up then failed on 'onnx.Expand': named whenever IREE refuses the model
FRAGILE_OPS = ("Loop", "Scan", "If", "NonZero", "Unique", "Compress", "SequenceConstruct", "SequenceAt",
               "SequenceInsert", "SplitToSequence", "ConcatFromSequence", "SequenceMap")
_NAMED_OP = re.compile(r"\b(?:onnx|torch\.prim)\.([A-Z][A-Za-z0-9]*)")


def graph_ops(graph: Any) -> dict[str, str]:
    """op type -> the first node of it (its first output's name), over the graph and its subgraphs (a Loop's
    or an If's body): what a refusal can name, kept instead of the whole model."""
    found: dict[str, str] = {}
    for node in graph_nodes(graph):
        if node.domain in STANDARD_DOMAINS:
            found.setdefault(node.op_type, next((o for o in node.output if o), node.name))
    return found


def culprits(ops: dict[str, str], reason: str) -> str:
    """`` (the error names its X node 'n'; its Loop node 'm': ...)``: the model's nodes of the ops IREE's
    ``reason`` names (``onnx.Softmax``, ``torch.prim.Loop``), and of ``FRAGILE_OPS``; "" when none."""
    def shown(names: Sequence[str]) -> str:
        return ", ".join(f"{op} node {ops[op]!r}" for op in sorted(names))

    named = {op for op in _NAMED_OP.findall(reason) if op in ops}
    fragile = [op for op in FRAGILE_OPS if op in ops and op not in named]
    parts = ([f"the error names its {shown(named)}"] if named else []) + \
            ([f"its {shown(fragile)}: IREE compiles and runs such ops in some forms only"] if fragile else [])
    return f" ({'; '.join(parts)})" if parts else ""


class IreeBackend(InferenceBackend):
    name = "iree"
    reads = frozenset(("threads", "max_batch", "engine_cache"))
    pads_batches = True  # static buckets: a batch runs padded to the next compiled size
    model_suffixes = (".onnx",)

    @classmethod
    def compiled(cls, model_path: Path, options: Any) -> bool:
        """Are all of this model's buckets in the cache, or in this process's memory of a cache that
        could not keep them (loading costs milliseconds, not minutes)? ``backend: auto`` times IREE only
        then, so begin_job never compiles for a guess."""
        try:
            version = dist_version("iree-base-compiler")
            digest = model_digest(Path(model_path))
            names = [cache_name(Path(model_path), version, b, digest) for b in up_to_typical(options.opt_batch, options.max_batch)]
        except (OSError, ModuleError):  # no readable model: not compiled here
            return False
        folder = folder_or_none(lambda: engine_cache_dir(options, default_cache_dir))
        return version != "unknown" and all(is_stored(folder, n) or is_stored(folder, refusal_name(n)) for n in names)

    @classmethod
    def cannot_run(cls, model_path: Path) -> str | None:
        return never_compiles(Path(model_path))

    @classmethod
    def not_ready_for_auto(cls, model_path: Path, options: Any) -> str | None:
        lacking = [m for m in ("iree.runtime", "iree.compiler") if not installed(m)]
        if not lacking and cls.compiled(model_path, options):
            return None
        refused = cls.cannot_run(model_path)
        if refused or not lacking:
            return refused or f"not compiled for this model here (run once with backend: {cls.name})"
        # a Python without IREE (the GPU machines'): running it by name would only fail on the import
        return f"needs {' and '.join(lacking)}, which {'is' if len(lacking) == 1 else 'are'} not installed: " \
               f"{install_hint('iree')}"

    def _load(self) -> None:
        onnx = need("onnx", "iree: reading the model")
        runtime = need("iree.runtime", f"iree: running {self.model_path}")
        need("iree.compiler", f"iree: compiling {self.model_path}")
        model = inline_local_functions(onnx.load(str(self.model_path)))  # IREE's importer expands no function
        refuse_vendor_ops(model.graph, self.model_path)  # before the converter, which knows no such op
        refuse_mixed_types(model, self.name, self.model_path)  # its importer named no node for one
        self._inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
        self._outputs = [o.name for o in model.graph.output]
        self._types = graph_output_types(model.graph)
        self._fetch: list[int] = []  # positions of the mapped outputs among the module's results
        # every input's shape, in the graph's order: the compiled entry point takes them in that order
        self._shapes = [tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim)
                        for i in self._inputs]
        self._shape = self._shapes[0]
        for i in self._inputs:
            require_float32(self.name, self.model_path, i.name,
                            onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        self.settle_inputs()  # a wrong shape: one line, before any compiling; the contract now in the graph's order
        names = [i.name for i in self._inputs]
        # the upgrade keeps the graph's inputs and outputs: it is checked on the settled contract's sample jets
        model = importable(model, self.model_path, lambda: dict(zip(names, as_inputs(sample_inputs(self, CHECK_JETS,
                                                                                                    seed=1)))))
        refuse_ignored_sequence_lens(model.graph, self.model_path)
        self._ops = graph_ops(model.graph)
        self.version = dist_version("iree-base-compiler")
        self.buckets = up_to_typical(self.options.opt_batch, self.options.max_batch)
        self._config, self._driver = runtime_config(runtime, self.options.threads)
        self._functions: dict[int, Any] = {}
        self.compiled_now: list[int] = []
        failed: dict[int, str] = {}
        self._cache_refused: str | None = None
        cache_dir: Path | None = None
        try:
            cache_dir = engine_cache_dir(self.options, default_cache_dir)
        except OSError as exc:  # no home folder to hold it
            self._refuse_cache(f"iree module cache: {exc.strerror}")
        digest = model_digest(self.model_path)
        for bucket in self.buckets:
            name = cache_name(self.model_path, self.version, bucket, digest)
            with IN_MEMORY.claim(cache_dir, name):  # a second thread waits for this bucket, then finds it
                function = self._load_bucket(runtime, model, cache_dir, name, bucket, failed)
            if function is not None:
                self._functions[bucket] = function
        if not self._functions:
            reason = next(iter(failed.values()))
            raise ModuleError(f"iree: cannot compile {self.model_path} for any batch bucket: {reason}"
                              f"{self.failure_hint(reason)}")
        for bucket, reason in failed.items():  # a smaller batch pads up to the next bucket that compiled
            larger = next((b for b in self._functions if b > bucket), None)  # none: the batch runs in slices
            how = f"padded to {larger}" if larger else f"in slices of {max(self._functions)}"
            log.warning("iree: %s does not compile for batch %d (%s); batches of that size run %s",
                        self.model_path.name, bucket, reason, how,
                        extra={"once": True})  # every stream's backend finds the same: said once per job
        self.buckets = sorted(self._functions)
        # per bucket, one zeroed buffer per input, in the graph's order (a padded batch's jets are zero jets)
        self._padded = {b: tuple(np.zeros((b, *jet), np.float32) for jet in self._jet_shapes) for b in self.buckets}

    def failure_hint(self, reason: str) -> str:
        """The model's nodes IREE's refusal is likely about, and the engine that runs every ONNX op."""
        return f"{culprits(getattr(self, '_ops', {}), reason)}; use backend: onnxruntime for this model"

    def _load_bucket(self, runtime: Any, model: Any, cache_dir: Path | None, name: str, bucket: int,
                     failed: dict[int, str]) -> Any:
        """One bucket's entry point: cached (in the folder, else in this process's memory of what the
        folder could not keep), else compiled now; None, with ``failed[bucket]``, where the compiler
        refuses the bucket (now, or before: a refusal is remembered and not retried)."""
        refused = IN_MEMORY.read(cache_dir, refusal_name(name))
        if refused is not None:  # an older version kept the temporary's locations in it
            failed[bucket] = without_locations(refused.decode(errors="replace"))
            return None
        function = self._open_cached(runtime, cache_entry(cache_dir, name)) if cache_dir is not None else None
        if function is not None:
            return function
        blob = IN_MEMORY.get(cache_dir, name)
        if blob is not None:
            return self._open(runtime, blob)
        log.info("iree: compiling %s for batch %d (%s)", self.model_path.name, bucket,
                 "in memory only" if self._cache_refused else f"cached in {cache_dir}")
        try:
            blob = compile_bucket(model, bucket)
        except ModuleError:
            raise
        except Exception as exc:  # the compiler's own diagnostics: keep the first error line
            failed[bucket] = compiler_error(exc)
            if refuses_model(exc):
                self._keep(cache_dir, refusal_name(name), (failed[bucket] + "\n").encode())
            return None
        self._keep(cache_dir, name, blob)
        self.compiled_now.append(bucket)
        return self._open(runtime, blob)

    def _open_cached(self, runtime: Any, path: Path) -> Any:
        """The cached module for one bucket, or None to compile it: absent, or one that cannot be opened
        (truncated or damaged by something other than hltrun, which writes it whole) is compiled again
        and replaced, with one warning, rather than failing every later job."""
        if not path.is_file():
            return None
        try:
            return self._open(runtime, path)
        except ModuleError:
            raise
        except Exception as exc:
            log.warning("iree: cached module %s cannot be opened (%s); compiling it again", path, one_line(exc))
            return None

    def _keep(self, cache_dir: Path | None, name: str, data: bytes) -> None:
        """Put a compiled module (or the compiler's refusal) in the cache. The cache only saves the
        next job a compile: a folder that cannot be written (a file in its path, a read-only or full
        disk) is one warning, and the module stays in this process's memory (``IN_MEMORY``: the job's
        other streams load it from there), and the job goes on."""
        if self._cache_refused is None and cache_dir is not None:
            try:
                check_folder_destination(cache_dir, "iree module cache")
                write_bytes(cache_dir / name, data, "iree module cache")
                return
            except ModuleError as exc:
                self._refuse_cache(str(exc))
        IN_MEMORY.put(cache_dir, name, data)

    def _refuse_cache(self, why: str) -> None:
        """No cache for this job: said once, in one warning."""
        self._cache_refused = why
        log.warning("%s; compiled modules kept in memory only, the next job compiles again", why, extra={"once": True})

    def _open(self, runtime: Any, module_file: Path | bytes) -> Any:
        """The entry point of a compiled module: a cached file (mapped) or bytes just compiled."""
        context = runtime.SystemContext(config=self._config)
        if isinstance(module_file, bytes):
            module = runtime.VmModule.copy_buffer(self._config.vm_instance, module_file)
        else:
            module = runtime.VmModule.mmap(self._config.vm_instance, str(module_file))
        context.add_vm_module(module)
        entry = [f for f in module.function_names if not f.startswith("__") and "$" not in f]
        if len(entry) != 1:
            where = "just compiled" if isinstance(module_file, bytes) else str(module_file)
            raise ModuleError(f"iree: compiled module ({where}) of {self.model_path} has entry points {entry}; "
                              f"expected one")
        return context.modules[module.name][entry[0]]

    def _input_shape(self) -> tuple[Any, ...]:
        return self._shape

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(i.name, shape) for i, shape in zip(self._inputs, self._shapes)]

    def _output_names(self) -> Sequence[str]:
        return self._outputs

    def _output_types(self) -> dict[str, str]:
        return self._types

    def _bucket(self, n: int) -> int:
        return bucket_for(n, self.buckets)  # n <= the largest bucket: _run slices bigger batches

    def _run_bucket(self, xs: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """One call of the bucket's entry point, one argument per graph input in the graph's order (IREE's ONNX
        import keeps it; its entry points carry no names): ``xs`` is in that order, the contract's, which
        ``match_model`` matched to the graph's input names. A padded batch is zero jets in every input (a
        mask's padding is 0: a padded jet has no constituent)."""
        n = len(xs[0])
        bucket = self._bucket(n)
        if bucket != n:
            padded = self._padded[bucket]
            for buf, x in zip(padded, xs):
                buf[:n] = x
                buf[n:] = 0.0
            xs = padded
        results = self._functions[bucket](*xs)
        results = results if isinstance(results, (list, tuple)) else [results]
        return [host_copy(results[i], n) for i in self._fetch]

    def _run(self, x: np.ndarray) -> Any:
        return self._run_inputs((x,))

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> Any:
        """The mapped outputs only (``output_names``): another output need not be one value per jet (a
        per-call total), and slicing or joining it per bucket would fail or mean nothing. A batch over the
        largest bucket runs in slices of it, every input sliced alike."""
        if len(self._fetch) != len(self.output_names):
            self._fetch = [self._outputs.index(name) for name in self.output_names]
        top, n = self.buckets[-1], len(xs[0])
        if n <= top:
            return dict(zip(self.output_names, self._run_bucket(xs)))
        parts = [self._run_bucket(tuple(x[i:i + top] for x in xs)) for i in range(0, n, top)]
        return {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(self.output_names)}

    def _describe(self) -> dict[str, Any]:
        return {"versions": {"iree": self.version}, "target": f"{TARGET} (host CPU)", "buckets": list(self.buckets),
                "compiled_at_load": list(self.compiled_now), "precision": "fp32"}


def as_inputs(sample: np.ndarray | tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """``sample_inputs``' batch as one array per input (it gives a one-input model's array bare)."""
    return sample if isinstance(sample, tuple) else (sample,)


def host_copy(result: Any, n: int) -> np.ndarray:
    """The first ``n`` rows of one IREE result as an array that owns its memory. ``to_host`` maps the
    result buffer, and the mapping lives only as long as the ``DeviceArray``: a view of it (a slice,
    a reshape) kept past the call reads whatever the next calls put in that memory (other events'
    scores were written for a model with an (N, 1) output). The copy is a few bytes per jet."""
    host = result.to_host() if hasattr(result, "to_host") else result
    return np.array(host[:n] if np.ndim(host) else host, copy=True)  # 0-d: a value per call, said by the caller


def refuses_model(exc: BaseException) -> bool:
    """Whether iree-compile refused the model (an ``error:`` diagnostic about it), which is remembered
    for this bucket. A compiler that could not run at all (its TMPDIR unusable, killed for memory, a
    linker missing) says nothing of the model: remembered, it would refuse the bucket in every later job."""
    return any("error:" in line for line in str(exc).splitlines())


def compiler_error(exc: BaseException) -> str:
    """The first ``error:`` line of iree-compile's diagnostics (they run to hundreds of lines), without
    its source locations: they name the temporary .mlir file, deleted before anyone reads the line."""
    text = str(exc)
    for line in text.splitlines():
        if "error:" in line:
            return without_locations(line.split("error:", 1)[1])
    return one_line(exc)


_LOCATION = re.compile(r"\s*\bloc\(")


def without_locations(text: str) -> str:
    """``text`` less MLIR's ``loc(...)`` annotations (balanced parentheses, quoted paths skipped whole)."""
    kept, i = [], 0
    while (found := _LOCATION.search(text, i)) is not None:
        kept.append(text[i:found.start()])
        depth, j = 1, found.end()
        while j < len(text) and depth:
            if text[j] == '"':
                j = text.find('"', j + 1)
                j = len(text) if j < 0 else j
            else:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        i = j
    kept.append(text[i:])
    return "".join(kept).strip()
