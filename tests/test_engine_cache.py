"""``engine_cache``: one rule for every backend that compiles (``machine.engine_cache_dir``): the folder
given, ``~`` expanded as a shell would, else the engine's own default, asked for only then."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hltrun.modules.inference import BackendOptions, create_backend
from hltrun.modules.inference import iree_backend as ib
from hltrun.modules.inference import jax_backend
from hltrun.modules.inference.machine import engine_cache_dir


def test_the_folder_given_with_its_tilde_expanded_else_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    given = engine_cache_dir(BackendOptions(engine_cache="~/engines"), lambda: pytest.fail("default asked for"))
    assert given == tmp_path / "engines"
    assert engine_cache_dir(BackendOptions(), lambda: tmp_path / "default") == tmp_path / "default"


def test_iree_looks_for_its_modules_under_the_expanded_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    options = BackendOptions(engine_cache="~/engines", opt_batch=2, max_batch=2)
    version = ib.dist_version("iree-base-compiler")
    assert not ib.IreeBackend.compiled(tiny.onnx, options)
    for bucket in (1, 2):
        module = ib.cache_path(tiny.onnx, tmp_path / "engines", version, bucket)
        module.parent.mkdir(exist_ok=True)
        module.write_bytes(b"compiled")
    assert ib.IreeBackend.compiled(tiny.onnx, options)


def test_jax_keeps_its_compilation_cache_in_the_expanded_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    enabled = []
    monkeypatch.setattr(jax_backend, "enable_compile_cache", enabled.append)
    backend = create_backend("jax", tiny.onnx, BackendOptions(engine_cache="~/engines"))
    fake_jax = SimpleNamespace(config=SimpleNamespace(jax_compilation_cache_dir="/elsewhere"))
    assert backend._compile_cache(fake_jax) == str(tmp_path / "engines") and enabled == [str(tmp_path / "engines")]
