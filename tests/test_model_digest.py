"""Caches keyed by a model (IREE modules, TensorRT engines, ``auto``'s decisions) follow its weights
even when they live in an ONNX external-data file beside it: a retrained model saved that way changes
only that file, and a key on the .onnx bytes alone served the old network's compiled weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'cpu') not installed")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hltrun.modules.inference import autoselect  # noqa: E402
from hltrun.modules.inference import iree_backend as ib  # noqa: E402
from hltrun.modules.inference.machine import external_data_files, model_digest  # noqa: E402
from hltrun.modules.inference.tensorrt_backend import BuildSettings, engine_cache_path  # noqa: E402


def _save(folder: Path, scale: float, in_subgraph: bool = False) -> Path:
    """(N, 100, 3) -> score: a (3, 64) weight saved as external data (in an If branch when asked)."""
    w = numpy_helper.from_array(np.full((3, 64), scale, np.float32), "w")
    nodes = [helper.make_node("MatMul", ["jets", "w"], ["y"]),
             helper.make_node("ReduceSum", ["y", "axes"], ["score"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([1, 2], np.int64), "axes")]
    if in_subgraph:  # the weight as a Constant inside a branch: found there too
        branch = helper.make_graph([helper.make_node("Constant", [], ["w"], value=w)], "b", [],
                                   [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 64])])
        nodes.insert(0, helper.make_node("If", ["cond"], ["w"], then_branch=branch, else_branch=branch))
        inits.append(numpy_helper.from_array(np.array(True), "cond"))
    else:
        inits.append(w)
    graph = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("jets", TensorProto.FLOAT, ["N", 100, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    (folder / "m.weights").unlink(missing_ok=True)
    if not in_subgraph:
        onnx.save(model, str(path), save_as_external_data=True, location="m.weights", size_threshold=64)
        return path
    # onnx.save leaves attribute tensors inline: moved out by hand, as the external-data format allows
    from onnx.external_data_helper import set_external_data

    for branch in (a.g for a in model.graph.node[0].attribute):
        tensor = branch.node[0].attribute[0].t
        (folder / "m.weights").write_bytes(tensor.raw_data)
        set_external_data(tensor, "m.weights", 0, len(tensor.raw_data))
        tensor.data_location = TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("in_subgraph", [False, True], ids=["initializer", "if_branch"])
def test_every_cache_key_changes_when_only_the_external_weights_do(tmp_path: Path, in_subgraph: bool) -> None:
    path = _save(tmp_path, 1.0, in_subgraph)
    assert external_data_files(path) == [tmp_path / "m.weights"]
    onnx_bytes = path.read_bytes()
    keys = (model_digest(path), ib.cache_path(path, tmp_path, "3.13.0", 2),
            engine_cache_path(path, tmp_path, "NVIDIA H100", "10.9.0", BuildSettings()),
            autoselect.decision_key(path, 2, {"onnxruntime": "1"}, "cpu0"))
    _save(tmp_path, 2.0, in_subgraph)
    assert path.read_bytes() == onnx_bytes  # the .onnx itself did not change
    again = (model_digest(path), ib.cache_path(path, tmp_path, "3.13.0", 2),
             engine_cache_path(path, tmp_path, "NVIDIA H100", "10.9.0", BuildSettings()),
             autoselect.decision_key(path, 2, {"onnxruntime": "1"}, "cpu0"))
    assert all(a != b for a, b in zip(keys, again)), (keys, again)
    assert model_digest(path) == again[0]  # and stable while nothing changes


def test_a_loads_digest_parses_the_model_once(tmp_path: Path, monkeypatch) -> None:
    """``loaded_digest`` lists the external-data files once and hashes those: a second parse of a model kept
    inline (up to 2 GB of protobuf) cost each stream's load its time again."""
    from hltrun.modules.inference.machine import loaded_digest

    path = _save(tmp_path, 1.0)
    parsed = []
    real = onnx.load
    monkeypatch.setattr(onnx, "load", lambda *a, **k: parsed.append(a[0]) or real(*a, **k))
    digest = loaded_digest(path, lambda: None)
    assert len(parsed) == 1, parsed
    monkeypatch.undo()
    assert digest == model_digest(path)  # the weights beside it hashed as before


