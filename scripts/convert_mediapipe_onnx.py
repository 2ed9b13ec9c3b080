"""Convert MediaPipe's Face Landmarker networks (.task bundle) to ONNX, batch made dynamic.

A set-up step, run once per machine; nothing here downloads. ``face_landmarker.task`` is a
zip of ``face_detector.tflite`` (BlazeFace short range), ``face_landmarks_detector.tflite``
(Face Mesh V2, 478 points) and ``face_blendshapes.tflite`` (52 scores). Each is converted
with ``tf2onnx`` (``--tflite``), then its batch dimension is made dynamic (the detector and
the blendshape model are exported with batch 1 baked into their Reshape/Slice constants),
and each file is checked: batch N gives the same numbers as N runs of batch 1, and where
the converter environment has a TFLite interpreter, ONNX agrees with TFLite.

tf2onnx needs TensorFlow (~600 MB), which is *not* a dependency of this project. Use a
separate virtual environment for it and pass its interpreter with ``--python``::

    python3.11 -m venv /tmp/tfl
    /tmp/tfl/bin/pip install tf2onnx tensorflow-cpu ai-edge-litert onnxruntime
    .venv/bin/python scripts/convert_mediapipe_onnx.py --python /tmp/tfl/bin/python

The ONNX files go to ``$VN3D_CACHE/mediapipe-onnx`` (else ``~/.cache/vn3d/mediapipe-onnx``)
with a ``manifest.json``; ``engines/tracking/mediapipe_onnx.py`` reads them from there.
See docs/MEDIAPIPE_ONNX.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from engines.files.assets import asset_path, sha256_file
from engines.tracking.mediapipe_onnx import converted_dir

MODELS = ("face_detector", "face_landmarks_detector", "face_blendshapes")


# -- making the batch dimension dynamic ------------------------------------------------------
class GraphConstants:
    """The graph's constant tensors (initializers and Constant nodes), read and set by name."""

    def __init__(self, g) -> None:  # g: onnx.GraphProto
        self.inits = {t.name: t for t in g.initializer}
        self.consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if name in self.consts:
            return numpy_helper.to_array(self.consts[name].attribute[0].t)
        return None

    def set(self, name: str, arr: np.ndarray) -> None:
        from onnx import numpy_helper

        t = numpy_helper.from_array(np.asarray(arr), name)
        if name in self.inits:
            self.inits[name].CopyFrom(t)
        else:
            self.consts[name].attribute[0].t.CopyFrom(t)


def use_counts(g) -> dict[str, int]:  # g: onnx.GraphProto
    """How many node inputs read each tensor name."""
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    return uses


def symbolic_batch_io(g) -> None:  # g: onnx.GraphProto, edited in place
    """Dim 0 of every graph input/output of rank >= 2 becomes ``N``."""
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) >= 2:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"


def dynamic_reshape(g, n, consts: GraphConstants, uses: dict[str, int]) -> None:
    """A Reshape target ``[1, ...]`` becomes ``[0, ...]`` (0 copies the input's batch dim)."""
    from onnx import numpy_helper

    shape = consts.array(n.input[1])
    if shape is not None and shape.ndim == 1 and len(shape) >= 2 and shape[0] == 1:
        shape = shape.copy()
        shape[0] = 0
        if uses.get(n.input[1], 0) > 1:  # shared constant: give this node its own
            name = n.input[1] + "__dynbatch_" + n.name
            g.initializer.append(numpy_helper.from_array(shape, name))
            n.input[1] = name
        else:
            consts.set(n.input[1], shape)


def expand_concat_constants(g, n, consts: GraphConstants) -> list:  # -> [onnx.NodeProto]
    """Broadcast each batch-1 constant input of a Concat to the batch; the nodes doing it."""
    from onnx import helper, numpy_helper

    new_nodes = []
    for k, name in enumerate(n.input):
        arr = consts.array(name)
        if arr is None or arr.ndim < 2 or arr.shape[0] != 1:
            continue
        other = next(i for i in n.input if consts.array(i) is None)
        tag = f"{n.name}__dynbatch{k}"
        tail = numpy_helper.from_array(np.ones(arr.ndim - 1, np.int64), tag + "_ones")
        g.initializer.append(tail)
        new_nodes += [
            helper.make_node("Shape", [other], [tag + "_shape"], start=0, end=1),
            helper.make_node("Concat", [tag + "_shape", tag + "_ones"], [tag + "_target"], axis=0),
            helper.make_node("Expand", [name, tag + "_target"], [tag + "_out"]),
        ]
        n.input[k] = tag + "_out"
    return new_nodes


