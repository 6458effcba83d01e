"""The IREE backend: compiled per batch bucket, cached, padded, and in agreement with ONNX Runtime.

Compiling costs seconds per bucket, so the tests compile the shipped models once per session into
one cache, for small buckets (``opt_batch=2``: buckets 1 and 2; larger batches run in slices)."""

from __future__ import annotations

import errno
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import hltrun.framework.atomic
from hltrun.framework.errors import ModuleError
from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference import iree_backend as ib
from hltrun.modules.inference.buckets import up_to_typical
from hltrun.modules.inference.machine import IN_MEMORY
from tests.agreement import MODELS, assert_agree, assert_path_decides_as_on_onnxruntime, shipped_jets
from tests.tiny_models import jets, loaded

REPO = Path(__file__).resolve().parents[1]
SMALL = {"opt_batch": 2, "max_batch": 2}


@pytest.fixture(scope="session")
def iree_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("iree-cache")


def test_buckets_are_powers_of_two_up_to_the_typical_batch():
    assert up_to_typical(9, 1024) == [1, 2, 4, 8, 16]
    assert up_to_typical(1, 1024) == [1]
    assert up_to_typical(16, 1024) == [1, 2, 4, 8, 16]
    assert up_to_typical(9, 4) == [1, 2, 4]  # never beyond max_batch
    assert up_to_typical(5, 6) == [1, 2, 4, 6]


@pytest.mark.slow
def test_tiny_model_agrees_pads_slices_and_caches(tiny, iree_cache):
    backend = loaded("iree", tiny.onnx, engine_cache=str(iree_cache), opt_batch=4, max_batch=4)
    assert backend.buckets == [1, 2, 4] and backend.compiled_now == [1, 2, 4]
    ref = loaded("onnxruntime", tiny.onnx)
    for n in (1, 3, 4, 11):  # exact bucket, padded, sliced with a padded rest
        x = jets(n, seed=n)
        out, want = backend.run(x), ref.run(x)
        np.testing.assert_allclose(out["score"], want["score"], rtol=1e-5)
        np.testing.assert_allclose(out["kl"], want["kl"], rtol=1e-5, atol=1e-7)
    again = loaded("iree", tiny.onnx, engine_cache=str(iree_cache), opt_batch=4, max_batch=4)
    assert again.compiled_now == []  # every bucket from the cache
    assert again.describe()["buckets"] == [1, 2, 4]


@pytest.mark.parametrize("absent", [("iree.runtime", "iree.compiler"), ("iree.runtime",)])
def test_auto_on_a_python_without_iree_says_to_install_it_not_to_run_it(tiny, tmp_path, monkeypatch, absent):
    """The GPU machine's Python has no IREE: ``backend: auto`` said "iree not compiled for this model here (run
    once with backend: iree)", and that run only failed ("needs iree.runtime, which is not installed"). Now auto
    names what is missing with the install line that run gives, even where a cache holds compiled buckets."""
    import sys

    options = BackendOptions(engine_cache=str(tmp_path / "cache"), **SMALL)
    loaded("iree", tiny.onnx, engine_cache=options.engine_cache, **SMALL)  # every bucket compiled and cached
    assert ib.IreeBackend.not_ready_for_auto(tiny.onnx, options) is None
    for module in absent:  # as an uninstalled package: find_spec gives None, the import raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    fresh = BackendOptions(engine_cache=str(tmp_path / "empty"), **SMALL)  # nothing compiled: the imitation's case
    for opts in (options, fresh):
        why = ib.IreeBackend.not_ready_for_auto(tiny.onnx, opts)
        assert why == f"needs {' and '.join(absent)}, which {'are' if len(absent) == 2 else 'is'} not installed: " \
                      'pip install -e ".[iree]"  (or: pip install "iree-base-runtime iree-base-compiler")', why
    with pytest.raises(ModuleError, match=r'needs iree\.runtime, which is not installed: pip install -e "\.\[iree\]"'):
        create_backend("iree", tiny.onnx, options).load()  # what "run once with backend: iree" would have said


