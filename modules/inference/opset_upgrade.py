"""An old-opset ONNX model upgraded for IREE's import, kept only where the upgrade is measured to compute the
same values.

IREE's ONNX import (iree-base-compiler 3.13) reads the forms ops have from opset 13 on: an opset 7 or 9
export's Flatten and an opset 11 export's Slice were refused by its compiler ("failed to legalize operation
'torch.operator' ... onnx.Flatten"), where the same network exported at opset 13-21 compiled and agreed. An
older model is upgraded to ``IMPORT_OPSET`` first (the opset 7 MLP upgraded to 13 still failed, on its Reshape;
to 14-17 it compiled and agreed with ONNX Runtime).

ONNX's version converter does not keep every op's meaning: an opset 9 Upsample or opset 10 Resize becomes a
Resize with half_pixel coordinates where the old op's were asymmetric (a bilinear one scored 19 % away from
ONNX Runtime on IREE, a nearest one keeping every 4th row 8 %, silently), an opset 11 Hardmax on a non-last
axis becomes one over the last axis. A hand-written table of such ops missed Hardmax, so the upgrade is judged
by measurement instead, as ``auto`` and ``fidelity`` judge engines: the original and the upgraded model run on
ONNX Runtime (the reference engine) on the same sample jets, and an upgrade that changes any output by more
than ``AGREEMENT_RTOL`` is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from hltrun.framework.errors import ModuleError, one_line

from .autoselect import max_relative_difference
from .base import AGREEMENT_RTOL, STANDARD_DOMAINS, graph_nodes, log

OLDEST_IMPORTED, IMPORT_OPSET = 13, 17
# ops whose meaning changed between opsets in ways the converter was seen not to keep (named in a refusal when
# the graph has them; the measurement, not this list, decides)
MEANING_CHANGED = ("Hardmax", "Resize", "Upsample")

Sample = Callable[[], "dict[str, np.ndarray]"]  # the sample input, by graph input name: made only when needed


def opset_of(model: Any) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def importable(model: Any, path: Path, sample: Sample) -> Any:
    """The model at ``IMPORT_OPSET`` when it is older than ``OLDEST_IMPORTED`` (ONNX's own version converter,
    as ``iree-import-onnx --opset-version`` does), else as it is. A model the converter cannot upgrade is
    handed over as it is: the compiler's line then names the op. One whose upgrade computes other values on
    ``sample`` (ONNX Runtime, original against upgraded) is refused in one line."""
    opset = opset_of(model)
    if opset is None or opset >= OLDEST_IMPORTED:
        return model
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, IMPORT_OPSET)
    except Exception as exc:  # noqa: BLE001 - the converter's gaps: compile the original
        log.info("iree: %s: opset %d kept (the ONNX version converter cannot upgrade it to %d: %s)",
                 path.name, opset, IMPORT_OPSET, one_line(exc), extra={"once": True})
        return model
    changed = upgrade_difference(model, upgraded, path, sample)
    if changed is not None:
        output, diff = changed
        ops = [op for op in MEANING_CHANGED if any(n.op_type == op and n.domain in STANDARD_DOMAINS
                                                   for n in graph_nodes(model.graph))]
        named = f"; ops whose meaning changed between opsets: {', '.join(ops)}" if ops else ""
        raise ModuleError(f"iree: model {path} is opset {opset}, older than IREE's ONNX import reads "
                          f"({OLDEST_IMPORTED}), and upgrading it changes its outputs (output {output!r} by "
                          f"{diff:.2g} relative on ONNX Runtime{named}): export it at opset {OLDEST_IMPORTED} or "
                          f"later, or use backend: onnxruntime")
    log.info("iree: %s: opset %d upgraded to %d for IREE's ONNX import", path.name, opset, IMPORT_OPSET,
             extra={"once": True})
    return upgraded


def upgrade_difference(model: Any, upgraded: Any, path: Path, sample: Sample) -> tuple[str, float] | None:
    """(the output the upgrade changes most, by how much relative) where that exceeds ``AGREEMENT_RTOL`` on
    ONNX Runtime, else None. Where ONNX Runtime is not installed or cannot run either model, the
    upgrade is kept unchecked (handed over as before this check) and the log says so."""
    try:
        import onnxruntime  # noqa: F401 - the [cpu] extra's reference engine
    except ImportError:
        log.warning("iree: %s: opset upgrade kept unchecked (onnxruntime is not installed to compare the "
                    "upgraded model with the original)", path.name, extra={"once": True})
        return None
    feed = sample()
    try:
        before = _run(model, feed)
    except Exception as exc:  # noqa: BLE001 - nothing to measure against: IREE's own run is the job's
        log.warning("iree: %s: opset upgrade kept unchecked (ONNX Runtime cannot run the original to compare: %s)",
                    path.name, one_line(exc), extra={"once": True})
        return None
    try:
        after = _run(upgraded, feed)
    except Exception as exc:  # noqa: BLE001 - handed over as before: IREE's compiler then says what it reads
        log.warning("iree: %s: opset upgrade kept unchecked (ONNX Runtime cannot run the upgraded model to "
                    "compare: %s)", path.name, one_line(exc), extra={"once": True})
        return None
    diffs = {name: max_relative_difference(after[name], value) if name in after else float("inf")
             for name, value in before.items()}
    worst = max(diffs, key=diffs.__getitem__, default=None)
    return (worst, diffs[worst]) if worst is not None and diffs[worst] > AGREEMENT_RTOL else None


def _run(model: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of ``model`` on ONNX Runtime's CPU provider (one thread: a check at load, not a timing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))
