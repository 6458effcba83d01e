"""A strict fake of the ``tensorrt`` Python module (TensorRT 10 and 11 surfaces) over a ``FakeGpu``.

The "engine" runs the ONNX file with ONNX Runtime on the CPU, reading its input from and writing its
outputs to the fake device memory, in the engine's own I/O dtypes (taken from the ONNX graph, so an
FP16-I/O model gives an engine with HALF I/O) and at the output shapes the context reports for the
current input shape. What it enforces, as real TensorRT does:

* ``set_tensor_address`` and ``execute_async_v3`` take Python ints (a device pointer, a stream
  handle) — not a binding's handle object;
* every I/O tensor needs an address before ``execute_async_v3``; reads and writes are bounds-checked
  against the allocation (``OutOfBounds`` where real TensorRT would corrupt memory);
* ``set_input_shape`` returns False outside the optimisation profile;
* an engine deserializes only with the TensorRT version that built it;
* TensorRT 11 has no ``BuilderFlag.FP16`` and no ``Builder.platform_has_fast_fp16`` (weak typing is
  gone); TensorRT 10 has both;
* parsers and builds can be told to fail (``FakeTrtControl``).

Several inputs (ParticleNet's points, features, mask), as TensorRT 10's Python API documents them (NVIDIA/TensorRT
``python/docstrings/infer/pyCoreDoc.h`` and ``include/NvInferRuntime.h``; the build's words from NVIDIA/TensorRT
issues #532 and #1812):

* ``IOptimizationProfile.set_shape(name, min, opt, max)`` raises ``RuntimeError`` ("Shape provided for min is
  inconsistent with other shapes.", python/src/infer/pyCore.cpp) unless min <= opt <= max; a profile that gives no
  shape for one dynamic input fails the build: ``build_serialized_network`` logs "<name>: dynamic input is missing
  dimensions in profile 0." and returns None (kept in ``FakeTrtControl.errors``);
* ``IExecutionContext.set_input_shape(name, shape)`` returns False, not an exception, when ``name`` is not an input
  tensor, when a dimension disagrees with the network's (unless that is -1), or outside the profile;
* ``set_tensor_address(name, ptr)`` returns False when ``name`` is not an input or output tensor;
* ``infer_shapes()`` returns the names of the inputs whose dynamic dimensions have no shape yet (``[]`` when every
  one has), and raises ``RuntimeError`` when shape inference fails otherwise (here: inputs of different batches);
* ``all_binding_shapes_specified`` "does not work with name-base interfaces eg. set_input_shape(). Use
  infer_shapes() instead": reading it is a ``ContractError`` here, so the backend never relies on it;
* ``execute_async_v3`` (enqueueV3) returns False, with the error logged, when an input has no shape or a tensor
  no address ("Before calling enqueueV3(), each input must have a non-null address and each output must have a
  non-null address"); an output's shape has -1 for its batch while any dynamic input's shape is unset.
"""

from __future__ import annotations

import enum
import importlib.machinery
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .gpu import ContractError, FakeGpu, _strict_int

MAGIC = b"FAKETRT1"


@dataclass
class FakeTrtControl:
    """Knobs and records of one fake installation."""

    version: str = "10.9.0"
    fail_parse: str | None = None  # error text the parser reports
    fail_build: bool = False
    builds: list[dict[str, Any]] = field(default_factory=list)  # one record per build
    executions: list[int] = field(default_factory=list)  # stream handle of each execute_async_v3
    errors: list[str] = field(default_factory=list)  # what real TensorRT logs at ERROR where a call returns False/None


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_}


def _onnx_dtype(elem: int) -> DataType:
    from onnx import TensorProto

    table = {TensorProto.FLOAT: DataType.FLOAT, TensorProto.FLOAT16: DataType.HALF, TensorProto.INT32: DataType.INT32}
    if elem not in table:
        raise ContractError(f"fake TensorRT: ONNX element type {elem} not supported")
    return table[elem]


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