def test_a_file_that_is_no_model_is_hashed_as_it_is(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    assert external_data_files(junk) == [] and len(model_digest(junk)) == 64


def test_a_fifo_is_refused_before_it_is_hashed(tmp_path: Path) -> None:
    """Every cache key hashes the model: a FIFO given as the model would block that read for ever."""
    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference import BackendOptions
    from tests.helpers import fifo_unblocked

    pipe = fifo_unblocked(tmp_path / "pipe.onnx")
    with pytest.raises(ModuleError, match=r"pipe.onnx is a FIFO, not a regular file"):
        model_digest(pipe)
    assert not ib.IreeBackend.compiled(pipe, BackendOptions(engine_cache=str(tmp_path)))


REPO = Path(__file__).resolve().parents[1]


def _scoring_job(write_config, tmp_path: Path, streams: int = 1) -> tuple[Path, Path]:
    """The shipped path's scorer (ONNX Runtime) on a copy of conv_vae.onnx, 20 events on ``streams`` streams:
    the config and the copy."""
    pytest.importorskip("onnxruntime")
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(REPO / "data/models/conv_vae.onnx", model)
    cfg = write_config(f"""
        process: T
        options: {{maxEvents: 20, numberOfThreads: {streams}, accelerators: [cpu]}}
        source: {{type: RootJetSource, files: [{REPO / "data/qcd_dijet.root"}]}}
        modules:
          batcher: {{type: JetBatcher, src: source, max_jets: 2}}
          vae: {{type: VAEAnomalyScorer, src: batcher, model: {model}, backend: onnxruntime}}
        paths: {{p: [batcher, vae]}}
        """)
    return cfg, model


def test_the_recorded_digest_is_of_the_bytes_the_engine_loaded(write_config, tmp_path, monkeypatch):
    """The control: an untouched file's job records the sha256 of the file that ran."""
    import hashlib

    from tests.helpers import run_config

    cfg, model = _scoring_job(write_config, tmp_path)
    summary, _ = run_config(cfg)
    assert summary.facts["accelerators"]["vae"]["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_a_model_replaced_while_the_engine_loads_it_is_refused(write_config, tmp_path, monkeypatch):
    """A retrain writing the model file as the job starts: the digest was read at the end of begin_job, so
    the job ran conv_vae and recorded gcn_vae's sha256 (hltdiff would have blamed the wrong network)."""
    import shutil

    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference.onnxruntime_backend import OnnxRuntimeBackend
    from tests.helpers import run_config

    cfg, model = _scoring_job(write_config, tmp_path)
    load = OnnxRuntimeBackend._load

    def load_then_replace(self) -> None:
        load(self)
        shutil.copy(REPO / "data/models/gcn_vae.onnx", self.model_path)

    monkeypatch.setattr(OnnxRuntimeBackend, "_load", load_then_replace)
    with pytest.raises(ModuleError, match=rf"^modules\.vae: model file {model} changed while it was loaded \(replaced "
                                          r"or rewritten\): the network that runs is not known"):
        run_config(cfg)


def test_a_model_replaced_between_two_streams_loads_is_refused(write_config, tmp_path, monkeypatch):
    """Each stream loads its own engine: a file replaced after the first stream's load made the streams run
    two networks, and the job recorded one digest for both."""
    import shutil

    from hltrun.framework.errors import ModuleError
    from hltrun.modules.inference.onnxruntime_backend import OnnxRuntimeBackend
    from tests.helpers import run_config

    cfg, model = _scoring_job(write_config, tmp_path, streams=2)
    warm_up = OnnxRuntimeBackend.warm_up

    def warm_up_then_replace(self, *args, **kwargs):  # the first stream has loaded and hashed its model by now
        if self.model_path.read_bytes() != (REPO / "data/models/gcn_vae.onnx").read_bytes():
            shutil.copy(REPO / "data/models/gcn_vae.onnx", self.model_path)
        return warm_up(self, *args, **kwargs)

    monkeypatch.setattr(OnnxRuntimeBackend, "warm_up", warm_up_then_replace)
    with pytest.raises(ModuleError, match=rf"^modules\.vae: model file {model} changed (between two streams' loads "
                                          r"\(sha256 [0-9a-f]{12}, then [0-9a-f]{12}\)|while it was loaded)"):
        run_config(cfg)


def test_a_model_rewritten_with_the_same_bytes_while_it_loads_runs(write_config, tmp_path, monkeypatch):
    """Two jobs importing the same network refresh a shared import cache with ``os.replace`` of identical bytes:
    another inode, the same network. The state check alone refused the job that was loading (exit 4)."""
    import hashlib
    import os
    import shutil

    from hltrun.modules.inference.onnxruntime_backend import OnnxRuntimeBackend
    from tests.helpers import run_config

    cfg, model = _scoring_job(write_config, tmp_path)
    load = OnnxRuntimeBackend._load

    def load_then_rewrite_identically(self) -> None:
        load(self)
        fresh = self.model_path.with_suffix(".tmp")
        shutil.copy(self.model_path, fresh)
        os.replace(fresh, self.model_path)

    monkeypatch.setattr(OnnxRuntimeBackend, "_load", load_then_rewrite_identically)
    summary, _ = run_config(cfg)
    assert summary.facts["accelerators"]["vae"]["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def _aged(path: Path) -> None:
    """The file's modification time a minute back (its change time stays now: ``RACY_S`` 0 lets it be kept)."""
    import os
    import time

    old = time.time() - 60
    os.utime(path, (old, old))


def test_a_job_hashes_and_parses_its_model_once_whatever_its_streams(write_config, tmp_path, monkeypatch):
    """Each stream's load hashed the model file and parsed the ONNX protobuf for its external data (as did auto's
    key and IREE's checks): a 200 MB model on 4 streams spent 2.9 s of a 10.6 s begin_job there. Once now."""
    import hashlib
    import sys

    from hltrun.modules.inference import machine
    from tests.helpers import run_config

    cfg, model = _scoring_job(write_config, tmp_path, streams=3)
    _aged(model)
    monkeypatch.setattr(machine, "RACY_S", 0.0, raising=False)
    hashed, parsed = [], []
    real_hash, real_load = machine._hash_file, onnx.load
    monkeypatch.setattr(machine, "_hash_file", lambda h, p: hashed.append(Path(p)) or real_hash(h, p))
    def load(*args, **kwargs):  # the digest's parse for external data (the scorer's own reads are counted apart)
        if sys._getframe(1).f_code.co_filename.endswith("machine.py"):
            parsed.append(Path(args[0]))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(onnx, "load", load)
    summary, _ = run_config(cfg)
    assert hashed == [model] and parsed == [model], (hashed, parsed)
    assert summary.facts["accelerators"]["vae"]["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_a_kept_digest_follows_the_file(tmp_path: Path, monkeypatch) -> None:
    """Kept by the file's state, change time included: bytes rewritten (the same size, the modification time set
    back) are hashed again; a file changed within ``RACY_S`` is hashed at every call (a rewrite in the same tick
    may keep its state)."""
    from hltrun.modules.inference import machine

    path = tmp_path / "m.bin"
    path.write_bytes(b"a" * 4096)
    hashed = []
    real_hash = machine._hash_file
    monkeypatch.setattr(machine, "_hash_file", lambda h, p: hashed.append(p) or real_hash(h, p))
    # "fresh" whatever the load: with the default 2 s, a stall of 2 s between the write and the read kept it
    monkeypatch.setattr(machine, "RACY_S", 3600.0)
    first = model_digest(path)
    assert model_digest(path) == first and len(hashed) == 2  # fresh: racily clean, read again
    monkeypatch.setattr(machine, "RACY_S", 0.0)
    _aged(path)
    model_digest(path)
    assert model_digest(path) == first and len(hashed) == 3  # kept
    path.write_bytes(b"b" * 4096)
    _aged(path)  # the same size and modification time as the kept one; the change time moved
    assert model_digest(path) != first and len(hashed) == 4
