"""What the scores of a user's model on the chosen engine are, said at begin_job when they are not plain
float32 scores of each jet alone: a model that computes in float16, on an engine that runs it so; a model
that quantises its activations per call.

One check for every engine, measured rather than guessed, on ``autoselect``'s sample jets (every pT scale):

* float16 (bfloat16): ``float16.convert_float_to_float16`` and the like leave float16 weights and ``Cast``
  nodes. ONNX Runtime on the CPU computes such a graph in float32; PyTorch, JAX and IREE compute it in
  float16 and differed from it by 9e-4 to 1.4e-3 relative (measured on a small MLP), ten times the
  agreement between engines (``AGREEMENT_RTOL``). ``auto`` leaves them out for that; named by the user
  they ran without a word. Neither engine is wrong (the model declares float16), so the job runs and says
  by how much its engine's scores differ from ONNX Runtime's.
* per-call quantisation (``DynamicQuantizeLinear``: ``quantize_dynamic``, the shipped ``*_int8.onnx``):
  one int8 scale from every jet of a call, so a jet's score depends on the other jets of its event (the
  shipped gcn_vae_int8: up to 5.7 % on QCD events of two jets). That is how such a model behaves wherever
  it is deployed with the event's jets in one call, so the job runs as the HLT would run it, and says by
  how much a jet's score moves between one call of many jets and a call of its own. (Scoring one jet per call
  would make the score the jet's own, but time another deployment: ~2.6x the time per jet, docs/backends.md.)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from hltrun.framework.errors import ModuleError, one_line
from hltrun.framework.interrupt import reraise_interrupt

from ..contract import arranged
from .autoselect import (CHECK_JETS, beyond_rounding, in_every_size, max_relative_difference, output_difference,
                         run_in_every_size, sample_inputs)
from .base import AGREEMENT_RTOL, InferenceBackend, model_has_ops, quantises_per_call

log = logging.getLogger("hltrun.inference")

REFERENCE = "onnxruntime"  # the engine every other one is judged against (as ``auto`` does)
_CAST_OPS = ("Cast", "CastLike")  # a float32-input graph that computes in float16 has one


_KERAS_POLICIES = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")  # Keras dtype policies below float32


def reduced_float(path: Path) -> str | None:
    """``float16`` or ``bfloat16`` when the ONNX model computes in it (a weight of that type, or a ``Cast``
    to it); a Keras model's reduced dtype policy (``mixed_float16``: trained with mixed precision); else None.
    A graph fed float32 reaches float16 only through a Cast, so a model without one (the shipped ones) costs
    a byte lookup, no onnx import."""
    if path.suffix == ".keras":
        return keras_policy(path)
    if path.suffix != ".onnx" or not model_has_ops(path, _CAST_OPS):
        return None
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # the engine's own load reports an unreadable model in its words
        return None
    names = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
    for tensor in graph.initializer:
        if tensor.data_type in names:
            return names[tensor.data_type]
    for node in graph.node:
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in names:
                return names[to]
    return None


def keras_policy(path: Path) -> str | None:
    """The reduced dtype policy a ``.keras`` file's layers are saved with (its ``config.json``), else None.
    TensorFlow computes such a model in float16 on the CPU too; tf2onnx writes it as float16 weights and
    Casts, which ONNX Runtime computes in float32 (a small MLP: 1.2e-2 apart)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode(errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):  # the engine's own load says what is wrong
        return None
    return next((p for p in _KERAS_POLICIES if f'"name": "{p}"' in config), None)


def caveats(backend: InferenceBackend, jets_per_call: int | None = None) -> list[str]:
    """One line per way ``backend``'s scores of its (loaded, warmed-up) model are not float32 scores of each
    jet alone, with the difference measured now on ``CHECK_JETS`` sample jets; empty for most models.
    ``jets_per_call``: the most jets one of the job's calls holds (None: not bounded)."""
    reduced = reduced_float(backend.model_path)
    precision = (reduced or backend.computes_in()) if backend.name != REFERENCE else None
    narrow = reduced_outputs(backend) if reduced and backend.model_path.suffix == ".onnx" else []  # every engine's
    # a model scoring the whole call (score_per: event) is called once per event: no other jets move its score;
    # nor do they where every call holds one jet (the leading jet only, max_jets: 1): each score is the jet's own
    per_call = quantises_per_call(backend.model_path) and backend.options.score_per == "jet" \
        and (jets_per_call is None or jets_per_call > 1)
    if precision is None and not per_call:
        return narrow
    with backend.uncounted():  # begin_job's check, not the job's work
        return narrow + _measured(backend, precision, per_call)


