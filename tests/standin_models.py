"""Stand-in ONNX files for the four models whose weights cannot be downloaded here.

Each has its real model's interface as rembg's session class feeds and
reads it: one float32 input of 1x3xSxS (S = 320 for u2net_human_seg and
silueta, 768 for u2net_cloth_seg, 1024 for isnet-general-use), float32
outputs of which rembg reads the first: 1x1xSxS for the mask models (the
U2-Net exports have seven, d0..d6, as u2net.onnx has), 1x4xSxS for the
cloth model (background, upper body, lower body, full body; rembg takes
the argmax over them). The names follow the published files as far as
they are known here (u2net.onnx's own: ``input.1`` and ``1959``..``1965``);
nothing reads them but by position, as rembg does.

What each computes is not a segmentation, only a function of its input
that a test can check: a 1x1 convolution of the three normalised channels
(a sigmoid of it for the mask models, class scores for the cloth model).
A test then sees whether the service feeds a model what rembg's session
class would (size, mean, deviation) and reads its outputs as rembg does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# name -> (input name, side, output names, classes)
STANDINS: dict[str, tuple[str, int, tuple[str, ...], int]] = {
    "u2net_human_seg": ("input.1", 320, tuple(str(n) for n in range(1959, 1966)), 1),
    "silueta": ("input.1", 320, tuple(str(n) for n in range(1959, 1966)), 1),
    "isnet-general-use": ("input_image", 1024, ("output_image",), 1),
    "u2net_cloth_seg": ("input", 768, ("output",), 4),
}

# The mask models: brightness, weighted unequally per channel so that a
# wrong mean or deviation changes the mask.
MASK_WEIGHTS = np.array([[[[0.9]], [[1.3]], [[0.6]]]], dtype=np.float32)
# The cloth model's class scores: red is upper-body clothing, green lower,
# blue full-body; anything else (dark, grey) background.
CLOTH_WEIGHTS = np.array(
    [
        [[[0.0]], [[0.0]], [[0.0]]],
        [[[1.0]], [[-0.5]], [[-0.5]]],
        [[[-0.5]], [[1.0]], [[-0.5]]],
        [[[-0.5]], [[-0.5]], [[1.0]]],
    ],
    dtype=np.float32,
)
CLOTH_BIAS = np.array([0.0, -1.0, -1.0, -1.0], dtype=np.float32)


def standin_model(name: str) -> onnx.ModelProto:
    input_name, side, outputs, classes = STANDINS[name]
    image = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, side, side])
    if classes == 1:
        weights = numpy_helper.from_array(MASK_WEIGHTS, "standin_weights")
        bias = numpy_helper.from_array(np.array([-0.5], np.float32), "standin_bias")
        nodes = [
            helper.make_node("Conv", [input_name, "standin_weights", "standin_bias"], ["score"]),
            helper.make_node("Sigmoid", ["score"], [outputs[0]]),
        ]
    else:
        weights = numpy_helper.from_array(CLOTH_WEIGHTS, "standin_weights")
        bias = numpy_helper.from_array(CLOTH_BIAS, "standin_bias")
        nodes = [
            helper.make_node("Conv", [input_name, "standin_weights", "standin_bias"], [outputs[0]])
        ]
    # The side outputs of the U2-Net exports: copies of the first here.
    nodes += [helper.make_node("Identity", [outputs[0]], [extra]) for extra in outputs[1:]]
    graph = helper.make_graph(
        nodes,
        f"standin-{name}",
        [image],
        [
            helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, classes, side, side])
            for out in outputs
        ],
        initializer=[weights, bias],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="revid-tests"
    )
    model.ir_version = 6  # as u2net.onnx
    onnx.checker.check_model(model)
    return model


def write_standins(folder: Path, names=tuple(STANDINS)) -> Path:
    """``<name>.onnx`` for each stand-in in ``folder`` (a U2NET_HOME)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        onnx.save(standin_model(name), str(folder / f"{name}.onnx"))
    return folder