def make_tensorrt(gpu: FakeGpu, ctl: FakeTrtControl) -> types.ModuleType:
    import onnx
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = ctl.version
    major = int(ctl.version.split(".")[0])
    trt.DataType = DataType
    trt.nptype = lambda dt: _NP[dt]

    class Logger:
        VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity

    class BuilderFlag(enum.Enum):
        TF32 = 1
        if major < 11:
            FP16 = 0  # TensorRT 10 weak typing; removed in 11

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    class TensorIOMode(enum.Enum):
        NONE, INPUT, OUTPUT = 0, 1, 2

    trt.Logger, trt.BuilderFlag, trt.MemoryPoolType, trt.TensorIOMode = Logger, BuilderFlag, MemoryPoolType, TensorIOMode

    @dataclass
    class ITensor:
        name: str
        shape: tuple[int, ...]
        dtype: DataType

    class Network:
        def __init__(self) -> None:
            self.inputs: list[ITensor] = []
            self.onnx = b""

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> ITensor:
            return self.inputs[i]

    class ParserError:
        def __init__(self, text: str) -> None:
            self.text = text

        def __str__(self) -> str:
            return self.text

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return self.errors[i]

        def parse_from_file(self, path: str) -> bool:
            if not isinstance(path, str):
                raise TypeError("parse_from_file(): incompatible function arguments (model: str)")
            if ctl.fail_parse:
                self.errors.append(ParserError(ctl.fail_parse))
                return False
            try:
                model = onnx.load(path)
            except Exception as exc:  # noqa: BLE001 - the real parser reports, never raises
                self.errors.append(ParserError(f"ModelImporter.cpp: failed to parse ONNX model: {exc}"))
                return False
            self.network.onnx = Path(path).read_bytes()
            weights = {t.name for t in model.graph.initializer}
            for i in (i for i in model.graph.input if i.name not in weights):
                tt = i.type.tensor_type
                self.network.inputs.append(ITensor(i.name, _dims([d.dim_value for d in tt.shape.dim]),
                                                   _onnx_dtype(tt.elem_type)))
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            if not isinstance(name, str):
                raise TypeError("set_shape(): incompatible function arguments (input: str)")
            lo, opt, hi = tuple(lo), tuple(opt), tuple(hi)
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)) or not len(lo) == len(opt) == len(hi):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[name] = (lo, opt, hi)

    class Config:
        def __init__(self) -> None:
            self.flags = {BuilderFlag.TF32}  # TF32 is on by default in TensorRT
            self.profiles: list[Profile] = []
            self.pools: dict[Any, int] = {}

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self.pools[MemoryPoolType(pool)] = _strict_int(size, "memory pool limit")

        def add_optimization_profile(self, p: Profile) -> int:
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_flag(self, f: BuilderFlag) -> None:
            self.flags.add(BuilderFlag(f))

        def clear_flag(self, f: BuilderFlag) -> None:
            self.flags.discard(BuilderFlag(f))

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        if major < 11:
            platform_has_fast_fp16 = True

        def create_network(self, flags: int = 0) -> Network:
            _strict_int(flags, "network creation flags")
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            if any(-1 in i.shape for i in network.inputs) and not config.profiles:
                ctl.errors.append("Network has dynamic or shape inputs, but no optimization profile has been defined.")
                return None
            for k, p in enumerate(config.profiles):
                missing = [i.name for i in network.inputs if -1 in i.shape and i.name not in p.shapes]
                if missing:  # every dynamic input needs its shapes in every profile
                    ctl.errors.append(f"{missing[0]}: dynamic input is missing dimensions in profile {k}.")
                    return None
            record = {"flags": sorted(f.name for f in config.flags), "pools": {k.name: v for k, v in config.pools.items()},
                      "profiles": [{k: list(map(list, v)) for k, v in p.shapes.items()} for p in config.profiles]}
            ctl.builds.append(record)
            if ctl.fail_build:
                return None
            head = json.dumps({"version": ctl.version, **record}).encode()
            return MAGIC + head + b"\n" + network.onnx

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.input_shapes: dict[str, tuple[int, ...]] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            e = self.engine
            if name not in e.inputs:
                return False  # "false if the provided name does not map to an input tensor"
            shape = tuple(int(d) for d in shape)
            lo, _, hi = e.profile[name]
            net = e.shapes[name]
            if len(shape) != len(lo) or any(n != -1 and n != d for n, d in zip(net, shape)) \
                    or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False
            self.input_shapes[name] = shape
            return True

        def _unset(self) -> list[str]:
            e = self.engine
            return [n for n in e.inputs if -1 in e.shapes[n] and n not in self.input_shapes]

        def infer_shapes(self) -> list[str]:
            unset = self._unset()
            if not unset and len({self.input_shapes[n][0] for n in self.input_shapes}) > 1:
                raise RuntimeError(f"shape inference failed: inputs of different batches {self.input_shapes}")
            return unset

        @property
        def all_binding_shapes_specified(self) -> bool:
            raise ContractError("all_binding_shapes_specified does not work with name-based interfaces "
                                "(set_input_shape): use infer_shapes()")

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            shape = self.engine.shapes[name]
            if name in self.input_shapes:
                return self.input_shapes[name]
            batches = {s[0] for s in self.input_shapes.values()}
            batch = batches.pop() if name not in self.engine.inputs and not self._unset() and len(batches) == 1 else -1
            return tuple(batch if d == -1 else d for d in shape)

        def set_tensor_address(self, name: str, ptr: Any) -> bool:
            if name not in self.engine.shapes:
                return False  # "Return false if the provided name does not map to an input or output tensor"
            self.addresses[name] = _strict_int(ptr, f"address of tensor {name!r}")
            return True

        def execute_async_v3(self, stream_handle: Any) -> bool:
            gpu.stream_check(_strict_int(stream_handle, "execute_async_v3 stream_handle"))
            e = self.engine
            unset, shapeless = [n for n in e.names if n not in self.addresses], self._unset()
            if unset or shapeless:  # enqueueV3 returns false and logs the API usage error
                ctl.errors.append(f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error (tensors without an "
                                  f"address {unset}, inputs without a shape {shapeless})")
                return False
            if len({shape[0] for shape in self.input_shapes.values()}) > 1:  # shape inference fails: no launch
                ctl.errors.append(f"IExecutionContext::enqueueV3: inputs of different batches {self.input_shapes}")
                return False
            feeds = {}
            for name in e.inputs:
                shape = self.input_shapes.get(name, e.shapes[name])
                dt = np.dtype(_NP[e.dtypes[name]])
                nbytes = int(np.prod(shape)) * dt.itemsize
                feeds[name] = gpu.device_view(self.addresses[name], nbytes).view(dt).reshape(shape).copy()
            for name, value in zip(e.outputs, e.session.run(e.outputs, feeds)):
                value = np.ascontiguousarray(value, _NP[e.dtypes[name]])
                if value.shape != self.get_tensor_shape(name):
                    raise ContractError(f"output {name}: {value.shape} vs context shape {self.get_tensor_shape(name)}")
                gpu.device_view(self.addresses[name], value.nbytes)[:] = value.reshape(-1).view(np.uint8)
            ctl.executions.append(stream_handle)
            return True

    class Engine:
        def __init__(self, head: dict[str, Any], model: bytes) -> None:
            self.head = head
            self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            graph = onnx.load_from_string(model).graph
            weights = {t.name for t in graph.initializer}
            ins = [i for i in graph.input if i.name not in weights]
            self.inputs = [i.name for i in ins]  # the network's order, which the engine's I/O tensors keep
            self.outputs = [o.name for o in graph.output]
            self.names = [*self.inputs, *self.outputs]
            self.dtypes = {v.name: _onnx_dtype(v.type.tensor_type.elem_type) for v in [*ins, *graph.output]}
            self.shapes = {v.name: _dims([d.dim_value for d in v.type.tensor_type.shape.dim])
                           for v in [*ins, *graph.output]}
            (profile,) = head["profiles"]
            self.profile = {k: tuple(tuple(s) for s in v) for k, v in profile.items()}

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.shapes[name]

        def get_tensor_dtype(self, name: str) -> DataType:
            return self.dtypes[name]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: Any) -> Engine | None:
            blob = bytes(blob)
            if not blob.startswith(MAGIC):
                return None
            head, model = blob[len(MAGIC):].split(b"\n", 1)
            head = json.loads(head)
            if head["version"] != ctl.version:  # engines are not portable across TensorRT versions
                return None
            return Engine(head, model)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def install(monkeypatch: Any, gpu: FakeGpu, ctl: FakeTrtControl) -> types.ModuleType:
    import sys

    trt = make_tensorrt(gpu, ctl)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