def _iree_workers() -> int:
    """IREE's task-executor threads alive in this process (IREE names them ``iree-worker-<n>``)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            count += Path(f"/proc/self/task/{task}/comm").read_text().startswith("iree-worker")
        except OSError:
            pass  # a thread that ended meanwhile
    return count


def _iree_workers_reach(expected: int, bound_s: float = 60.0) -> int:
    """The worker count once it reaches ``expected`` (or after ``bound_s``): an IREE worker names itself when it first
    runs, so on a busy machine a started worker may still carry the process's name for a while (2 of 3 counted once
    under load). Waiting never makes a wrong count right: too few workers never reach it, and more are seen at once."""
    deadline = time.monotonic() + bound_s
    while (count := _iree_workers()) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_threads_n_runs_on_n_iree_workers(tiny, iree_cache):
    """``threads: N`` switched IREE to its cached "local-task" device, whose worker count is IREE's own (one per
    physical core, whatever N): ``threads: 2`` and ``threads: 3`` ran on the same workers. Each backend now has an
    executor of exactly N workers (more than this machine's CPUs, so IREE's own count cannot be it), none for 1.
    IREE names its workers: other threads of the process (a read-ahead, a pool) are not counted."""
    held = []
    for threads in (1, (os.cpu_count() or 1) + 1, (os.cpu_count() or 1) + 2):
        before = _iree_workers()
        backend = loaded("iree", tiny.onnx, engine_cache=str(iree_cache), threads=threads, **SMALL)
        backend.run(jets(3, seed=threads))
        expected = 0 if threads == 1 else threads
        assert _iree_workers_reach(before + expected) - before == expected, threads
        held.append(backend)  # alive, so its workers are: the next count starts from them


def test_an_iree_that_cannot_size_its_workers_says_so_once(caplog):
    """An IREE runtime without the uncached driver factory cannot give a backend N workers: it runs on IREE's
    own count, said in one warning (not silently taken for ``threads: N``); ``threads: 1`` needs none."""
    from types import SimpleNamespace

    made: list[str] = []
    runtime = SimpleNamespace(Config=lambda name: made.append(name) or name, flags=SimpleNamespace())
    logger = logging.getLogger("hltrun.inference")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="hltrun.inference"):
            assert ib.runtime_config(runtime, 1) == ("local-sync", None)
            assert ib.runtime_config(runtime, 4) == ("local-task", None)
    finally:
        logger.removeHandler(caplog.handler)
    said = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}  # caught here and by the root
    assert said == {"iree: threads: 4 is not honoured by this IREE runtime (no create_hal_driver / parse_flags): "
                    "calls run on IREE's own worker count (one per physical core)"}


def test_cache_key_follows_the_model_bytes_compiler_and_bucket(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"one")
    first = ib.cache_path(model, tmp_path, "3.13.0", 2)
    assert first != ib.cache_path(model, tmp_path, "3.14.0", 2) != ib.cache_path(model, tmp_path, "3.13.0", 4)
    model.write_bytes(b"two")
    assert ib.cache_path(model, tmp_path, "3.13.0", 2) != first


@pytest.mark.slow
def test_a_bucket_the_compiler_refuses_pads_up_to_the_next(tiny, tmp_path, monkeypatch, caplog):
    real = ib.compile_bucket

    def refuse_one(model, batch):
        if batch == 1:
            raise RuntimeError("Diagnostics:\nmodel.mlir:3:1: error: slice runs out-of-bounds\nmore")
        return real(model, batch)

    monkeypatch.setattr(ib, "compile_bucket", refuse_one)
    logger = logging.getLogger("hltrun.inference")  # the CLI's "hltrun" logger may not propagate to caplog's
    logger.addHandler(caplog.handler)
    try:
        backend = loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=2, max_batch=2)
    finally:
        logger.removeHandler(caplog.handler)
    assert backend.buckets == [2]
    assert "does not compile for batch 1 (slice runs out-of-bounds); batches of that size run padded to 2" in caplog.text
    ref = loaded("onnxruntime", tiny.onnx)
    np.testing.assert_allclose(backend.run(jets(1))["score"], ref.run(jets(1))["score"], rtol=1e-5)
    monkeypatch.setattr(ib, "compile_bucket", real)  # the refusal is remembered: not compiled again
    assert loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=2, max_batch=2).buckets == [2]


def test_no_bucket_compiles_is_one_line(tiny, tmp_path, monkeypatch):
    def refuse(model, batch):
        raise RuntimeError("Diagnostics:\nx.mlir:1:1: error: unsupported op onnx.Foo\n...")

    monkeypatch.setattr(ib, "compile_bucket", refuse)
    with pytest.raises(ModuleError, match=r"^iree: cannot compile .*tiny.onnx for any batch bucket: unsupported op onnx.Foo; "
                                          r"use backend: onnxruntime for this model$"):
        create_backend("iree", tiny.onnx, BackendOptions(engine_cache=str(tmp_path), opt_batch=1)).load()


def test_wrong_input_shape_is_refused_before_compiling(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(ib, "compile_bucket", lambda *a: pytest.fail("compiled a model of the wrong shape"))
    with pytest.raises(ModuleError, match=r"takes input .*of shape \(N, 50, 3\)"):
        create_backend("iree", tiny.wrong_onnx, BackendOptions(engine_cache=str(tmp_path))).load()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["conv_vae", "gcn_vae"])
def test_shipped_models_agree_with_onnxruntime_on_every_sample(model, iree_cache):
    x = shipped_jets()
    ref = loaded("onnxruntime", MODELS / f"{model}.onnx").run(x)
    out = loaded("iree", MODELS / f"{model}.onnx", engine_cache=str(iree_cache), **SMALL).run(x)
    assert_agree(model, ref, out, f"{model} iree vs onnxruntime")


@pytest.mark.slow
def test_the_shipped_path_on_iree_decides_as_on_onnxruntime(tmp_path, iree_cache):
    """The whole path, both backends, same events: the same decision and scores for every event."""
    assert_path_decides_as_on_onnxruntime(tmp_path, "iree", 60, f"modules.vae.engine_cache={iree_cache}",
                                          "modules.vae.max_batch=2", "modules.vae.warm_up=[1, 2]")


def _column_score_model(path: Path) -> Path:
    """(N, 100, 3) -> score (N, 1), PyTorch's usual head: the sum of pT per jet, kept as a column."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceSum", ["jets", "axes"], ["s3"], keepdims=0),
             helper.make_node("Slice", ["s3", "two", "three", "one"], ["score"])]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("one", 1), ("two", 2), ("three", 3))]
    inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.slow