def unsqueeze_outputs(g) -> None:  # g: onnx.GraphProto, edited in place
    """Drop the Slice+Squeeze in front of a squeezed output: ``[52]`` becomes ``[N, 52]``."""
    from onnx import helper

    # the blendshape output: ... Reshape[1,52] -> Slice[0:1] -> Squeeze(0) -> output [52]
    by_output = {o: n for n in g.node for o in n.output}
    for o in list(g.output):
        node = by_output.get(o.name)
        if node is None or node.op_type != "Squeeze":
            continue
        src = by_output.get(node.input[0])
        if src is not None and src.op_type == "Slice":
            keep = src.input[0]
            g.node.remove(node)
            g.node.remove(src)
            g.node.append(helper.make_node("Identity", [keep], [o.name]))
            dims = o.type.tensor_type.shape.dim
            old = [d.dim_value for d in dims]
            o.type.tensor_type.shape.ClearField("dim")
            o.type.tensor_type.shape.dim.add().dim_param = "N"
            for v in old:
                o.type.tensor_type.shape.dim.add().dim_value = v


def make_batch_dynamic(model):  # onnx.ModelProto -> onnx.ModelProto (edited in place)
    """Replace the batch size 1 that tf2onnx baked into the graph with a symbolic ``N``.

    * graph inputs/outputs: dim 0 becomes ``N`` (the blendshape output ``[52]`` was
      squeezed: its Slice+Squeeze are dropped so it becomes ``[N, 52]``);
    * Reshape targets ``[1, ...]`` become ``[0, ...]`` (0 copies the input's batch dim);
    * a constant concatenated with the batch (the blendshape MLP-Mixer's extra token)
      is broadcast to the batch with Expand.
    """
    import onnx

    g = model.graph
    consts = GraphConstants(g)
    uses = use_counts(g)
    symbolic_batch_io(g)

    new_nodes = []
    for n in g.node:
        if n.op_type == "Reshape":
            dynamic_reshape(g, n, consts, uses)
        if n.op_type == "Concat":
            new_nodes += expand_concat_constants(g, n, consts)
        new_nodes.append(n)
    g.ClearField("node")
    g.node.extend(new_nodes)

    outs = {o.name for o in g.output}
    unsqueeze_outputs(g)
    assert outs == {o.name for o in g.output}
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    del g.value_info[:]
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model)


def sample_input(name: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    if name == "face_detector":
        return rng.uniform(-1, 1, (batch, 128, 128, 3)).astype(np.float32)
    if name == "face_landmarks_detector":
        return rng.uniform(0, 1, (batch, 256, 256, 3)).astype(np.float32)
    return rng.uniform(0, 450, (batch, 146, 2)).astype(np.float32)


def check_batch(path: Path, name: str) -> float:
    """Max |batch-of-3 output - three batch-of-1 outputs| of an ONNX file."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = sample_input(name, 3, np.random.default_rng(1))
    inp = sess.get_inputs()[0].name
    batched = sess.run(None, {inp: x})
    worst = 0.0
    for i in range(3):
        single = sess.run(None, {inp: x[i : i + 1]})
        for b, s in zip(batched, single, strict=True):
            worst = max(worst, float(np.abs(b[i : i + 1] - s).max()))
    return worst


TFLITE_CHECK = r"""
import json, sys, numpy as np, onnxruntime as ort
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tensorflow.lite.python.interpreter import Interpreter
tfl, onx, name = sys.argv[1:4]
rng = np.random.default_rng(0)
it = Interpreter(model_path=tfl); it.allocate_tensors()
sess = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
d = it.get_input_details()[0]
worst = []
for _ in range(3):
    if name == "face_detector": x = rng.uniform(-1, 1, d["shape"])
    elif name == "face_landmarks_detector": x = rng.uniform(0, 1, d["shape"])
    else: x = rng.uniform(0, 450, d["shape"])
    x = x.astype(np.float32)
    it.set_tensor(d["index"], x); it.invoke()
    ref = [it.get_tensor(o["index"]) for o in it.get_output_details()]
    out = sess.run(None, {sess.get_inputs()[0].name: x})
    worst.append([float(np.abs(r.ravel() - o.ravel()).max()) for r, o in zip(ref, out)])
print(json.dumps(np.max(worst, axis=0).tolist()))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", type=Path, default=None, help="face_landmarker.task path")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default: cache)")
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that has tf2onnx + tensorflow (a separate venv; default: this one)",
    )
    ap.add_argument("--opset", type=int, default=17)
    return ap.parse_args(argv)


