"""The type of each output the scorer keeps, checked at load: a cut needs a floating-point number per jet.

Models that are not neural networks come with outputs of other types. scikit-learn models converted with
skl2onnx (an IsolationForest, a BDT: ONNX-ML ``TreeEnsemble*`` ops, which ONNX Runtime runs) give a class
``label`` (int64) first, and a classifier's probabilities as a sequence of maps (``ZipMap``, one
{class: probability} per jet) unless converted without it. Mapped as the score, the maps ended begin_job in
numpy's words (``TypeError: float() argument must be a string or a real number, not 'dict'``), and an
integer label ran as a score without a word: a cut between -1 and 1 that no quantile of ``hltcard`` can place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hltrun.framework.errors import ModuleError

SCORE = "score"  # the role a cut is placed on
FLOATS = ("float", "float16", "bfloat16", "double")  # the tensor element types a score may have
_GUIDE = "docs/your-model.md, 'Trees and other non-neural models'"


def type_string(proto: Any) -> str:
    """An ONNX ``TypeProto`` as ONNX Runtime writes it (``tensor(int64)``, ``seq(map(int64,tensor(float)))``), so
    that every engine reading the graph says the same line as ONNX Runtime does from its session."""
    from onnx import TensorProto

    kind = proto.WhichOneof("value")
    if kind == "tensor_type":
        name = TensorProto.DataType.Name(proto.tensor_type.elem_type).lower()
        return f"tensor({name})"
    if kind == "sequence_type":
        return f"seq({type_string(proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = TensorProto.DataType.Name(proto.map_type.key_type).lower()
        return f"map({key},{type_string(proto.map_type.value_type)})"
    return str(kind)


def declared(proto: Any) -> bool:
    """Whether an output's ``TypeProto`` says its type: a graph may leave it out (an output added with
    onnx-graphsurgeon, whose dtype was never set), and ONNX Runtime then infers it and runs the model. Such an
    output was said to be ``None``, "not a tensor" (a ZipMap), and refused on JAX, PyTorch and IREE only."""
    kind = proto.WhichOneof("value")
    return kind is not None and not (kind == "tensor_type" and proto.tensor_type.elem_type == 0)  # 0: UNDEFINED


def graph_output_types(graph: Any) -> dict[str, str]:
    """Every output of an ONNX graph whose type it declares -> ``type_string`` of its type (an undeclared one is
    of unknown type: not checked, as on an engine that knows no types)."""
    return {o.name: type_string(o.type) for o in graph.output if declared(o.type)}


def element_type(onnx_type: str) -> str | None:
    """``int64`` for ONNX Runtime's ``tensor(int64)``; None for a type that is not a tensor (a sequence, a map)."""
    if onnx_type.startswith("tensor(") and onnx_type.endswith(")"):
        return onnx_type[7:-1]
    return None


def unscorable(role: str, name: str, onnx_type: str, types: Mapping[str, str], model: Path) -> str | None:
    """The line for an output that cannot be kept as ``role``, or None: a non-tensor for any role, an integer
    or boolean tensor for the score (another role, e.g. a constituent count, is written as it is). ``types``:
    every output's type, so that the line names the outputs that can."""
    element = element_type(onnx_type)
    if element in FLOATS or (element is not None and role != SCORE):  # an extra output may count (written as is)
        return None
    shown = f"output {name!r}" + (f" (the {role})" if role != name else "")
    floats = [n for n, t in types.items() if element_type(t) in FLOATS]
    others = f"; its floating-point outputs: {floats} (outputs: {{{role}: <one of them>}})" if floats else ""
    if element is None:
        return (f"model {model}: {shown} is {onnx_type}, not a tensor of one value per jet (a sequence of maps is "
                f"skl2onnx's ZipMap of class probabilities): convert the model with "
                f"options={{id(model): {{'zipmap': False}}}} and take one class's probability as the {role}"
                f"{others} ({_GUIDE})")
    return (f"model {model}: {shown} is {element}, not a floating-point score (a class label or a count: a cut "
            f"between its integer steps keeps no chosen fraction of the background){others} ({_GUIDE})")


def refuse_unscorable(roles: Mapping[str, str], types: Mapping[str, str], model: Path, backend: str) -> None:
    """One line at load for the first kept output (role -> model output name) whose type in ``types`` (model
    output name -> ONNX Runtime's type string) is not a floating-point tensor; outputs of unknown type pass."""
    for role, name in roles.items():
        why = unscorable(role, name, types[name], types, model) if name in types else None
        if why:
            raise ModuleError(f"{backend}: {why}")