def test_scores_stay_valid_after_later_calls(tmp_path):
    """Each call's scores are the backend's own memory: IREE maps its result buffer to the host, and a
    view of it (what an (N, 1) output became after the reshape) read the next calls' buffers, so the
    output file held other events' scores (a PyTorch (N, 1) model, 100 % relative difference)."""
    path = _column_score_model(tmp_path / "col.onnx")
    backend = loaded("iree", path, engine_cache=str(tmp_path / "cache"), opt_batch=2, max_batch=2)
    kept = [(backend.run(jets(2, seed=i))["score"], jets(2, seed=i)[:, :, 2].sum(axis=1)) for i in range(8)]
    for got, want in kept:
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_float64_input_is_refused_before_compiling(tmp_path, monkeypatch):
    """A model exported in double precision (``model.double()``): one line at load, as on the other
    engines, not every bucket compiled and then a runtime type mismatch at the warm-up."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["score"], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "f64.onnx"))
    monkeypatch.setattr(ib, "compile_bucket", lambda *a: pytest.fail("compiled a float64 model"))
    with pytest.raises(ModuleError, match=r"^iree: model .*f64.onnx input 'x' is float64, expected float32 \(hltrun feeds float32: .*\)$"):
        create_backend("iree", tmp_path / "f64.onnx", BackendOptions(engine_cache=str(tmp_path))).load()


@pytest.mark.slow
def test_outputs_without_a_batch_axis_beside_the_score(tmp_path):
    """A model that also returns a per-call total (shape ()) and a fixed-size vector ((3,)) beside its
    per-jet score: only the batch axes are fixed per bucket, and only the mapped outputs are sliced and
    joined (it was "cannot compile ... for any batch bucket: list index out of range")."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceSum", ["jets", "axes"], ["score"], keepdims=0),
             helper.make_node("ReduceSum", ["score"], ["total"], keepdims=0),
             helper.make_node("ReduceSum", ["jets", "ax01"], ["per_feature"], keepdims=0)]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
             helper.make_tensor("ax01", TensorProto.INT64, [2], [0, 1])]
    outs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("per_feature", TensorProto.FLOAT, [3])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "extra.onnx"))
    cache = tmp_path / "cache"
    for bucket in (1, 2):  # what an older hltrun remembered for this model: the refusal is not trusted
        old = ib.cache_path(tmp_path / "extra.onnx", cache, ib.dist_version("iree-base-compiler"), bucket)
        old.parent.mkdir(parents=True, exist_ok=True)
        old.with_suffix(".failed").write_text("list index out of range\n")
    assert not ib.IreeBackend.compiled(tmp_path / "extra.onnx", BackendOptions(engine_cache=str(cache), **SMALL))
    backend = loaded("iree", tmp_path / "extra.onnx", engine_cache=str(cache), opt_batch=2, max_batch=2)
    assert backend.compiled_now == [1, 2]
    x = jets(3)  # a bucket of 2 and a padded one
    np.testing.assert_allclose(backend.run(x)["score"], x.sum(axis=(1, 2)), rtol=1e-5)


