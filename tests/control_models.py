"""Anomaly scorers whose exports carry ONNX control flow and sequences, as the exporters write them:
``torch.jit.script`` with an ``if`` on a shape or on a value (If), with ``torch.unbind``/``torch.split`` +
``torch.stack`` in a ``for`` (SplitToSequence, SequenceAt, SequenceInsert, ConcatFromSequence in a Loop whose count
is a SequenceLength), the dynamo exporter's ``torch.cond`` and tf2onnx's ``tf.cond`` (If). Input (N, 100, 3) as the
shipped one, one score per jet. The value conditions hold when the batch's pT sum is over 1.5: an event of two jets
with hltrun's relative pT (each jet's sums to 1), never for one; ``LOW_PT`` scales test jets below it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOW_PT = 1e-4  # tests.tiny_models.jets' pT times this: the value conditions are false for the batch


def pt_sum_over(x: np.ndarray) -> bool:
    """The value condition of these models for the batch ``x``: which branch ONNX Runtime takes."""
    return float(x[..., 2].astype(np.float32).sum()) > 1.5

def translated_outputs(engine: str, path: Path, model, x: np.ndarray) -> list[np.ndarray]:
    """The outputs of ``model`` (an onnx.ModelProto saved as ``path``) on ``x`` through hltrun's translator on
    ``engine`` ("jax": jitted; "torch": specialised to ``x``'s shape), as numpy arrays."""
    if engine == "jax":
        import jax

        from hltrun.modules.inference.onnx_jax import translate

        return [np.asarray(y) for y in jax.jit(translate(path, model).fn)(x)]
    import torch

    from hltrun.modules.inference.onnx_torch import translate as translate_torch

    t = torch.from_numpy(x)
    return [y.numpy() for y in translate_torch(path, model).specialize(t)(t)]



def _torch_export(net, path: Path, *, script: bool = True) -> Path:
    import torch

    torch.manual_seed(0)
    model = torch.jit.script(net.eval()) if script else net.eval()
    kw = ({"dynamic_axes": {"jets": {0: "N"}, "score": {0: "N"}}, "dynamo": False} if script
          else {"dynamic_shapes": {"jets": {0: torch.export.Dim("N")}}, "dynamo": True})
    torch.onnx.export(model, (torch.randn(2, 100, 3),), str(path), input_names=["jets"], output_names=["score"],
                      opset_version=17 if script else 18, **kw)
    return path


def torch_models() -> dict[str, type]:
    """The scripted networks by name (made on call: torch is imported then)."""
    import torch

    class Base(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc, self.head = torch.nn.Linear(3, 8), torch.nn.Linear(8, 1)

        def embed(self, jets: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.enc(jets * torch.tensor([1.0, 1.0, 0.05])))

    class ShapeIf(Base):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            h = self.embed(jets)
            if jets.shape[1] > 50:  # a shape: static, one branch translated
                h = h[:, :50]
            return self.head(h.mean(1))[:, 0]

    class ValueIf(Base):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            h = self.embed(jets)
            if bool(jets[..., 2].sum() > 1.5):  # a value: the engine's conditional
                s = self.head(h.mean(1))
            else:
                s = self.head(h.amax(1)) * 2.0
            return s[:, 0]

    class Unbind(Base):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            outs = []
            for x_t in torch.unbind(jets[:, :10], 1):
                outs.append(self.embed(x_t))
            return self.head(torch.stack(outs, 1).mean(1))[:, 0]

    class SplitStack(Base):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            outs = []
            for part in torch.split(jets, 30, 1):  # 30, 30, 30, 10
                outs.append(self.embed(part).mean(1))
            return self.head(torch.stack(outs, 0).sum(0))[:, 0]

    class Cond(Base):
        def forward(self, jets: torch.Tensor) -> torch.Tensor:
            h = self.embed(jets)
            s = torch.cond(jets[..., 2].sum() > 1.5, lambda h: self.head(h.mean(1)),
                           lambda h: self.head(h.amax(1)) * 2.0, (h,))
            return s[:, 0]

    return {"scripted-if-on-a-shape": ShapeIf, "scripted-if-on-a-value": ValueIf, "scripted-unbind-stack": Unbind,
            "scripted-split-stack": SplitStack, "dynamo-torch-cond": Cond}


def torch_export(name: str, path: Path) -> Path:
    return _torch_export(torch_models()[name](), path, script=not name.startswith("dynamo"))


def tf_cond(path: Path) -> Path:
    """tf2onnx's export of a ``tf.function`` with ``tf.cond`` on the batch's pT sum (If, both branches reading the
    graph around them)."""
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(3)
    w = tf.Variable(rng.normal(size=(3, 8)).astype(np.float32))
    v = tf.Variable(rng.normal(size=(8, 1)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, 100, 3), tf.float32, name="jets")])
    def score(x):
        h = tf.tanh(tf.einsum("nci,ij->ncj", x * [1.0, 1.0, 0.05], w))
        s = tf.cond(tf.reduce_sum(x[..., 2]) > 1.5, lambda: tf.reduce_mean(h, 1) @ v,
                    lambda: 2.0 * tf.reduce_max(h, 1) @ v)
        return tf.squeeze(s, -1)

    tf2onnx.convert.from_function(score, input_signature=score.input_signature, opset=17, output_path=str(path))
    return path
