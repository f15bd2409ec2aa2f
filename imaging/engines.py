"""Which runtime runs a model's ONNX file: OpenVINO (the default) or ONNX Runtime.

rembg's sessions and the pipeline call a small part of
``onnxruntime.InferenceSession``: ``run``, ``get_inputs`` and
``get_outputs``. ``OpenVinoModel`` offers that part over an OpenVINO
compiled model, so the same session classes, constants and pipeline run on
either engine.

Measured on the 2-core development machine, quiet (docs/benchmarks.md,
"Engines"): OpenVINO in fp32 gives ONNX Runtime's masks (max |Δ| of the
raw output under 4e-5) with u2net's run about 9 % and u2netp's about 15 %
faster, so it is the default.
In bf16 (``openvino-bf16``, on CPUs with AVX-512 BF16 or AMX) a run takes
0.46-0.52x as long, but the masks drift (IoU down to 0.93 on a thin
subject): opt-in. ``onnxruntime`` is rembg's own engine, one setting away.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# MODEL_ENGINE value -> OpenVINO's INFERENCE_PRECISION_HINT (None: ONNX Runtime).
ENGINES: dict[str, str | None] = {
    "openvino": "f32",
    "openvino-bf16": "bf16",
    "onnxruntime": None,
}
DEFAULT_ENGINE = "openvino"


@dataclass(frozen=True)
class NodeArg:
    """What ``InferenceSession.get_inputs()``'s items carry that callers read."""

    name: str
    shape: list


_core = None
_core_pid: int | None = None
_core_lock = threading.Lock()


def _openvino_core():
    """One OpenVINO Core per process (a forked worker makes its own)."""
    global _core, _core_pid
    with _core_lock:
        if _core is None or _core_pid != os.getpid():
            import openvino

            _core, _core_pid = openvino.Core(), os.getpid()
        return _core


class OpenVinoModel:
    """An ONNX file compiled by OpenVINO for this CPU, run like an ORT session.

    One infer request per model, behind a lock: a worker runs one job at a
    time, and OpenVINO parallelises inside the request.
    """

    def __init__(self, path: Path, *, precision: str, threads: int = 0):
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.precision = precision
        self._compiled = _openvino_core().compile_model(str(path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self._inputs = [_node(port) for port in self._compiled.inputs]
        self._outputs = [_node(port) for port in self._compiled.outputs]
        self._output_index = {node.name: i for i, node in enumerate(self._outputs)}

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list:
        """``InferenceSession.run``: the named outputs (all for ``None``), as arrays."""
        wanted = output_names if output_names else range(len(self._outputs))
        indexes = [self._output_index[n] if isinstance(n, str) else n for n in wanted]
        feed = {name: np.ascontiguousarray(value) for name, value in input_feed.items()}
        with self._lock:
            results = self._request.infer(feed)
            # The request reuses its output buffers on the next call.
            return [np.array(results[self._compiled.outputs[i]]) for i in indexes]


def _node(port) -> NodeArg:
    shape = [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]
    return NodeArg(port.get_any_name(), shape)