def _warnings_while(caplog, action):
    """The WARNING lines the inference logger gives while ``action`` runs (the CLI's logger may not
    propagate to caplog's handler)."""
    logger = logging.getLogger("hltrun.inference")
    logger.addHandler(caplog.handler)
    try:
        result = action()
    finally:
        logger.removeHandler(caplog.handler)
    records = {id(r): r for r in caplog.records}.values()  # one record reaches caplog's handler by both ways
    return result, [r.getMessage() for r in records if r.levelno == logging.WARNING]


class _FullDisk(io.FileIO):
    """Every byte framework/atomic.py writes goes through ``_raw``: here the disk is full."""

    def write(self, data) -> int:  # noqa: ANN001 - bytes-like, as io.FileIO.write
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["under_a_file", "a_file", "full_disk"])
def test_a_cache_folder_that_cannot_be_written_is_one_warning_and_the_model_runs(tiny, tmp_path, caplog, where,
                                                                                 monkeypatch):
    """XDG_CACHE_HOME=/etc/hostname/x, engine_cache=<a file>, a full disk: the cache is an optimisation,
    the job runs."""
    a_file = tmp_path / "hostname"
    a_file.write_text("not a folder\n")
    cache = {"under_a_file": a_file / "x" / "hltrun" / "iree", "a_file": a_file, "full_disk": tmp_path / "c"}[where]
    if where == "full_disk":
        monkeypatch.setattr(hltrun.framework.atomic, "_raw", _FullDisk)
    backend, warnings = _warnings_while(caplog, lambda: loaded("iree", tiny.onnx, engine_cache=str(cache),
                                                                   opt_batch=2, max_batch=2))
    assert backend.compiled_now == [1, 2]
    assert len(warnings) == 1 and warnings[0].startswith("iree module cache: ")
    assert "compiled modules kept in memory only" in warnings[0]
    ref = loaded("onnxruntime", tiny.onnx)
    np.testing.assert_allclose(backend.run(jets(3))["score"], ref.run(jets(3))["score"], rtol=1e-5)
    again = loaded("iree", tiny.onnx, engine_cache=str(cache), opt_batch=2, max_batch=2)  # the next stream
    assert again.compiled_now == []  # the modules this process compiled, from memory
    np.testing.assert_allclose(again.run(jets(3))["score"], ref.run(jets(3))["score"], rtol=1e-5)
    assert a_file.read_text() == "not a folder\n" and not [p for p in tmp_path.rglob("*") if p.is_file() and p != a_file]


@pytest.mark.slow
def test_a_damaged_cached_module_is_compiled_again_not_trusted(tiny, tmp_path, caplog):
    first = loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=1, max_batch=1)
    (module,) = tmp_path.glob("*.vmfb")
    module.write_bytes(module.read_bytes()[:300])  # as a copy cut short, a disk error, an old crash
    again, warnings = _warnings_while(caplog, lambda: loaded("iree", tiny.onnx, engine_cache=str(tmp_path),
                                                                 opt_batch=1, max_batch=1))
    assert again.compiled_now == [1]
    assert len(warnings) == 1 and "cannot be opened" in warnings[0] and "compiling it again" in warnings[0]
    np.testing.assert_array_equal(again.run(jets(1))["score"], first.run(jets(1))["score"])
    assert loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=1, max_batch=1).compiled_now == []