def reduced_outputs(backend: InferenceBackend) -> list[str]:
    """One line per output the scorer keeps that the ONNX model gives in float16 or bfloat16 (a float16
    conversion with float32 inputs only): hltrun widens it to float32 and compares it with float32 cuts, so
    its scores stand on float16's steps (~1e-3 relative), many jets on one value; every engine ran such a
    model without a word, ONNX Runtime too."""
    import onnx

    path = backend.model_path.with_suffix(".onnx")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # the engine's own load reports an unreadable model in its words
        return []
    names = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}
    types = {o.name: names[o.type.tensor_type.elem_type] for o in graph.output if o.type.tensor_type.elem_type in names}
    steps = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
    return [f"model {path.name} gives its {role} (output {name!r}) in {types[name]}: hltrun reads it as float32 and "
            f"cuts compare it so, but its values keep {types[name]}'s steps ({steps[types[name]]:.0e} relative), "
            f"many jets on one value; for finer ones keep the {role}'s last ops in float32 (convert_float_to_float16's "
            f"node_block_list)"
            for role, name in backend.outputs.items() if name in types]


COMPILED = ("iree",)  # engines whose own compiler rewrites the .onnx file: their result is checked at begin_job


def refuse_unfaithful(backend: InferenceBackend) -> None:
    """Refuse, before the first event, an engine that compiled the model into another network: its scores on
    ``CHECK_JETS`` sample jets, in one call and in a call of each compiled size below it (``run_in_every_size``: IREE
    compiled ParticleNet wrong for 2 and 4 jets only), differ from ONNX Runtime's by more than ``AGREEMENT_RTOL``
    (``auto``'s criterion, which already leaves such an engine out). Why: named by the user, IREE ran a Keras EdgeConv
    (``take_along_axis`` exported by tf2onnx as GatherND) 41 % off ONNX Runtime and a Keras masked
    ``MultiHeadAttention`` with NaN scores, silently (iree-base-compiler 3.13, 2026-12-07). A model that
    computes in float16 differs by design: ``caveats`` says so instead; one that quantises per call (loaded only
    where padding cannot move its scale) is checked in one call, of at most the largest compiled size. A score near 0 is
    judged by ``beyond_rounding``: float32 rounding alone puts a faithful compilation's near-zero scores any
    relative distance away."""
    path = backend.model_path
    if backend.name not in COMPILED or path.suffix != ".onnx" or reduced_float(path):
        return
    # a per-call quantised model that loaded on a padding engine runs padding-proof (``dynamic_quant``): checked in
    # one call, which is one call on both engines (a bigger one runs in slices)
    per_call = quantises_per_call(path)
    n = one_call_jets(backend) if per_call else CHECK_JETS
    with backend.uncounted():  # begin_job's check, not the job's work
        x = sample_inputs(backend, n, seed=1)
        # every compiled size too (``run_in_every_size``), but for a per-call scale: its jets' scores depend on the call
        outputs, sizes = (backend.run(x), []) if per_call else run_in_every_size(backend, x)
        reference = _reference_outputs(backend, x)
    diff = None if reference is None else beyond_rounding(outputs, in_every_size(reference, sizes))
    if diff is not None and diff > AGREEMENT_RTOL:
        apart = (f"by up to {diff:.1e} relative" if np.isfinite(diff) else
                 "without bound (a NaN or infinity against a number, a number against 0, or an output missing)")
        calls = f" in one call and in calls of {', '.join(map(str, sizes))} jets" if sizes else ""
        raise ModuleError(f"{backend.name}: model {path}: the {backend.name} compilation of this model is not ONNX "
                          f"Runtime's network: scores differ {apart} on {n} sample jets{calls} (engines agree within "
                          f"{AGREEMENT_RTOL:g}); use backend: onnxruntime for this model")


def one_call_jets(backend: InferenceBackend) -> int:
    """``CHECK_JETS``, or the largest compiled size of an engine that pads (IREE's 16) where smaller: the sample
    jets of one engine call. A bigger call runs in slices, each quantised per call with its own scale, so a figure
    measured on it is not one call's (the caveat said "one call of 48 sample jets" of three calls of 16)."""
    top = (getattr(backend, "buckets", None) or [None])[-1] if backend.pads_batches else None
    return CHECK_JETS if top is None else min(CHECK_JETS, top)


def refuse_sliced_quantiser(backend: InferenceBackend, jets_per_call: int | None) -> None:
    """Refuse a per-call quantised model on an engine that pads (``dynamic_quant`` proved its padding harmless)
    when a call can hold more jets than its largest compiled size: it runs such a call in slices, each quantised
    with its own scale, so those jets' scores are not the call's. Measured: a bias-free MLP, bit for bit ONNX
    Runtime's in every IREE bucket, was 7.8e-3 off it for a call of 40 jets (slices of 16)."""
    top = (getattr(backend, "buckets", None) or [None])[-1]
    if top is None or not backend.pads_batches or backend.options.score_per != "jet" \
            or not quantises_per_call(backend.model_path) or (jets_per_call is not None and jets_per_call <= top):
        return
    held = "an unbounded number of jets (max_jets: 0)" if jets_per_call is None else f"up to {jets_per_call} jets"
    raise_it = " or raise max_batch," if top == int(backend.options.max_batch) else ""
    raise ModuleError(f"{backend.name}: model {backend.model_path} quantises its activations per call (one int8 "
                      f"scale from every jet of a call), and {backend.name} runs a call of more than {top} jets (its "
                      f"largest compiled size) in slices, each quantised with its own scale: this job's calls hold "
                      f"{held}, whose scores would not be the call's; set the batcher's max_jets to {top} or "
                      f"less,{raise_it} or use backend: onnxruntime")


