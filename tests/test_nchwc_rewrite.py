"""PRelu and channel Pad rewritten for ONNX Runtime's CPU layout
(engines/inference/nchwc_rewrite.py): the same outputs as the original graph, on a small
graph with every case and on MediaPipe's landmark net."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from engines.files.assets import asset_root
from engines.inference.nchwc_rewrite import rewrite_for_cpu


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])  # fmt: skip
    return sess.run(None, {sess.get_inputs()[0].name: x})


def small_graph() -> onnx.ModelProto:
    """conv -> PRelu (per channel, slopes of both signs and above 1) -> channel Pad (+3
    zero channels) -> add; plus a PRelu with one scalar slope, which must stay."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "w"),
        # per-channel slopes of both signs, above 1 and 0
        numpy_helper.from_array(np.array([-2.0, 0.25, 1.5, 0.0], np.float32)[None, :, None, None],
                                "s"),
        numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 3, 0, 0], np.int64), "pads"),
        numpy_helper.from_array(rng.normal(size=(1, 7, 6, 6)).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([0.3], np.float32), "scalar"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c", "s"], ["p"]),
        helper.make_node("Pad", ["p", "pads"], ["padded"]),
        helper.make_node("Add", ["padded", "b"], ["sum"]),
        helper.make_node("PRelu", ["sum", "scalar"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7, 6, 6])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_small_graph_same_outputs():
    model = small_graph()
    rewritten, counts = rewrite_for_cpu(model)
    assert counts == {"PRelu": 1, "Pad": 1}  # the scalar-slope PRelu stays
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("PRelu") == 1 and "Pad" not in ops
    x = np.random.default_rng(1).normal(size=(1, 2, 6, 6)).astype(np.float32) * 3
    (want,), (got,) = run(model, x), run(rewritten, x)
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
    assert np.abs(want).max() > 1  # the graph does something
    assert len(model.graph.node) == 5  # the original is left alone


def test_landmark_net_same_outputs():
    """Landmarks in crop pixels (0-256), presence logit, and the unused score: the same
    within 1e-3 (measured 3e-4; the conversion from TFLite itself moved them 3.5e-4)."""
    model = onnx.load(str(asset_root() / "mediapipe_onnx" / "face_landmarks_detector.onnx"))
    rewritten, counts = rewrite_for_cpu(model)
    assert counts == {"PRelu": 69, "Pad": 3}
    x = np.random.default_rng(2).random((2, 256, 256, 3), np.float32)
    for want, got in zip(run(model, x), run(rewritten, x), strict=True):
        assert np.abs(got - want).max() < 1e-3