@pytest.mark.slow
def test_a_cached_module_that_is_a_fifo_is_compiled_again_and_replaced(tiny, tmp_path):
    """A FIFO under a cached module's name: not a file, so compiled again, and then written into in place, which
    waited for a reader for ever. Replaced as a damaged module is (machine.cache_entry)."""
    import os

    from tests.helpers import beside_a_fifo

    loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=1, max_batch=1)
    (module,) = tmp_path.glob("*.vmfb")
    module.unlink()
    os.mkfifo(module)
    again = beside_a_fifo(module, lambda: loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=1,
                                                 max_batch=1), wait_s=120)
    assert again.compiled_now == [1] and module.is_file()
    assert loaded("iree", tiny.onnx, engine_cache=str(tmp_path), opt_batch=1, max_batch=1).compiled_now == []


def test_a_model_name_of_255_bytes_makes_a_valid_cache_name(tmp_path):
    """The cache name adds ~60 bytes of key to the model's name: a model named near the limit used to
    fail begin_job with ``File name too long`` once the cache folder existed."""
    one, two = tmp_path / ("m" * 250 + ".onnx"), tmp_path / ("m" * 249 + "n.onnx")
    one.write_bytes(b"one")
    two.write_bytes(b"two")
    paths = [ib.cache_path(m, tmp_path, "3.13.0", 1024) for m in (one, two)]
    assert all(len(p.name.encode()) <= 255 and len(ib.refusal_path(p).name.encode()) <= 255 for p in paths)
    assert paths[0] != paths[1]  # cut to the same prefix, told apart by the model's digest
    assert not paths[0].is_file()  # a lookup, not ENAMETOOLONG


