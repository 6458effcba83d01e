"""``hltbench``: every benchmark study of hltrun as one sub-command of one program.

Why: the studies used to start four different ways, each with its own argument parser; here each study
module registers its options on a sub-parser (``add_arguments``) and runs (``run(args) -> exit code``),
and only the study asked for is imported (some register test modules or pull in TensorFlow).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from hltrun.framework.destinations import folders_made_undone, one_job, printing
from hltrun.framework.errors import HltError, one_line, printable
from hltrun.framework.interrupt import exit_code_of, handle_signals, remove_temporaries, signal_behind
from hltrun.framework.stdio import entry_point
from hltrun.tools.bench.runner import BenchError, check_outputs

# sub-command -> (module under hltrun.tools.bench, one-line help shown by ``hltbench --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "backends": ("backends", "latency and memory of every inference backend vs batch size and threads"),
    "profile": ("profile_onnx", "where an ONNX model's time goes, per graph scope, against one core's sgemm rate"),
    "score-core": ("score_core", "variants of the Chamfer score's P x P core in ONNX Runtime"),
    "sessions": ("sessions", "one ONNX Runtime session shared by the streams vs one per stream"),
    "batching": ("batching", "the default path with and without dynamic batching, by stream count"),
    "path": ("path", "the default path against a bare uproot + InferenceSession loop"),
    "overhead": ("overhead", "hltrun's event loop against a bare loop over the same inputs (I/O excluded)"),
    "source": ("source", "the ROOT source's read and decompression cost against bare uproot"),
    "framework": ("framework", "per-event and per-module framework overhead on trivial modules"),
    "timing": ("timing", "the Timing service's own cost per event and per module call"),
    "startup": ("startup", "process start-up: interpreter, imports, hltrun to its first event"),
    "memory": ("memory", "RSS growth of the default path over many events (leak check)"),
    "memray": ("memray_cost", "what the memray capture costs and whether its attribution agrees with RSS"),
    "dask": ("distributed", "Dask scaling, per-unit overhead and merge cost"),
    "gpu-sweep": ("gpu_sweep", "the torch and jax backends (GPU or CPU) over batch sizes: latency, jets/s, H2D/compute/D2H, memory"),
    "gpu-farm": ("gpu_farm", "events/s per GPU and the CPU cores one GPU replaces, from hltrun.json of CPU and GPU runs"),
    "verdict": ("verdict", "one model file to a verdict: the real path on every engine here against the per-event budget"),
}
OLD_STYLE = "hltbench: name a study first; the backend study (whose options these are) is now `hltbench backends{}`"


def study(command: str) -> ModuleType:
    """The study module behind ``command``."""
    return importlib.import_module(f"hltrun.tools.bench.{COMMANDS[command][0]}")


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The program; ``load`` names the one sub-command whose options are registered (all: ``"*"``)."""
    parser = argparse.ArgumentParser(prog="hltbench", description="hltrun's benchmark studies, one sub-command each",
                                     epilog="hltbench STUDY --help: that study's options and method")
    sub = parser.add_subparsers(dest="command", metavar="STUDY", title="studies")
    for name, (_, help_line) in COMMANDS.items():
        if load in (name, "*"):
            module = study(name)
            sp = sub.add_parser(name, help=help_line, description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
            module.add_arguments(sp)
        else:
            sub.add_parser(name, help=help_line)
    return parser


@entry_point("hltbench")  # stderr closed, or its reader gone: a refusal keeps its exit code, nothing in stdout
def main(argv: list[str] | None = None) -> int:
    """Run the study named first on the command line; 2 for a missing or unknown study or a user error,
    an HltError's own exit code (4: an output that cannot be written) for one of hltrun's errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        print(OLD_STYLE.format(" " + " ".join(argv)), file=sys.stderr)
        return 2
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for the studies that record it
    # a study refused (or stopped) after its output folders were checked leaves none of them made behind;
    # one_job: no output of the study may replace a file it reads (its model: --json m.onnx) or another output
    with folders_made_undone() as undo, one_job():
        code = _run_study(args)
        if code:
            undo()
    return code


def _run_study(args: argparse.Namespace) -> int:
    """The study's exit code; a user error, one of hltrun's errors or Ctrl-C (a signal) as one line."""
    try:
        with handle_signals():  # SIGTERM / SIGHUP stop a study like Ctrl-C, as they stop hltrun
            module = study(args.command)
            check_outputs(args, f"hltbench {args.command}")  # before the study measures anything
            # stdout is a destination like the others: > /dev/full or a reader gone is one line (exit 4), not a
            # traceback; a closed one (>&-) loses only the printed table (the files the study writes are its product)
            with printing(f"hltbench {args.command}'s results", required=False):
                return module.run(args)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 2
    except HltError as exc:  # hltrun's own one-line errors (an unwritable output: 4), with their exit code
        print(printable(one_line(exc, type(exc).__name__)), file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a job a study ran, stopped by Ctrl-C (eventloop.JobFailed); anything else is a bug
        interrupt = signal_behind(exc)
        if interrupt is None:
            raise
        return _stopped(args.command, interrupt)
    except KeyboardInterrupt as exc:
        return _stopped(args.command, exc)


def _stopped(command: str, exc: KeyboardInterrupt) -> int:
    """Ctrl-C or a signal: the temporaries removed, one line, 128 + signal."""
    remove_temporaries()
    print(f"hltbench {command}: {str(exc) or 'interrupted by the user (Ctrl-C)'}", file=sys.stderr)
    return exit_code_of(exc)


if __name__ == "__main__":
    sys.exit(main())
