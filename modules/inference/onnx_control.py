"""ONNX ``Scan``, ``Loop`` and ``If`` for the translator (``onnx_graph``): recurrent layers an exporter could not
map to LSTM/GRU ops (tf2onnx's Keras ``GRU``/``SimpleRNN``/masked RNNs, ``torch.jit.script``'s ``for``) arrive as a
loop over a subgraph, its body; an ``if`` (``torch.jit.script``, ``torch.cond``, ``tf.cond``) as two subgraphs.

Why a loop fits a static graph per batch bucket only sometimes: ``Scan`` always has one trip count, the scanned
axis's length; a ``Loop``'s trip count is its ``M`` input and its condition. When both are known without the
input's values (an initializer, a ``Shape``, a loop counter compared with them: what the exporters write) the loop
runs a known number of steps and every output has one shape per bucket; when either depends on the values, the
output's shape does too, and the model is refused in one line at load (ONNX Runtime runs it).

How: the body's nodes are split into a static part (the counters, the condition, loop-invariant weights: numpy,
run here step by step before anything else, ``_prepass``) and the part that depends on the input, run by the
engine's ``Kernels.scan`` (JAX: ``lax.scan``, one compiled step; PyTorch: a Python loop). A static value the input's
part reads that changes per step (the counter a ``Gather`` picks the time step with) is handed to it as a scanned
input. The body reads names of the graph around it (its outer scope) as ONNX allows: they are passed in as ``outer``.

``If`` (``run_if``): a condition known without the input's values (a shape, a constant) picks its branch while the
graph is traced, and only that branch is translated; a condition on the values is the engine's ``Kernels.cond`` (JAX:
``lax.cond``; PyTorch: both branches and a ``where``, the one form a trace and a captured CUDA graph hold), whose
branches must then give outputs of one shape and type, else the model is refused in one line naming the node.

The ops' ONNX semantics (inputs, attributes, axes) are ``onnx_graph``'s; it imports this module and hands it what
it needs of the translator (``Host``), so the import points one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from hltrun.framework.errors import ModuleError

# ops whose output is static even when their input is not: a shape is known per bucket, and so is a sequence's length
# (a scripted ``for x_t in torch.unbind(x, 1)`` is a Loop whose trip count is a SequenceLength)
SHAPE_OPS = ("Shape", "SequenceLength")
MAX_STEPS = 1_000_000  # a Loop with no trip count whose static condition stays true: refused past this
DATA_DEPENDENT_CONDITION = ("the condition its body computes depends on the input's values (a data-dependent trip "
                            "count); use backend: onnxruntime for this model")  # found as the loop runs


@dataclass(frozen=True)
class Host:
    """What the loop needs of the translator around it: run a plan's steps on an env, tell a static (numpy)
    value from an engine's, and stack values on a new first axis with the namespace they need."""

    run: Callable[[Any, Sequence[Any], dict[str, Any]], None]
    is_static: Callable[..., bool]
    stack: Callable[[Any, list[Any]], Any]


@dataclass
class Subgraph:
    """A translated body: its steps in order, its formal inputs and outputs, its own initializers, and the
    names it reads from the graph around it (``free``), which a node holding it needs before it runs."""

    plan: list[Any]
    inputs: list[str]
    outputs: list[str]
    consts: dict[str, np.ndarray]
    free: list[str] = field(default_factory=list)