@pytest.mark.slow
def test_without_a_home_folder_the_modules_are_compiled_in_memory(tiny, monkeypatch, caplog):
    """No HOME, no passwd entry, no XDG_CACHE_HOME: one warning saying how to keep a cache; the model runs."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr("pathlib.Path.home", classmethod(lambda cls: (_ for _ in ()).throw(
        RuntimeError("Could not determine home directory."))))
    assert not ib.IreeBackend.compiled(tiny.onnx, BackendOptions(opt_batch=1, max_batch=1))
    backend, warnings = _warnings_while(caplog, lambda: loaded("iree", tiny.onnx, opt_batch=1, max_batch=1))
    assert backend.compiled_now == [1]
    assert len(warnings) == 1 and "no home folder" in warnings[0] and "set XDG_CACHE_HOME" in warnings[0]
    ref = loaded("onnxruntime", tiny.onnx)
    np.testing.assert_allclose(backend.run(jets(1))["score"], ref.run(jets(1))["score"], rtol=1e-5)


def test_a_compiler_that_could_not_run_is_not_remembered_as_a_refusal(tiny, tmp_path, monkeypatch):
    """TMPDIR unusable for iree-compile (or the compiler killed for memory): that job fails in one line,
    but no ``.failed`` marker is cached, so the next job, in a sane environment, compiles. It used to
    refuse the model in every later job."""
    def cannot_run(model, batch):
        raise RuntimeError("Error invoking IREE compiler tool iree-compile\nError code: 1\nDiagnostics:\n"
                           "failed to generate temporary file: Not a directory")

    monkeypatch.setattr(ib, "compile_bucket", cannot_run)
    with pytest.raises(ModuleError, match=r"for any batch bucket: .*failed to generate temporary file"):
        create_backend("iree", tiny.onnx, BackendOptions(engine_cache=str(tmp_path), opt_batch=2)).load()
    assert not list(tmp_path.glob("*.failed"))
    monkeypatch.setattr(ib, "compile_bucket", lambda model, batch: b"compiled")
    monkeypatch.setattr(ib.IreeBackend, "_open", lambda self, runtime, module: (lambda x: x))
    assert create_backend("iree", tiny.onnx, BackendOptions(engine_cache=str(tmp_path), opt_batch=2)).load()


def _fake_compiler(monkeypatch, refuse: tuple[int, ...] = ()) -> list[int]:
    """iree-compile replaced by a quick fake that records each bucket it compiles (and refuses those in
    ``refuse``); modules open as the identity."""
    calls: list[int] = []

    def compile_bucket(model, batch):
        calls.append(batch)
        time.sleep(0.05)  # long enough for a second thread to arrive while it runs
        if batch in refuse:
            raise RuntimeError("Diagnostics:\nm.mlir:1:1: error: unsupported op onnx.Foo\n")
        return b"compiled for %d" % batch

    monkeypatch.setattr(ib, "compile_bucket", compile_bucket)
    monkeypatch.setattr(ib.IreeBackend, "_open", lambda self, runtime, module: (lambda x: x))
    return calls


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_without_a_writable_cache_a_second_instance_does_not_compile_again(tiny, tmp_path, monkeypatch, where):
    """One backend per stream: with a cache folder that cannot be written, each stream compiled every
    bucket again (seconds each); the modules (and the compiler's refusals) are kept in this process."""
    a_file = tmp_path / "file"
    a_file.write_text("not a folder\n")
    options = BackendOptions(engine_cache=str({"a_file": a_file, "under_a_file": a_file / "iree"}[where]),
                             opt_batch=2, max_batch=2)
    calls = _fake_compiler(monkeypatch, refuse=(1,))
    assert not ib.IreeBackend.compiled(tiny.onnx, options)
    first = create_backend("iree", tiny.onnx, options).load()
    assert calls == [1, 2] and first.compiled_now == [2] and first.buckets == [2]
    assert ib.IreeBackend.compiled(tiny.onnx, options)  # auto may time it now: loading costs no compile
    again = create_backend("iree", tiny.onnx, options).load()
    assert calls == [1, 2] and again.compiled_now == [] and again.buckets == [2]
    assert a_file.read_text() == "not a folder\n" and not [p for p in tmp_path.rglob("*") if p.is_file() and p != a_file]


def test_with_a_writable_cache_nothing_is_kept_in_memory(tiny, tmp_path, monkeypatch):
    options = BackendOptions(engine_cache=str(tmp_path), opt_batch=2, max_batch=2)
    calls = _fake_compiler(monkeypatch, refuse=(1,))
    assert create_backend("iree", tiny.onnx, options).load().compiled_now == [2]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(IN_MEMORY.get(tmp_path, name) is None for name in files)
    assert create_backend("iree", tiny.onnx, options).load().compiled_now == [] and calls == [1, 2]
    for path in tmp_path.iterdir():  # the files are the cache: without them, compiled again
        path.unlink()
    assert create_backend("iree", tiny.onnx, options).load().compiled_now == [2] and calls == [1, 2, 1, 2]


@pytest.mark.parametrize("writable", [True, False])
def test_streams_loading_together_compile_each_bucket_once(tiny, tmp_path, monkeypatch, writable):
    """Streams (a Dask worker's threads) loading the same model at once: one compiles a bucket, the
    other waits for it and loads it, from the folder or from memory."""
    folder = tmp_path / "cache"
    if not writable:
        folder.write_text("")
    options = BackendOptions(engine_cache=str(folder), opt_batch=2, max_batch=2)
    calls = _fake_compiler(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        backends = list(pool.map(lambda _: create_backend("iree", tiny.onnx, options).load(), range(2)))
    assert sorted(calls) == [1, 2] and sorted(b for backend in backends for b in backend.compiled_now) == [1, 2]


def _bidirectional_gru(path: Path) -> Path:
    """A model IREE's ONNX lowering refuses (a bidirectional GRU over the constituents: 'onnx.GRU');
    ONNX Runtime runs it. (An opset-11 Softmax served here until 2026-12-07, when IREE's import began to
    upgrade opsets below 13, and it compiled.)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.full((2, 6, 3), 0.1, np.float32), "W"),
             numpy_helper.from_array(np.full((2, 6, 2), 0.1, np.float32), "R"),
             numpy_helper.from_array(np.array([0, 2], np.int64), "ax")]
    nodes = [helper.make_node("Transpose", ["jets"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("GRU", ["xt", "W", "R"], ["", "h"], hidden_size=2, direction="bidirectional"),
             helper.make_node("ReduceSum", ["h", "ax"], ["score"], keepdims=0),
             helper.make_node("Identity", ["score"], ["kl"])]
    graph = helper.make_graph(nodes, "gru", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N"]) for n in ("score", "kl")],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_refused_model_is_named_with_the_compilers_reason_not_a_deleted_temporary(tmp_path):
    """The line ended in ``loc("/tmp/hltrun-iree-XXXX/model.mlir":6:10)``, a file deleted before the user
    read it; the model file and the compiler's reason are what the user can act on. The refusal
    remembered in the cache (and one an older version remembered, location included) reads the same."""
    model = _bidirectional_gru(tmp_path / "gru.onnx")
    options = BackendOptions(engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)
    for _ in range(2):  # compiled, then the remembered refusal
        with pytest.raises(ModuleError) as err:
            create_backend("iree", model, options).load()
        text = str(err.value)
        assert text.startswith(f"iree: cannot compile {model} for any batch bucket: failed to legalize operation "), text
        assert '<{name = "onnx.GRU"}>' in text and "loc(" not in text and ".mlir" not in text, text
        assert text.endswith("(the error names its GRU node 'h'); use backend: onnxruntime for this model"), text
    refusal, = (tmp_path / "cache").glob("*.failed")
    refusal.write_text(refusal.read_text().strip() + ' loc("/tmp/hltrun-iree-gone/model.mlir":6:10)\n')
    with pytest.raises(ModuleError) as err:
        create_backend("iree", model, options).load()
    assert str(err.value) == text


def test_compiler_error_keeps_the_reason_without_temporary_locations():
    exc = RuntimeError('Diagnostics:\n/tmp/hltrun-iree-ab/model.mlir:6:10: error: failed to legalize operation '
                       '\'torch.operator\': %8 = "torch.operator"(%7) loc("/tmp/hltrun-iree-ab/model.mlir":6:10)\n'
                       'note: see current operation: loc(#loc3)')
    assert ib.compiler_error(exc) == 'failed to legalize operation \'torch.operator\': %8 = "torch.operator"(%7)'


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_a_recurrent_layer_with_sequence_lens_is_refused_before_compiling(tmp_path, monkeypatch, op):
    """IREE's ONNX import drops an LSTM/GRU/RNN's ``sequence_lens`` (each jet's count of real
    constituents): every jet ran over all its padded rows, scores off ONNX Runtime's by up to 89 % of the largest score
    with nothing said. Refused at load, one line naming the node and the way out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits = [numpy_helper.from_array(np.ones((1, gates * 2, 3), np.float32), "W"),
             numpy_helper.from_array(np.ones((1, gates * 2, 2), np.float32), "R"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Cast", ["n"], ["lens"], to=TensorProto.INT32),
             helper.make_node(op, ["xt", "W", "R", "", "lens"], ["", "h"], hidden_size=2),
             helper.make_node("ReduceSum", ["h", "ax"], ["s"], keepdims=0),
             helper.make_node("ReduceSum", ["s", "ax"], ["score"], keepdims=0)]
    nodes.insert(0, helper.make_node("ReduceSum", ["x", "ax"], ["sums"], keepdims=0))
    nodes.insert(1, helper.make_node("ReduceMax", ["sums"], ["n"], axes=[1], keepdims=0))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "rnn.onnx"))
    monkeypatch.setattr(ib, "compile_bucket", lambda *a: pytest.fail("compiled a model IREE runs wrongly"))
    with pytest.raises(ModuleError) as info:
        create_backend("iree", tmp_path / "rnn.onnx", BackendOptions(engine_cache=str(tmp_path))).load()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"iree: model {tmp_path / 'rnn.onnx'}: {op} node 'h' has a sequence_lens")
    assert "backend: onnxruntime" in msg


