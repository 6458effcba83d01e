"""``hltinputs``: show or write what an ONNX model reads (its declared input contract).

Why: a model that carries its inputs in its own metadata (``metadata_props['hltrun.inputs']``) runs
in hltrun with no ``inputs:`` in any configuration, and whoever gets the file gets the declaration
with it. This shows the contract in force for a model (its metadata's, else the shipped default)
matched against the model's real input shapes, and with ``--write`` stores a declaration in the
file (atomically; the graph is not touched, so the scores stay bit for bit the same).

Examples::

    hltinputs mymodel.onnx                                  # what hltrun would feed it, and whether it fits
    hltinputs mymodel.onnx --write inputs.yaml              # store the declaration (YAML or JSON list)
    hltinputs mymodel.onnx --write '[{features: [deta, dphi, log_pt], n_constituents: 50}]'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hltrun.framework.destinations import printing
from hltrun.framework.errors import HltError, ModuleError, one_line
from hltrun.framework.stdio import entry_point
from hltrun.modules.inference.base import (check_model_file, external_data_line, missing_external_data, not_float32,
                                          ort_format_line)
from hltrun.modules.contract import (CONSTITUENT_FEATURES, JET_FEATURES, METADATA_KEY, WRITTEN, Contract,
                                     default_contract, from_metadata, match_model, parse, read_onnx_metadata)


def load_onnx(path: Path) -> Any:
    """The ONNX ModelProto in ``path`` (its external data not read); a file that is no ONNX model is one
    line saying so (ModuleError)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError: the bytes are not an ONNX ModelProto
        raise ModuleError(f"model {path} is not an ONNX model ({type(exc).__name__}: {one_line(exc)})") from None
    if not model.HasField("graph"):
        raise ModuleError(f"model {path} is not an ONNX model (no graph in the file)")
    return model


def model_inputs(path: Path) -> list[tuple[str, tuple]]:
    """(name, shape) of the graph inputs that are not initialisers, dynamic dimensions as strings; a file
    that is no ONNX model is one line saying so."""
    model = load_onnx(path)
    consts = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in consts]
    _refuse_what_no_engine_runs(path, model, inputs)
    return [(i.name, tuple(d.dim_param or None if not d.HasField("dim_value") else d.dim_value
                           for d in i.type.tensor_type.shape.dim))
            for i in inputs]


def _refuse_what_no_engine_runs(path: Path, model: Any, inputs: list[Any]) -> None:
    """What every backend refuses at load, said here too: hltinputs answering "inputs from default" for
    a model no engine will run (a float64 or int64 input, weights in a side file that is not there) sent
    the user on to a job that fails."""
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    for i in inputs:
        elem = i.type.tensor_type.elem_type
        if elem not in (TensorProto.FLOAT, TensorProto.UNDEFINED):
            raise ModuleError(not_float32(path, i.name, tensor_dtype_to_np_dtype(elem)))
    location = missing_external_data(path)
    if location:
        raise ModuleError(external_data_line(path, location))


def write_contract(path: Path, contract: Contract) -> None:
    """Store ``contract`` in the model's metadata, replacing an earlier one (atomic rewrite). Weights kept in
    an external-data file beside the model (``torch.onnx.export(..., dynamo=True)`` writes ``model.onnx.data``)
    are neither read nor moved: the rewritten file refers to the same file."""
    import onnx

    from hltrun.framework.atomic import writing

    model = onnx.load(str(path), load_external_data=False)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**dict(kept), METADATA_KEY: contract.to_json()})
    with writing(path, "hltinputs") as staged:
        onnx.save(model, str(staged.tmp))


def read_declaration(text: str) -> object:
    """A declaration given inline (YAML/JSON) or as a file name."""
    import yaml

    from hltrun.framework.errors import ConfigError
    from hltrun.framework.resources import unreadable_reason

    source = Path(text)
    # a file name (a declaration's suffix, or a path that exists: a folder, /dev/null): one that cannot be
    # read is said, not parsed as YAML ("expected a list of inputs, got str"); os.path.exists, as a long
    # inline declaration is no file name (Path.exists raises "File name too long")
    if source.suffix in (".yaml", ".yml", ".json") or (text.strip() and os.path.exists(text)):
        why = unreadable_reason(source, "--write: declaration file")
        if why is not None:
            raise ConfigError(why)
        text = source.read_text()
    return yaml.safe_load(text)


@entry_point("hltinputs")  # stderr closed: no refusal written into stdout (the declaration a user may redirect)
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hltinputs", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="derived constituent features: " + ", ".join(CONSTITUENT_FEATURES)
                                 + "; jet features (kind: jet): " + ", ".join(JET_FEATURES)
                                 + "; any other name is read as a branch of the input file; a branch of one value "
                                 "per event (Rho_fixedGridRhoFastjetAll) is an input of kind: event, or listed in a "
                                 "jet-level input's per_event")
    ap.add_argument("model", type=Path, help="the ONNX model file")
    ap.add_argument("--write", metavar="DECLARATION",
                    help="store this declaration in the model: a YAML/JSON file or inline text, a list of inputs "
                         "(name, kind, features, per_event, n_constituents, pad_value, order, layout)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    try:
        try:  # missing, unreadable, a folder, a FIFO, empty: the line hltrun gives, whatever the suffix
            check_model_file(args.model, (), "hltinputs")
        except ModuleError as exc:
            print(exc, file=sys.stderr)
            return 2
        if args.model.suffix == ".ort" and not args.model.with_suffix(".onnx").exists():
            print(f"hltinputs: {ort_format_line(args.model)}", file=sys.stderr)
            return 2
        if args.model.suffix != ".onnx":  # hltrun reads a .keras or .tflite model's declaration from its .onnx
            print(f"hltinputs: {args.model} is not an .onnx file: hltinputs reads ONNX models; the inputs of a "
                  f"{args.model.suffix or 'suffix-less'} model are declared in the scorer's inputs: or in the metadata "
                  f"of the .onnx file beside it ({args.model.with_suffix('.onnx')}), which hltrun reads",
                  file=sys.stderr)
            return 2
        signature = model_inputs(args.model)
        if args.write is not None:
            # origin --write: a declaration that does not fit is said to be the one given, not the file's metadata
            # (which it never reached: "has no input 'x' (declared in model metadata)" sent the user to the file)
            declared = parse(read_declaration(args.write), "--write", WRITTEN)
            matched = match_model(declared, signature, args.model)  # never store one that cannot fit
            parse(json.loads(matched.to_json()), "--write", "model metadata")  # nor one that reads back otherwise
            write_contract(args.model, matched)
            with printing("what it wrote", required=False):  # written: a closed stdout does not undo it
                print(f"hltinputs: wrote {METADATA_KEY} into {args.model}")
        found = from_metadata(read_onnx_metadata(args.model), args.model)
        contract = match_model(found or default_contract(), signature, args.model)
        # stdout is a destination: a reader gone (| head -c0) or closed is stdout's failure, not the model's
        with printing("the model's inputs"):
            print(f"{args.model}: inputs from {contract.origin}")
            for decl in contract.inputs:
                extra = f", padded with {decl.pad_value:g}" if decl.kind == "constituents" else ""
                order = f", order {decl.order}, layout {decl.layout}" if decl.kind == "constituents" else ""
                print(f"  {decl.describe()}{extra}{order}")
        return 0
    except HltError as exc:
        if args.debug:
            raise
        print(f"hltinputs: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # an unreadable model file
        if args.debug:
            raise
        print(f"hltinputs: {args.model}: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