def free_names(graph: Any) -> list[str]:
    """The names a GraphProto (and the graphs inside it) reads but does not define: its outer-scope reads."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    read: list[str] = []
    for node in graph.node:
        for name in [*node.input, *(n for a in node.attribute if a.type == a.GRAPH for n in free_names(a.g))]:
            if name and name not in defined and name not in read:
                read.append(name)
        defined.update(node.output)
    return [n for n in read if n not in defined]


def graphs_of(node: Any) -> list[Any]:
    """The node's subgraph attributes (Loop/Scan ``body``, If's branches)."""
    return [a.g for a in node.attribute if a.type == a.GRAPH]


def subgraphs(attrs: dict[str, Any]) -> list[Subgraph]:
    """A plan step's translated bodies: a Loop's or Scan's ``body``, an If's two branches."""
    return [v for v in attrs.values() if isinstance(v, Subgraph)]


def reads(step: Sequence[Any]) -> list[str]:
    """Every value a plan step needs: its inputs, and the outer names its bodies read."""
    return [n for n in step[2] if n] + list(dict.fromkeys(n for sub in subgraphs(step[4]) for n in sub.free))


def static_names(plan: Sequence[Any], static: set[str], *, shapes: bool = False) -> set[str]:
    """``static`` and the outputs of every step whose reads are all in it (a ``Constant``'s always; a ``Shape``'s
    too with ``shapes``: at load, where a tensor's shape is known per bucket)."""
    static = set(static)
    for step in plan:
        if step[0] == "Constant" or (shapes and step[0] in SHAPE_OPS) or all(n in static for n in reads(step)):
            static.update(n for n in step[3] if n)
    return static


def _fixed_point(body: Subgraph, static_in: set[str], carried: Sequence[tuple[str, str]],
                 known: set[str], shapes: bool = False) -> tuple[set[str], set[str]]:
    """(the body's static names, the carried inputs that stay static): a carried value is static only while the
    value the body hands to the next step is."""
    static_in = set(static_in)
    while True:
        static = static_names(body.plan, static_in | known | set(body.consts), shapes=shapes)
        drop = {c for c, o in carried if c in static_in and o not in static}
        if not drop:
            return static, static_in
        static_in -= drop


def refusal(engine: str, path: Any, node: str, what: str) -> str:
    """The one line for a Loop the translator cannot hold: what depends on the data, and who runs it."""
    return (f"{engine}: model {path} uses Loop (node {node!r}), whose {what} depends on the input's values: its "
            f"output's shape is then data-dependent, which the ONNX translator's static graphs per batch bucket cannot "
            f"hold; ONNX Runtime runs this model (use backend: onnxruntime for it)")


def check_loops(plan: Sequence[Any], static: set[str], engine: str, path: Any) -> None:
    """At load: every Loop's trip count and initial condition static (a name-level analysis: initializers,
    Constant and Shape values and what is computed from them only), in the graph and in every body: a Shape is
    static in a body too, where a nested Loop's count is taken when that Loop runs, shapes known (a scripted
    ``for t in range(x.shape[0])`` inside an outer loop; it was refused as depending on the input's values). The
    condition a Loop's body computes is worked out step by step before the body's input-dependent part runs
    (``iterate``): there a Shape counts as the value it reads."""
    static = static_names(plan, static, shapes=True)
    for op_type, _, ins, outs, attrs in plan:
        if op_type == "If":  # a Loop in a branch: its count is checked as in any graph
            for branch in subgraphs(attrs):
                check_loops(branch.plan, {n for n in branch.free if n in static} | set(branch.consts), engine, path)
            continue
        body = attrs.get("body")
        if not isinstance(body, Subgraph):
            continue
        inner = {n for n in body.free if n in static}
        if op_type == "Loop":
            m, cond = (list(ins) + ["", ""])[:2]
            for name, what in ((m, "trip count (M)"), (cond, "initial condition")):
                if name and name not in static:
                    raise ModuleError(refusal(engine, path, outs[0], what))
            carried = list(zip(body.inputs[2:], body.outputs[1:]))
            start = {body.inputs[0], body.inputs[1]} | {c for c, v in zip(body.inputs[2:], ins[2:]) if v in static}
            body_static, _ = _fixed_point(body, start, carried, inner)
            if body.outputs[0] not in body_static:
                raise ModuleError(refusal(engine, path, outs[0], "condition (computed in its body)"))
            check_loops(body.plan, body_static, engine, path)
        else:
            check_loops(body.plan, inner | set(body.consts), engine, path)


def iterate(k: Any, host: Host, body: Subgraph, outer: dict[str, Any], init: Sequence[Any], *,
            carried: Sequence[str], carried_out: Sequence[str], scan_out: Sequence[str],
            scanned: Sequence[tuple[str, Any]] = (),
            trip: int | None, counter: str | None = None, cond: tuple[str, str, bool] | None = None,
            node: str = "") -> tuple[list[Any], list[Any]]:
    """Run ``body`` ``trip`` times (or while ``cond``'s static value holds): (the carried values after the last
    step, each scan output stacked on a new first axis). ``scanned``: (body input, value stacked on axis 0)."""
    env0 = {**outer, **body.consts}
    known = {n for n, v in outer.items() if host.is_static(v)}
    start = {c for c, v in zip(carried, init) if host.is_static(v)} | {n for n, x in scanned if host.is_static(x)}
    if counter:
        start.add(counter)
    if cond:
        start.add(cond[0])
    static, static_in = _fixed_point(body, start, list(zip(carried, carried_out)), known)
    if cond and cond[1] not in static:
        raise ModuleError(DATA_DEPENDENT_CONDITION)
    pre = [s for s in body.plan if all(n in static for n in s[3] if n)]
    dyn = [s for s in body.plan if not all(n in static for n in s[3] if n)]
    local = static - known - set(body.consts)
    wanted = [n for n in dict.fromkeys([*(n for s in dyn for n in reads(s)), *carried_out, *scan_out]) if n in local]
    records, last = _prepass(k, host, body, env0, pre, init, carried, carried_out, static_in, scanned, wanted, trip,
                             counter, cond)
    steps = len(records)
    if steps == 0 and scan_out:
        raise ModuleError("runs no step, so its scan outputs have no shape; use backend: onnxruntime for this model")
    invariant, varying = _split_invariant(host, records, wanted)
    dyn_c = [(c, o, v) for c, o, v in zip(carried, carried_out, init) if c not in static_in]
    dyn_x = [(n, x) for n, x in scanned if n not in static]
    dyn_y = [o for o in scan_out if o not in static]
    final_dyn: tuple[Any, ...] = tuple(v for _, _, v in dyn_c)
    ys: tuple[Any, ...] = ()
    if steps and (dyn_c or dyn_y):
        def step(carry: tuple[Any, ...], xs: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            env = dict(env0)
            env.update(invariant)
            env.update(zip(varying, xs[:len(varying)]))
            env.update(zip((n for n, _ in dyn_x), xs[len(varying):]))
            env.update(zip((c for c, _, _ in dyn_c), carry))
            host.run(k, dyn, env)
            return tuple(env[o] for _, o, _ in dyn_c), tuple(env[o] for o in dyn_y)

        stacked = tuple(host.stack(k, [r[n] for r in records]) for n in varying) + tuple(x for _, x in dyn_x)
        final_dyn, ys = k.scan(step, final_dyn, stacked, length=steps, node=node)
    by_name = dict(zip((o for _, o, _ in dyn_c), final_dyn))
    finals = [by_name[o] if c not in static_in else last[c] for c, o in zip(carried, carried_out)]
    ys_by = dict(zip(dyn_y, ys))
    outs = [ys_by[o] if o in ys_by else host.stack(k, [r.get(o, env0.get(o)) for r in records]) for o in scan_out]
    return finals, outs


def _prepass(k: Any, host: Host, body: Subgraph, env0: dict[str, Any], pre: list[Any], init: Sequence[Any],
             carried: Sequence[str], carried_out: Sequence[str], static_in: set[str],
             scanned: Sequence[tuple[str, Any]], wanted: Sequence[str], trip: int | None, counter: str | None,
             cond: tuple[str, str, bool] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The body's static part, step by step, until the trip count or the condition ends it: per step the static
    values the rest reads; and the static carried values after the last step."""
    state = {c: v for c, v in zip(carried, init) if c in static_in}
    go = cond[2] if cond else True
    records: list[dict[str, Any]] = []
    t = 0
    while go and (trip is None or t < trip):
        if t >= MAX_STEPS:
            raise ModuleError(f"its condition still held after {MAX_STEPS} steps (trip count "
                              f"{'none' if trip is None else trip}); use backend: onnxruntime for this model")
        env = dict(env0)
        env.update(state)
        if counter:
            env[counter] = np.array(t, np.int64)
        if cond:
            env[cond[0]] = np.array(go)
        env.update((n, x[t]) for n, x in scanned if n in static_in or host.is_static(x))
        host.run(k, pre, env)
        records.append({n: env[n] for n in wanted})
        state = {c: env[o] for c, o in zip(carried, carried_out) if c in static_in}
        if cond:
            if not host.is_static(env[cond[1]]):
                raise ModuleError(DATA_DEPENDENT_CONDITION)
            go = bool(np.asarray(env[cond[1]]).reshape(-1)[0])
        t += 1
    return records, state


def _split_invariant(host: Host, records: list[dict[str, Any]],
                     names: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The static values equal at every step (kept static: folded, or a compiler's constant) and the names of
    those that change (handed to the engine's loop as scanned inputs)."""
    invariant: dict[str, Any] = {}
    varying: list[str] = []
    for n in names:
        first = records[0][n] if records else None
        if records and all(host.is_static(r[n]) and _same(r[n], first) for r in records):
            invariant[n] = first
        else:
            varying.append(n)
    return invariant, varying


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


# ---------------------------------------------------------------------- If
def run_if(k: Any, host: Host, cond: Any, then_branch: Subgraph, else_branch: Subgraph,
           outer: dict[str, Any]) -> tuple[Any, ...]:
    """ONNX If. A condition known without the input's values (a ``Shape``, a constant: ``torch.jit.script``'s
    ``if x.shape[1] > 50``) picks its branch here, and only that branch is translated into the engine's graph; a
    condition on the values (``if x.sum() > t``, ``torch.cond``, ``tf.cond``) is the engine's ``Kernels.cond``, whose
    branches must give outputs of one shape and type (a compiled bucket has one shape per value)."""
    def branch(sub: Subgraph) -> Callable[[], tuple[Any, ...]]:
        def run() -> tuple[Any, ...]:
            env = {**outer, **sub.consts}
            host.run(k, sub.plan, env)
            return tuple(env[o] for o in sub.outputs)
        return run

    if host.is_static(cond):
        return branch(then_branch if bool(np.asarray(cond).reshape(-1)[0]) else else_branch)()
    return tuple(k.cond(cond, branch(then_branch), branch(else_branch)))


def kind(value: Any) -> tuple[str, tuple[int, ...]]:
    """A value's element type and shape, named alike on every engine (numpy's and JAX's ``float32``, torch's
    ``torch.float32``): what an If's two branches must share when its condition depends on the input."""
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return str(dtype).removeprefix("torch."), tuple(map(int, np.shape(value)))


def check_branches(then: Sequence[Any], other: Sequence[Any]) -> None:
    """A data-dependent If's branch outputs, refused in one line when they differ in shape or type (or hold a
    sequence): the node's output would have no one shape per batch bucket."""
    if not any(isinstance(v, list) for v in (*then, *other)) and [*map(kind, then)] == [*map(kind, other)]:
        return

    def kinds(values: Sequence[Any]) -> str:
        return ", ".join(f"a sequence of {len(v)}" if isinstance(v, list) else "{}{}".format(*kind(v)) for v in values)

    raise ModuleError(f"its condition depends on the input's values and its branches give different outputs (then: "
                      f"{kinds(then)}; else: {kinds(other)}), so its output's shape is data-dependent, which the ONNX "
                      f"translator's static graphs per batch bucket cannot hold; use backend: onnxruntime for this "
                      f"model")
