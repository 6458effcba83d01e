"""Do two Conv-VAE models score the same? Every shipped sample's two leading jets per event through both, the
largest relative score and kl differences, and the decisions (event = max over its jets) at the model card's two
cuts. One criterion for every rewrite (``optimize_conv`` for ONNX, ``conv_tflite`` for TensorFlow Lite) and for
the ``tflite`` backend itself."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from hltrun.tools.catalogue import models_dir
from hltrun.tools.physics.conv_weights import DATA

Scorer = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]  # jets -> (score, kl)


def scorer(spec: str | Path | Scorer) -> Scorer:
    """jets -> (score, kl) for an ONNX file on ONNX Runtime (one thread), or for ``tflite:PREFIX-b{B}`` (a
    TFLite flatbuffer of static batch B from ``--tflite``/``--tflite-rewrite``; outputs kl, score), the last
    batch padded with zero jets; a callable is returned as it is."""
    if callable(spec):
        return spec
    spec = str(spec)
    if spec.startswith("tflite:"):
        from hltrun.modules.inference.tflite_backend import allocate, interpreter_class, io_indices, open_interpreter

        interp = open_interpreter(interpreter_class()[0], Path(spec[7:] + ".tflite").read_bytes(), 1)
        allocate(interp)
        inputs, outputs = io_indices(interp)
        batch, index = int(inputs[0]["shape_signature"][0]), inputs[0]["index"]
        if batch < 1:
            raise SystemExit(f"conv_agreement: {spec[7:]}.tflite has a dynamic batch: check it on the tflite backend "
                             f"(tools/physics/conv_tflite.py --check)")

        def run_tflite(jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            score, kl = [], []
            for i in range(0, len(jets), batch):
                n = len(jets[i:i + batch])
                part = np.zeros((batch, *jets.shape[1:]), np.float32)
                part[:n] = jets[i:i + batch]
                interp.set_tensor(index, part)
                interp.invoke()
                score.append(interp.get_tensor(outputs["score"])[:n])
                kl.append(interp.get_tensor(outputs["kl"])[:n])
            return np.concatenate(score), np.concatenate(kl)

        return run_tflite
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(spec, so, providers=["CPUExecutionProvider"])

    def run_onnx(jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [sess.run(["score", "kl"], {"jets": jets[i:i + 256]}) for i in range(0, len(jets), 256)]
        return np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])

    return run_onnx


def cards() -> dict:
    """The shipped ``thresholds.json``: each model's cuts, by its name (``agreement``'s ``card``)."""
    return json.loads((models_dir() / "thresholds.json").read_text())


def card_names() -> list[str]:
    """The models whose cuts ``thresholds.json`` holds."""
    return sorted(cards())


def agreement(ref_path: str | Path | Scorer, new_path: str | Path | Scorer, max_events: int | None = None,
              card: str = "conv_vae") -> dict:
    """Scores and kl of both models (``scorer``: an ONNX file, ``tflite:PREFIX-bB`` or a callable) on the two leading
    jets of every event of every shipped sample; decisions (event = max over its jets) at the cuts of the model
    ``card`` names in ``thresholds.json``."""
    from hltrun.modules.models.preprocess import load_jets

    thr = cards()[card]
    cuts = {k: float(thr[k]) for k in ("bkg_eff_1e-2", "bkg_eff_1e-3")}
    scorers = {"ref": scorer(ref_path), "new": scorer(new_path)}
    out: dict = {"samples": {}}
    for f in sorted(DATA.glob("*.root")):
        jets, ev = load_jets(str(f), max_events=max_events)
        res = {}
        for k, run in scorers.items():
            score, kl = run(np.ascontiguousarray(jets, dtype=np.float32))
            res[k] = {"score": score, "kl": kl}
        rel = lambda q: float(np.max(np.abs(res["new"][q] - res["ref"][q]) / np.maximum(np.abs(res["ref"][q]), 1e-30)))
        row = {"jets": int(len(jets)), "events": int(ev.max() + 1) if len(ev) else 0,
               "max_rel_score": rel("score"), "max_rel_kl": rel("kl"), "decision_changes": {}}
        for name, c in cuts.items():
            ev_ref = np.full(row["events"], -np.inf)
            ev_new = np.full(row["events"], -np.inf)
            np.maximum.at(ev_ref, ev, res["ref"]["score"])
            np.maximum.at(ev_new, ev, res["new"]["score"])
            row["decision_changes"][name] = int(np.sum((ev_ref > c) != (ev_new > c)))
        out["samples"][f.name] = row
    out["max_rel_score"] = max(r["max_rel_score"] for r in out["samples"].values())
    out["max_rel_kl"] = max(r["max_rel_kl"] for r in out["samples"].values())
    out["decision_changes"] = sum(sum(r["decision_changes"].values()) for r in out["samples"].values())
    out["agrees"] = out["max_rel_score"] <= 1e-4 and out["max_rel_kl"] <= 1e-4 and out["decision_changes"] == 0
    return out


def print_agreement(res: dict, what: str) -> bool:
    """``agreement``'s table, one line per sample; True when it agrees."""
    print(f"{what}:")
    for name, row in res["samples"].items():
        print(f"  {name}: {row['jets']} jets, max rel score {row['max_rel_score']:.2e}, kl {row['max_rel_kl']:.2e}, "
              f"decision changes {row['decision_changes']}")
    print(f"agrees: {res['agrees']} (max rel score {res['max_rel_score']:.2e}, kl {res['max_rel_kl']:.2e}, "
          f"decision changes {res['decision_changes']})")
    return bool(res["agrees"])
