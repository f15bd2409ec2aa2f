"""A model run in bf16 except the few layers whose rounding moves the mask.

Measured (bench/notes.md, "Where the bf16 drift comes from"): running one
tenth of u2net's layers at a time in bf16 and the rest in fp32, nearly all
of them move the mask by little (IoU 0.996-0.999 alone), but a handful of
layers at the end of the decoder move it by a lot: u2netp's stage-2
decoder's last convolution (``Conv_787``, whose output is added to the
block's input: the sum cancels, so bf16's 8-bit mantissa on the conv's
output becomes a large error on the sum) alone took the worst photo's
IoU to 0.88. Those ranges run in fp32 here, the rest in bf16.

OpenVINO's CPU plugin has no per-layer precision in bf16 (the ``precise``
runtime info only guards f16 conversion, measured), so the model is cut into
consecutive parts, each compiled with its own ``INFERENCE_PRECISION_HINT``;
the tensors that cross a cut are handed from one infer request to the next
without a copy.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from imaging.engines import NodeArg, _node, _openvino_core

# Per model, the ranges of layers (ONNX node names as OpenVINO reads them,
# first included, last excluded; None: to the end) kept in fp32.
FP32_RANGES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "u2netp": (("Concat_764", "Add_789"), ("Relu_833", None)),
}

_SKIPPED = ("Constant", "Parameter", "Result")


def _load(path: Path):
    """The model reduced to its first output (the fused mask), constants folded."""
    import openvino
    from openvino._offline_transformations import apply_moc_transformations

    model = _openvino_core().read_model(str(path))
    model = openvino.Model([model.outputs[0].get_node()], model.get_parameters())
    apply_moc_transformations(model, cf=True)
    return model


def _layers(model) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() not in _SKIPPED]


def plan(model, fp32_ranges) -> list[tuple[int, int, str]]:
    """(first layer, end, precision) of each part, in the model's topological order."""
    names = [op.get_friendly_name() for op in _layers(model)]
    cuts: list[tuple[int, int]] = []
    for first, last in fp32_ranges:
        if first not in names or (last is not None and last not in names):
            raise ValueError(f"The model has no layer {first!r} or {last!r}")
        cuts.append((names.index(first), len(names) if last is None else names.index(last)))
    parts, at = [], 0
    for start, end in sorted(cuts):
        if start > at:
            parts.append((at, start, "bf16"))
        parts.append((start, end, "f32"))
        at = end
    if at < len(names):
        parts.append((at, len(names), "bf16"))
    return parts


class MixedPrecisionModel:
    """One model as consecutive OpenVINO parts, bf16 and fp32, run like an ORT session."""

    def __init__(self, path: Path, fp32_ranges, *, threads: int = 0):
        self.precision = "mixed"
        whole = _load(path)
        self.parts = plan(whole, fp32_ranges)
        self._inputs = [_node(port) for port in whole.inputs]
        self._outputs = [_node(port) for port in whole.outputs]
        self._steps = [self._compile(whole, i, threads) for i in range(len(self.parts))]
        self._lock = threading.Lock()

    def _compile(self, whole, index: int, threads: int):
        """Part ``index``: its layers, with a parameter for each tensor it is handed."""
        import openvino
        import openvino.opset13 as ops

        copy = whole.clone()  # cutting it rewires the layers; it holds the Result
        layers = _layers(copy)
        position = {op.get_friendly_name(): i for i, op in enumerate(layers)}
        part_of = np.zeros(len(layers), dtype=np.int64)
        for i, (start, end, _) in enumerate(self.parts):
            part_of[start:end] = i
        start, end, precision = self.parts[index]
        feeds: list[tuple[int, int]] = []  # (layer, output) handed in; (-1, 0): the image
        parameters = []
        for op in layers[start:end]:
            for port in op.inputs():
                source = port.get_source_output()
                kind = source.get_node().get_type_name()
                if kind == "Constant":
                    continue
                key = (
                    (-1, 0)
                    if kind == "Parameter"
                    else (position[source.get_node().get_friendly_name()], source.get_index())
                )
                if key[0] >= 0 and part_of[key[0]] == index:
                    continue
                if key not in feeds:
                    feeds.append(key)
                    parameters.append(
                        ops.parameter(source.get_partial_shape(), source.get_element_type())
                    )
                port.replace_source_output(parameters[feeds.index(key)].output(0))
        results: list[tuple[int, int]] = []
        outputs = []
        for i in range(start, end):
            for k, output in enumerate(layers[i].outputs()):
                users = [port.get_node() for port in output.get_target_inputs()]
                if any(
                    user.get_type_name() == "Result"
                    or part_of[position[user.get_friendly_name()]] != index
                    for user in users
                ):
                    results.append((i, k))
                    outputs.append(ops.result(output))
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = _openvino_core().compile_model(
            openvino.Model(outputs, parameters), "CPU", config
        )
        return compiled.create_infer_request(), feeds, results

    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list:
        """``InferenceSession.run`` for the one output this model keeps: the mask."""
        image = np.ascontiguousarray(next(iter(input_feed.values())))
        with self._lock:
            values: dict[tuple[int, int], np.ndarray] = {(-1, 0): image}
            for request, feeds, results in self._steps:
                answer = request.infer(
                    [values[key] for key in feeds], share_inputs=True, share_outputs=True
                )
                for i, key in enumerate(results):
                    values[key] = answer[i]
            # The last part's only result is the mask; its buffer is reused next run.
            return [np.array(values[self._steps[-1][2][-1]])]