def probe_converter(python: str) -> tuple[str, str] | None:
    """tf2onnx and TensorFlow versions of ``python``; None (after a hint) if it lacks them."""
    probe = subprocess.run(
        [
            python,
            "-c",
            "import tf2onnx, tensorflow; print(tf2onnx.__version__, tensorflow.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        print(
            f"{python} cannot import tf2onnx + tensorflow. Make a separate venv:\n"
            "  python3.11 -m venv /tmp/tfl && /tmp/tfl/bin/pip install tf2onnx "
            "tensorflow-cpu ai-edge-litert onnxruntime\n"
            "then pass --python /tmp/tfl/bin/python",
            file=sys.stderr,
        )
        return None
    tf2onnx_version, tf_version = probe.stdout.split()[-2:]
    return tf2onnx_version, tf_version


def tf2onnx_convert(python: str, tflite: Path, raw: Path, opset: int) -> bool:
    """Run tf2onnx on one .tflite file; False (after its output, on stderr) if it failed."""
    cmd = [
        python,
        "-m",
        "tf2onnx.convert",
        "--tflite",
        str(tflite),
        "--output",
        str(raw),
        "--opset",
        str(opset),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-3000:], file=sys.stderr)
        return False
    return True


def tflite_max_abs_diff(python: str, tflite: Path, dst: Path, name: str) -> list[float] | None:
    """Per output, max |TFLite - ONNX| over three inputs; None without an interpreter."""
    chk = subprocess.run(
        [python, "-c", TFLITE_CHECK, str(tflite), str(dst), name],
        capture_output=True,
        text=True,
    )
    if chk.returncode == 0:
        return json.loads(chk.stdout.strip().splitlines()[-1])
    return None  # no interpreter in the converter venv


def convert_model(python: str, tmp: Path, name: str, dst: Path, opset: int) -> dict | None:
    """Convert one network to ``dst`` with a dynamic batch and check it; its manifest entry."""
    import onnx

    tflite = tmp / f"{name}.tflite"
    raw = tmp / f"{name}.raw.onnx"
    if not tf2onnx_convert(python, tflite, raw, opset):
        print(f"tf2onnx failed on {name}", file=sys.stderr)
        return None
    model = make_batch_dynamic(onnx.load(str(raw)))
    onnx.save(model, str(dst))
    return {
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "bytes": dst.stat().st_size,
        "batch_max_abs_diff": check_batch(dst, name),
        "tflite_max_abs_diff": tflite_max_abs_diff(python, tflite, dst, name),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnx

    task = args.task or asset_path("face_landmarker")
    out = args.out or converted_dir()
    if not task.is_file():
        print(f"missing {task}: set $VN3D_ASSETS or pass --task", file=sys.stderr)
        return 2
    versions = probe_converter(args.python)
    if versions is None:
        return 2
    tf2onnx_version, tf_version = versions
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "task": str(task),
        "task_sha256": sha256_file(task),
        "tf2onnx": tf2onnx_version,
        "tensorflow": tf_version,
        "onnx": onnx.__version__,
        "opset": args.opset,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with zipfile.ZipFile(task) as z:
            z.extractall(tmp)
        for name in MODELS:
            dst = out / f"{name}.onnx"
            info = convert_model(args.python, tmp, name, dst, args.opset)
            if info is None:
                return 1
            manifest["models"][name] = info
            print(f"{name}: {dst} {json.dumps(info)}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