def _measured(backend: InferenceBackend, precision: str | None, per_call: bool) -> list[str]:
    path, notes = backend.model_path, []
    n = one_call_jets(backend) if per_call else CHECK_JETS  # a per-call scale: the jets of one call, as the job's
    x = sample_inputs(backend, n, seed=1)
    together = backend.run(x)
    if precision is not None:
        diff = _reference_difference(backend, x, together)
        onnx_file = path.with_suffix(".onnx")
        on = "" if onnx_file == path else f" (on {onnx_file.name})"
        if diff is None and onnx_file != path:  # a Keras model alone: nothing to measure against, but said
            why = "its Keras dtype policy" if path.suffix == ".keras" else f"its {precision} tensors"
            notes.append(f"model {path.name} computes in {precision} ({why}); {backend.name} runs it "
                         f"so, not float32 (not measured: no {onnx_file.name} beside it)")
        elif diff is not None and diff > AGREEMENT_RTOL:
            notes.append(f"model {path.name} computes in {precision}; {backend.name} runs it in {precision}, ONNX "
                         f"Runtime on the CPU in float32{on}: scores differ by up to {diff:.1e} relative on "
                         f"{n} sample jets (engines agree within {AGREEMENT_RTOL:g}); backend: onnxruntime "
                         f"for float32 scores")
    if per_call:
        diff = _alone_difference(backend, x, together)
        notes.append(f"model {path.name} quantises its activations per call (dynamic quantisation: one int8 scale "
                     f"from all the jets of a call), so a jet's score depends on the other jets of its event's call: "
                     f"up to {diff} between one call of {n} sample jets and each jet alone; "
                     f"quantise statically (QDQ: tools/physics/quantize_models.py --method static) for scores of "
                     f"the jet alone")
    return notes


def _reference_difference(backend: InferenceBackend, x: object, outputs: dict[str, np.ndarray]) -> float | None:
    """The largest relative difference of ``outputs`` from ONNX Runtime's on the CPU for the same jets;
    None where ONNX Runtime cannot run the model (``_reference_outputs``)."""
    reference = _reference_outputs(backend, x)
    return None if reference is None else output_difference(outputs, reference)[0]


def _reference_outputs(backend: InferenceBackend, x: object) -> dict[str, np.ndarray] | None:
    """ONNX Runtime's outputs on the CPU for the same jets; None (said at debug level) where ONNX Runtime
    cannot run the model: the engine's scores are the job's."""
    onnx_file = backend.model_path.with_suffix(".onnx")  # a .keras is compared with the .onnx beside it
    same = onnx_file == backend.model_path  # then the outputs and inputs are those the engine settled
    options = replace(backend.options, providers=["cpu"], precision="auto", io_binding=False,
                      outputs=dict(backend.outputs) if same else backend.options.outputs,
                      inputs=backend.contract if same else backend.options.inputs)
    from . import create_backend

    if not onnx_file.is_file():
        return None
    reference = create_backend(REFERENCE, onnx_file, options)
    reference.announce = False
    try:
        reference.load()
        return reference.run(arranged(x, backend.contract, reference.contract))
    except Exception as exc:
        reraise_interrupt(exc)
        log.debug("%s: no ONNX Runtime reference for %s: %s", backend.name, backend.model_path.name, one_line(exc))
        return None
    finally:
        reference.close()


def _alone_difference(backend: InferenceBackend, x: object, together: dict[str, np.ndarray]) -> str:
    """The largest difference of each jet's score in one call of ``x`` from its score alone, as said: relative, or
    absolute where a jet scores 0 one way and not the other (a ReLU network's: "up to inf relative" said nothing)."""
    xs = x if isinstance(x, tuple) else (x,)
    alone = np.concatenate([backend.run(tuple(a[i:i + 1] for a in xs) if len(xs) > 1 else xs[0][i:i + 1])["score"]
                            for i in range(len(xs[0]))])
    relative = max_relative_difference(alone, together["score"])
    if np.isfinite(relative):
        return f"{relative:.1e} relative"
    a, b = np.asarray(alone, np.float64), np.asarray(together["score"], np.float64)
    finite = np.isfinite(a) & np.isfinite(b)
    if not finite.any():
        return "a non-finite score"
    typical = float(np.median(np.abs(b[finite])))
    return (f"{float(np.max(np.abs(a[finite] - b[finite]))):.1e} absolute (relative is undefined: a jet scores 0 in "
            f"one of the two; the sample jets' median score is {typical:.2g})")
