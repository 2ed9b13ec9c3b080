"""Ops rewritten into ones ONNX Runtime's CPU provider keeps in its blocked layout.

ONNX Runtime's CPU provider runs convolutions in a blocked channel layout (NCHWc) and
moves tensors in and out of it around every op it cannot run there. Two such ops fill
MediaPipe's networks:

* **PRelu** (69 in the 478-point landmark net, after its convolutions and residual adds):

      PRelu(x, s) = Relu(x) + s · min(x, 0) = Relu(x) + BN_{-s}(Relu(BN_{-1}(x)))

  where BN_a is a BatchNormalization with scale a (per channel), bias 0, mean 0,
  variance 1 and epsilon 0: a per-channel multiply the blocked layout supports.
* **Pad on the channel axis** (the residual skips that widen a block, zeros appended):
  a 1x1 convolution whose weights copy the C input channels and add zero ones.

Both are exact in real arithmetic; in float32 they change the landmark net's outputs by
at most 2e-4 crop pixels (of 256), less than its conversion from TFLite did (3.5e-4).
The landmark net then runs 12.4 -> 5.3 ms per face on 2 threads (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


def _batch_norm(name: str, x: str, out: str, scale: np.ndarray) -> tuple[onnx.NodeProto, list]:
    """A per-channel multiply by ``scale`` (C,) as BatchNormalization, and its initializers."""
    c = len(scale)
    values = {"scale": scale, "bias": np.zeros(c), "mean": np.zeros(c), "var": np.ones(c)}
    inits = [numpy_helper.from_array(v.astype(np.float32), f"{name}_{k}")
             for k, v in values.items()]  # fmt: skip
    node = helper.make_node("BatchNormalization", [x, *(i.name for i in inits)], [out],
                            name=name, epsilon=0.0)  # fmt: skip
    return node, inits


def _channel_slope(slope: np.ndarray) -> np.ndarray | None:
    """The (C,) slopes if ``slope`` multiplies the channels of an NCHW tensor (shape
    (1, C, 1, 1) or (C, 1, 1)); else None."""
    if slope.ndim not in (3, 4) or slope.shape[-2:] != (1, 1):
        return None
    if slope.ndim == 4 and slope.shape[0] != 1:
        return None
    return slope.reshape(-1).astype(np.float64)


def _prelu(node: onnx.NodeProto, slope: np.ndarray, p: str) -> tuple[list, list]:
    x, y = node.input[0], node.output[0]
    negate, neg_inits = _batch_norm(f"{p}_negate", x, f"{p}_neg_x", -np.ones(len(slope)))
    scale, scale_inits = _batch_norm(f"{p}_slope", f"{p}_relu_neg", f"{p}_neg_part", -slope)
    nodes = [
        helper.make_node("Relu", [x], [f"{p}_pos"], name=f"{p}_relu"),
        negate,
        helper.make_node("Relu", [f"{p}_neg_x"], [f"{p}_relu_neg"], name=f"{p}_relu_neg"),
        scale,
        helper.make_node("Add", [f"{p}_pos", f"{p}_neg_part"], [y], name=f"{p}_add"),
    ]
    return nodes, neg_inits + scale_inits


def _pad_as_conv(
    node: onnx.NodeProto, const: dict[str, np.ndarray], channels: int | None, name: str
) -> tuple[onnx.NodeProto, onnx.TensorProto] | None:
    """A Pad that only appends zero channels to a 4-D tensor of known ``channels``, as a
    1x1 convolution (and its weights); else None."""
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
    pads = const.get(node.input[1]) if len(node.input) > 1 else None
    value = const.get(node.input[2], 1.0) if len(node.input) > 2 and node.input[2] else 0.0
    if channels is None or pads is None or mode != b"constant" or np.any(value != 0):
        return None
    if pads.shape != (8,) or pads[5] <= 0 or np.delete(pads, 5).any():
        return None
    weight = np.zeros((channels + int(pads[5]), channels, 1, 1), np.float32)
    weight[np.arange(channels), np.arange(channels)] = 1.0
    init = numpy_helper.from_array(weight, f"{name}_weight")
    return helper.make_node("Conv", [node.input[0], init.name], [node.output[0]], name=name), init


def rewrite_for_cpu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A copy of ``model`` with every PRelu whose slope is a per-channel constant, and
    every Pad that only appends zero channels to a 4-D tensor, rewritten as above; also
    how many of each. Other PRelus and Pads stay as they are."""
    out = shape_inference.infer_shapes(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    channels: dict[str, int] = {}
    for info in [*graph.value_info, *graph.input]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[info.name] = dims[1].dim_value
    const = {name: numpy_helper.to_array(i) for name, i in inits.items()}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    counts = {"PRelu": 0, "Pad": 0}
    for node in graph.node:
        s = const.get(node.input[1]) if node.op_type == "PRelu" else None
        if s is not None and (slope := _channel_slope(s)) is not None:
            counts["PRelu"] += 1
            new, new_inits = _prelu(node, slope, f"nchwc_prelu_{counts['PRelu']}")
            nodes += new
            added += new_inits
            continue
        conv = None
        if node.op_type == "Pad":
            name = f"nchwc_pad_{counts['Pad'] + 1}"
            conv = _pad_as_conv(node, const, channels.get(node.input[0]), name)
        if conv is not None:
            counts["Pad"] += 1
            nodes.append(conv[0])
            added.append(conv[1])
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.value_info[:]  # shapes of the replaced ops' outputs are re-inferred at load
    return out, counts
