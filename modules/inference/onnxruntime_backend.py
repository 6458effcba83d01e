"""ONNX Runtime backend: the CPU workhorse of the HLT path, and its CUDA / TensorRT providers.

One intra-op thread by default, as CMSSW configures it: a trigger farm gets its parallelism from
concurrent events (streams), not from threads inside one small inference.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hltrun.framework.errors import ConfigError
from hltrun.framework.extras import need

from .base import PER_CALL_QUANT_OPS, InferenceBackend, model_has_ops, require_float32

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
# a quantised graph has one of these: quantize_dynamic's and QDQ's ops, and the fused ones a model saved after
# ONNX Runtime's optimisation has in their place (gcn_vae_int8 so saved was refused for precision: int8)
QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul",
             "MatMulIntegerToFloat", *PER_CALL_QUANT_OPS}


def resolve_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Map short names to ORT provider names; a requested provider that is not there is an error
    (never a silent CPU fallback). CPU is appended last for nodes a GPU provider cannot run."""
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in requested] or ["CPUExecutionProvider"]
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(f"onnxruntime: execution provider(s) {missing} not available in this "
                          f"onnxruntime build (available: {list(available)})")
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"
    reads = frozenset(("threads", "providers", "graph_optimization", "io_binding"))
    model_suffixes = (".onnx",)
    precisions = ("fp32", "int8")  # int8: a quantised model (*_int8.onnx), as the scorer checks

    def _load(self) -> None:
        ort = need("onnxruntime", f"onnxruntime: running {self.model_path}")
        self._ort = ort
        opts = self.options
        if opts.graph_optimization not in OPT_LEVELS:
            raise ConfigError(f"onnxruntime: graph_optimization {opts.graph_optimization!r} "
                              f"(allowed: {', '.join(OPT_LEVELS)})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.threads
        so.inter_op_num_threads = opts.inter_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opts.graph_optimization])
        # fatal only: a per-event failure comes back as our one-line ModuleError; ORT's own (coloured,
        # multi-line) error log would repeat it for every event, also under -q
        so.log_severity_level = 4
        ort.set_default_logger_severity(4)
        providers = resolve_providers(opts.providers, ort.get_available_providers())
        self.session = ort.InferenceSession(str(self.model_path), sess_options=so, providers=providers)
        self.providers = self.session.get_providers()
        self.device = "gpu-nvidia" if any(p in GPU_PROVIDERS for p in self.providers) else "cpu"
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]  # several: fed in this order (the contract is matched to it)
        self.input_name = inputs[0].name
        for i in inputs:
            require_float32("onnxruntime", self.model_path, i.name, i.type)
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.precision = "int8" if self._is_quantised() else "fp32"

    def _is_quantised(self) -> bool:
        """INT8 models made by tools/physics/quantize_models.py carry integer / Q-DQ ops; looked up in the
        file's bytes, so that a job on ONNX Runtime does not import the onnx package (~0.1 s) to learn it."""
        return model_has_ops(self.model_path, QUANT_OPS)

    def _input_shape(self) -> tuple[Any, ...]:
        return tuple(self.session.get_inputs()[0].shape)

    def _metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def _input_signature(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(i.name, tuple(i.shape)) for i in self.session.get_inputs()]

    def _output_names(self) -> Sequence[str]:
        return self._outputs

    def _output_types(self) -> dict[str, str]:
        return {o.name: o.type for o in self.session.get_outputs()}

    def _run(self, x: np.ndarray) -> Any:
        names = self.output_names
        if self.options.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, x)
            for key in names:
                binding.bind_output(key)
            self.session.run_with_iobinding(binding)
            return dict(zip(names, binding.copy_outputs_to_cpu()))
        return dict(zip(names, self.session.run(names, {self.input_name: x})))

    def _run_inputs(self, xs: tuple[np.ndarray, ...]) -> Any:
        names = self.output_names
        feed = dict(zip(self.input_names, xs))
        if self.options.io_binding:
            binding = self.session.io_binding()
            for name, x in feed.items():
                binding.bind_cpu_input(name, x)
            for key in names:
                binding.bind_output(key)
            self.session.run_with_iobinding(binding)
            return dict(zip(names, binding.copy_outputs_to_cpu()))
        return dict(zip(names, self.session.run(names, feed)))

    def _describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"versions": {"onnxruntime": ort.__version__}, "providers": list(self.providers),
                "precision": self.precision, "graph_optimization": self.options.graph_optimization,
                "io_binding": self.options.io_binding, "input": ", ".join(self.input_names)}