def _per_jet_state(path: Path, op: str) -> Path:
    """A model carrying a per-jet state through a ``Loop`` (3 iterations, + sum x² each) or a ``Scan`` (over the
    constituents, summing them): ONNX Runtime runs both; IREE's compiler refused both, in words naming no
    ONNX op (a ``Loop`` carrying a scalar it compiles)."""
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    f = T.FLOAT
    inits = [nh.from_array(np.array([1], np.int64), "axes1"), nh.from_array(np.array([1, 2], np.int64), "axes12")]
    if op == "Loop":
        body = h.make_graph([h.make_node("Identity", ["c_in"], ["c_out"]), h.make_node("Mul", ["jets", "jets"], ["sq"]),
                             h.make_node("ReduceSum", ["sq", "axes12"], ["s"], keepdims=0),
                             h.make_node("Add", ["v_in", "s"], ["v_out"])], "body",
                            [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
                             h.make_tensor_value_info("v_in", f, ["N"])],
                            [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("v_out", f, ["N"])])
        inits += [nh.from_array(np.array(3, np.int64), "M"), nh.from_array(np.array(True), "cond")]
        nodes = [h.make_node("ReduceSum", ["jets", "axes12"], ["z"], keepdims=0), h.make_node("Sub", ["z", "z"], ["v0"]),
                 h.make_node("Loop", ["M", "cond", "v0"], ["score"], body=body)]
    else:
        body = h.make_graph([h.make_node("Add", ["s_in", "xi"], ["s_out"])], "body",
                            [h.make_tensor_value_info("s_in", f, ["N", 3]), h.make_tensor_value_info("xi", f, ["N", 3])],
                            [h.make_tensor_value_info("s_out", f, ["N", 3])])
        nodes = [h.make_node("ReduceSum", ["jets", "axes1"], ["z"], keepdims=0), h.make_node("Sub", ["z", "z"], ["s0"]),
                 h.make_node("Scan", ["s0", "jets"], ["st"], body=body, num_scan_inputs=1, scan_input_axes=[1]),
                 h.make_node("Mul", ["st", "st"], ["sq"]), h.make_node("ReduceSum", ["sq", "axes1"], ["score"], keepdims=0)]
    graph = h.make_graph(nodes, op, [h.make_tensor_value_info("jets", f, ["N", 100, 3])],
                         [h.make_tensor_value_info("score", f, ["N"])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("op, node", [("Loop", "score"), ("Scan", "st")])
def test_a_control_flow_op_the_compiler_refuses_is_named_with_the_alternative(tmp_path, op, node):
    """iree-compile's line named no ONNX op ('failed to legalize unresolved target materialization' for a
    Scan; 'torch.prim.Loop' ... a type mismatch for a Loop) and no way out; now the node and ONNX Runtime."""
    model = _per_jet_state(tmp_path / f"{op}.onnx", op)
    loaded("onnxruntime", model)  # a valid model that ONNX Runtime runs
    with pytest.raises(ModuleError) as err:
        create_backend("iree", model, BackendOptions(engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1)).load()
    text = str(err.value)
    assert text.startswith(f"iree: cannot compile {model} for any batch bucket: ") and "\n" not in text, text
    assert f"{op} node {node!r}" in text and text.endswith("; use backend: onnxruntime for this model"), text


def test_culprits_are_the_nodes_named_and_the_fragile_ones_subgraphs_included():
    from onnx import TensorProto as T, helper as h

    inner = h.make_graph([h.make_node("NonZero", ["a"], ["nz"])], "then", [], [h.make_tensor_value_info("nz", T.INT64, None)])
    ops = ib.graph_ops(h.make_graph([h.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner),
                                     h.make_node("Softmax", ["x"], ["p"])], "g", [], []))
    assert ops == {"If": "y", "NonZero": "nz", "Softmax": "p"}
    fragile = "its If node 'y', NonZero node 'nz': IREE compiles and runs such ops in some forms only"
    assert ib.culprits(ops, "failed to legalize") == f" ({fragile})"
    assert ib.culprits(ops, '<{name = "onnx.Softmax"}>') == f" (the error names its Softmax node 'p'; {fragile})"
    assert ib.culprits(ops, "unsupported op onnx.Foo") == f" ({fragile})"  # an op the model does not have: not named
    assert ib.culprits({"Relu": "r"}, "failed") == ""


def test_a_boolean_indexing_that_fails_its_warm_up_names_the_nonzero_and_the_alternative(tmp_path):
    """A PyTorch boolean indexing (x[mask], nonzero, index_add: NonZero, GatherND, ScatterElements) compiles
    on IREE, then its warm-up failed on 'onnx.Expand input has a dim that is not statically 1', naming
    neither the NonZero nor a way out."""
    torch = pytest.importorskip("torch")

    class Masked(torch.nn.Module):
        def forward(self, x):
            m = x[..., 2] > 0
            return torch.zeros(x.shape[0], dtype=x.dtype).index_add(0, m.nonzero()[:, 0], x[m].pow(2).sum(-1))

    model = tmp_path / "masked.onnx"
    torch.onnx.export(Masked(), torch.rand(4, 100, 3), str(model), input_names=["jets"], output_names=["score"],
                      dynamic_axes={"jets": {0: "N"}, "score": {0: "N"}}, opset_version=17, dynamo=False)
    loaded("onnxruntime", model)  # ONNX Runtime runs it
    backend = create_backend("iree", model, BackendOptions(engine_cache=str(tmp_path / "cache"), opt_batch=1, max_batch=1))
    with pytest.raises(ModuleError) as err:
        backend.load()
        backend.warm_up([1])
    text = str(err.value)
    assert text.startswith(f"iree: model {model} failed its warm-up on a batch of 1 jet(s): ") and "\n" not in text, text
    assert "NonZero node" in text and text.endswith("; use backend: onnxruntime for this model"), text
