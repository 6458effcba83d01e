"""A small ParticleNet-like network with several inputs, exported as users export theirs: one EdgeConv block on
``points`` (N, 2, C), ``features`` (N, 2, C) and ``mask`` (N, 1, C), channels first, through torch's TorchScript
exporter (``torch.onnx.export(..., dynamo=False)``), its inputs declared in its ONNX metadata as ``hltinputs
--write`` stores them.

Why this shape: ``points`` and ``features`` have the same shape, so an engine that fed them in another order would
run without a word and give other scores; the kNN moves masked points 1e9 away, as ParticleNet does, so a jet's
score depends on its mask and its padded rows; a padded jet (every mask 0) is a jet with no constituent.

Two forms of the kNN distance (``distance``): ``matmul``, |x|² - 2 x·y + |y|² as ParticleNet computes it, and
``broadcast``, the sum of squared differences. iree-base-compiler 3.13 miscompiles the first for a static batch of 2
or 4 (columns of the distance matrix come out 0: scores up to 40 % off ONNX Runtime's, 2026-12-07) and compiles the
second faithfully in every bucket, so IREE's own tests of several inputs use the second.
"""

from __future__ import annotations

from pathlib import Path

N_CONSTITUENTS = 16
NEIGHBOURS = 4
DECLARED = [
    {"name": "points", "features": ["deta", "dphi"], "n_constituents": N_CONSTITUENTS, "layout": "NFC"},
    {"name": "features", "features": ["log_pt_rel", "log_e_rel"], "n_constituents": N_CONSTITUENTS, "layout": "NFC"},
    {"name": "mask", "features": ["mask"], "n_constituents": N_CONSTITUENTS, "layout": "NFC"},
]


def particlenet_onnx(path: Path, distance: str = "matmul") -> Path:
    """The exported network at ``path``, with ``DECLARED`` in its metadata; score (N,) per jet; ``distance``: the kNN
    distance's form (``matmul`` or ``broadcast``)."""
    import json

    import onnx
    import torch

    from hltrun.modules.contract import METADATA_KEY

    assert distance in ("matmul", "broadcast"), distance

    class EdgeConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 1),
                                           torch.nn.ReLU())
            self.head = torch.nn.Linear(16, 1)

        def forward(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            n, f, c = features.shape
            pts = points * mask + (1.0 - mask) * 1e9  # padded points far away: never a real point's neighbour
            if distance == "matmul":
                sq = (pts * pts).sum(1, keepdim=True)
                dist = sq.transpose(2, 1) - 2 * torch.matmul(pts.transpose(2, 1), pts) + sq
            else:
                diff = pts.unsqueeze(-1) - pts.unsqueeze(-2)
                dist = (diff * diff).sum(1)
            idx = (-dist).topk(NEIGHBOURS + 1, dim=-1)[1][:, :, 1:]  # (N, C, k), itself left out
            flat = features.transpose(2, 1).reshape(n * c, f)
            near = flat[(idx + torch.arange(n).view(-1, 1, 1) * c).reshape(-1)].view(n, c, NEIGHBOURS, f)
            near = near.permute(0, 3, 1, 2)
            centre = features.unsqueeze(-1).expand(-1, -1, -1, NEIGHBOURS)
            h = self.mlp(torch.cat([centre, near - centre], 1)).mean(-1) * mask
            return self.head(h.sum(-1) / mask.sum(-1).clamp(min=1.0))[:, 0]

    torch.manual_seed(0)
    net = EdgeConv().eval()
    example = (torch.randn(2, 2, N_CONSTITUENTS), torch.randn(2, 2, N_CONSTITUENTS), torch.ones(2, 1, N_CONSTITUENTS))
    names = [d["name"] for d in DECLARED]
    torch.onnx.export(net, example, str(path), input_names=names, output_names=["score"],
                      dynamic_axes={**{name: {0: "N"} for name in names}, "score": {0: "N"}}, opset_version=17,
                      dynamo=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(DECLARED)})
    onnx.save(model, str(path))
    return path


# ParticleNet as first written, in Keras (hqucms/ParticleNet): (N, P, F) inputs, channels last (layout NCF)
KERAS_DECLARED = [
    {"name": "points", "features": ["deta", "dphi"], "n_constituents": N_CONSTITUENTS},
    {"name": "features", "features": ["log_pt_rel", "log_e_rel"], "n_constituents": N_CONSTITUENTS},
    {"name": "mask", "features": ["mask"], "n_constituents": N_CONSTITUENTS},
]


def particlenet_keras(folder: Path, as_dict: bool = False) -> Path:
    """A small Keras 3 network with ParticleNet's three named inputs ``points`` (N, P, 2), ``features`` (N, P, 2)
    and ``mask`` (N, P, 1), a masked DeepSets body (padded rows count for nothing, the mean over real ones), score
    (N,): saved as ``pn.keras``, with ``pn.onnx`` (tf2onnx, ``KERAS_DECLARED`` in its metadata) and, for a list of
    inputs, ``pn.tflite`` (``TFLiteConverter.from_keras_model``, which orders the tensors points, mask, features
    and its signature by name) beside it. ``as_dict``: the inputs as a dict (Keras flattens it sorted by key:
    features, mask, points). Returns the ``.keras`` path."""
    import json
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from hltrun.modules.contract import METADATA_KEY

    keras.utils.set_random_seed(11)
    shapes = {"points": (N_CONSTITUENTS, 2), "features": (N_CONSTITUENTS, 2), "mask": (N_CONSTITUENTS, 1)}
    given = {name: keras.Input(shape, name=name) for name, shape in shapes.items()}
    points, features, mask = given["points"], given["features"], given["mask"]
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="tanh")(points), features])
    h = keras.layers.Dense(16, activation="relu")(h)
    h = keras.layers.Dense(8, activation="tanh")(h) * mask
    pooled = keras.ops.sum(h, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
    score = keras.ops.squeeze(keras.layers.Dense(1)(pooled), -1)
    model = keras.Model(given if as_dict else [points, features, mask], {"score": score}, name="pn_keras")
    model.save(folder / "pn.keras")
    sig = tuple(tf.TensorSpec((None, *shape), tf.float32, name=name) for name, shape in shapes.items())

    @tf.function(input_signature=sig)
    def serve(points, features, mask):
        return {"score": model({"points": points, "features": features, "mask": mask}, training=False)["score"]}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=sig, opset=17)
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(KERAS_DECLARED)})
    onnx.save(proto, str(folder / "pn.onnx"))
    if not as_dict:
        (folder / "pn.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return folder / "pn.keras"
